"""Exact rewrites: changes that keep the optimizer the same function, checked by `dsl.equivalent`.

Each rewrite proposes candidates; a candidate is taken only if it computes the same updates as the
program on random inputs over several steps, so no rewrite can change what the program does.
"""
from __future__ import annotations

from typing import Iterator

import dsl
from dsl import Program, ProgramError, Statement

# Replacing a statement by one of these applied to a slot catches forms such as
# `m / sqrt(m * m)` -> `sign(m)` and `sign(sign(x))` -> `sign(x)`.
SIMPLE_UNARY = ("sign", "abs", "neg", "square", "sqrt")


def _uses_after(p: Program, i: int, name: str) -> list[tuple[int, int]]:
    """(statement, argument) positions that read the value statement i writes to `name`."""
    uses = []
    for k in range(i + 1, len(p)):
        s = p.statements[k]
        uses += [(k, j) for j, a in enumerate(s.args) if a == name]
        if s.out == name:
            break
    return uses


def _reaches_output(p: Program, i: int) -> bool:
    """Whether statement i's value is the final value of an output slot (update, a memory slot)."""
    out = p.statements[i].out
    return out in p.outputs and all(s.out != out for s in p.statements[i + 1:])


def alias(p: Program, i: int, to) -> Program | None:
    """Drop statement i and let its readers read `to` (a slot or a constant) instead, where that
    is the same value; None where the value cannot be forwarded."""
    s = p.statements[i]
    # The last `update = ...` cannot go (update would keep an older value). A memory slot's may:
    # its readers read `to`, and whether the slot's carried value mattered is for the caller's
    # check (`dsl.equivalent`, or the ablation's loss) to find out.
    if _reaches_output(p, i) and to != s.out and s.out == "update":
        return None
    uses = _uses_after(p, i, s.out)
    if isinstance(to, str):  # `to` must not be reassigned before the last use
        last = max((k for k, _ in uses), default=i)
        if any(t.out == to for t in p.statements[i + 1:last]):
            return None
    stmts = list(p.statements)
    for k, j in uses:
        args = list(stmts[k].args)
        args[j] = to
        stmts[k] = Statement(stmts[k].out, stmts[k].op, tuple(args))
    del stmts[i]
    return replaced(p, stmts)


def replaced(p: Program, statements) -> Program | None:
    """`p` with another statement list, or None where that is not a valid program."""
    try:
        return p.replace(statements)
    except ProgramError:
        return None


def with_statement(p: Program, i: int, s: Statement) -> Program | None:
    return replaced(p, p.statements[:i] + (s,) + p.statements[i + 1:])


def _single_use(p: Program, i: int) -> int | None:
    """The one statement reading statement i's value, if exactly one does (and it is not an output)."""
    uses = _uses_after(p, i, p.statements[i].out)
    return uses[0][0] if len(uses) == 1 and not _reaches_output(p, i) else None


def merged_constants(p: Program) -> Iterator[tuple[str, Program]]:
    """`a = x * c1; b = a * c2` -> `b = x * (c1 c2)`; the same for `/`; and chained interps:
    `y = interp(x, z, a); w = interp(x, y, b)` -> `w = interp(x, z, a b)`."""
    for i, s in enumerate(p.statements):
        k = _single_use(p, i)
        if k is None:
            continue
        t = p.statements[k]
        if s.op in ("mul", "div") and t.op in ("mul", "div"):
            cs = [a for a in s.args if isinstance(a, float)]
            ct = [a for a in t.args if isinstance(a, float)]
            xs = [a for a in s.args if isinstance(a, str)]
            if len(cs) == 1 and len(ct) == 1 and len(xs) == 1 and (s.op == "mul" or s.args[1] == cs[0]) \
                    and (t.op == "mul" or t.args[1] == ct[0]):
                c1 = cs[0] if s.op == "mul" else 1.0 / cs[0] if cs[0] else None
                c2 = ct[0] if t.op == "mul" else 1.0 / ct[0] if ct[0] else None
                if c1 is not None and c2 is not None:
                    q = alias(with_statement(p, k, Statement(t.out, "mul", (xs[0], c1 * c2))) or p, i, xs[0])
                    if q is not None:
                        yield f"merge constants: {s.out} and {t.out}", q
        if s.op == "interp" and t.op == "interp" and t.args[1] == s.out and t.args[0] == s.args[0] \
                and isinstance(s.args[2], float) and isinstance(t.args[2], float):
            merged = Statement(t.out, "interp", (s.args[0], s.args[1], s.args[2] * t.args[2]))
            q = with_statement(p, k, merged)
            if q is not None:
                yield f"fold interps: {s.out} into {t.out}", q


def _producer(p: Program, k: int, name: str) -> int | None:
    """The statement whose value statement k reads as `name` (None for an input)."""
    return next((i for i in range(k - 1, -1, -1) if p.statements[i].out == name), None)


def interp_forms(p: Program) -> Iterator[tuple[str, Program]]:
    """`a = x * c1; b = y * c2; z = a + b` with c1 + c2 = 1 -> `z = interp(y, x, c1)`."""
    for k, t in enumerate(p.statements):
        if t.op != "add" or not all(isinstance(a, str) for a in t.args):
            continue
        parts = []
        for a in t.args:
            i = _producer(p, k, a)
            s = p.statements[i] if i is not None else None
            if s is None or s.op != "mul" or _single_use(p, i) != k:
                break
            c = [x for x in s.args if isinstance(x, float)]
            x = [x for x in s.args if isinstance(x, str)]
            if len(c) != 1 or len(x) != 1:
                break
            parts.append((x[0], c[0]))
        if len(parts) == 2 and abs(parts[0][1] + parts[1][1] - 1.0) < 1e-9:
            (x, c1), (y, _) = parts
            q = with_statement(p, k, Statement(t.out, "interp", (y, x, c1)))
            if q is not None:
                yield f"write `{t.out}` as an interp", q


def _copied(op: str, a: tuple) -> str | None:
    """The slot `op(*a)` copies (`y * 1`, `y / 1`, `y + 0`, `y - 0`, `interp(y, z, 0)`,
    `interp(z, y, 1)`), if it is a copy."""
    ones = {"mul": [(0, 1), (1, 0)], "div": [(0, 1)]}.get(op, [])
    zeros = {"add": [(0, 1), (1, 0)], "sub": [(0, 1)], "interp": [(0, 2)]}.get(op, [])
    for pairs, unit in ((ones, 1.0), (zeros, 0.0)):
        for i, j in pairs:
            if isinstance(a[i], str) and a[j] == unit:
                return a[i]
    return a[1] if op == "interp" and isinstance(a[1], str) and a[2] == 1.0 else None


def _flow(stmts, outputs) -> tuple:
    """Which statement (by index, or the input by name) each argument reads, and which defines
    each output's final value: two statement lists with the same flow compute the same."""
    cur: dict = {}
    reads = []
    for i, s in enumerate(stmts):
        reads.append(tuple(cur.get(a, a) if isinstance(a, str) else a for a in s.args))
        cur[s.out] = i
    return tuple(reads), tuple(cur.get(k, k) for k in outputs)


def _renamed(stmts: list[Statement], old: str, new: str) -> list[Statement]:
    ren = lambda a: new if a == old else a
    return [Statement(ren(s.out), s.op, tuple(ren(a) for a in s.args)) for s in stmts]


def _written(stmts: list[Statement], value: str, slot: str) -> list[Statement] | None:
    """The temporary `value` written to `slot` instead: at its statement where nothing after it
    reads `slot`'s old value, else moved to the end; None where neither keeps the flow."""
    j = next(i for i, s in enumerate(stmts) if s.out == value)
    if any(slot in s.args for s in stmts[j + 1:]):
        if any(value in s.args for s in stmts[j + 1:]):
            return None
        stmts = stmts[:j] + stmts[j + 1:] + [stmts[j]]
    return _renamed(stmts, value, slot)


def _merged(p: Program, keep: str, drop: set[str], src: str) -> Program | None:
    """`p` with the memory slots `drop` merged into `keep`, which takes `src`'s final value: valid
    where they always hold equal values (`dsl.equal_slots`); None where it cannot be written
    without a copy statement.

    In SSA form (every write a fresh temporary), reads of a dropped slot's old value read `keep`'s,
    copies are dropped (their readers read the source), and `keep` is written as late as possible:
    at its statement where nothing later reads `keep`'s old value, else at the end."""
    taken = {s.out for s in p.statements} | set(p.inputs) | set(p.param_values)
    cur = {k: keep if k in drop else k for k in p.inputs}
    base, copies, stmts = {}, {}, []
    for s in p.statements:
        args = tuple(cur.get(a, a) if isinstance(a, str) else a for a in s.args)
        args = tuple(copies.get(a, a) if isinstance(a, str) else a for a in args)
        t = next(f"{s.out}_{i}" for i in range(1, len(taken) + 2) if f"{s.out}_{i}" not in taken)
        taken.add(t)
        base[t], cur[s.out] = s.out, t
        source = _copied(s.op, args)
        if source in base:  # a copy of a temporary: its readers read the temporary
            copies[t] = source
        else:
            stmts.append(Statement(t, s.op, args))
    final = lambda k: copies.get(cur[k], cur[k])
    update = final("update")
    finals = {k: final(src if k == keep else k) for k in p.memory if k not in drop}
    if update in finals.values() or len(set(finals.values())) < len(finals):
        return None  # one value, two outputs: needs a copy
    stmts = _renamed(stmts, update, "update")
    for k, value in finals.items():
        if value != k:
            stmts = _written(stmts, value, k)
            if stmts is None:
                return None
    for t in [s.out for s in stmts if s.out in base]:  # temporaries back to their names where the flow allows
        named = _renamed(stmts, t, base[t])
        if _flow(named, p.outputs) == _flow(stmts, p.outputs):
            stmts = named
    return replaced(p, stmts)


def merged_slots(p: Program) -> Iterator[tuple[str, Program]]:
    """Memory slots that always hold equal values (`dsl.equal_slots`) merged into one; each slot
    tried as the one kept, shortest result (after dead code) first."""
    found = {}
    for cls in dsl.equal_slots(p):
        for keep in cls if len(cls) > 1 else ():
            for src in cls:
                q = _merged(p, keep, set(cls) - {keep}, src)
                if q is not None:
                    found.setdefault(dsl.strip_dead_code(q),
                                     f"merge {', '.join(sorted(set(cls) - {keep}))} into {keep} (always equal)")
    for q in sorted(found, key=len):
        yield found[q], q


def candidates(p: Program) -> Iterator[tuple[str, Program]]:
    """Simpler programs that may be the same function, simplest changes first."""
    from dsl.text import statement_text
    yield from merged_slots(p)
    for k, t in enumerate(p.statements):
        # `x = y * 1`, `x = y + 0`, `sign(sign(y))`: statement k reads one of its arguments instead;
        # `-(-y)`: statement k reads an argument of the statement it reads.
        reads = list(t.args)
        for a in t.args:
            i = _producer(p, k, a) if isinstance(a, str) else None
            if i is not None:
                reads += list(p.statements[i].args)
        for a in dict.fromkeys(reads):
            q = alias(p, k, a)
            if q is not None:
                yield f"drop `{statement_text(t)}` (its readers read {a})", q
    yield from merged_constants(p)
    yield from interp_forms(p)
    for i in range(len(p)):
        yield from unary_rewrites(p, i, list(p.inputs) + [t.out for t in p.statements[:i]])


def unary_rewrites(p: Program, i: int, slots) -> Iterator[tuple[str, Program]]:
    """Statement i rewritten as a simple unary op (SIMPLE_UNARY) of one of `slots`; none for a
    statement that already is one."""
    from dsl.text import statement_text
    s = p.statements[i]
    if s.op in SIMPLE_UNARY:
        return
    for slot in dict.fromkeys(slots):
        for op in SIMPLE_UNARY:
            new = Statement(s.out, op, (slot,))
            q = with_statement(p, i, new)
            if q is not None:
                yield f"rewrite `{statement_text(s)}` as `{statement_text(new)}`", q


def canonical(p: Program) -> Program:
    """Temporaries renamed in order of first assignment (t1, t2, ...): the same program, the same
    text for programs that differ only in names."""
    keep = set(p.inputs) | {"update"} | {k for k, _ in p.params}
    names: dict[str, str] = {}
    for s in p.statements:
        if s.out not in keep and s.out not in names:
            names[s.out] = f"t{len(names) + 1}"
    if not names:
        return p
    taken = set(names.values()) & {s.out for s in p.statements if s.out not in names}
    if taken:  # a temporary already called t<k> that would collide: leave names alone
        return p
    ren = lambda a: names.get(a, a) if isinstance(a, str) else a
    return p.replace(Statement(ren(s.out), s.op, tuple(ren(a) for a in s.args)) for s in p.statements)


def exact_simplify(p: Program, log=None) -> Program:
    """Apply exact rewrites until none applies; every step is checked with `dsl.equivalent`."""
    p = dsl.strip_dead_code(p)
    changed = True
    while changed:
        changed = False
        for what, q in candidates(p):
            q = dsl.strip_dead_code(q)
            if len(q) <= len(p) and q != p and _cost(q) < _cost(p) and dsl.equivalent(q, p):
                if log:
                    log(what, q)
                p, changed = q, True
                break
    return p


def _cost(p: Program) -> tuple[int, int]:
    """Fewer statements first; then fewer ops outside SIMPLE_UNARY (sign is simpler than m/sqrt)."""
    return len(p), sum(s.op not in SIMPLE_UNARY for s in p.statements)
