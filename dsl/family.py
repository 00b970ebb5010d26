"""Program families: which algorithm a program is, and are two programs the same up to constants?

Each output (`update`, and the memory slots that carry state) is executed symbolically into an
expression over the inputs, which is brought to a normal form: constants folded, `-`, `/`, `interp`
and `square` written as sums and products, sums and products flattened and sorted, like terms
merged, constant factors collected into one coefficient per product, and a few identities
(`sign(c x) = ±sign(x)`, `sign(sign(x))`, `sqrt(x x) = |x|`, `x / |x| = sign(x)`). Two programs are
equal up to constants when their normal forms are equal with every constant's value forgotten
(zero coefficients drop out, so every term present must have a nonzero constant).

`family` names the algorithm (Lion, signum, Adam, ...) from the same normal forms, after merging
memory slots that always hold equal values (`equal_slots`), so that where the momentum lives, and
how it is scaled, do not matter.
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field

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
    if a[0] == "sum" and len(a[1]) >= 1:  # sign(c0 x + c1 y) = sign(c0) sign(x + (c1 / c0) y)
        c0 = a[1][0][0]
        return _prod(math.copysign(1.0, c0), [("sign", _sum([(c / c0, t) for c, t in a[1]]))])
    return ("sign", a)


def _apply(op: str, args: list[Expr]) -> Expr:
    if all(_is_const(a) for a in args):  # constant folding with the op's own definition
        import numpy as np

        from .ops import OPS
        # a reduction of a constant depends on the tensor's size, except over zeros (always 0)
        if not OPS[op].reduces or all(a[1] == 0.0 for a in args):
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
    and memory rules that are weighted averages (EMAs) where q's are. The memory slots that carry
    state may trade names (momentum kept in `v` instead of `m`, or in a slot of another name)."""
    fp, fq = normal_forms(p), normal_forms(q)
    mp, mq = strip_dead_code(p).memory, strip_dead_code(q).memory
    n = max(len(mp), len(mq))  # every one-to-one renaming of p's slots to q's (padded to one length)
    for perm in itertools.permutations(mq + tuple(f"#{i}" for i in range(n - len(mq)))):
        rename = dict(zip(mp, perm))
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
    """Whether `p` is Lion (see `family`): signum, Lion with b1 = b2, is not."""
    return family(p).name == "lion"


# ---- naming the family -------------------------------------------------------------------------

_TOL = 1e-6  # relative: b1 == b2 (signum rather than Lion), an interpolation equal to its EMA rate
_G, _W, _LR = ("in", "g"), ("in", "w"), ("in", "lr")


def _close(a, b, tol: float = 1e-9) -> bool:
    """Normal forms equal up to rounding in their constants."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=tol, abs_tol=1e-12)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    return a == b


def _outputs(p: Program, old: dict[str, Expr]) -> dict[str, Expr]:
    """The normal form of every output's final value (`update` and the memory slots), with the
    memory slots' old values given by `old` (an unwritten slot keeps its old value)."""
    needed, live = set(p.outputs), []
    for s in reversed(p.statements):
        if s.out in needed:
            live.append(s)
            needed.discard(s.out)
            needed.update(a for a in s.args if isinstance(a, str))
    env = {k: ("in", k) for k in p.inputs} | old
    for s in reversed(live):
        args = [env[a] if isinstance(a, str) else _const(a) for a in s.args]
        # the schedule's lr is never negative: |lr| is lr
        env[s.out] = _LR if s.op == "abs" and args[0] == _LR else _apply(s.op, args)
    return {k: env[k] for k in p.outputs}


def _slot_classes(p: Program) -> tuple[list[list[str]], dict[str, Expr]]:
    """Classes of memory slots that always hold equal values ("0" marks the class of slots that
    are always zero), and the outputs with each slot read as its class's representative.

    Every slot starts at zero, so a greatest fixpoint: start with everything in one class, and split
    a class whose members' new values differ when every slot is read as its representative. At the
    fixpoint, members equal before a step are equal after it, so by induction always."""
    p = p.inline_params()
    classes = [["0", *p.memory]]
    while True:
        old = {k: _const(0.0) if "0" in c else ("in", c[0]) for c in classes for k in c if k != "0"}
        out = _outputs(p, old)
        new = {k: _const(0.0) if k == "0" else out[k] for k in ("0", *p.memory)}
        split = []
        for c in classes:
            groups: list[list[str]] = []
            for k in c:
                g = next((g for g in groups if _close(new[g[0]], new[k])), None)
                if g is None:
                    groups.append([k])
                else:
                    g.append(k)
            split += groups
        if len(split) == len(classes):
            return classes, out
        classes = split


def keeps_momentum(p: Program) -> bool:
    """Whether the update reads a memory slot that keeps an EMA of g (at a rate above 0), whatever
    else it does with it: the warm start's momentum, which a search may keep or lose."""
    classes, out = _slot_classes(p)
    update = _inputs(out["update"])
    return any(s in update and (e := _ema(out[s], s, _G)) is not None and e[0] > 0
               for s in (c[0] for c in classes if "0" not in c))


def equal_slots(p: Program) -> list[tuple[str, ...]]:
    """The memory slots grouped into classes that always hold equal values: each slot is in
    exactly one class; two are in one where, e.g., one copies the other at the end of each step,
    or where neither is ever written."""
    classes = [tuple(k for k in c if k != "0") for c in _slot_classes(p)[0] if c != ["0"]]
    return sorted(classes, key=lambda c: p.memory.index(c[0]))


@dataclass(frozen=True)
class Family:
    """An algorithm family and its constants. Updates are `lr_scale * lr * (direction + wd * w)`;
    b1 is the weight of the momentum in the interpolation with g that the update uses (Lion's b1)
    and b2 the momentum's EMA rate (for Adam and RMSProp: b1, b2 the first and second moments'
    EMA rates). `lr_schedule` / `wd_schedule` are present (False) only where the direction / the
    weight decay is not multiplied by the lr input."""
    name: str  # lion, signum, signsgd, adam, rmsprop, momentum, sgd or other
    constants: dict = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.constants.items()))))

    def __str__(self) -> str:
        c = dict(self.constants)
        if self.name == "signum":  # b1 = b2: one rate
            c = {"b": c.pop("b1"), **{k: x for k, x in c.items() if k != "b2"}}
        parts = [f"{k} {c[k]:.3g}" for k in ("b", "b1", "b2", "b1_interp", "b2_interp", "eps",
                                                "eps_in_sqrt", "wd") if k in c]
        if "lr_scale" in c:
            parts.append(f"lr x{c['lr_scale']:.3g}")
        if c.get("lr_schedule") is False:
            parts.append("no lr factor")
        if c.get("wd_schedule") is False:
            parts.append("wd without lr")
        if c.get("bias_correction"):
            parts.append("bias correction")
        return f"{self.name} ({', '.join(parts)})" if parts else self.name


OTHER = Family("other", {})


def _factors(t: Expr) -> Counter:
    """The factors of a term (as `_terms` gives it), as a multiset."""
    if t == ("one",):
        return Counter()
    return Counter(t[2]) if t[0] == "prod" else Counter([t])


def _split(e: Expr) -> list[tuple[float, Counter]]:
    """e as [(coefficient, factors)], one per term."""
    return [(c, _factors(t)) for c, t in _terms(e)]


def _factored(terms: list[tuple[float, Counter]]) -> tuple[Counter, list[tuple[float, Counter]]]:
    """The factors every term shares, and [(coefficient, the term's other factors)]."""
    common = terms[0][1].copy()
    for _, f in terms[1:]:
        common &= f
    return common, [(c, f - common) for c, f in terms]


def _inputs(e) -> set[str]:
    if isinstance(e, tuple):
        if e and e[0] == "in":
            return {e[1]}
        return set().union(*(_inputs(x) for x in e))
    return set()


def _linear(terms: list[tuple[float, Counter]], atoms) -> dict | None:
    """{atom: coefficient} where every term is a coefficient times one of `atoms`; else None."""
    out = {}
    for c, f in terms:
        if sum(f.values()) != 1 or next(iter(f)) not in atoms:
            return None
        out[next(iter(f))] = c
    return out


def _ema(e: Expr, slot: str, of: Expr) -> tuple[float, float] | None:
    """(rate, k) where a slot's new value `e` is `rate * slot + c * of` with 0 <= rate < 1, c != 0:
    k = c / (1 - rate) times an EMA of `of`."""
    lin = _linear(_split(e), {("in", slot), of})
    if lin is None or of not in lin:
        return None
    rate = lin.get(("in", slot), 0.0)
    return (rate, lin[of] / (1.0 - rate)) if 0.0 <= rate < 1.0 - 1e-12 else None


def _mix(lin: dict, emas: dict, atom: Expr) -> tuple[float, float | None, str | None] | None:
    """A combination `a atom + b M` (M a slot with an EMA of `atom`) as (scale, b1, slot):
    `scale * (b1 E + (1 - b1) atom)`, E the EMA M is k times. b1 is None without a slot; None
    for more than one slot, or b1 outside [0, 1]."""
    slots = [k for k in lin if k != atom]
    if len(slots) > 1:
        return None
    a = lin.get(atom, 0.0)
    if not slots:
        return a, None, None
    s = slots[0][1]
    bk = lin[slots[0]] * emas[s][1]
    if a + bk == 0.0:
        return None
    b1 = bk / (a + bk)
    return (a + bk, b1, s) if -1e-9 <= b1 <= 1.0 + 1e-9 else None


def _second_moment(den: Expr, emas2: dict) -> tuple[float, dict] | None:
    """A denominator factor `1 / (c sqrt(Y) + eps)` (or `rsqrt(Y)`, `1 / sqrt(Y + eps)`), Y linear
    in an EMA of g*g, as (its scale, constants)."""
    if den[0] == "rsqrt":
        c_s, eps, y = 1.0, 0.0, den[1]
    elif den[0] == "inv" and den[1][0] == "sqrt":
        c_s, eps, y = 1.0, 0.0, den[1][1]
    elif den[0] == "inv" and den[1][0] == "sum" and len(den[1][1]) == 2:
        terms = dict((t, c) for c, t in den[1][1])
        roots = [t for t in terms if t[0] == "sqrt"]
        if ("one",) not in terms or len(roots) != 1:
            return None
        c_s, eps, y = terms[roots[0]], terms[("one",)], roots[0][1]
    else:
        return None
    common, rest = _factored(_split(y))
    if eps < 0 or c_s <= 0 or any(_inputs(f) != {"step"} for f in common):
        return None
    one = [c for c, f in rest if not f]
    lin = _linear([(c, f) for c, f in rest if f], {("sq", _G)} | {("in", s) for s in emas2})
    if lin is None or len(one) > 1 or (one and common):
        return None
    mix = _mix(lin, emas2, ("sq", _G))
    if mix is None or mix[2] is None or mix[0] <= 0:
        return None
    scale, b2i, s = mix
    k = {"b2": emas2[s][0]}
    if not math.isclose(b2i, k["b2"], rel_tol=_TOL):
        k["b2_interp"] = b2i
    if one:
        k["eps_in_sqrt"] = one[0] / scale
    if eps:
        k["eps"] = eps / (c_s * math.sqrt(scale))
    if common:
        k["bias_correction"] = True
    return c_s * math.sqrt(scale), k


def family(p: Program) -> Family:
    """The algorithm family `p` belongs to, with its constants (`Family`), by the normal forms of
    its update and momentum, memory slots that always hold equal values merged:

    - lion: `lr_scale lr (sign(b1 M + (1 - b1) g) + wd w)`, M <- b2 M + (1 - b2) g, b1 != b2,
      b1 in [0, 1]; signum: the same with b1 = b2 (the sign of the updated momentum);
      signsgd: `lr_scale lr (sign(g) + wd w)`;
    - adam: a first moment (an EMA of g, or g and its EMA interpolated) over the square root of an
      EMA of g*g, optionally with epsilon and bias correction; rmsprop: g over the same;
    - momentum: g and its EMA interpolated; sgd: g;
    - other: everything else (an ascent direction, a constant term, a running sum where an EMA is
      needed, a nonlinear function of the momentum, ...).

    A momentum written `M <- b M + c g` is an EMA scaled by c / (1 - b); b1, b2 are reported in
    EMA terms and the scale goes into lr_scale. The decay may be multiplied by lr or not; wd is
    relative to lr_scale."""
    classes, out = _slot_classes(p)
    reps = [c[0] for c in classes if "0" not in c]
    emas = {s: e for s in reps if (e := _ema(out[s], s, _G))}
    emas2 = {s: e for s in reps if (e := _ema(out[s], s, ("sq", _G)))}
    consts: dict = {}
    terms = _split(out["update"])
    decay = [(c, f) for c, f in terms if f[_W]]
    terms = [(c, f) for c, f in terms if not f[_W]]
    if len(decay) > 1 or not terms:
        return OTHER
    if decay:
        f = decay[0][1]
        if f - Counter([_W]) not in (Counter(), Counter([_LR])):
            return OTHER
        if not f[_LR]:
            consts["wd_schedule"] = False
    common, rest = _factored(terms)
    atoms = {_G} | {("in", s) for s in emas}
    for a in atoms & set(common):  # g and the momentum stay in the numerator (`lr g` is one term)
        rest = [(c, f + Counter({a: common[a]})) for c, f in rest]
        del common[a]
    if common[_LR] > 1:
        return OTHER
    if not common.pop(_LR, 0):
        consts["lr_schedule"] = False
    bias = [f for f in common if _inputs(f) == {"step"}]
    signs = [f for f in common if f[0] == "sign"]
    dens = [f for f in common if f not in bias and f not in signs]
    if any(common[f] > 1 for f in common) or len(signs) + len(dens) > 1:
        return OTHER
    if (bias and not dens) or (signs and (len(rest) != 1 or rest[0][1])):  # bias correction needs a second moment
        return OTHER
    lin = _linear(_split(signs[0][1]) if signs else rest, atoms)  # inside the sign, or the whole direction
    mix = _mix(lin, emas, _G) if lin else None
    if mix is None:
        return OTHER
    scale, b1, s = mix
    if signs:
        scale = rest[0][0] * math.copysign(1.0, scale)
        if s is None:
            name = "signsgd"
        else:
            consts |= {"b1": b1, "b2": emas[s][0]}
            name = "signum" if math.isclose(b1, emas[s][0], rel_tol=_TOL) else "lion"
            if name == "signum":
                consts["b1"] = consts["b2"]
    elif dens:
        second = _second_moment(dens[0], emas2)
        if second is None:
            return OTHER
        scale /= second[0]
        consts |= second[1]
        if bias:
            consts["bias_correction"] = True
        name = "rmsprop" if s is None else "adam"
        if s is not None:
            consts["b1"] = emas[s][0]
            if not math.isclose(b1, emas[s][0], rel_tol=_TOL):
                consts["b1_interp"] = b1
    else:
        name = "sgd" if s is None else "momentum"
        if s is not None:
            consts |= {"b1": b1, "b2": emas[s][0]}
    if not scale > 0.0:  # an ascent direction
        return OTHER
    if decay:
        consts["wd"] = decay[0][0] / scale
    consts["lr_scale"] = scale
    order = ("b1", "b2", "b1_interp", "b2_interp", "eps", "eps_in_sqrt", "wd", "lr_scale")
    return Family(name, {k: consts[k] for k in order if k in consts} | {k: x for k, x in consts.items() if k not in order})
