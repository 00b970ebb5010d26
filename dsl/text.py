"""The text form of programs (`.opt` files): a parser and a printer, round-trip exact.

The text looks like Python but is tokenized and parsed here into the op table; it is never run.
One operation per statement: `x = op(a, b)`, `x = a + b` (+ - * /) or `x = -a`, over slot names,
named hyper-parameters and number literals. Further memory slots are names without a default
between `v` and `lr` in the signature, returned after `v` in the same order.
"""
from __future__ import annotations

import math
import re

from .ops import INFIX, OPS
from .program import INPUTS, MEMORY, OUTPUTS, STEP, Program, ProgramError, Statement, memory_slot_error

_TOKEN = re.compile(r"""
    (?P<space>[ \t]+)
  | (?P<comment>\#.*)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(),=:+\-*/])
""", re.VERBOSE)


class _Line:
    """The tokens of one line, with a cursor; errors carry line and column."""

    def __init__(self, text: str, lineno: int):
        self.lineno, self.toks, pos = lineno, [], 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise ProgramError(f"unexpected character {text[pos]!r}", lineno, pos + 1)
            if m.lastgroup not in ("space", "comment"):
                self.toks.append((m.lastgroup, m.group(), pos + 1))
            pos = m.end()
        self.i = 0
        self.end_col = len(text.rstrip()) + 1

    def peek(self, k: int = 0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("end", "end of line", self.end_col)

    def error(self, expected: str, tok=None):
        kind, val, col = tok or self.peek()
        found = "end of line" if kind == "end" else repr(val)
        raise ProgramError(f"expected {expected}, found {found}", self.lineno, col)

    def take(self, kind: str, value: str | None = None, expected: str | None = None):
        tok = self.peek()
        if tok[0] != kind or (value is not None and tok[1] != value):
            self.error(expected or (repr(value) if value else kind))
        self.i += 1
        return tok

    def at(self, kind: str, value: str | None = None) -> bool:
        tok = self.peek()
        return tok[0] == kind and (value is None or tok[1] == value)

    def done(self):
        if not self.at("end"):
            self.error("end of line (one operation per statement)")


def _number(line: _Line) -> float:
    sign = -1.0 if line.at("punct", "-") else 1.0
    if sign < 0:
        line.i += 1
    _, text, col = line.take("number", expected="a number")
    x = sign * float(text)
    if not math.isfinite(x):
        shown = text if len(text) <= 40 else f"{text[:20]}...{text[-10:]} ({len(text)} characters)"
        raise ProgramError(f"number {shown} is out of range", line.lineno, col)
    return x


def _operand(line: _Line, names: set[str], params: set[str]):
    kind, val, col = line.peek()
    if kind == "name":
        if val in OPS and val not in names:
            raise ProgramError(f"op {val!r} used as a value; one operation per statement", line.lineno, col)
        if val not in names and val not in params:
            raise ProgramError(f"name {val!r} is not defined here", line.lineno, col)
        line.i += 1
        return val
    if kind == "number" or (kind == "punct" and val == "-" and line.peek(1)[0] == "number"):
        return _number(line)
    line.error("a name or a number")


def _signature(line: _Line) -> tuple[tuple[tuple[str, float], ...], bool, tuple[str, ...]]:
    line.take("name", "def", "'def train(w, g, m, v, lr, ...):'")
    line.take("name", "train", "'train'")
    line.take("punct", "(", "'('")
    for k, slot in enumerate(INPUTS[:4]):
        expected = f"input {slot!r} (the inputs are w, g, m, v, lr in this order)"
        if k:
            line.take("punct", ",", "',' and " + expected)
        line.take("name", slot, expected)
    # further memory slots: names without a default between `v` and `lr`
    memory, expected = list(MEMORY), "input 'lr' (the inputs are w, g, m, v, further memory slots, lr in this order)"
    line.take("punct", ",", "',' and " + expected)
    while line.at("name") and not line.at("name", "lr") and line.peek(1)[1] in (",", ")"):
        _, name, col = line.take("name")
        why = memory_slot_error(name, memory)
        if why:
            raise ProgramError(why, line.lineno, col)
        memory.append(name)
        line.take("punct", ",", "',' and " + expected)
    line.take("name", "lr", expected)
    uses_step, params = False, []
    while line.at("punct", ","):
        line.i += 1
        if line.at("punct", ")"):
            break
        _, name, col = line.take("name", expected="a hyper-parameter such as b1=0.9")
        if name == STEP and not params and not uses_step:
            uses_step = True
            continue
        if name in INPUTS or name in OUTPUTS or name == STEP or name in memory or name in (k for k, _ in params):
            raise ProgramError(f"{name!r} cannot be a hyper-parameter here", line.lineno, col)
        line.take("punct", "=", f"'=' and a default value for {name}")
        params.append((name, _number(line)))
    line.take("punct", ")", "')'")
    line.take("punct", ":", "':'")
    line.done()
    return tuple(params), uses_step, tuple(memory)


def _statement(line: _Line, names: set[str], params: set[str]) -> Statement:
    _, out, col = line.take("name", expected="an assignment `name = ...` or `return update, m, v`")
    if out in params or out in ("def", "train", "return", STEP):
        raise ProgramError(f"cannot assign to {out!r}", line.lineno, col)
    line.take("punct", "=", "'='")
    kind, val, col = line.peek()
    if kind == "name" and val in OPS and line.peek(1)[1] == "(":
        op = OPS[val]
        line.i += 2
        args = []
        while not line.at("punct", ")"):
            if args:
                line.take("punct", ",", "',' or ')'")
            args.append(_operand(line, names, params))
        line.take("punct", ")", "')'")
        if len(args) != op.arity:
            raise ProgramError(f"{val} takes {op.arity} argument(s), got {len(args)}", line.lineno, col)
        stmt = Statement(out, val, tuple(args))
    elif kind == "name" and line.peek(1)[1] == "(":
        raise ProgramError(f"unknown op {val!r}", line.lineno, col)
    elif kind == "punct" and val == "-" and line.peek(1)[0] in ("name", "number") and line.peek(2)[0] == "end":
        line.i += 1  # `-a`: negation (a signed literal needs a binary operator after it)
        stmt = Statement(out, "neg", (_operand(line, names, params) if line.at("name") else float(line.take("number")[1]),))
    else:
        a = _operand(line, names, params)
        kind, sym, col = line.peek()
        if sym not in INFIX:
            line.error("an operator (+ - * /) or an op call: one operation per statement")
        line.i += 1
        stmt = Statement(out, INFIX[sym], (a, _operand(line, names, params)))
    line.done()
    names.add(out)
    return stmt


def parse(text: str, name: str = "") -> Program:
    """Parse program text into a `Program`; malformed text raises ProgramError(line, column, why)."""
    if not isinstance(text, str):
        raise ProgramError(f"program text must be a str, got {type(text).__name__}")
    # lines end at \n, \r\n or \r only, as an editor counts them (str.splitlines also breaks at
    # U+2028 and other separators, which would shift every line number after one)
    rows = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [(n, t) for n, t in enumerate(rows, 1) if t.strip() and not t.strip().startswith("#")]
    if not lines:
        raise ProgramError("empty program: expected 'def train(w, g, m, v, lr):'", 1, 1)
    n, t = lines[0]
    if t[:1] in (" ", "\t"):
        raise ProgramError("the signature must not be indented", n, 1)
    params, uses_step, memory = _signature(_Line(t, n))
    pnames = {k for k, _ in params}
    names = set(INPUTS + memory) | ({STEP} if uses_step else set())
    ret = f"'return {', '.join(('update',) + memory)}'"
    stmts, returned = [], False
    for n, t in lines[1:]:
        if returned:
            raise ProgramError("nothing may follow the return statement", n, 1)
        if t[:1] not in (" ", "\t"):
            raise ProgramError("statements must be indented under the signature", n, 1)
        line = _Line(t, n)
        if line.at("name", "return"):
            ret_at = (n, line.take("name")[2])
            for k, slot in enumerate(("update",) + memory):  # update and every memory slot, in order
                if k:
                    line.take("punct", ",", ret)
                line.take("name", slot, ret)
            if not line.at("end"):
                line.error(ret)
            returned = True
        else:
            stmts.append(_statement(line, names, pnames))
    if not returned:
        raise ProgramError(f"missing {ret}", lines[-1][0] + 1, 1)
    if "update" not in names:
        raise ProgramError("the program never assigns `update`", *ret_at)
    return Program(tuple(stmts), params, uses_step, name, memory)


def _fmt(a) -> str:
    return a if isinstance(a, str) else repr(float(a))


def statement_text(s: Statement) -> str:
    op = OPS[s.op]
    if op.infix and op.arity == 2:
        return f"{s.out} = {_fmt(s.args[0])} {op.infix} {_fmt(s.args[1])}"
    if op.infix and isinstance(s.args[0], str):
        return f"{s.out} = -{s.args[0]}"
    return f"{s.out} = {s.op}({', '.join(_fmt(a) for a in s.args)})"


def to_text(p: Program) -> str:
    """The printer: `parse(to_text(p)) == p` for every program."""
    sig = list(p.inputs) + [f"{k}={_fmt(x)}" for k, x in p.params]
    body = [f"    {statement_text(s)}" for s in p.statements]
    return "\n".join([f"def train({', '.join(sig)}):", *body, f"    return {', '.join(p.outputs)}"]) + "\n"
