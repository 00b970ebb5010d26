"""The op table: the one place that defines every op a program may use.

Each op is written once over an array namespace ``xp`` (``numpy`` or ``jax.numpy``), so the same
definition drives abstract execution on the CPU (numpy, fast, float64) and compiled training (JAX).
Exported code (dsl/export.py) writes each op from ``src``: the same formula, as source over ``xp``.

Domain rule (one behaviour for every op): where an element lies outside the op's real domain, so
that the mathematical result would be NaN or infinite for finite input (division by zero, log or
rsqrt of x <= 0, sqrt of x < 0, arcsin of |x| > 1, a negative base to a fractional power, ...), the
op returns 0 for that element. Overflow is *not* masked: ``exp(1000)`` is inf, so that abstract
execution and training can see a diverging program and reject it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Op:
    name: str
    arity: int
    fn: Callable  # fn(xp, *args) -> array with the broadcast shape of args
    # works on the whole tensor at its own shape (a reduction, or a shape op), result at that shape
    reduces: bool = False
    infix: str | None = None  # printed as `a <infix> b` (or `-a` for neg)
    doc: str = ""
    # `fn` as source over `xp` and the arguments x, y, z, valid for jax.numpy and torch (lines before
    # the last are statements); when empty, the infix form or `xp.<name>(x, ...)`. A reduction's
    # arguments arrive at the tensor's shape, so its source need not broadcast them.
    src: str = ""
    searched: bool = True  # in the search's default op set (a shape op is used where a config names it)


def _guard(xp, valid, value):
    """Zero wherever the input is outside the op's domain (see the module docstring)."""
    return xp.where(valid, value, 0.0)


def _safe(xp, valid, x, fill=1.0):
    """x with out-of-domain elements replaced by a harmless value before the op runs."""
    return xp.where(valid, x, fill)


def _div(xp, x, y):
    ok = y != 0
    return _guard(xp, ok, x / _safe(xp, ok, y))


def _power(xp, x, y):
    # Real-valued only: a negative base needs an integer exponent; 0 to a negative power is 0.
    y = xp.broadcast_to(y, xp.broadcast_shapes(xp.shape(x), xp.shape(y)))
    ok = ((x > 0) | ((x < 0) & (xp.floor(y) == y)) | ((x == 0) & (y >= 0)))
    return _guard(xp, ok, xp.power(_safe(xp, ok, x), _safe(xp, ok, y)))


def _full(xp, x, r):
    """A per-tensor reduction result broadcast back to the tensor's shape."""
    return xp.zeros_like(x) + r


def _norm(xp, x):
    return _full(xp, x, xp.sqrt(xp.sum(x * x)))


def _rms(xp, x):
    return _full(xp, x, xp.sqrt(xp.mean(x * x)))


def _cosine_sim(xp, x, y):
    x, y = xp.broadcast_arrays(x, y)
    den = xp.sqrt(xp.sum(x * x)) * xp.sqrt(xp.sum(y * y))
    ok = den != 0
    return _full(xp, x, _guard(xp, ok, xp.sum(x * y) / _safe(xp, ok, den)))


def _row_mean(xp, x):
    return _full(xp, x, xp.mean(x, axis=-1, keepdims=True)) if x.ndim >= 2 else x


def _col_mean(xp, x):
    return x if x.ndim == 0 else _full(xp, x, xp.mean(x, axis=-2 if x.ndim >= 2 else -1, keepdims=True))


NS_COEFFS = (3.4445, -4.775, 2.0315)  # Muon's quintic Newton-Schulz step (optax.contrib.muon's)


def _ns_step(xp, x):
    a, b, c = NS_COEFFS
    if x.ndim < 2:  # a column (n, 1): its gram matrix is the scalar sum(x^2)
        s = xp.sum(x * x)
        return a * x + (b * s + c * s * s) * x
    t = xp.swapaxes(x, -1, -2)
    if x.shape[-2] <= x.shape[-1]:  # the smaller of the two gram matrices, as optax does
        gm = x @ t
        return a * x + (b * gm + c * gm @ gm) @ x
    gm = t @ x
    return a * x + x @ (b * gm + c * gm @ gm)


def _dot(xp, x, y):
    x, y = xp.broadcast_arrays(x, y)
    return _full(xp, x, xp.sum(x * y))


_OPS = [
    # unary, element-wise
    Op("neg", 1, lambda xp, x: -x, infix="-", doc="-x"),
    Op("abs", 1, lambda xp, x: xp.abs(x)),
    Op("sign", 1, lambda xp, x: xp.sign(x), doc="-1, 0 or 1"),
    Op("square", 1, lambda xp, x: x * x,
       src="x * x"),
    Op("sqrt", 1, lambda xp, x: _guard(xp, x >= 0, xp.sqrt(_safe(xp, x >= 0, x))), doc="0 for x < 0",
       src="xp.where(x >= 0, xp.sqrt(xp.where(x >= 0, x, 1.0)), 0.0)"),
    Op("rsqrt", 1, lambda xp, x: _guard(xp, x > 0, 1.0 / xp.sqrt(_safe(xp, x > 0, x))), doc="0 for x <= 0",
       src="xp.where(x > 0, 1.0 / xp.sqrt(xp.where(x > 0, x, 1.0)), 0.0)"),
    Op("reciprocal", 1, lambda xp, x: _div(xp, 1.0, x), doc="0 for x == 0",
       src="xp.where(x != 0, 1.0 / xp.where(x != 0, x, 1.0), 0.0)"),
    Op("exp", 1, lambda xp, x: xp.exp(x)),
    Op("expm1", 1, lambda xp, x: xp.expm1(x)),
    Op("log", 1, lambda xp, x: _guard(xp, x > 0, xp.log(_safe(xp, x > 0, x))), doc="0 for x <= 0",
       src="xp.where(x > 0, xp.log(xp.where(x > 0, x, 1.0)), 0.0)"),
    Op("log1p", 1, lambda xp, x: _guard(xp, x > -1, xp.log1p(_safe(xp, x > -1, x, 0.0))), doc="0 for x <= -1",
       src="xp.where(x > -1, xp.log1p(xp.where(x > -1, x, 0.0)), 0.0)"),
    Op("sin", 1, lambda xp, x: xp.sin(x)),
    Op("cos", 1, lambda xp, x: xp.cos(x)),
    Op("tan", 1, lambda xp, x: xp.tan(x)),
    Op("arcsin", 1, lambda xp, x: _guard(xp, xp.abs(x) <= 1, xp.arcsin(_safe(xp, xp.abs(x) <= 1, x, 0.0))), doc="0 for |x| > 1",
       src="xp.where(xp.abs(x) <= 1, xp.arcsin(xp.where(xp.abs(x) <= 1, x, 0.0)), 0.0)"),
    Op("arccos", 1, lambda xp, x: _guard(xp, xp.abs(x) <= 1, xp.arccos(_safe(xp, xp.abs(x) <= 1, x, 0.0))), doc="0 for |x| > 1",
       src="xp.where(xp.abs(x) <= 1, xp.arccos(xp.where(xp.abs(x) <= 1, x, 0.0)), 0.0)"),
    Op("arctan", 1, lambda xp, x: xp.arctan(x)),
    Op("sinh", 1, lambda xp, x: xp.sinh(x)),
    Op("cosh", 1, lambda xp, x: xp.cosh(x)),
    Op("tanh", 1, lambda xp, x: xp.tanh(x)),
    Op("arcsinh", 1, lambda xp, x: xp.arcsinh(x)),
    Op("arctanh", 1, lambda xp, x: _guard(xp, xp.abs(x) < 1, xp.arctanh(_safe(xp, xp.abs(x) < 1, x, 0.0))), doc="0 for |x| >= 1",
       src="xp.where(xp.abs(x) < 1, xp.arctanh(xp.where(xp.abs(x) < 1, x, 0.0)), 0.0)"),
    Op("relu", 1, lambda xp, x: xp.maximum(x, 0.0),
       src="xp.maximum(x, xp.zeros_like(x))"),
    Op("sigmoid", 1, lambda xp, x: 0.5 * (xp.tanh(0.5 * x) + 1.0),
       src="0.5 * (xp.tanh(0.5 * x) + 1.0)"),
    # binary, element-wise
    Op("add", 2, lambda xp, x, y: x + y, infix="+"),
    Op("sub", 2, lambda xp, x, y: x - y, infix="-"),
    Op("mul", 2, lambda xp, x, y: x * y, infix="*"),
    Op("div", 2, _div, infix="/", doc="0 where y == 0",
       src="xp.where(y != 0, x / xp.where(y != 0, y, 1.0), 0.0)"),
    Op("maximum", 2, lambda xp, x, y: xp.maximum(x, y)),
    Op("minimum", 2, lambda xp, x, y: xp.minimum(x, y)),
    Op("power", 2, _power, doc="real-valued x**y; 0 where undefined",
       src="ok = (x > 0) | ((x < 0) & (xp.floor(y) == y)) | ((x == 0) & (y >= 0))\n"
           "xp.where(ok, xp.power(xp.where(ok, x, 1.0), xp.where(ok, y, 1.0)), 0.0)"),
    Op("arctan2", 2, lambda xp, x, y: xp.arctan2(x, y)),
    # ternary, element-wise
    Op("interp", 3, lambda xp, x, y, a: (1.0 - a) * x + a * y, doc="(1 - a) * x + a * y",
       src="(1.0 - z) * x + z * y"),
    Op("clip", 3, lambda xp, x, lo, hi: xp.minimum(xp.maximum(x, lo), hi), doc="min(max(x, lo), hi)",
       src="xp.minimum(xp.maximum(x, y), z)"),
    # reductions over the whole tensor, broadcast back to its shape
    Op("norm", 1, _norm, reduces=True, doc="L2 norm",
       src="xp.zeros_like(x) + xp.sqrt(xp.sum(x * x))"),
    Op("mean", 1, lambda xp, x: _full(xp, x, xp.mean(x)), reduces=True,
       src="xp.zeros_like(x) + xp.mean(x)"),
    Op("rms", 1, _rms, reduces=True, doc="sqrt(mean(x**2))",
       src="xp.zeros_like(x) + xp.sqrt(xp.mean(x * x))"),
    Op("std", 1, lambda xp, x: _full(xp, x, xp.std(x)), reduces=True,
       src="xp.zeros_like(x) + xp.std(x, correction=0)"),
    Op("max_abs", 1, lambda xp, x: _full(xp, x, xp.max(xp.abs(x))), reduces=True, doc="L-inf norm",
       src="xp.zeros_like(x) + xp.max(xp.abs(x))"),
    Op("dot", 2, _dot, reduces=True, doc="sum(x * y)",
       src="xp.zeros_like(x) + xp.sum(x * y)"),
    Op("cosine_sim", 2, _cosine_sim, reduces=True, doc="dot(x, y) / (norm(x) * norm(y)); 0 if a norm is 0",
       src="den = xp.sqrt(xp.sum(x * x)) * xp.sqrt(xp.sum(y * y))\n"
           "xp.zeros_like(x) + xp.where(den != 0, xp.sum(x * y) / xp.where(den != 0, den, 1.0), 0.0)"),
    # shape ops: per tensor, over the matrices of its last two axes (a vector is one column (n, 1),
    # a scalar a 1 x 1 matrix), broadcast back; Adafactor's factored second moment is built of them
    Op("row_mean", 1, _row_mean, reduces=True, searched=False,
       doc="the mean of each row (over the last axis); x itself for a vector or a scalar",
       src="xp.zeros_like(x) + xp.mean(x, axis=-1, keepdims=True) if x.ndim >= 2 else x"),
    Op("col_mean", 1, _col_mean, reduces=True, searched=False,
       doc="the mean of each column (over the second-last axis); a vector's mean; a scalar itself",
       src="x if x.ndim == 0 else xp.zeros_like(x) + xp.mean(x, axis=-2 if x.ndim >= 2 else -1, keepdims=True)"),
    # five of these on a matrix of Frobenius norm 1 orthogonalise it approximately (Muon)
    Op("ns_step", 1, _ns_step, reduces=True, searched=False,
       doc="one Newton-Schulz step a x + b (x x^T) x + c (x x^T)^2 x, (a, b, c) = (3.4445, -4.775, 2.0315)",
       src="if x.ndim < 2:\n"
           "    s = xp.sum(x * x)\n"
           "    return 3.4445 * x + (-4.775 * s + 2.0315 * s * s) * x\n"
           "t = xp.swapaxes(x, -1, -2)\n"
           "if x.shape[-2] <= x.shape[-1]:\n"
           "    gm = x @ t\n"
           "    return 3.4445 * x + (-4.775 * gm + 2.0315 * gm @ gm) @ x\n"
           "gm = t @ x\n"
           "3.4445 * x + x @ (-4.775 * gm + 2.0315 * gm @ gm)"),
]

OPS: dict[str, Op] = {op.name: op for op in _OPS}
OP_NAMES: tuple[str, ...] = tuple(OPS)  # stable order: an op's index is its opcode
SEARCH_OPS: tuple[str, ...] = tuple(n for n in OP_NAMES if OPS[n].searched)  # the search's default
INFIX: dict[str, str] = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
