"""Mutations of programs (the paper's three, equally weighted by default).

- insert: a random statement at a random place;
- delete: a random statement;
- modify: one argument of a statement (another slot, or a constant: an existing constant is
  multiplied by 2^a, a ~ N(0, 1); otherwise a new draw from N(0, 1)), or its op (same arity).
Redundant statements are allowed as stepping stones. A child that is malformed or fails abstract
execution is re-mutated from its parent.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import dsl
from dsl import Program, ProgramError, Statement

KINDS = ("insert", "delete", "modify")


@dataclass(frozen=True)
class MutationConfig:
    insert: float = 1.0
    delete: float = 1.0
    modify: float = 1.0
    max_statements: int = 20  # an insert beyond this length is not proposed
    constant_prob: float = 0.25  # chance that a new argument is a constant rather than a slot
    max_tries: int = 100  # re-mutations from the parent before giving up on a child
    ops: tuple[str, ...] = ()  # the ops that inserts and op changes may use; empty: the whole table

    def __post_init__(self):
        w = (self.insert, self.delete, self.modify)
        if min(w) < 0 or sum(w) <= 0:
            raise ValueError("mutation weights must be >= 0 and not all 0")
        for key in ("max_statements", "max_tries"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be at least 1, got {getattr(self, key)}")
        if not 0 <= self.constant_prob <= 1:
            raise ValueError(f"constant_prob: must be between 0 and 1, got {self.constant_prob}")
        unknown = [o for o in self.ops if o not in dsl.OPS]
        if unknown:
            raise ValueError(f"ops: unknown op {unknown[0]!r} (see `lionsearch ops`)")

    @property
    def op_names(self) -> tuple[str, ...]:
        return self.ops or dsl.OP_NAMES


def _slots_before(p: Program, i: int) -> list[str]:
    """Names readable by statement i: the inputs and earlier outputs, in a stable order."""
    names = list(p.inputs)
    for s in p.statements[:i]:
        if s.out not in names:
            names.append(s.out)
    return names


def _new_arg(rng: np.random.Generator, slots: list[str], cfg: MutationConfig):
    if rng.random() < cfg.constant_prob:
        return float(rng.normal())
    return slots[rng.integers(len(slots))]


def _insert(p: Program, rng, cfg: MutationConfig) -> tuple[Program, str]:
    i = int(rng.integers(len(p) + 1))
    slots = _slots_before(p, i)
    ops = cfg.op_names
    op = dsl.OPS[ops[rng.integers(len(ops))]]
    args = tuple(_new_arg(rng, slots, cfg) for _ in range(op.arity))
    temps = [n for n in slots if n not in p.inputs]
    fresh = next(f"t{k}" for k in range(len(p) + 2) if f"t{k}" not in slots)
    choices = ["update", "m", "v", fresh] + temps  # overwrite an output, a temporary, or a new one
    out = choices[rng.integers(len(choices))]
    s = Statement(out, op.name, args)
    return p.replace(p.statements[:i] + (s,) + p.statements[i:]), f"insert {i}: {dsl.text.statement_text(s)}"


def _delete(p: Program, rng, cfg) -> tuple[Program, str]:
    i = int(rng.integers(len(p)))
    return p.replace(p.statements[:i] + p.statements[i + 1:]), f"delete {i}: {dsl.text.statement_text(p.statements[i])}"


def _modify(p: Program, rng, cfg: MutationConfig) -> tuple[Program, str]:
    i = int(rng.integers(len(p)))
    s = p.statements[i]
    args = list(s.args)
    j = int(rng.integers(len(args) + 1))
    if j == len(args):  # the op, to another of the same arity
        same = [n for n in cfg.op_names if dsl.OPS[n].arity == len(args) and n != s.op]
        if not same:
            raise ProgramError(f"no other op of arity {len(args)} to switch {s.op} to")
        new = Statement(s.out, same[rng.integers(len(same))], s.args)
    else:
        if isinstance(args[j], float) and rng.random() < 0.5:
            args[j] = args[j] * 2.0 ** rng.normal()
        else:
            args[j] = _new_arg(rng, _slots_before(p, i), cfg)
        new = Statement(s.out, s.op, tuple(args))
    return (p.replace(p.statements[:i] + (new,) + p.statements[i + 1:]),
            f"modify {i}: {dsl.text.statement_text(s)} -> {dsl.text.statement_text(new)}")


_MUTATE = {"insert": _insert, "delete": _delete, "modify": _modify}


def mutate_once(p: Program, rng: np.random.Generator, cfg: MutationConfig = MutationConfig()) -> tuple[Program, str]:
    """One random mutation; may return a malformed program's error as ProgramError."""
    w = np.array([cfg.insert if len(p) < cfg.max_statements else 0.0,
                  cfg.delete if len(p) > 1 else 0.0, cfg.modify], float)
    kind = KINDS[rng.choice(3, p=w / w.sum())]
    return _MUTATE[kind](p, rng, cfg)


@dataclass(frozen=True)
class Child:
    program: Program
    mutation: str  # what was done, readable
    rejected: int  # children thrown away (malformed or failing abstract execution) before this one


def mutate(parent: Program, rng: np.random.Generator, cfg: MutationConfig = MutationConfig()) -> Child:
    """A valid child of `parent`: mutations that break the program are re-drawn from the parent."""
    parent = parent.inline_params()
    rejected = 0
    for _ in range(cfg.max_tries):
        try:
            child, what = mutate_once(parent, rng, cfg)
        except ProgramError:
            rejected += 1
            continue
        if child == parent:  # e.g. an argument replaced by itself: not a child at all
            continue
        if dsl.check(child):
            return Child(child, what, rejected)
        rejected += 1
    raise RuntimeError(f"no valid child of this program after {cfg.max_tries} tries:\n{dsl.to_text(parent)}")


def random_walk(start: Program, rng: np.random.Generator, cfg: MutationConfig, depth: int) -> Child:
    """`start` mutated `depth` times in a row, every step a valid child (random search's
    candidate: as far from the warm start as a lineage of the search of that length)."""
    p, rejected = start, 0
    for _ in range(depth):
        child = mutate(p, rng, cfg)
        p, rejected = child.program, rejected + child.rejected
    return Child(p, f"random walk of {depth} mutations", rejected)


def random_program(rng: np.random.Generator, n_statements: int, cfg: MutationConfig = MutationConfig(),
                   start: Program | None = None) -> Program:
    """A random valid program of about `n_statements` statements, grown by inserts from `start`
    (signsgd by default); for benchmarks and tests."""
    p = (start or dsl.load("signsgd")).inline_params()
    grow = MutationConfig(insert=1, delete=0, modify=0.2, max_statements=max(n_statements, 1),
                          constant_prob=cfg.constant_prob, ops=cfg.ops)
    while len(p) < n_statements:
        p = mutate(p, rng, grow).program
    return p
