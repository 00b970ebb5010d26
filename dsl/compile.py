"""Compile a program to JAX: an update function over pytrees, and an optax GradientTransformation."""
from __future__ import annotations

import inspect
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from .analysis import state_slots, strip_dead_code
from .execute import run
from .program import Program, ProgramError


def tree_update(p: Program, params, grads, m, v, lr, step, hyper=None, extra=()):
    """One step of `p` on every leaf of a pytree (reductions are per leaf).

    `m`/`v` are pytrees like `params`, or None for a slot the program keeps no state in (it then
    reads zeros); `extra` holds the memory slots after `v` (`p.memory[2:]`) alike (missing ones are
    None). Returns (update, m, v, *extra) with the same convention, one per `p.outputs`; apply
    `params - update`.
    The tree is any of JAX's (tuples, lists, dicts, NamedTuples, None nodes, nested): its
    structure is `params`' own, so a tuple of parameters is never mistaken for a leaf's outputs.
    `hyper`: values for named hyper-parameters (see `as_optax`).
    """
    leaves, tree = jax.tree.flatten(params)
    memory = (m, v) + tuple(extra) + (None,) * (len(p.memory) - 2 - len(tuple(extra)))
    state = lambda t: [jnp.zeros_like(w) for w in leaves] if t is None else tree.flatten_up_to(t)
    per_leaf = zip(*(state(t) for t in memory))  # each leaf's memory values, one per slot
    outs = [run(p, jnp, w, g, mi, vi, lr, step, hyper, rest)
            for w, g, (mi, vi, *rest) in zip(leaves, tree.flatten_up_to(grads), per_leaf)]
    pick = lambda k: tree.unflatten([o[k] for o in outs])
    return (pick(0), *(None if t is None else pick(k) for k, t in enumerate(memory, 1)))


class ProgramState(NamedTuple):
    count: jax.Array  # steps taken so far
    m: optax.Params | None
    v: optax.Params | None
    extra: tuple = ()  # the memory slots after v (`Program.memory[2:]`), each a tree or None


def as_optax(p: Program, learning_rate: float | optax.Schedule, **hyper) -> optax.GradientTransformationExtraArgs:
    """`p` as an optax optimizer. The learning rate (a float or an optax schedule of the step
    count) feeds the program's `lr` input; state is kept only for the memory slots `p` uses.
    `hyper` sets named hyper-parameters (`b1=0.95`), each a number, an array (traced under jit),
    or a schedule of the step count; `optax_factory(p)` offers them to `optax.inject_hyperparams`.
    `update` takes the extra keyword arguments of optax's convention and ignores them."""
    unknown = sorted(set(hyper) - set(p.param_values))
    if unknown:
        raise ProgramError(f"unknown hyper-parameter(s) {', '.join(unknown)}; "
                           f"this program declares: {', '.join(p.param_values) or 'none'}")
    p = strip_dead_code(p)
    slots = state_slots(p)

    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)
        m, v, *extra = (zeros() if k in slots else None for k in p.memory)
        return ProgramState(jnp.zeros([], jnp.int32), m, v, tuple(extra))

    def update(grads, state, params=None, **extra_args):
        if params is None:
            raise ValueError(f"the program optimizer {p.name or ''} needs params: call update(grads, state, params)")
        now = lambda x: x(state.count) if callable(x) else x
        step = (state.count + 1).astype(jnp.float32)
        upd, m, v, *extra = tree_update(p, params, grads, state.m, state.v, now(learning_rate), step,
                                        {k: now(x) for k, x in hyper.items()}, state.extra)
        return jax.tree.map(jnp.negative, upd), ProgramState(optax.safe_increment(state.count), m, v, tuple(extra))

    return optax.GradientTransformationExtraArgs(init, update)


def optax_factory(p: Program):
    """`p` as an optax-style factory `f(learning_rate, <each named hyper-parameter>=<its value>)`,
    like `optax.lion(learning_rate, b1, b2, ...)`: `optax.inject_hyperparams(optax_factory(p))(
    learning_rate=1e-3, b1=0.95)` injects and schedules every hyper-parameter of the program."""
    def factory(learning_rate, **hyper):
        return as_optax(p, learning_rate, **hyper)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    factory.__signature__ = inspect.Signature(
        [inspect.Parameter("learning_rate", kind)] + [inspect.Parameter(k, kind, default=x) for k, x in p.params])
    factory.__name__ = p.name or "program"
    return factory
