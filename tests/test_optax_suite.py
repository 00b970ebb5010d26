"""optax's own optimizer tests (`optax/_src/alias_test.py`, shipped in the optax wheel) run on the
project's built-ins, through `dsl.optax_factory` and as exported optax source, beside the optax optimizer each one mirrors: every
case must pass for the program wherever it passes for optax's own.

The test bodies are optax's, called as they are; only the optimizer they build is swapped (the
module's `alias`, where `_get_opt` looks a name up)."""
import types

import jax.numpy as jnp
import pytest
import unittest

import dsl
from dsl.export import export

alias_test = pytest.importorskip("optax._src.alias_test")  # needs absl, scipy and sklearn, as optax's tests do
from optax._src import alias  # noqa: E402

# (program, its kwargs, the optax optimizer it mirrors, that one's kwargs): optax's own cases
# where optax has them (lion, sgd with momentum, sign_sgd), the same lr for adamw
PAIRS = [
    ("lion", {"learning_rate": 1e-2, "wd": 1e-4}, "lion", {"learning_rate": 1e-2, "weight_decay": 1e-4}),
    ("adamw", {"learning_rate": 1e-1}, "adamw", {"learning_rate": 1e-1}),
    ("signsgd", {"learning_rate": 1e-1}, "sign_sgd", {"learning_rate": 1e-1}),
    ("momentum", {"learning_rate": 1e-3}, "sgd", {"learning_rate": 1e-3, "momentum": 0.9}),
]
CASES = [pytest.param(f"dsl_{p}", pk, o, id=f"dsl.{p}") for p, pk, o, _ in PAIRS] + \
        [pytest.param(f"export_{p}", pk, o, id=f"exported.{p}") for p, pk, o, _ in PAIRS] + \
        [pytest.param(o, ok, o, id=f"optax.{o}") for _, _, o, ok in PAIRS]


@pytest.fixture(autouse=True)
def programs_in_alias(monkeypatch):
    """optax's `alias` module, with the programs added under `dsl_<name>`."""
    names = {n: getattr(alias, n) for n in dir(alias) if not n.startswith("_")}
    names.update({f"dsl_{p}": dsl.optax_factory(dsl.load(p)) for p, *_ in PAIRS})
    names.update({f"export_{p}": exported(p) for p, *_ in PAIRS})
    monkeypatch.setattr(alias_test, "alias", types.SimpleNamespace(**names))


def exported(name: str):
    """`make_optimizer` of built-in `name`'s exported optax source, as a user would import it."""
    ns = {}
    exec(compile(export(dsl.load(name), "optax"), f"<{name} export>", "exec"), ns)
    return ns["make_optimizer"]


def run_optax_test(name: str, opt_name: str, **kwargs) -> None:
    """optax's test `name` on `opt_name` (float dtypes only: optax skips complex numbers for sign
    updates by name, which would not see a program's)."""
    body = getattr(alias_test.AliasTest, f"{name}0").__wrapped__
    case = alias_test.AliasTest(f"{name}0")
    try:
        body(case, opt_name=opt_name, **kwargs)
    except unittest.SkipTest as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("target", ["parabola", "rosenbrock"])
@pytest.mark.parametrize("opt_name, opt_kwargs, mirror", CASES)
def test_optimization(opt_name, opt_kwargs, mirror, target):
    """10,000 jitted steps reach the minimum (rtol and atol 3e-2), with no recompilation."""
    setup = getattr(alias_test, f"_setup_{target}")
    if mirror == "sign_sgd" and target == "rosenbrock":  # optax's own skip, by the name a program does not have
        pytest.skip("sign descent requires learning rate scheduling to solve the Rosenbrock function")
    run_optax_test("test_optimization", opt_name, opt_kwargs=opt_kwargs, target=setup, dtype=jnp.float32)


@pytest.mark.parametrize("opt_name, opt_kwargs, mirror", CASES)
def test_accepts_extra_args(opt_name, opt_kwargs, mirror):
    run_optax_test("test_optimizers_accept_extra_args", opt_name, opt_kwargs=opt_kwargs)


@pytest.mark.parametrize("opt_name, opt_kwargs, mirror", CASES)
def test_can_be_wrapped_in_inject_hyperparams(opt_name, opt_kwargs, mirror):
    run_optax_test("test_optimizers_can_be_wrapped_in_inject_hyperparams", opt_name, opt_kwargs=opt_kwargs)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("opt_name, opt_kwargs, mirror", CASES)
def test_preserve_dtype(opt_name, opt_kwargs, mirror, dtype):
    run_optax_test("test_preserve_dtype", opt_name, opt_kwargs=opt_kwargs, dtype=dtype)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64])
@pytest.mark.parametrize("opt_name, opt_kwargs, mirror", CASES)
def test_state_shape_dtype_stability(opt_name, opt_kwargs, mirror, dtype):
    run_optax_test("test_state_shape_dtype_shard_stability", opt_name, opt_kwargs=opt_kwargs, dtype=dtype)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("opt_name, opt_kwargs, mirror", CASES)
def test_gradient_accumulation_with_multisteps(opt_name, opt_kwargs, mirror, dtype):
    run_optax_test("test_gradient_accumulation", opt_name, opt_kwargs=opt_kwargs, dtype=dtype)
