"""Dead code, abstract execution, the functional hash and equivalence."""
import numpy as np
import pytest

import dsl
from dsl.execute import run

HEAD = "def train(w, g, m, v, lr):\n"
RET = "    return update, m, v\n"


def prog(*lines):
    return dsl.parse(HEAD + "".join(f"    {l}\n" for l in lines) + RET)


def test_dead_code_is_removed_including_state_nothing_reads():
    p = prog("junk = exp(g)", "v = interp(g, v, 0.5)", "c = interp(g, m, 0.9)", "update = sign(c)",
             "unused = update * 3", "update = update * lr", "m = interp(g, m, 0.99)")
    q = dsl.strip_dead_code(p)
    assert [s.out for s in q.statements] == ["c", "update", "update", "m"]
    assert dsl.state_slots(p) == ("m",)
    assert dsl.equivalent(p, q)
    assert dsl.redundancy(p) == pytest.approx(3 / 7)


def test_state_written_but_read_later_in_the_step_is_live():
    # m is written after update reads it: live only across steps.
    p = prog("update = m * lr", "m = interp(g, m, 0.9)")
    assert len(dsl.strip_dead_code(p)) == 2 and dsl.state_slots(p) == ("m",)


def test_state_slots_of_builtins():
    assert dsl.state_slots(dsl.load("lion")) == ("m",)
    assert dsl.state_slots(dsl.load("adamw")) == ("m", "v")
    assert dsl.state_slots(dsl.load("sgd")) == ()
    assert dsl.state_slots(dsl.load("adagrad")) == ("v",)  # as optax.adagrad's, one sum per parameter
    assert dsl.state_slots(dsl.load("rmsprop")) == ("v",)


def test_check_accepts_builtins():
    for name in dsl.builtin_names():
        assert dsl.check(dsl.load(name)), name


@pytest.mark.parametrize("lines, reason", [
    (["update = w * lr"], "does not depend on the gradient"),
    (["a = g - g", "update = a * lr"], "does not depend on the gradient"),
    (["a = exp(g)", "a = exp(a)", "a = exp(a)", "update = exp(a)"], "NaN or inf"),
    (["a = g * 1e300", "update = a * 1e300"], "NaN or inf"),
    # the lr input overwritten by a constant, ignored, or only its sign read: no schedule, no sweep
    (["lr = 0.5 * 0.002", "update = g * lr"], "does not depend on the learning rate"),
    (["update = sign(g)"], "does not depend on the learning rate"),
    (["s = sign(lr)", "update = g * s"], "does not depend on the learning rate"),
])
def test_check_rejects_with_a_reason(lines, reason):
    verdict = dsl.check(prog(*lines))
    assert not verdict and reason in verdict.reason


def test_check_judges_the_live_statements_once():
    from dsl.analysis import _check_live
    p = prog("c = interp(g, m, 0.9)", "update = sign(c)", "update = update * lr", "m = interp(g, m, 0.99)")
    dead = prog("a = exp(g)", "a = exp(a)", "a = exp(a)", "junk = exp(a)",  # inf, but never reaches update
                "c = interp(g, m, 0.9)", "update = sign(c)", "update = update * lr", "m = interp(g, m, 0.99)")
    _check_live.cache_clear()
    assert dsl.check(p) and dsl.check(dead)
    assert _check_live.cache_info().hits == 1  # the dead-code variant: its live part already judged


def test_domain_rule_gives_zero_not_nan():
    x = np.array([-1.0, 0.0, 4.0])
    for name, expect in [("sqrt", [0, 0, 2]), ("log", [0, 0, np.log(4)]), ("rsqrt", [0, 0, 0.5]),
                         ("reciprocal", [-1, 0, 0.25]), ("arcsin", [-np.pi / 2, 0, 0])]:
        with np.errstate(all="ignore"):
            got = dsl.OPS[name].fn(np, x)
        np.testing.assert_allclose(got, expect, err_msg=name)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(dsl.OPS["div"].fn(np, x, np.array([0.0, 0.0, 2.0])), [0, 0, 2])
        np.testing.assert_allclose(dsl.OPS["power"].fn(np, x, np.array(0.5)), [0, 0, 2])
        np.testing.assert_allclose(dsl.OPS["power"].fn(np, x, np.array(-1.0)), [-1, 0, 0.25])
        assert np.isinf(dsl.OPS["exp"].fn(np, np.array(1000.0)))  # overflow is not masked


def test_every_op_agrees_between_numpy_and_jax():
    import jax.numpy as jnp
    rng = np.random.default_rng(0)
    args = [rng.normal(size=(3, 4)) * 2 for _ in range(3)]
    for name, op in dsl.OPS.items():
        with np.errstate(all="ignore"):
            a = op.fn(np, *args[:op.arity])
        b = op.fn(jnp, *[jnp.asarray(x, jnp.float32) for x in args[:op.arity]])
        np.testing.assert_allclose(np.asarray(b), a, rtol=2e-4, atol=1e-5, err_msg=name)


def test_reductions_see_the_full_tensor():
    # A constant argument to a reduction stands for a tensor filled with it.
    p = prog("n = norm(1.0)", "update = g * n")
    w = np.zeros((2, 8))
    u, _, _ = run(p, np, w, np.ones_like(w), w, w, 1.0)
    np.testing.assert_allclose(u, 4.0)


def test_shape_ops_work_on_the_matrices_of_the_last_two_axes_of_any_rank():
    rng = np.random.default_rng(1)
    row, col = dsl.OPS["row_mean"], dsl.OPS["col_mean"]
    x = rng.normal(size=(2, 3, 4))  # two 3 x 4 matrices
    np.testing.assert_allclose(row.fn(np, x)[1, 2], [x[1, 2].mean()] * 4)
    np.testing.assert_allclose(col.fn(np, x)[1, :, 3], [x[1, :, 3].mean()] * 3)
    v = rng.normal(size=5)  # a vector is one column: each element its own row
    np.testing.assert_array_equal(row.fn(np, v), v)
    np.testing.assert_allclose(col.fn(np, v), [v.mean()] * 5)
    s = np.float64(2.5)  # a scalar is a 1 x 1 matrix
    assert row.fn(np, s) == col.fn(np, s) == 2.5
    # five Newton-Schulz steps orthogonalise each matrix approximately (singular values 0.7 to 1.2)
    ns = dsl.OPS["ns_step"].fn
    for shape in ((4, 6), (6, 4), (2, 3, 5)):
        y = rng.normal(size=shape)
        y = y / np.linalg.norm(y, axis=(-2, -1), keepdims=True)
        z = y
        for _ in range(5):
            z = ns(np, z)
        sv = np.linalg.svd(z, compute_uv=False)
        assert np.all((sv > 0.6) & (sv < 1.25)), (shape, sv)
        if len(shape) == 3:  # batched over the leading axis
            np.testing.assert_allclose(ns(np, y)[1], ns(np, y[1]), rtol=1e-12)
    np.testing.assert_allclose(ns(np, v), ns(np, v[:, None])[:, 0], rtol=1e-12)  # a vector is a column
    # one definition for abstract execution and training: per leaf at its own shape in both
    import jax.numpy as jnp
    p = prog("r = row_mean(g)", "c = col_mean(g)", "n = ns_step(g)", "update = r - c", "update = update + n")
    for shape in ((), (5,), (3, 4), (2, 3, 4)):
        g = rng.normal(size=shape)
        u, _, _ = run(p, np, np.zeros(shape), g, np.zeros(shape), np.zeros(shape), 1.0)
        (uj,), _, _ = dsl.tree_update(p, [jnp.zeros(shape)], [jnp.asarray(g, jnp.float32)], None, None, 1.0, 1.0)
        np.testing.assert_allclose(np.asarray(uj), u, rtol=1e-5, atol=1e-6)
    # the search writes them only where a config lists them; the default ops keep their opcodes
    assert {"row_mean", "col_mean", "ns_step"} <= set(dsl.OP_NAMES) - set(dsl.SEARCH_OPS)
    assert dsl.SEARCH_OPS == dsl.OP_NAMES[:len(dsl.SEARCH_OPS)]


def test_fingerprint_ignores_form_and_dead_code():
    a = prog("c = interp(g, m, 0.9)", "update = sign(c)", "update = update * lr", "m = interp(g, m, 0.99)")
    b = prog("x = m * 0.9", "y = g * 0.1", "z = x + y", "dead = cos(z)", "s = sign(z)",
             "update = lr * s", "m = interp(g, m, 0.99)")
    c = prog("c = interp(g, m, 0.9)", "update = sign(c)", "update = update * lr", "m = interp(g, m, 0.98)")
    assert dsl.fingerprint(a) == dsl.fingerprint(b)
    assert dsl.fingerprint(a) != dsl.fingerprint(c)
    assert dsl.equivalent(a, b) and not dsl.equivalent(a, c)


def test_fingerprints_of_builtins_are_distinct():
    fps = {dsl.fingerprint(dsl.load(n)) for n in dsl.builtin_names()}
    assert len(fps) == len(dsl.builtin_names())


def test_hyper_parameters_and_literals_are_the_same_function():
    p = dsl.load("lion", b1=0.8)
    assert dsl.fingerprint(p) == dsl.fingerprint(p.inline_params())
    assert dsl.equivalent(p, p.inline_params())
    assert dsl.fingerprint(p) != dsl.fingerprint(dsl.load("lion"))


def test_a_bound_on_lr_below_a_schedule_peak_is_not_a_no_op():
    # a task's schedule may peak above 1 (the quickstart's does at 3): `minimum(lr, 1.087)` binds
    bounded = dsl.parse("def train(w, g, m, v, lr):\n    t = minimum(1.087, lr)\n    update = g * t\n"
                        "    return update, m, v\n")
    plain = dsl.parse("def train(w, g, m, v, lr):\n    update = g * lr\n    return update, m, v\n")
    assert not dsl.equivalent(bounded, plain)
    assert dsl.fingerprint(bounded) != dsl.fingerprint(plain)


def slots(signature, *lines):
    """A program with further memory slots: `signature` lists them (`"n, gp"`), returned in order."""
    names = [k.strip() for k in signature.split(",")]
    return dsl.parse(f"def train(w, g, m, v, {signature}, lr):\n" + "".join(f"    {l}\n" for l in lines)
                     + f"    return update, m, v, {', '.join(names)}\n")


def test_liveness_is_a_fixpoint_over_every_memory_slot():
    # update reads n, whose new value reads gp's old one, which copies g: a chain across steps
    p = slots("n, gp, junk", "d = g - gp", "n = interp(d, n, 0.5)", "update = n * lr", "gp = g * 1.0",
              "junk = interp(g, junk, 0.9)", "m = interp(g, m, 0.9)")
    q = dsl.strip_dead_code(p)
    assert [s.out for s in q.statements] == ["d", "n", "update", "gp"]
    assert dsl.state_slots(p) == ("n", "gp")
    # slots no live statement uses are no longer declared; m and v always are
    assert q.memory == ("m", "v", "n", "gp") and dsl.equivalent(p, q) and dsl.fingerprint(p) == dsl.fingerprint(q)
    # the copy is live only through the chain: without the read of n, neither n nor gp is state
    r = slots("n, gp", "d = g - gp", "n = interp(d, n, 0.5)", "update = g * lr", "gp = g * 1.0")
    assert dsl.state_slots(r) == () and len(dsl.strip_dead_code(r)) == 1 and dsl.strip_dead_code(r).memory == ("m", "v")


def test_run_and_trajectory_carry_every_slot():
    p = dsl.load("adan")
    w = np.ones((2, 3))
    outs = run(p, np, w, 2 * w, w, w, 1.0, 1.0, extra=(w,))  # gp not given: zeros
    assert len(outs) == 5 and all(o.shape == w.shape for o in outs)
    np.testing.assert_allclose(outs[4], 2 * w)  # gp <- g
    assert dsl.check(p) and dsl.state_slots(p) == ("m", "v", "n", "gp")
    # the slot that holds the previous gradient matters from the second step on
    no_gp = p.replace(s for s in p.statements if s.out != "gp")
    assert not dsl.equivalent(p, no_gp) and dsl.fingerprint(p) != dsl.fingerprint(no_gp)


def test_a_slots_name_does_not_change_the_function():
    a = slots("n", "c = interp(g, n, 0.9)", "update = sign(c)", "update = update * lr", "n = interp(g, n, 0.99)")
    b = slots("mom", "c = interp(g, mom, 0.9)", "update = sign(c)", "update = update * lr",
              "mom = interp(g, mom, 0.99)")
    lion = dsl.load("lion", wd=0.0).inline_params()
    assert dsl.fingerprint(a) == dsl.fingerprint(b) == dsl.fingerprint(lion) and dsl.equivalent(a, lion)


def test_check_lets_lr_free_rules_through_where_asked():
    blind = prog("update = sign(g)")
    assert not dsl.follows_lr(blind) and dsl.check(blind, follow_lr=False)
    assert dsl.follows_lr(dsl.load("adamw")) and dsl.follows_lr(prog("t = lr * 1e-9", "s = t + 0.01", "update = g * s"))
