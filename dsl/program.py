"""The `Program` value type: an optimizer as a list of statements `out = op(args...)`.

A program computes ``train(w, g, m, v, lr) -> (update, m, v)`` for one parameter tensor; the caller
applies ``w <- w - update``. A program may declare more memory slots after `v` (`memory`, up to
MAX_MEMORY in all), which it returns after `v` in the same order. Arguments are slot names
(inputs, temporaries, named hyper-parameters) or float constants. Programs are immutable; equality
and hashing are structural.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .ops import OPS

INPUTS = ("w", "g", "m", "v", "lr")  # the paper's inputs, always present
STEP = "step"  # optional extra input: the 1-based step count (needed for Adam's bias correction)
MEMORY = ("m", "v")  # slots carried from one step to the next, initialised to zero; always present
MAX_MEMORY = 8  # memory slots a program may have in all (m and v included)
OUTPUTS = ("update", "m", "v")
KEYWORDS = frozenset({"def", "train", "return"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

Arg = str | float


class ProgramError(ValueError):
    """A malformed program. `line`/`column` (1-based) and `source` (a file) locate it when known."""

    def __init__(self, why: str, line: int | None = None, column: int | None = None,
                 source: str | None = None):
        self.why, self.line, self.column, self.source = why, line, column, source
        loc = f"line {line}, column {column}" if column is not None else f"line {line}"
        super().__init__(f"{source + ': ' if source else ''}{loc + ': ' if line is not None else ''}{why}")


@dataclass(frozen=True)
class Statement:
    out: str
    op: str
    args: tuple[Arg, ...]

    def __post_init__(self):
        # Constants are normalised to float so that `2` and `2.0` are the same statement.
        object.__setattr__(self, "args", tuple(
            float(a) if isinstance(a, (int, float)) and not isinstance(a, bool) else a
            for a in self.args))


@dataclass(frozen=True)
class Program:
    statements: tuple[Statement, ...]
    params: tuple[tuple[str, float], ...] = ()  # named hyper-parameters with their values
    uses_step: bool = False  # whether the signature declares the `step` input
    name: str = field(default="", compare=False)  # where it came from, for messages only
    memory: tuple[str, ...] = MEMORY  # the memory slots: m, v, then any the program declares

    def __post_init__(self):
        object.__setattr__(self, "statements", tuple(self.statements))
        object.__setattr__(self, "params", tuple((str(k), float(x)) for k, x in self.params))
        object.__setattr__(self, "memory", tuple(self.memory))
        validate(self)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The signature's inputs in order: w, g, the memory slots, lr, and step if declared."""
        return ("w", "g") + self.memory + ("lr",) + ((STEP,) if self.uses_step else ())

    @property
    def outputs(self) -> tuple[str, ...]:
        """What the program returns: `update`, then the memory slots."""
        return ("update",) + self.memory

    @property
    def param_values(self) -> dict[str, float]:
        return dict(self.params)

    def __len__(self) -> int:
        return len(self.statements)

    def __str__(self) -> str:
        from .text import to_text
        return to_text(self)

    def bind(self, **values: float) -> "Program":
        """A copy with some named hyper-parameters set to new values."""
        known = self.param_values
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ProgramError(f"unknown hyper-parameter(s) {', '.join(unknown)}; "
                               f"this program declares: {', '.join(known) or 'none'}")
        return Program(self.statements, tuple((k, float(values.get(k, x))) for k, x in self.params),
                       self.uses_step, self.name, self.memory)

    def inline_params(self) -> "Program":
        """The same function with every hyper-parameter replaced by its value as a constant."""
        vals = self.param_values
        stmts = tuple(Statement(s.out, s.op, tuple(vals.get(a, a) if isinstance(a, str) else a
                                                   for a in s.args)) for s in self.statements)
        return Program(stmts, (), self.uses_step, self.name, self.memory)

    def scale_lr(self, k: float) -> "Program":
        """The same optimizer with its learning-rate input multiplied by k (a first statement
        `lr = lr * k`): how a sweep tries a program at other learning rates."""
        if k == 1.0 or not any("lr" in s.args for s in self.statements):  # no lr, nothing to scale
            return self
        return self.replace((Statement("lr", "mul", ("lr", float(k))),) + self.statements)

    def add_weight_decay(self, wd: float) -> "Program":
        """The same optimizer with a decoupled weight decay added to its update, `wd * lr * w` (lr:
        the learning-rate input as the program receives it, so that the decay follows the schedule
        and any lr multiplier, as optax's `add_decayed_weights` before the learning rate): how a
        sweep tries a program with weight decay, whatever decay it has of its own."""
        if wd == 0.0:
            return self
        used = set(self.inputs) | set(self.outputs) | set(self.param_values) | {s.out for s in self.statements}
        name = next(n for n in (f"decay{i}" if i else "decay" for i in range(len(used) + 1)) if n not in used)
        return self.replace((Statement(name, "mul", ("lr", float(wd))),) + self.statements
                            + (Statement(name, "mul", ("w", name)), Statement("update", "add", ("update", name))))

    def replace(self, statements) -> "Program":
        """The same signature with another statement list (validated)."""
        return Program(tuple(statements), self.params, self.uses_step, self.name, self.memory)


def memory_slot_error(name: str, memory) -> str | None:
    """Why `name` cannot be a further memory slot after `memory` (the slots declared before it)."""
    if not isinstance(name, str) or not _NAME.match(name) or name in KEYWORDS or name in INPUTS \
            or name in ("update", STEP):
        return f"{name!r} cannot be a memory slot"
    if name in memory:
        return f"memory slot {name!r} is declared twice"
    if len(memory) >= MAX_MEMORY:
        return f"at most {MAX_MEMORY} memory slots (m and v included)"
    return None


def validate(p: Program) -> None:
    """Raise ProgramError unless `p` is structurally well formed."""
    if p.memory[:2] != MEMORY:
        raise ProgramError(f"the memory slots start with m, v; got {', '.join(map(str, p.memory))}")
    for i, k in enumerate(p.memory[2:], 2):
        why = memory_slot_error(k, p.memory[:i])
        if why:
            raise ProgramError(why)
    params = [k for k, _ in p.params]
    for k, x in p.params:
        if not _NAME.match(k) or k in KEYWORDS or k in OUTPUTS or k in INPUTS or k == STEP or k in p.memory:
            raise ProgramError(f"bad hyper-parameter name {k!r}")
        if not math.isfinite(x):
            raise ProgramError(f"hyper-parameter {k} must be a finite number, got {x}")
    if len(set(params)) != len(params):
        raise ProgramError("a hyper-parameter is declared twice")
    defined = set(p.inputs)
    assigned = set()
    reserved = set(params) | KEYWORDS | {STEP}
    for i, s in enumerate(p.statements, 1):
        if not isinstance(s, Statement):
            raise ProgramError(f"statement {i} is not a Statement")
        op = OPS.get(s.op)
        if op is None:
            raise ProgramError(f"statement {i}: unknown op {s.op!r}")
        if len(s.args) != op.arity:
            raise ProgramError(f"statement {i}: {s.op} takes {op.arity} argument(s), got {len(s.args)}")
        for a in s.args:
            if isinstance(a, float):
                if not math.isfinite(a):
                    raise ProgramError(f"statement {i}: constants must be finite, got {a}")
            elif isinstance(a, str):
                if a not in defined and a not in params:
                    raise ProgramError(f"statement {i}: {a!r} is used before it is assigned")
            else:
                raise ProgramError(f"statement {i}: argument {a!r} is neither a name nor a number")
        if not isinstance(s.out, str) or not _NAME.match(s.out) or s.out in reserved:
            raise ProgramError(f"statement {i}: cannot assign to {s.out!r}")
        defined.add(s.out)
        assigned.add(s.out)
    if "update" not in assigned:
        raise ProgramError("the program never assigns `update`")
