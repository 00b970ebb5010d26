"""The optimizer zoo: each built-in beyond those of test_optax_match.py against its reference
(optax's, or the published formula where optax has none), trained 100 steps on a mixed-shape
parameter tree with `_train`, for two or more settings each. `ZOO` is also what
scripts/zoo_table.py measures for docs/zoo.md."""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dsl
from test_optax_match import OTHER_BUILTINS, _train, max_rel_diff

TOL = 1e-5


def cautious_lion(learning_rate, b1=0.9, b2=0.99, wd=0.01):
    """Cautious Lion as Liang et al. 2024 write it: Lion's update u = sign(b1 m + (1 - b1) g) masked
    by (u g > 0) and divided by the mask's mean over the tensor (no update where the mask is all
    zero), plus decoupled weight decay; m <- b2 m + (1 - b2) g."""
    def init(params):
        return jax.tree.map(jnp.zeros_like, params)

    def update(grads, mu, params=None):
        def leaf(g, m, w):
            u = jnp.sign((1.0 - b1) * g + b1 * m)
            mask = (u * g > 0).astype(g.dtype)
            frac = jnp.mean(mask)
            u = jnp.where(frac > 0, u * mask / jnp.where(frac > 0, frac, 1.0), 0.0)
            return -learning_rate * (u + wd * w)
        return jax.tree.map(leaf, grads, mu, params), jax.tree.map(lambda g, m: (1.0 - b2) * g + b2 * m, grads, mu)

    return optax.GradientTransformation(init, update)


class Case(NamedTuple):
    reference: str  # what the built-in is checked against (the docs' table prints it)
    make: Callable  # make(lr, **hyper) -> that reference, hyper named as the built-in names them
    settings: tuple  # dicts of lr and hyper-parameters (others at their defaults)
    tol: float = TOL
    tree: Callable | None = None  # the parameters (default: test_optax_match's mixed shapes)


def matrices(seed):
    """Square and tall matrices only (what muon.opt computes as optax does)."""
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {"a": jax.random.normal(k[0], (7, 5)), "b": jax.random.normal(k[1], (4, 4)),
            "c": [jax.random.normal(k[2], (6, 3))]}


ZOO = {
    "signsgd": Case("optax.sign_sgd", optax.sign_sgd, ({"lr": 1e-2},)),  # no hyper-parameters
    "signum": Case("optax.signum", lambda lr, beta=0.9: optax.signum(lr, beta),
                   ({"lr": 1e-2}, {"lr": 3e-3, "beta": 0.5})),
    "adabelief": Case("optax.adabelief", optax.adabelief,
                      ({"lr": 1e-2}, {"lr": 3e-3, "b1": 0.8, "b2": 0.99, "eps": 1e-8, "eps_root": 0.0})),
    "adamax": Case("optax.adamax", optax.adamax, ({"lr": 1e-2}, {"lr": 3e-3, "b1": 0.8, "b2": 0.99, "eps": 1e-3})),
    "nadam": Case("optax.nadam", optax.nadam, ({"lr": 1e-2}, {"lr": 3e-3, "b1": 0.8, "b2": 0.99, "eps": 1e-6})),
    "rmsprop": Case("optax.rmsprop", optax.rmsprop,
                    ({"lr": 1e-2}, {"lr": 3e-3, "decay": 0.99, "eps": 1e-6, "initial_scale": 0.1})),
    "rmsprop_centered": Case("optax.rmsprop(centered=True)",
                             lambda lr, **h: optax.rmsprop(lr, centered=True, **h),
                             ({"lr": 1e-2}, {"lr": 3e-3, "decay": 0.95, "eps": 1e-6, "initial_scale": 1.0})),
    "adagrad": Case("optax.adagrad", optax.adagrad,
                    ({"lr": 5e-2}, {"lr": 3e-2, "initial_accumulator_value": 0.0, "eps": 1e-10})),
    "yogi": Case("optax.yogi", optax.yogi, ({"lr": 1e-2}, {"lr": 3e-3, "b1": 0.8, "b2": 0.99, "eps": 1e-5})),
    # lr 3e-3: at 1e-2 this trajectory's oscillating gradients grow last-bit rounding differences
    # (of the order of Adam's, 2e-7 after 100 steps) to 4e-5, on a parameter near zero
    "lamb": Case("optax.lamb", lambda lr, wd=0.0, **h: optax.lamb(lr, weight_decay=wd, **h),
                 ({"lr": 3e-3}, {"lr": 3e-3, "b1": 0.8, "b2": 0.99, "eps": 1e-8, "wd": 0.1})),
    # the trust ratio (1e-3 by default) makes steps small: lr 1 moves the parameters about as far
    # as Adam's 1e-2
    "lars": Case("optax.lars", lambda lr, wd=0.0, **h: optax.lars(lr, weight_decay=wd, **h),
                 ({"lr": 1.0}, {"lr": 1.0, "wd": 1e-2, "trust_coefficient": 0.01, "eps": 1e-8, "momentum": 0.5})),
    # m sums g / ||g|| without a 1 - b1 factor: steps are about lr / (1 - b1)
    "novograd": Case("optax.novograd", lambda lr, wd=0.0, **h: optax.novograd(lr, weight_decay=wd, **h),
                     ({"lr": 1e-3}, {"lr": 3e-3, "b1": 0.8, "b2": 0.5, "eps": 1e-8, "wd": 1e-2})),
    "adopt": Case("optax.contrib.adopt", optax.contrib.adopt,
                  ({"lr": 1e-2}, {"lr": 3e-3, "b1": 0.8, "b2": 0.99, "eps": 1e-4})),
    # optax factors a matrix only where its two largest dims reach min_dim_size_to_factor (128)
    "adafactor": Case("optax.adafactor(min_dim_size_to_factor=1)",
                      lambda lr, decay=0.8, threshold=1.0, eps=1e-30: optax.adafactor(
                          lr, min_dim_size_to_factor=1, decay_rate=decay, clipping_threshold=threshold, eps=eps),
                      ({"lr": 1e-2}, {"lr": 3e-3, "decay": 0.5, "threshold": 0.5, "eps": 1e-20})),
    # lr 3e-3: at 1e-2 last-bit differences of the matrix products grow to 4e-5 over 100 steps
    "muon": Case("optax.contrib.muon (matrices)",
                 lambda lr, beta=0.95, eps=1e-8, wd=0.0: optax.contrib.muon(lr, beta=beta, eps=eps, weight_decay=wd),
                 ({"lr": 3e-3}, {"lr": 1e-3, "beta": 0.9, "wd": 0.1}), tree=matrices),
    "cautious_lion": Case("its formula (Liang et al. 2024), in tests/test_zoo.py", cautious_lion,
                          ({"lr": 1e-3}, {"lr": 3e-4, "b1": 0.95, "b2": 0.98, "wd": 0.1})),
    # more memory slots than m and v: three (amsgrad, ademamix) and four (adan)
    "amsgrad": Case("optax.amsgrad", optax.amsgrad,
                    ({"lr": 1e-2}, {"lr": 3e-3, "b1": 0.8, "b2": 0.99, "eps": 1e-6, "eps_root": 1e-8})),
    "ademamix": Case("optax.contrib.ademamix", lambda lr, wd=0.0, **h: optax.contrib.ademamix(lr, weight_decay=wd, **h),
                     ({"lr": 1e-2}, {"lr": 3e-3, "b1": 0.8, "b2": 0.99, "b3": 0.999, "alpha": 2.0, "eps": 1e-6,
                                     "wd": 0.1})),
    "adan": Case("optax.adan", lambda lr, wd=0.0, **h: optax.adan(lr, weight_decay=wd, **h),
                 ({"lr": 1e-2}, {"lr": 3e-3, "b1": 0.9, "b2": 0.8, "b3": 0.95, "eps": 1e-6, "eps_root": 0.0,
                                 "wd": 0.1})),
}

# checked in test_optax_match.py; adamw_warmstart is the paper's AdamW (no bias correction, no
# epsilon), which no optax optimizer computes
ELSEWHERE = {"lion", "adamw"} | {name for name, _ in OTHER_BUILTINS}
NO_REFERENCE = {"adamw_warmstart"}


def measure(name: str, setting: dict, make: Callable | None = None) -> float:
    """Max relative difference of the parameters after 100 steps: the built-in against its
    reference (`make`, by default its ZOO entry's)."""
    hyper = dict(setting)
    lr = hyper.pop("lr")
    tree = ZOO[name].tree if name in ZOO else None
    ours, _ = _train(dsl.as_optax(dsl.load(name, **hyper), lr), tree=tree)
    ref, _ = _train((make or ZOO[name].make)(lr, **hyper), tree=tree)
    return max_rel_diff(ours, ref)


@pytest.mark.parametrize("name, setting", [
    pytest.param(name, s, id=f"{name}-{i}") for name, case in ZOO.items() for i, s in enumerate(case.settings)])
def test_builtin_matches_its_reference(name, setting):
    assert measure(name, setting) <= ZOO[name].tol


def test_every_builtin_has_a_reference_check():
    assert set(ZOO) | ELSEWHERE | NO_REFERENCE == set(dsl.builtin_names())
    assert not set(ZOO) & ELSEWHERE
    assert all(len(c.settings) >= 2 for name, c in ZOO.items() if dsl.load(name).params)


@pytest.mark.parametrize("name, lr, reference", [("lamb", 1e-2, optax.lamb(1e-2, weight_decay=0.1)),
                                                 ("lars", 1.0, optax.lars(1.0, weight_decay=0.1))])
def test_trust_ratio_is_one_for_a_tensor_at_zero(name, lr, reference):
    """A bias that starts at zero moves by the unscaled step (optax's trust ratio is 1 where
    ||w|| = 0; `1 - sign(||w||)` adds that 1 in the programs)."""
    params = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.zeros(3)}
    grads = {"w": jnp.array([[0.3, -0.1], [0.2, 0.4]]), "b": jnp.array([0.5, -1.0, 2.0])}
    ours = dsl.as_optax(dsl.load(name, wd=0.1), lr)
    s1, s2 = ours.init(params), reference.init(params)
    step1, step2 = jax.jit(ours.update), jax.jit(reference.update)
    for _ in range(3):
        u1, s1 = step1(grads, s1, params)
        u2, s2 = step2(grads, s2, params)
        for x, y in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-8)
        params = optax.apply_updates(params, u1)
    assert float(jnp.min(jnp.abs(params["b"]))) > 0
