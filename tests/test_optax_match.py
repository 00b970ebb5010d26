"""The optax adapter: `lion` and `adamw` programs match optax's own implementations."""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dsl

STEPS = 100


def _tree(seed):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    return {"dense": jax.random.normal(k[0], (5, 7)), "bias": jax.random.normal(k[1], (7,)),
            "nested": [jax.random.normal(k[2], ()), jax.random.normal(k[3], (2, 3, 4))]}


def _train(opt, seed=0, tree=None):
    params = (tree or _tree)(seed)
    state = opt.init(params)

    @jax.jit
    def step(params, state, i):
        grads = jax.tree.map(lambda x: jnp.sin(3.0 * x + i) + 0.1 * x, params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for i in range(STEPS):
        params, state = step(params, state, i)
    return params, state


def max_rel_diff(a, b):
    return max(float(jnp.max(jnp.abs(x - y) / (jnp.abs(y) + 1e-12)))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


SETTINGS = [(0.9, 0.99, 0.01, 1e-3), (0.95, 0.98, 0.1, 3e-4), (0.5, 0.9, 0.0, 1e-2)]


@pytest.mark.parametrize("b1, b2, wd, lr", SETTINGS)
def test_lion_matches_optax_lion(b1, b2, wd, lr):
    ours, _ = _train(dsl.as_optax(dsl.load("lion", b1=b1, b2=b2, wd=wd), lr))
    ref, _ = _train(optax.lion(lr, b1=b1, b2=b2, weight_decay=wd))
    assert max_rel_diff(ours, ref) <= 1e-5


@pytest.mark.parametrize("b1, b2, wd, lr", SETTINGS)
def test_adamw_matches_optax_adamw(b1, b2, wd, lr):
    ours, _ = _train(dsl.as_optax(dsl.load("adamw", b1=b1, b2=b2, wd=wd), lr))
    ref, _ = _train(optax.adamw(lr, b1=b1, b2=b2, weight_decay=wd))
    assert max_rel_diff(ours, ref) <= 1e-5


def test_schedules_feed_lr():
    sched = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 10, STEPS)
    ours, _ = _train(dsl.as_optax(dsl.load("lion"), sched))
    ref, _ = _train(optax.lion(sched, weight_decay=0.01))
    assert max_rel_diff(ours, ref) <= 1e-5


OTHER_BUILTINS = [  # at their defaults, lr 1e-2
    ("sgd", lambda lr: optax.sgd(lr)),
    ("momentum", lambda lr: optax.sgd(lr, momentum=0.9)),
    ("nesterov", lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True)),
    ("adam", lambda lr: optax.adam(lr)),
]


@pytest.mark.parametrize("name, reference", OTHER_BUILTINS)
def test_other_builtins_match_optax(name, reference):
    ours, _ = _train(dsl.as_optax(dsl.load(name), 1e-2))
    ref, _ = _train(reference(1e-2))
    assert max_rel_diff(ours, ref) <= 1e-5


def test_state_only_for_used_memory_slots():
    params = _tree(0)
    lion = dsl.as_optax(dsl.load("lion"), 1e-3).init(params)
    adamw = dsl.as_optax(dsl.load("adamw"), 1e-3).init(params)
    sgd = dsl.as_optax(dsl.load("sgd"), 1e-3).init(params)
    size = lambda s: sum(x.size for x in jax.tree.leaves(s))
    n = size(params)
    assert lion.v is None and size(lion) == n + 1
    assert size(adamw) == 2 * n + 1
    assert sgd.m is None and sgd.v is None
    assert lion.extra == adamw.extra == ()
    # further memory slots are in `extra`, in the program's order; m and v stay where they were
    adan = dsl.as_optax(dsl.load("adan"), 1e-3).init(params)
    assert size(adan) == 4 * n + 1 and len(adan.extra) == 2 and adan.m is not None
    reads_n = dsl.parse("def train(w, g, m, v, n, k, lr):\n    k = interp(g, k, 0.9)\n    a = k + n\n"
                        "    update = a * lr\n    return update, m, v, n, k\n")
    state = dsl.as_optax(reads_n, 1e-3).init(params)  # n is read (zeros) but never written: no state
    assert state.m is None and state.v is None and state.extra[0] is None and size(state) == n + 1


def test_more_memory_slots_through_inject_hyperparams():
    p = dsl.load("ademamix")
    opt = optax.inject_hyperparams(dsl.optax_factory(p))(learning_rate=1e-2, alpha=2.0, b3=0.999)
    ours, state = _train(opt)
    ref, _ = _train(optax.contrib.ademamix(1e-2, alpha=2.0, b3=0.999))
    assert max_rel_diff(ours, ref) <= 1e-5 and set(state.hyperparams) == {"learning_rate", *p.param_values}
    assert len(state.inner_state.extra) == 1 and state.inner_state.extra[0] is not None


class Pair(NamedTuple):
    a: jax.Array
    b: jax.Array


TREES = {
    "tuple of 3": (jnp.array([1., 2.]), jnp.array([3., 4.]), jnp.array([5., 6.])),
    "tuple of 2": (jnp.array([1., 2.]), jnp.array([3., 4.])),
    "list": [jnp.array([1., -2.]), jnp.ones((2, 3))],
    "dict with None": {"w": jnp.array([[1., 2.], [3., 4.]]), "skip": None, "b": jnp.array([0.5])},
    "NamedTuple": Pair(jnp.array([1., 2.]), jnp.array([-3.])),
    "nested mix": {"layers": [(jnp.array([1., 2.]), None), Pair(jnp.ones(3), jnp.zeros(2))], "head": (jnp.ones(1),)},
}


@pytest.mark.parametrize("name", TREES)
def test_any_tree_of_parameters_updates_as_optax_does(name):
    """Each leaf is updated on its own whatever the tree: a tuple of parameters is never taken
    for one leaf's (update, m, v)."""
    params = TREES[name]
    grads = jax.tree.map(lambda x: jnp.sin(3 * x + 1), params)
    ours, theirs = dsl.as_optax(dsl.load("lion", wd=0.1), 0.1), optax.lion(0.1, weight_decay=0.1)
    s1, s2 = ours.init(params), theirs.init(params)
    for _ in range(3):
        u1, s1 = ours.update(grads, s1, params)
        u2, s2 = theirs.update(grads, s2, params)
        assert jax.tree.structure(u1) == jax.tree.structure(params)
        for x, y in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
        params = optax.apply_updates(params, u1)


def test_every_named_hyper_parameter_is_injectable_and_schedulable():
    p = dsl.load("lion")
    params = {"w": jnp.array([1., -2., 3.])}
    grads = {"w": jnp.array([0.5, 0.5, -1.])}
    opt = optax.inject_hyperparams(dsl.optax_factory(p))(learning_rate=0.1, b1=0.5, wd=optax.linear_schedule(0.1, 0., 4))
    state = opt.init(params)
    assert set(state.hyperparams) == {"learning_rate", "b1", "b2", "wd"}
    step = jax.jit(opt.update)
    u, state = step(grads, state, params)
    ref = optax.lion(0.1, b1=0.5, weight_decay=0.1)
    np.testing.assert_allclose(u["w"], ref.update(grads, ref.init(params), params)[0]["w"], rtol=1e-6)
    state.hyperparams["b2"] = jnp.asarray(0.5)  # set by hand, as for optax's own
    u, state = step(grads, state, params)
    assert float(state.hyperparams["wd"]) == pytest.approx(0.075)
    with pytest.raises(dsl.ProgramError, match="unknown hyper-parameter.s. beta; this program declares: b1, b2, wd"):
        dsl.as_optax(p, 0.1, beta=0.9)
