"""The text form: parsing, printing, round trips and error messages."""
import pytest

import dsl
from dsl import Program, ProgramError, Statement


@pytest.mark.parametrize("name", dsl.builtin_names())
def test_builtins_round_trip(name):
    p = dsl.load(name)
    assert dsl.parse(dsl.to_text(p)) == p
    assert hash(dsl.parse(dsl.to_text(p))) == hash(p)


def test_required_builtins_exist():
    assert {"sgd", "momentum", "nesterov", "signsgd", "adam", "adamw", "lion", "adamw_warmstart"} <= set(dsl.builtin_names())
    # the zoo (checked against optax in test_zoo.py)
    assert {"signum", "adabelief", "adamax", "nadam", "rmsprop", "rmsprop_centered", "adagrad", "yogi", "lamb",
            "lars", "novograd", "adopt", "cautious_lion"} <= set(dsl.builtin_names())


def test_op_table_size_and_fields():
    assert len(dsl.OPS) >= 40
    assert {"interp", "clip", "norm", "mean", "rms", "dot", "cosine_sim", "sign", "power"} <= set(dsl.OPS)
    assert dsl.OPS["interp"].arity == 3 and dsl.OPS["norm"].reduces and not dsl.OPS["sign"].reduces


def test_warm_start_is_the_papers_adamw():
    p = dsl.load("adamw_warmstart")
    text = dsl.to_text(p)
    for line in ["m = interp(g, m, 0.9)", "v = interp(g2, v, 0.999)", "update = m / sqrt_v",
                 "wd = w * 0.01", "lr = lr * 0.001", "update = update * lr"]:
        assert line in text
    assert p.params == () and not p.uses_step


def test_load_binds_hyper_parameters(tmp_path):
    p = dsl.load("lion", b1=0.95)
    assert p.param_values == {"b1": 0.95, "b2": 0.99, "wd": 0.01}
    with pytest.raises(ProgramError, match="unknown hyper-parameter"):
        dsl.load("lion", beta=0.5)
    f = tmp_path / "mine.opt"
    f.write_text(dsl.to_text(p))
    assert dsl.load(f) == p and dsl.load(str(f), b2=0.9).param_values["b2"] == 0.9


def test_infix_forms_and_signed_literals():
    p = dsl.parse("def train(w, g, m, v, lr):\n  a = -g\n  b = a * -0.5\n  c = 2 - b\n"
                  "  d = neg(3)\n  e = -1e-3\n  update = c / d\n  return update, m, v\n")
    ops = [(s.op, s.args) for s in p.statements]
    assert ops == [("neg", ("g",)), ("mul", ("a", -0.5)), ("sub", (2.0, "b")), ("neg", (3.0,)),
                   ("neg", (0.001,)), ("div", ("c", "d"))]
    assert dsl.parse(dsl.to_text(p)) == p


def test_comments_and_blank_lines_are_ignored():
    text = "# header\n\ndef train(w, g, m, v, lr):  # sig\n    update = g * lr  # sgd\n\n    return update, m, v\n"
    assert dsl.parse(text) == dsl.load("sgd")


def test_structural_equality_and_hash():
    a = Program((Statement("update", "mul", ("g", 2)),))
    b = Program((Statement("update", "mul", ("g", 2.0)),))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Program((Statement("update", "mul", ("g", 3.0)),))


def test_program_is_immutable():
    p = dsl.load("sgd")
    with pytest.raises(AttributeError):
        p.statements = ()


@pytest.mark.parametrize("text, line, column, why", [
    ("", 1, 1, "empty program"),
    ("def train(w, g, m, v):\n    update = g\n    return update, m, v\n", 1, 21, "and input 'lr'"),
    ("def train(w, g, m, v, lr):\n    update = g * lr\n", 3, 1, "missing 'return update, m, v'"),
    ("def train(w, g, m, v, lr):\n    update = g * lr * 2\n    return update, m, v\n", 2, 21, "one operation per statement"),
    ("def train(w, g, m, v, lr):\n    update = foo(g)\n    return update, m, v\n", 2, 14, "unknown op 'foo'"),
    ("def train(w, g, m, v, lr):\n    update = sign(g, m)\n    return update, m, v\n", 2, 14, "sign takes 1 argument"),
    ("def train(w, g, m, v, lr):\n    update = x + g\n    return update, m, v\n", 2, 14, "name 'x' is not defined"),
    ("def train(w, g, m, v, lr):\n    u = g * lr\n    return update, m, v\n", 3, 5, "never assigns `update`"),
    ("def train(w, g, m, v, lr):\n    update = g $ lr\n    return update, m, v\n", 2, 16, "unexpected character '$'"),
    ("def train(w, g, m, v, lr, b1=0.9):\n    b1 = g * lr\n    update = b1\n    return update, m, v\n", 2, 5, "cannot assign to 'b1'"),
    ("def train(w, g, m, v, lr):\nupdate = g\n    return update, m, v\n", 2, 1, "must be indented"),
    ("def train(w, g, m, v, lr):\n    update = g * lr\n    return update, v, m\n", 3, 20, "'return update, m, v'"),
    ("def train(w, g, m, v, lr):\n    update = g * 1e999\n    return update, m, v\n", 2, 18, "out of range"),
    ("def train(w, g, m, v, lr):\n    update = g\n    return update, m, v\n", 2, 15, "expected an operator"),
])
def test_errors_name_line_column_and_what_was_expected(text, line, column, why):
    with pytest.raises(ProgramError) as info:
        dsl.parse(text)
    e = info.value
    assert why in str(e)
    assert (e.line, e.column) == (line, column), str(e)


def test_errors_in_files_name_the_file(tmp_path):
    f = tmp_path / "bad.opt"
    f.write_text("def train(w, g, m, v, lr):\n    update = g +\n    return update, m, v\n")
    with pytest.raises(ProgramError) as info:
        dsl.load(f)
    assert str(f) in str(info.value) and "line 2" in str(info.value)


def test_unknown_builtin_lists_the_builtins():
    with pytest.raises(ProgramError, match="lion"):
        dsl.load("no_such_optimizer")


def test_constructing_bad_programs_raises_program_error():
    with pytest.raises(ProgramError, match="unknown op"):
        Program((Statement("update", "frobnicate", ("g",)),))
    with pytest.raises(ProgramError, match="before it is assigned"):
        Program((Statement("update", "add", ("g", "t")),))
    with pytest.raises(ProgramError, match="finite"):
        Program((Statement("update", "mul", ("g", float("nan"))),))
    with pytest.raises(ProgramError, match="takes 2"):
        Program((Statement("update", "add", ("g",)),))


# ---- more memory slots than m and v ----------------------------------------------------------------

ADAN_LIKE = """def train(w, g, m, v, n, gp, lr, step, b1=0.9):
    d = g - gp
    m = interp(g, m, b1)
    n = interp(d, n, 0.5)
    u = m + n
    update = u * lr
    gp = g * 1.0
    return update, m, v, n, gp
"""


def test_further_memory_slots_are_declared_and_returned_in_order():
    p = dsl.parse(ADAN_LIKE)
    assert p.memory == ("m", "v", "n", "gp") and p.outputs == ("update", "m", "v", "n", "gp")
    assert p.inputs == ("w", "g", "m", "v", "n", "gp", "lr", "step") and p.param_values == {"b1": 0.9}
    assert dsl.to_text(p) == ADAN_LIKE and dsl.parse(dsl.to_text(p)) == p
    for q in (p.inline_params(), p.bind(b1=0.5), p.scale_lr(2.0), p.replace(p.statements[:-1])):
        assert q.memory == p.memory and dsl.parse(dsl.to_text(q)) == q
    # the slots are part of the program: the same statements with two slots are another program
    sgd = (Statement("update", "mul", ("g", "lr")),)
    assert Program(sgd, memory=("m", "v", "n")) != Program(sgd) == dsl.load("sgd")
    assert all(dsl.load(n).memory == ("m", "v") for n in dsl.builtin_names() if n not in ("amsgrad", "ademamix", "adan"))


@pytest.mark.parametrize("signature, ret, line, column, why", [
    ("w, g, m, v, n, n, lr", "update, m, v, n", 1, 26, "memory slot 'n' is declared twice"),
    ("w, g, m, v, step, lr", "update, m, v", 1, 23, "'step' cannot be a memory slot"),
    ("w, g, m, v, update, lr", "update, m, v", 1, 23, "'update' cannot be a memory slot"),
    ("w, g, m, v, lr, lr", "update, m, v", 1, 27, "'lr' cannot be a hyper-parameter here"),
    ("w, g, m, v, a, b, c, d, e, f, h, lr", "update, m, v", 1, 41, "at most 8 memory slots (m and v included)"),
    ("w, g, m, v, n, lr, n=0.5", "update, m, v, n", 1, 30, "'n' cannot be a hyper-parameter here"),
    ("w, g, m, v, n=0.9, lr", "update, m, v", 1, 23, "expected input 'lr'"),
    ("w, g, m, v, n", "update, m, v, n", 1, 24, "and input 'lr'"),
    ("w, g, m, v, n, lr", "update, m, v", 3, 24, "expected 'return update, m, v, n', found end of line"),
    ("w, g, m, v, n, gp, lr", "update, m, v, gp, n", 3, 26, "expected 'return update, m, v, n, gp', found 'gp'"),
    ("w, g, m, v, lr", "update, m, v, n", 3, 24, "expected 'return update, m, v', found ','"),
    ("w, g, m, v, n, lr", None, 3, 1, "missing 'return update, m, v, n'"),
])
def test_memory_slot_errors_name_line_and_column(signature, ret, line, column, why):
    text = f"def train({signature}):\n    update = g * lr\n" + (f"    return {ret}\n" if ret else "")
    with pytest.raises(ProgramError) as info:
        dsl.parse(text)
    assert why in str(info.value) and (info.value.line, info.value.column) == (line, column), str(info.value)


@pytest.mark.parametrize("memory, why", [
    (("m",), "start with m, v"), (("v", "m"), "start with m, v"), (("m", "v", "lr"), "'lr' cannot be a memory slot"),
    (("m", "v", "n", "n"), "declared twice"), (("m", "v") + tuple(f"s{i}" for i in range(7)), "at most 8"),
    (("m", "v", "b1"), "bad hyper-parameter name 'b1'"),
])
def test_constructing_programs_validates_the_memory_slots(memory, why):
    with pytest.raises(ProgramError, match=why):
        Program((Statement("update", "mul", ("g", "lr")),), params=(("b1", 0.5),), memory=memory)
