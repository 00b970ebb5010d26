"""Program families: are two programs the same algorithm up to their constants?

Each output (`update`, and the memory slots that carry state) is executed symbolically into an
expression over the inputs, which is brought to a normal form: constants folded, `-`, `/`, `interp`
and `square` written as sums and products, sums and products flattened and sorted, like terms
merged, constant factors collected into one coefficient per product, and a few identities
(`sign(c x) = ±sign(x)`, `sign(sign(x))`, `sqrt(x x) = |x|`, `x / |x| = sign(x)`). Two programs are
equal up to constants when their normal forms are equal with every constant's value forgotten
(zero coefficients drop out, so every term present must have a nonzero constant).
"""
from __future__ import annotations

import math

from .analysis import state_slots, strip_dead_code
from .program import Program

Expr = tuple  # ("const", value) | ("in", name) | ("sum", ((coef, term), ...)) | ("prod", coef, factors) | (op, args...)


def _const(x: float) -> Expr:
    return ("const", float(x))


def _is_const(e: Expr) -> bool:
    return e[0] == "const"


def _prod(coef: float, factors) -> Expr:
    """A product in normal form: nested products flattened, constants in the coefficient."""
    flat = []
    for f in factors:
        if f[0] == "prod":
            coef *= f[1]
            flat.extend(f[2])
        elif _is_const(f):
            coef *= f[1]
        elif f != ("one",):
            flat.append(f)
    if coef == 0.0:
        return _const(0.0)
    # x * (1 / |x|) -> sign(x)
    for f in list(flat):
        if f[0] == "inv" and f[1][0] == "abs" and f[1][1] in flat:
            flat.remove(f)
            flat.remove(f[1][1])
            flat.append(("sign", f[1][1]))
    if not flat:
        return _const(coef)
    sums = [f for f in flat if f[0] == "sum"]
    if sums and math.prod(len(f[1]) for f in sums) <= 64:  # distribute: x (a + b) -> x a + x b
        rest = [f for f in flat if f[0] != "sum"]
        first = sums[0]
        return _sum([(coef * c, _prod(1.0, rest + [t] + sums[1:])) for c, t in first[1]])
    if coef == 1.0 and len(flat) == 1:  # `1 x` is `x`
        return flat[0]
    return ("prod", coef, tuple(sorted(flat, key=repr)))


def _terms(e: Expr):
    """e as (coefficient, term) pairs."""
    if e[0] == "sum":
        return list(e[1])
    if _is_const(e):
        return [(e[1], ("one",))]
    if e[0] == "prod":
        return [(e[1], ("prod", 1.0, e[2]) if len(e[2]) > 1 else e[2][0])]
    return [(1.0, e)]


def _sum(pairs) -> Expr:
    merged: dict = {}
    for c, t in pairs:
        for c2, t2 in _terms(t):
            merged[t2] = merged.get(t2, 0.0) + c * c2
    items = sorted(((c, t) for t, c in merged.items() if c != 0.0), key=lambda ct: repr(ct[1]))
    if not items:
        return _const(0.0)
    if len(items) == 1:
        c, t = items[0]
        return _const(c) if t == ("one",) else _prod(c, [t])
    return ("sum", tuple(items))


def _add(a: Expr, b: Expr) -> Expr:
    return _sum(_terms(a) + _terms(b))


def _mul(a: Expr, b: Expr) -> Expr:
    return _prod(1.0, [a, b])


def _inv(a: Expr) -> Expr:
    if _is_const(a):
        return _const(1.0 / a[1] if a[1] else 0.0)
    if a[0] == "prod":
        return _prod(1.0 / a[1], [_inv(f) for f in a[2]])
    if a[0] == "inv":
        return a[1]
    return ("inv", a)


def _sign(a: Expr) -> Expr:
    if _is_const(a):
        return _const(math.copysign(1.0, a[1]) if a[1] else 0.0)
    if a[0] == "prod":  # sign(c x) = sign(c) sign(x)
        return _prod(math.copysign(1.0, a[1]), [_sign(f) for f in a[2]])
    if a[0] in ("sign",):
        return a
    if a[0] == "sum" and len(a[1]) >= 1:  # sign(c (x + y)): keep the first coefficient positive
        c0 = a[1][0][0]
        return _prod(math.copysign(1.0, c0), [("sign", _sum([(c / abs(c0), t) for c, t in a[1]]))])
    return ("sign", a)


def _apply(op: str, args: list[Expr]) -> Expr:
    if all(_is_const(a) for a in args):  # constant folding with the op's own definition
        import numpy as np

        from .ops import OPS
        if not OPS[op].reduces:
            with np.errstate(all="ignore"):
                x = float(OPS[op].fn(np, *[np.float64(a[1]) for a in args]))
            if math.isfinite(x):
                return _const(x)
    if op == "square" or (op == "mul" and args[0] == args[1]):
        return ("sq", args[0])  # kept whole: sqrt(x x) = |x| must stay visible
    if op == "add":
        return _add(*args)
    if op == "sub":
        return _add(args[0], _mul(_const(-1.0), args[1]))
    if op == "neg":
        return _mul(_const(-1.0), args[0])
    if op == "mul":
        return _mul(*args)
    if op == "div":
        return _mul(args[0], _inv(args[1]))
    if op == "reciprocal":
        return _inv(args[0])
    if op == "interp":
        x, y, a = args
        return _add(_mul(_add(_const(1.0), _mul(_const(-1.0), a)), x), _mul(a, y))
    if op == "sign":
        return _sign(args[0])
    if op == "sqrt" and args[0][0] == "sq":  # sqrt(x x) = |x|
        return ("abs", args[0][1])
    if op == "sqrt" and args[0][0] == "prod" and args[0][1] > 0 and len(args[0][2]) == 1 and args[0][2][0][0] == "sq":
        return _prod(math.sqrt(args[0][1]), [("abs", args[0][2][0][1])])
    return (op, *args)


def normal_forms(p: Program) -> dict[str, Expr]:
    """The normal form of `update` and of each memory slot the program keeps state in."""
    p = strip_dead_code(p.inline_params())
    env = {k: ("in", k) for k in p.inputs}
    for s in p.statements:
        env[s.out] = _apply(s.op, [env[a] if isinstance(a, str) else _const(a) for a in s.args])
    return {k: env[k] for k in ("update",) + state_slots(p)}


def shape(e: Expr) -> Expr:
    """The expression with every constant's value forgotten."""
    if e[0] == "const":
        return ("const",)
    if e[0] == "in":
        return e
    if e[0] == "sum":
        return ("sum", tuple(sorted((shape(t) for _, t in e[1]), key=repr)))
    if e[0] == "prod":  # `c x` has the shape of `x`
        fs = sorted((shape(f) for f in e[2]), key=repr)
        return fs[0] if len(fs) == 1 else ("prod", tuple(fs))
    return (e[0], *(shape(a) for a in e[1:]))


def _affine(e: Expr) -> bool:
    """Whether a memory rule is a weighted average (coefficients summing to 1), as an EMA is."""
    return e[0] == "sum" and abs(sum(c for c, _ in e[1]) - 1.0) < 1e-9


def equivalent_up_to_constants(p: Program, q: Program) -> bool:
    """Whether `p` is `q` with other (nonzero) constants: the same normal form, constants aside,
    and memory rules that are weighted averages (EMAs) where q's are. The memory slots may trade
    names (momentum kept in `v` instead of `m`)."""
    fp, fq = normal_forms(p), normal_forms(q)
    swap = {"m": "v", "v": "m"}
    for rename in ({}, swap):
        def ren(e):
            if e[0] == "in":
                return ("in", rename.get(e[1], e[1]))
            if e[0] in ("const",):
                return e
            if e[0] == "sum":
                return ("sum", tuple((c, ren(t)) for c, t in e[1]))
            if e[0] == "prod":
                return ("prod", e[1], tuple(ren(f) for f in e[2]))
            return (e[0], *(ren(a) for a in e[1:]))
        mapped = {rename.get(k, k): ren(e) for k, e in fp.items()}
        if set(mapped) == set(fq) and all(shape(mapped[k]) == shape(fq[k]) for k in fq) \
                and all(_affine(mapped[k]) == _affine(fq[k]) for k in fq if k != "update"):
            return True
    return False


def is_lion(p: Program) -> bool:
    """Whether `p` is Lion up to its constants: `lr * (sign(b1 m + (1 - b1) g) + wd w)` with `m` an
    EMA of `g`. A weight decay of 0 is one of those constants, so the `wd w` term may be absent."""
    from .builtins import load
    return any(equivalent_up_to_constants(p, load("lion", wd=wd)) for wd in (0.01, 0.0))
