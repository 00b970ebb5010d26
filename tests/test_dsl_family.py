"""Program families: the same algorithm up to constants, and which algorithm a program is."""
import pytest
from pytest import approx

import dsl

LION = dsl.load("lion")


def prog(*lines):
    return dsl.parse("def train(w, g, m, v, lr):\n" + "".join(f"    {l}\n" for l in lines) + "    return update, m, v\n")


# ---- equivalent_up_to_constants ----------------------------------------------------------------

LION_SHAPED = {
    "other hyper-parameters": dsl.load("lion", b1=0.5, b2=0.7, wd=0.3),
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

# Lion's shape with b1 = b2: equal to Lion up to constants, but signum by family
WARM_START_SIGNUM = prog(
    "g2 = square(g)", "m = interp(g, m, 0.9)", "v = interp(g2, v, 0.999)", "sqrt_v = sqrt(v)",
    "update = m / sqrt_v", "update = sign(m)", "wd = w * 0.01", "update = update + wd",
    "lr = lr * 0.001", "update = update * lr")

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


@pytest.mark.parametrize("name", list(LION_SHAPED))
def test_lion_shaped(name):
    assert dsl.equivalent_up_to_constants(LION_SHAPED[name], LION)
    assert dsl.is_lion(LION_SHAPED[name])


def test_the_signum_builtin_is_lion_with_b1_equal_to_b2():
    assert dsl.equivalent(dsl.load("signum", beta=0.8), dsl.load("lion", b1=0.8, b2=0.8, wd=0.0))
    assert not dsl.equivalent(dsl.load("signum"), dsl.load("lion"))


def test_signum_has_lions_shape_but_is_not_lion():
    assert dsl.equivalent_up_to_constants(WARM_START_SIGNUM, LION)
    assert not dsl.is_lion(WARM_START_SIGNUM)
    f = dsl.family(WARM_START_SIGNUM)
    assert f.name == "signum" and f.constants == approx({"b1": 0.9, "b2": 0.9, "wd": 0.01, "lr_scale": 0.001})


@pytest.mark.parametrize("name", list(NOT_LION))
def test_not_lion(name):
    assert not dsl.equivalent_up_to_constants(NOT_LION[name], LION)
    # a weight decay of 0 is one of Lion's constants
    assert dsl.is_lion(NOT_LION[name]) == (name == "no weight decay term")


@pytest.mark.parametrize("name", dsl.builtin_names())
def test_every_builtin_is_its_own_shape(name):
    p = dsl.load(name)
    assert dsl.equivalent_up_to_constants(p, p)
    assert dsl.equivalent_up_to_constants(p, LION) == (name == "lion")


# ---- equal_slots -------------------------------------------------------------------------------

# Exactly Lion (from a real run): the momentum is computed in v, and m copies it at the end.
LION_COPIED = prog(
    "v = interp(g, v, 0.99)", "c = interp(g, m, 0.9)", "s = sign(c)", "d = w * 0.01", "update = s + d",
    "m = v * 1.0", "update = update * lr")
# The paper's Program 4 simplified (from a real run): signum, its momentum carried through v.
PROGRAM_4 = prog("m = interp(g, v, 0.9)", "v = interp(g, m, 1.0)", "s = sign(m)", "update = s + w")


def test_equal_slots():
    assert dsl.equal_slots(LION_COPIED) == [("m", "v")]
    assert dsl.equal_slots(PROGRAM_4) == [("m", "v")]
    assert dsl.equal_slots(LION) == [("m",), ("v",)]
    assert dsl.equal_slots(dsl.load("adamw_warmstart")) == [("m",), ("v",)]
    assert dsl.equal_slots(dsl.load("sgd")) == [("m", "v")]  # neither is ever written
    # the same rule written differently: equal up to rounding
    assert dsl.equal_slots(prog("m = interp(g, m, 0.9)", "a = v * 0.9", "b = g * 0.1", "v = a + b",
                                "update = v * lr")) == [("m", "v")]
    # the same rate on different inputs
    assert dsl.equal_slots(prog("m = interp(g, m, 0.9)", "v = interp(w, v, 0.9)", "update = m + v")) \
        == [("m",), ("v",)]


# ---- family ------------------------------------------------------------------------------------

BUILTIN_FAMILIES = {
    "adam": "adam", "adamw": "adam", "adamw_warmstart": "adam", "lion": "lion", "momentum": "momentum",
    "nesterov": "momentum", "sgd": "sgd", "signsgd": "signsgd", "signum": "signum", "rmsprop": "rmsprop",
    # the families name Lion's neighbours and Adam's shape; these differ from both in their second
    # moment (adabelief, adamax, yogi, novograd, rmsprop_centered, adagrad's running sum), their
    # first (nadam's look-ahead, adopt's normalised and clipped g), a per-tensor trust ratio (lamb,
    # lars) or a mask (cautious_lion); with more memory slots: amsgrad's running maximum of the second
    # moment, ademamix's slow momentum added to the fast one, adan's moment of gradient differences
    "adabelief": "other", "adagrad": "other", "adamax": "other", "adopt": "other", "cautious_lion": "other",
    "lamb": "other", "lars": "other", "nadam": "other", "novograd": "other", "rmsprop_centered": "other",
    "yogi": "other", "amsgrad": "other", "ademamix": "other", "adan": "other",
    "adafactor": "other", "muon": "other",
}


def test_every_builtin_has_its_family():
    assert set(BUILTIN_FAMILIES) == set(dsl.builtin_names())
    for name, fam in BUILTIN_FAMILIES.items():
        assert dsl.family(dsl.load(name)).name == fam, name


def test_ops_cli_ends_with_every_builtin_and_its_family(capsys):
    from lionsearch.cli import main
    assert main(["ops"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"# {len(dsl.OPS)} ops; the search uses all but the shape ops") for line in lines)
    assert sum(" shape op " in line for line in lines) == len(dsl.OPS) - len(dsl.SEARCH_OPS) > 0
    tail = lines[-len(BUILTIN_FAMILIES):]
    assert [line.split()[0] for line in tail] == sorted(BUILTIN_FAMILIES)
    assert all(line.split()[1] == BUILTIN_FAMILIES[line.split()[0]] for line in tail)
    assert "lion (b1 0.9, b2 0.99, wd 0.01, lr x1)" in tail[sorted(BUILTIN_FAMILIES).index("lion")]


@pytest.mark.parametrize("name, constants", [
    ("lion", {"b1": 0.9, "b2": 0.99, "wd": 0.01, "lr_scale": 1.0}),
    ("adam", {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "lr_scale": 1.0, "bias_correction": True}),
    ("adamw", {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "wd": 1e-4, "lr_scale": 1.0, "bias_correction": True}),
    ("adamw_warmstart", {"b1": 0.9, "b2": 0.999, "wd": 0.01, "lr_scale": 0.001}),
    # heavy ball m <- g + 0.9 m is 10 times an EMA of rate 0.9, and the update reads the new m
    ("momentum", {"b1": 0.9, "b2": 0.9, "lr_scale": 10.0}),
    # nesterov: g + 0.9 (g + 0.9 m) = 10 (0.19 g + 0.81 EMA)
    ("nesterov", {"b1": 0.81, "b2": 0.9, "lr_scale": 10.0}),
    ("sgd", {"lr_scale": 1.0}),
    ("signsgd", {"lr_scale": 1.0}),
    ("signum", {"b1": 0.9, "b2": 0.9, "lr_scale": 1.0}),
    # optax's rmsprop: eps inside the square root; the initial_scale term is 0 at its default
    ("rmsprop", {"b2": 0.9, "eps_in_sqrt": 1e-8, "lr_scale": 1.0}),
])
def test_builtin_constants(name, constants):
    assert dsl.family(dsl.load(name)).constants == approx(constants)


FAMILIES = {
    # lion
    "the copy at the end of the step (exactly Lion)": (LION_COPIED, "lion", {"b1": 0.9, "b2": 0.99, "wd": 0.01, "lr_scale": 1.0}),
    "other hyper-parameters": (dsl.load("lion", b1=0.5, b2=0.7, wd=0.3), "lion", {"b1": 0.5, "b2": 0.7, "wd": 0.3, "lr_scale": 1.0}),
    "weight decay 0": (dsl.load("lion", wd=0.0), "lion", {"b1": 0.9, "b2": 0.99, "lr_scale": 1.0}),
    "momentum renamed to v": (prog(
        "c = interp(g, v, 0.8)", "s = sign(c)", "d = w * 0.1", "update = s + d", "update = update * lr",
        "v = interp(g, v, 0.95)"), "lion", {"b1": 0.8, "b2": 0.95, "wd": 0.1, "lr_scale": 1.0}),
    "momentum through the other slot": (prog(
        "c = interp(g, m, 0.9)", "s = sign(c)", "update = s * lr", "v = interp(g, m, 0.99)", "m = v * 1.0"),
        "lion", {"b1": 0.9, "b2": 0.99, "lr_scale": 1.0}),
    # M <- 0.99 M + g is 100 EMA: sign(0.009 M + 0.1 g) is Lion's b1 0.9
    "momentum without the (1 - b) factor": (prog(
        "a = m * 0.009", "b = g * 0.1", "c = a + b", "s = sign(c)", "update = s * lr", "mb = m * 0.99",
        "m = mb + g"), "lion", {"b1": 0.9, "b2": 0.99, "lr_scale": 1.0}),
    "momentum of -g": (prog(
        "a = m * 0.009", "b = g * 0.1", "c = b - a", "s = sign(c)", "update = s * lr", "mb = m * 0.99",
        "m = mb - g"), "lion", {"b1": 0.9, "b2": 0.99, "lr_scale": 1.0}),
    "lr applied twice, |lr|, lr scaled": (prog(
        "c = interp(g, m, 0.9)", "s = sign(c)", "l = abs(lr)", "a = s * l", "d = w * lr", "d = d * 0.003",
        "update = a + d", "update = update * 0.3", "m = interp(g, m, 0.99)"),
        "lion", {"b1": 0.9, "b2": 0.99, "wd": 0.003, "lr_scale": 0.3}),
    "the sign of the negated interp, negated": (prog(
        "c = interp(g, m, 0.9)", "c = -c", "s = sign(c)", "s = -s", "d = w * 0.01", "update = s + d",
        "update = update * lr", "m = interp(g, m, 0.99)"), "lion", {"b1": 0.9, "b2": 0.99, "wd": 0.01, "lr_scale": 1.0}),
    "weight decay without the lr factor": (prog(
        "c = interp(g, m, 0.9)", "s = sign(c)", "a = s * lr", "d = w * 0.001", "update = a + d",
        "m = interp(g, m, 0.99)"), "lion", {"b1": 0.9, "b2": 0.99, "wd": 0.001, "lr_scale": 1.0, "wd_schedule": False}),
    # the update ignores the current gradient: b1 = 1 in Lion's formula
    "sign of the momentum before its update": (prog(
        "s = sign(m)", "update = s * lr", "m = interp(g, m, 0.9)"), "lion", {"b1": 1.0, "b2": 0.9, "lr_scale": 1.0}),
    # signum
    "Lion with b1 = b2": (dsl.load("lion", b1=0.9, b2=0.9), "signum", {"b1": 0.9, "b2": 0.9, "wd": 0.01, "lr_scale": 1.0}),
    "Program 4 simplified (no lr factor)": (PROGRAM_4, "signum", {
        "b1": 0.9, "b2": 0.9, "wd": 1.0, "lr_scale": 1.0, "lr_schedule": False, "wd_schedule": False}),
    "the sign of the updated momentum, momentum without (1 - b)": (prog(
        "mb = m * 0.95", "m = mb + g", "s = sign(m)", "update = s * lr"), "signum", {"b1": 0.95, "b2": 0.95, "lr_scale": 1.0}),
    # signsgd
    "signsgd with weight decay": (prog(
        "s = sign(g)", "d = w * 0.1", "update = s + d", "update = update * lr"), "signsgd", {"wd": 0.1, "lr_scale": 1.0}),
    "signsgd, a momentum nobody reads": (prog(
        "m = interp(g, m, 0.9)", "update = sign(g)", "lr = lr * 0.01", "update = update * lr"), "signsgd", {"lr_scale": 0.01}),
    # adam, rmsprop
    "adam with the moments' slots swapped": (prog(
        "v = interp(g, v, 0.9)", "g2 = square(g)", "m = interp(g2, m, 0.99)", "r = sqrt(m)", "update = v / r",
        "update = update * lr"), "adam", {"b1": 0.9, "b2": 0.99, "lr_scale": 1.0}),
    "adam with epsilon inside the square root": (prog(
        "m = interp(g, m, 0.9)", "g2 = g * g", "v = interp(g2, v, 0.99)", "e = v + 1e-06", "r = rsqrt(e)",
        "update = m * r", "update = update * lr"), "adam", {"b1": 0.9, "b2": 0.99, "eps_in_sqrt": 1e-6, "lr_scale": 1.0}),
    "rmsprop": (prog(
        "g2 = g * g", "v = interp(g2, v, 0.9)", "r = sqrt(v)", "r = r + 1e-08", "update = g / r",
        "update = update * lr"), "rmsprop", {"b2": 0.9, "eps": 1e-8, "lr_scale": 1.0}),
    # second moment without (1 - b): sqrt(1000 EMA) = 31.6 sqrt(EMA)
    "rmsprop, second moment without the (1 - b) factor": (prog(
        "g2 = g * g", "vb = v * 0.999", "v = vb + g2", "r = sqrt(v)", "update = g / r", "update = update * lr"),
        "rmsprop", {"b2": 0.999, "lr_scale": 1000 ** -0.5}),
    # momentum, sgd
    "heavy ball reading the old momentum": (prog(
        "update = m * lr", "m = interp(g, m, 0.9)"), "momentum", {"b1": 1.0, "b2": 0.9, "lr_scale": 1.0}),
    # v is never written, so always zero, and so is any reduction of it: m = g each step
    "nesterov whose momentum reads a reduction of the zero slot": (prog(
        "mb = rms(v)", "m = g + mb", "look = m * 0.9", "update = g + look", "update = update * lr"),
        "sgd", {"lr_scale": 1.9}),
    "sgd with weight decay, no lr factor": (prog(
        "d = w * 0.01", "update = g + d", "update = update * 0.1"), "sgd", {"wd": 0.01, "lr_scale": 0.1, "lr_schedule": False, "wd_schedule": False}),
}

OTHER = {
    "a constant offset": prog("s = sign(m)", "update = interp(-0.668, s, 0.74)", "update = update * lr",
                              "m = interp(g, m, 0.9)"),
    "sign of a product": NOT_LION["sign of a product"],
    "an ascent direction": prog("c = interp(g, m, 0.9)", "s = sign(c)", "update = -s", "update = update * lr",
                                "m = interp(g, m, 0.99)"),
    "sgd uphill": prog("update = g * -0.1"),
    "the sign of the negated interp": prog("c = interp(g, m, 0.9)", "c = -c", "update = sign(c)", "d = w * 0.01",
                                           "update = update + d", "update = update * lr", "m = interp(g, m, 0.99)"),
    # a running sum never forgets: not an EMA, so neither Lion nor momentum
    "the sign of a running sum": NOT_LION["m a running sum, not an EMA"],
    "a running sum": prog("m = m + g", "update = m * lr"),
    "an EMA of sign(g)": prog("s = sign(g)", "m = interp(s, m, 0.9)", "update = m * lr"),
    "the sign times g": prog("c = interp(g, m, 0.9)", "s = sign(c)", "update = s * g", "m = interp(g, m, 0.99)"),
    "two momenta of different rates": prog("m = interp(g, m, 0.9)", "v = interp(g, v, 0.99)", "c = m + v",
                                           "update = sign(c)"),
    "lr in the momentum": prog("a = g * lr", "m = interp(a, m, 0.9)", "update = sign(m)"),
    "b1 outside [0, 1]": prog("a = m * 2.0", "b = g * -1.0", "c = a + b", "update = sign(c)", "m = interp(g, m, 0.9)"),
    "blind to the gradient": prog("update = w * lr"),
    "an ever-zero momentum": prog("update = sign(m)", "m = m * 0.9"),
    "adam with a sign in the numerator": prog(
        "m = interp(g, m, 0.9)", "s = sign(m)", "g2 = g * g", "v = interp(g2, v, 0.99)", "r = sqrt(v)",
        "update = s / r"),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family(name):
    p, fam, constants = FAMILIES[name]
    f = dsl.family(p)
    assert f.name == fam
    assert f.constants == approx(constants)
    assert dsl.is_lion(p) == (fam == "lion")


@pytest.mark.parametrize("name", list(OTHER))
def test_other(name):
    assert dsl.family(OTHER[name]) == dsl.Family("other", {})


def test_the_two_programs_from_real_runs():
    assert dsl.equivalent(LION_COPIED, LION)
    assert str(dsl.family(LION_COPIED)) == "lion (b1 0.9, b2 0.99, wd 0.01, lr x1)"
    assert str(dsl.family(PROGRAM_4)) == "signum (b 0.9, wd 1, lr x1, no lr factor, wd without lr)"


def test_family_does_not_depend_on_names_or_slots():
    base = dsl.family(LION)
    renamed = prog("c = interp(g, v, 0.9)", "update = sign(c)", "d = w * 0.01", "update = update + d",
                   "update = update * lr", "v = interp(g, v, 0.99)")
    assert dsl.family(renamed) == base == dsl.family(LION_COPIED)
    assert hash(dsl.family(renamed)) == hash(base)


def test_str_rounds_to_three_digits():
    f = dsl.family(dsl.load("lion", b1=0.912345, b2=0.99, wd=0.0123456))
    assert str(f) == "lion (b1 0.912, b2 0.99, wd 0.0123, lr x1)"
    assert str(dsl.family(dsl.load("adam"))) == "adam (b1 0.9, b2 0.999, eps 1e-08, lr x1, bias correction)"
    assert str(dsl.family(OTHER["a running sum"])) == "other"


def slots(signature, *lines):
    """A program with further memory slots after v (`signature`, e.g. "n, gp"), returned in order."""
    return dsl.parse(f"def train(w, g, m, v, {signature}, lr):\n" + "".join(f"    {l}\n" for l in lines)
                     + f"    return update, m, v, {signature}\n")


LION_BODY = ("c = interp(g, {k}, 0.9)", "update = sign(c)", "d = w * 0.01", "update = update + d",
             "update = update * lr", "{k} = interp(g, {k}, 0.99)")


# Lion with further slots; up to constants (normal forms: slots renamed, not merged) too, except
# where a slot copies another
@pytest.mark.parametrize("p, up_to_constants", [
    (slots("n", *(l.format(k="m") for l in LION_BODY)), True),  # a further slot never used
    (slots("n", *(l.format(k="n") for l in LION_BODY)), True),  # the momentum in the further slot
    (slots("mom", *(l.format(k="mom") for l in LION_BODY)), True),  # ... whatever its name
    (slots("n, k", *(l.format(k="k") for l in LION_BODY), "n = interp(g, n, 0.5)"), True),  # an EMA nobody reads
    # the momentum kept in n, copied to m and to v at the end of each step (and read from m)
    (slots("n", "n = interp(g, n, 0.99)", "c = interp(g, m, 0.9)", "update = sign(c)", "d = w * 0.01",
           "update = update + d", "update = update * lr", "m = n * 1.0", "v = n + 0.0"), False),
], ids=["unused", "in n", "named mom", "dead EMA", "copied to m and v"])
def test_lion_with_more_slots_is_lion(p, up_to_constants):
    assert dsl.family(p) == dsl.family(LION) and str(dsl.family(p)) == "lion (b1 0.9, b2 0.99, wd 0.01, lr x1)"
    assert dsl.equivalent_up_to_constants(p, LION) == dsl.equivalent_up_to_constants(LION, p) == up_to_constants


def test_equal_slots_and_families_over_several_slots():
    copied = slots("n", "n = interp(g, n, 0.99)", "c = interp(g, m, 0.9)", "update = sign(c)", "d = w * 0.01",
                   "update = update + d", "update = update * lr", "m = n * 1.0", "v = n + 0.0")
    assert dsl.equal_slots(copied) == [("m", "v", "n")]
    assert dsl.equal_slots(slots("n, gp", *(l.format(k="gp") for l in LION_BODY))) == [("m", "v", "n"), ("gp",)]
    # Adam with its moments in further slots, and signum with its momentum in the fourth
    adam = dsl.load("adam")
    moved = dsl.parse(dsl.to_text(adam).replace("m, v, lr", "m, v, a, b, lr").replace("m, v\n", "m, v, a, b\n")
                      .replace("m = interp(g, m,", "a = interp(g, a,").replace("v = interp(g2, v,", "b = interp(g2, b,")
                      .replace("mhat = m /", "mhat = a /").replace("vhat = v /", "vhat = b /"))
    assert dsl.state_slots(moved) == ("a", "b") and dsl.equivalent(moved, adam)
    assert dsl.family(moved) == dsl.family(adam) and dsl.family(moved).name == "adam"
    signum = slots("n, gp", "gp = interp(g, gp, 0.9)", "s = sign(gp)", "update = s * lr")
    assert dsl.family(signum).name == "signum" and dsl.family(signum) == dsl.family(dsl.load("signum"))
    # two momenta of different rates both read: no longer Lion
    two = slots("n", *(l.format(k="m") for l in LION_BODY[:-1]), "n = interp(g, n, 0.5)", "c2 = sign(n)",
                "update = update + c2", "m = interp(g, m, 0.99)")
    assert dsl.family(two).name == "other" and not dsl.equivalent_up_to_constants(two, LION)


KEEPS_MOMENTUM = {
    "the AdamW warm start": (dsl.load("adamw_warmstart"), True),
    "lion": (LION, True),
    "the momentum through the other slot": (prog("v = interp(g, v, 0.9)", "m = v * 1.0", "update = m * lr"), True),
    "a nonlinear function of the momentum": (prog("m = interp(g, m, 0.9)", "t = sinh(m)", "update = t * lr"), True),
    "the slot overwritten by a function of g": (prog("m = arctanh(g)", "update = m * lr"), False),
    "an EMA the update never reads": (prog("m = interp(g, m, 0.9)", "update = g * lr"), False),
    "a running sum, not an EMA": (prog("m = m + g", "update = m * lr"), False),
    "an EMA squashed before it is kept": (prog("m = interp(g, m, 0.9)", "m = tanh(m)", "update = m * lr"), False),
}


@pytest.mark.parametrize("name", list(KEEPS_MOMENTUM))
def test_keeps_momentum(name):
    p, kept = KEEPS_MOMENTUM[name]
    assert dsl.keeps_momentum(p) is kept
