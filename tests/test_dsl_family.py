"""Lion-family check: the same algorithm as Lion up to its constants."""
import pytest

import dsl

LION = dsl.load("lion")


def prog(*lines):
    return dsl.parse("def train(w, g, m, v, lr):\n" + "".join(f"    {l}\n" for l in lines) + "    return update, m, v\n")


LION_FAMILY = {
    "other hyper-parameters": dsl.load("lion", b1=0.5, b2=0.7, wd=0.3),
    "the warm start with sign(m) inserted (Lion with b1 = b2, lr scale 1e-3)": prog(
        "g2 = square(g)", "m = interp(g, m, 0.9)", "v = interp(g2, v, 0.999)", "sqrt_v = sqrt(v)",
        "update = m / sqrt_v", "update = sign(m)", "wd = w * 0.01", "update = update + wd",
        "lr = lr * 0.001", "update = update * lr"),
    "lr distributed over the sum": prog(
        "c = interp(g, m, 0.8)", "s = sign(c)", "a = s * lr", "d = w * lr", "d = d * 0.1", "update = a + d",
        "m = interp(g, m, 0.95)"),
    "sign written as c / sqrt(c * c)": prog(
        "c = interp(g, m, 0.8)", "c2 = c * c", "r = sqrt(c2)", "s = c / r", "d = w * 0.1", "update = s + d",
        "update = update * lr", "m = interp(g, m, 0.95)"),
    "the interp spelled out, momentum kept in v": prog(
        "a = v * 0.7", "b = g * 0.3", "c = a + b", "s = sign(c)", "d = w * 0.1", "update = s + d",
        "update = update * lr", "v = interp(g, v, 0.95)"),
}

NOT_LION = {
    "AdamW": dsl.load("adamw_warmstart"),
    "signSGD (no momentum)": dsl.load("signsgd"),
    "momentum SGD": dsl.load("momentum"),
    "m a running sum, not an EMA": prog(
        "c = interp(g, m, 0.8)", "s = sign(c)", "d = w * 0.1", "update = s + d", "update = update * lr",
        "m = m + g"),
    "adam-like normalisation instead of sign": prog(
        "m = interp(g, m, 0.9)", "g2 = g * g", "v = interp(g2, v, 0.99)", "r = sqrt(v)", "update = m / r",
        "d = w * 0.1", "update = update + d", "update = update * lr"),
    "sign of a product": prog(
        "c = g * m", "s = sign(c)", "d = w * 0.1", "update = s + d", "update = update * lr",
        "m = interp(g, m, 0.95)"),
    "no weight decay term": prog(
        "c = interp(g, m, 0.8)", "update = sign(c)", "update = update * lr", "m = interp(g, m, 0.95)"),
}


@pytest.mark.parametrize("name", list(LION_FAMILY))
def test_lion_family(name):
    assert dsl.equivalent_up_to_constants(LION_FAMILY[name], LION)
    assert dsl.is_lion(LION_FAMILY[name])


@pytest.mark.parametrize("name", list(NOT_LION))
def test_not_lion(name):
    assert not dsl.equivalent_up_to_constants(NOT_LION[name], LION)
    # is_lion lets the weight decay be 0, and nothing else
    assert dsl.is_lion(NOT_LION[name]) == (name == "no weight decay term")


@pytest.mark.parametrize("name", dsl.builtin_names())
def test_every_builtin_is_its_own_family(name):
    p = dsl.load(name)
    assert dsl.equivalent_up_to_constants(p, p)
    assert dsl.equivalent_up_to_constants(p, LION) == (name == "lion")
