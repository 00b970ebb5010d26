"""Mutations of programs (the paper's three, equally weighted by default, and a fourth, off by default).

- insert: a random statement at a random place;
- delete: a random statement;
- modify: one argument of a statement (another slot, or a constant: an existing constant is
  multiplied by 2^a, a ~ N(0, 1); otherwise a new draw from N(0, constant_scale^2)), or its op:
  another of the same arity, or with `op_change: any_arity` any other op, keeping the arguments
  in order as far as the new op takes them and drawing the rest as an insert does (so that
  `update = m / d` may become `update = sign(m)` or `update = clip(m, d, x)` in one step);
- tune: one constant of a live statement multiplied by 2^a (as symbolic regression mutates a
  constant apart from the structure, e.g. PySR). Through modify alone a given constant of a
  9-statement program moves once in about 200 children, so a search meets the structural
  changes that spoil its warm start (dropping the momentum) long before it meets the constant
  change that improves it (a shorter momentum).
What they may write is the `SearchSpace` (the config's `search_space` section); with `memory: K`
above 2, inserts may also write, and new arguments read, further memory slots m3 .. mK, which a
program declares once it uses them (as it declares `step`). Redundant
statements are allowed as stepping stones. A child that is malformed or fails abstract execution is
re-mutated from its parent.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

import dsl
from dsl import Program, ProgramError, Statement
from dsl.program import MAX_MEMORY, STEP

KINDS = ("insert", "delete", "modify", "tune")
OP_CHANGES = ("same_arity", "any_arity")


@dataclass(frozen=True)
class SearchSpace:
    """The programs a search may write (the config's `search_space` section, with its warm start)."""
    # the ops that inserts and op changes may use; empty: the table's element-wise ops and
    # reductions (`dsl.SEARCH_OPS`; the shape ops only where listed)
    ops: tuple[str, ...] = ()
    max_statements: int = 20  # an insert beyond this length is not proposed
    # the inputs a new argument may read (and the memory slots an insert may write); `step`, the
    # 1-based step count, is an input too: a program that reads it declares it in its signature
    inputs: tuple[str, ...] = dsl.INPUTS
    constant_prob: float = 0.25  # chance that a new argument is a constant rather than a slot
    constant_scale: float = 1.0  # a new constant is drawn from N(0, constant_scale^2)
    op_change: str = "same_arity"  # what an op change may pick: same_arity or any_arity (see modify)
    memory: int = 2  # memory slots a program may have: m, v, and m3 .. m<memory> beyond 2
    # children whose update ignores the lr input are rejected, as those blind to the gradient are:
    # the lr carries the schedule and each stage's lr sweep (false: a search of rules that set
    # their own step size)
    follow_lr: bool = True

    def __post_init__(self):
        if self.max_statements < 1:
            raise ValueError(f"max_statements: must be at least 1, got {self.max_statements}")
        if not 0 <= self.constant_prob <= 1:
            raise ValueError(f"constant_prob: must be between 0 and 1, got {self.constant_prob}")
        if self.constant_scale <= 0:
            raise ValueError(f"constant_scale: must be positive, got {self.constant_scale}")
        if not (isinstance(self.memory, int) and 2 <= self.memory <= MAX_MEMORY):
            raise ValueError(f"memory: expected 2 to {MAX_MEMORY} memory slots, got {self.memory!r}")
        if self.op_change not in OP_CHANGES:
            raise ValueError(f"op_change: expected one of {', '.join(OP_CHANGES)}, got {self.op_change!r}")
        unknown = [o for o in self.ops if o not in dsl.OPS]
        if unknown:
            raise ValueError(f"ops: unknown op {unknown[0]!r} (see `lionsearch ops`)")
        known = dsl.INPUTS + (STEP,)
        bad = [x for x in self.inputs if x not in known]
        if bad or not self.inputs:
            raise ValueError(f"inputs: expected some of {', '.join(known)}, got {bad[0] if bad else 'none'}")

    @property
    def op_names(self) -> tuple[str, ...]:
        return self.ops or dsl.SEARCH_OPS


@dataclass(frozen=True)
class MutationConfig:
    """How children are made: the weights of the mutations (what they may write is the
    `SearchSpace`)."""
    insert: float = 1.0
    delete: float = 1.0
    modify: float = 1.0
    tune: float = 0.0
    max_tries: int = 100  # re-mutations from the parent before giving up on a child

    def __post_init__(self):
        w = (self.insert, self.delete, self.modify, self.tune)
        if min(w) < 0 or sum(w) <= 0:
            raise ValueError("mutation weights must be >= 0 and not all 0")
        if self.max_tries < 1:
            raise ValueError(f"max_tries: must be at least 1, got {self.max_tries}")


def _memory(p: Program, space: SearchSpace) -> list[str]:
    """The memory slots after `v` a mutation may read and write: the program's own, then new ones
    (m3, m4, ... up to the space's `memory` slots in all, names the program does not use)."""
    used = set(p.inputs) | set(p.param_values) | {s.out for s in p.statements}
    new = [f"m{k}" for k in range(3, space.memory + 1) if f"m{k}" not in used]
    return list(p.memory[2:]) + new[:max(0, space.memory - len(p.memory))]


def _slots_before(p: Program, i: int, space: SearchSpace) -> list[str]:
    """Names a new argument of statement i may read: the allowed inputs, the memory slots after
    `v`, and earlier outputs, in a stable order."""
    names = [x for x in dsl.INPUTS + (STEP,) if x in space.inputs] + _memory(p, space)
    for s in p.statements[:i]:
        if s.out not in names:
            names.append(s.out)
    return names


def _with(p: Program, statements, space: SearchSpace) -> Program:
    """`p` with new statements; it declares `step` once a statement reads it, and a new memory
    slot once a statement reads or writes it."""
    uses_step = p.uses_step or any(a == STEP for s in statements for a in s.args)
    new = [k for k in _memory(p, space)[len(p.memory) - 2:] if any(k == s.out or k in s.args for s in statements)]
    return Program(tuple(statements), p.params, uses_step, p.name, p.memory + tuple(new))


def _new_arg(rng: np.random.Generator, slots: list[str], space: SearchSpace):
    if rng.random() < space.constant_prob:
        return float(rng.normal() * space.constant_scale)
    return slots[rng.integers(len(slots))]


def _insert(p: Program, rng, space: SearchSpace) -> tuple[Program, str]:
    i = int(rng.integers(len(p) + 1))
    slots = _slots_before(p, i, space)
    ops = space.op_names
    op = dsl.OPS[ops[rng.integers(len(ops))]]
    args = tuple(_new_arg(rng, slots, space) for _ in range(op.arity))
    memory = _memory(p, space)
    temps = [n for n in slots if n not in p.inputs and n != STEP and n not in memory]
    fresh = next(f"t{k}" for k in range(len(p) + 2) if f"t{k}" not in slots)
    # overwrite an output (memory m, v only where it may be read), a temporary, or a new one
    choices = ["update"] + [x for x in dsl.MEMORY if x in space.inputs] + memory + [fresh] + temps
    out = choices[rng.integers(len(choices))]
    s = Statement(out, op.name, args)
    return _with(p, p.statements[:i] + (s,) + p.statements[i:], space), f"insert {i}: {dsl.text.statement_text(s)}"


def _delete(p: Program, rng, space) -> tuple[Program, str]:
    i = int(rng.integers(len(p)))
    return p.replace(p.statements[:i] + p.statements[i + 1:]), f"delete {i}: {dsl.text.statement_text(p.statements[i])}"


def _modify(p: Program, rng, space: SearchSpace) -> tuple[Program, str]:
    i = int(rng.integers(len(p)))
    s = p.statements[i]
    args = list(s.args)
    j = int(rng.integers(len(args) + 1))
    if j == len(args):  # the op
        if space.op_change == "any_arity":
            others = [n for n in space.op_names if n != s.op]
            if not others:
                raise ProgramError(f"no other op to switch {s.op} to")
            op = dsl.OPS[others[rng.integers(len(others))]]
            slots = _slots_before(p, i, space)
            args = args[:op.arity] + [_new_arg(rng, slots, space) for _ in range(op.arity - len(args))]
            new = Statement(s.out, op.name, tuple(args))
        else:
            same = [n for n in space.op_names if dsl.OPS[n].arity == len(args) and n != s.op]
            if not same:
                raise ProgramError(f"no other op of arity {len(args)} to switch {s.op} to")
            new = Statement(s.out, same[rng.integers(len(same))], s.args)
    else:
        if isinstance(args[j], float) and rng.random() < 0.5:
            args[j] = _scaled(args[j], rng)
        else:
            args[j] = _new_arg(rng, _slots_before(p, i, space), space)
        new = Statement(s.out, s.op, tuple(args))
    return (_with(p, p.statements[:i] + (new,) + p.statements[i + 1:], space),
            f"modify {i}: {dsl.text.statement_text(s)} -> {dsl.text.statement_text(new)}")


def _scaled(c: float, rng) -> float:
    return c * 2.0 ** rng.normal()


def _tune(p: Program, rng, space) -> tuple[Program, str]:
    spots = [(i, j) for i, (s, live) in enumerate(zip(p.statements, dsl.live_statements(p))) if live
             for j, a in enumerate(s.args) if isinstance(a, float)]
    if not spots:
        raise ProgramError("no live constant to tune")
    i, j = spots[rng.integers(len(spots))]
    s = p.statements[i]
    new = Statement(s.out, s.op, s.args[:j] + (_scaled(s.args[j], rng),) + s.args[j + 1:])
    return (p.replace(p.statements[:i] + (new,) + p.statements[i + 1:]),
            f"tune {i}: {dsl.text.statement_text(s)} -> {dsl.text.statement_text(new)}")


_MUTATE = {"insert": _insert, "delete": _delete, "modify": _modify, "tune": _tune}


def mutate_once(p: Program, rng: np.random.Generator, cfg: MutationConfig = MutationConfig(),
                space: SearchSpace = SearchSpace()) -> tuple[Program, str]:
    """One random mutation; may return a malformed program's error as ProgramError."""
    w = np.array([cfg.insert if len(p) < space.max_statements else 0.0,
                  cfg.delete if len(p) > 1 else 0.0, cfg.modify, cfg.tune], float)
    kind = KINDS[rng.choice(len(KINDS), p=w / w.sum())]
    return _MUTATE[kind](p, rng, space)


@dataclass(frozen=True)
class Child:
    program: Program
    mutation: str  # what was done, readable
    rejected: int  # children thrown away (malformed or failing abstract execution) before this one


def mutate(parent: Program, rng: np.random.Generator, cfg: MutationConfig = MutationConfig(),
           space: SearchSpace = SearchSpace()) -> Child:
    """A valid child of `parent`: mutations that break the program are re-drawn from the parent."""
    parent = parent.inline_params()
    rejected = 0
    for _ in range(cfg.max_tries):
        try:
            child, what = mutate_once(parent, rng, cfg, space)
        except ProgramError:
            rejected += 1
            continue
        if child == parent:  # e.g. an argument replaced by itself: not a child at all
            continue
        if dsl.check(child, follow_lr=space.follow_lr):
            return Child(child, what, rejected)
        rejected += 1
    raise RuntimeError(f"no valid child of this program after {cfg.max_tries} tries:\n{dsl.to_text(parent)}")


def _reads_lr(p: Program) -> bool:
    """Whether a live statement reads the lr input (before any statement overwrites it)."""
    for s in dsl.strip_dead_code(p).statements:
        if "lr" in s.args:
            return True
        if s.out == "lr":
            return False
    return False


def random_walk(start: Program, rng: np.random.Generator, cfg: MutationConfig, space: SearchSpace,
                depth: int) -> Child:
    """`start` mutated `depth` times in a row (random search's candidate: as far from the warm start
    as a lineage of the search of that length), then held to the checks every child passes. Each
    step is a well-formed change; abstract execution judges only the end, as a walk of hundreds of
    checked steps costs seconds while its end is all that is trained. With `space.follow_lr` each
    step also keeps the lr input live (by dependency, cheaply): a long unchecked walk loses it
    (of walks of 100 mutations, 4% end following the lr, against 23% kept live step by step). A
    walk that ends in a program failing the checks is thrown away (counted as rejected) and
    another is drawn."""
    def step(p: Program) -> Program | None:
        for _ in range(cfg.max_tries):
            try:
                q, _ = mutate_once(p, rng, cfg, space)
            except ProgramError:
                continue
            if q != p and (not space.follow_lr or _reads_lr(q)):
                return q
        return None

    rejected = 0
    for _ in range(cfg.max_tries):
        p = start.inline_params()
        for _ in range(depth):
            if (p := step(p)) is None:
                break
        if p is not None and dsl.check(p, follow_lr=space.follow_lr):
            return Child(p, f"random walk of {depth} mutations", rejected)
        rejected += 1
    raise RuntimeError(f"no random walk of {depth} mutations passed the checks in {cfg.max_tries} tries")


def random_program(rng: np.random.Generator, n_statements: int, space: SearchSpace = SearchSpace(),
                   start: Program | None = None) -> Program:
    """A random valid program of about `n_statements` statements, grown by inserts from `start`
    (signsgd by default); for benchmarks and tests."""
    p = (start or dsl.load("signsgd")).inline_params()
    grow = MutationConfig(insert=1, delete=0, modify=0.2)
    space = dataclasses.replace(space, max_statements=max(n_statements, 1))
    while len(p) < n_statements:
        p = mutate(p, rng, grow, space).program
    return p
