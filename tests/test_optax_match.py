"""The optax adapter: `lion` and `adamw` programs match optax's own implementations."""
import jax
import jax.numpy as jnp
import optax
import pytest

import dsl

STEPS = 100


def _tree(seed):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    return {"dense": jax.random.normal(k[0], (5, 7)), "bias": jax.random.normal(k[1], (7,)),
            "nested": [jax.random.normal(k[2], ()), jax.random.normal(k[3], (2, 3, 4))]}


def _train(opt, seed=0):
    params = _tree(seed)
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


@pytest.mark.parametrize("name, reference", [
    ("sgd", lambda lr: optax.sgd(lr)),
    ("momentum", lambda lr: optax.sgd(lr, momentum=0.9)),
    ("nesterov", lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True)),
    ("adam", lambda lr: optax.adam(lr)),
])
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
