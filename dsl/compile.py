"""Compile a program to JAX: an update function over pytrees, and an optax GradientTransformation."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from .analysis import state_slots, strip_dead_code
from .execute import run
from .program import Program


def tree_update(p: Program, params, grads, m, v, lr, step):
    """One step of `p` on every leaf of a pytree (reductions are per leaf).

    `m`/`v` are pytrees like `params`, or None for a slot the program keeps no state in (it then
    reads zeros). Returns (update, m, v) with the same convention; apply `params - update`.
    """
    zeros = jax.tree.map(jnp.zeros_like, params)
    outs = jax.tree.map(
        lambda w, g, mi, vi: run(p, jnp, w, g, mi, vi, lr, step),
        params, grads, zeros if m is None else m, zeros if v is None else v)
    pick = lambda k: jax.tree.map(lambda o: o[k], outs, is_leaf=lambda o: isinstance(o, tuple))
    return pick(0), None if m is None else pick(1), None if v is None else pick(2)


class ProgramState(NamedTuple):
    count: jax.Array  # steps taken so far
    m: optax.Params | None
    v: optax.Params | None


def as_optax(p: Program, learning_rate: float | optax.Schedule) -> optax.GradientTransformation:
    """`p` as an optax optimizer. The learning rate (a float or an optax schedule of the step
    count) feeds the program's `lr` input; state is kept only for the memory slots `p` uses."""
    p = strip_dead_code(p)
    slots = state_slots(p)

    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)
        return ProgramState(jnp.zeros([], jnp.int32),
                            zeros() if "m" in slots else None, zeros() if "v" in slots else None)

    def update(grads, state, params=None):
        if params is None:
            raise ValueError(f"the program optimizer {p.name or ''} needs params: call update(grads, state, params)")
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        step = (state.count + 1).astype(jnp.float32)
        upd, m, v = tree_update(p, params, grads, state.m, state.v, lr, step)
        return jax.tree.map(jnp.negative, upd), ProgramState(optax.safe_increment(state.count), m, v)

    return optax.GradientTransformation(init, update)
