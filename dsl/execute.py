"""Run a program's statements on one tensor, with numpy (analysis) or jax.numpy (training).

Every value stands for a tensor of the parameter's shape: inputs, constants and `lr` broadcast
against it, and reductions see their arguments at that full shape.
"""
from __future__ import annotations

from .ops import OPS
from .program import Program


def run(p: Program, xp, w, g, m, v, lr, step=1.0, hyper=None, extra=()):
    """One step of `p` on one tensor: returns (update, m, v, *extra), each of `w`'s shape: one value
    per output (`p.outputs`). `extra` holds the memory slots after `v` (`p.memory[2:]`); a slot
    not given reads zeros. `hyper` gives named hyper-parameters values other than the declared
    ones (traced values included)."""
    env = dict(p.params)
    env.update(hyper or {})
    env.update(w=w, g=g, m=m, v=v, lr=lr, step=step)
    extra = tuple(extra)
    env.update((k, extra[i] if i < len(extra) else xp.zeros_like(w)) for i, k in enumerate(p.memory[2:]))
    shape = xp.shape(w)
    for s in p.statements:
        op = OPS[s.op]
        args = [env[a] if isinstance(a, str) else a for a in s.args]
        if op.reduces:
            args = [xp.broadcast_to(xp.asarray(a, dtype=w.dtype), shape) for a in args]
        env[s.out] = op.fn(xp, *args)
    return tuple(xp.broadcast_to(xp.asarray(env[k], dtype=w.dtype), shape) for k in p.outputs)
