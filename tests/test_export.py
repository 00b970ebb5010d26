"""Export to stand-alone optimizer source: the optax code is exec'd here (generated code, in tests
only) and must match `dsl.as_optax` step for step; the PyTorch code (torch is not installed) must
at least be valid Python with the optimizer class."""
import ast

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dsl
from dsl import Program, Statement
from dsl.execute import run
from dsl.export import TARGETS, ExportError, export

STEPS = 20


def _tree(seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {"dense": jax.random.normal(k[0], (4, 3)), "rest": [jax.random.normal(k[1], (5,)),
                                                             jax.random.normal(k[2], ())]}


def _train(opt, steps=STEPS):
    params = _tree()
    state = opt.init(params)
    for i in range(steps):
        grads = jax.tree.map(lambda x: jnp.sin(3.0 * x + i) + 0.1 * x, params)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def _load(source: str) -> dict:
    """Run generated source in a fresh namespace (the one place exec is used: generated code)."""
    ns = {"__name__": "exported_optimizer"}
    exec(compile(source, "<exported>", "exec"), ns)
    return ns


def _assert_same(a, b, rtol=1e-6):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("name", ["lion", "adamw", "adamw_warmstart", "amsgrad", "adan"])
def test_exported_optax_matches_as_optax(name):
    p = dsl.load(name)
    ns = _load(export(p, "optax"))
    ours, ours_state = _train(ns["make_optimizer"](3e-3))
    ref, ref_state = _train(dsl.as_optax(p, 3e-3))
    _assert_same(ours, ref)
    # the memory slots after v are in `extra`, in order, as in `dsl.as_optax`'s state (the export
    # of a two-slot program has no `extra`)
    mem = lambda s: (s.m, s.v, *getattr(s, "extra", ()))
    assert len(mem(ref_state)) == len(p.memory) and len(mem(ours_state)) == len(p.memory)
    assert [x is None for x in mem(ours_state)] == [x is None for x in mem(ref_state)]
    _assert_same(mem(ours_state), mem(ref_state))
    assert int(ours_state.count) == STEPS


def test_a_slot_read_but_never_written_reads_zeros_and_keeps_no_state():
    p = dsl.parse("def train(w, g, m, v, n, k, lr):\n    k = interp(g, k, 0.9)\n    a = k + n\n"
                  "    update = a * lr\n    return update, m, v, n, k\n")
    ns = _load(export(p, "optax"))
    ours, state = _train(ns["make_optimizer"](3e-3))
    ref, ref_state = _train(dsl.as_optax(p, 3e-3))
    _assert_same(ours, ref)
    assert state.m is state.v is None and state.extra[0] is None and state.extra[1] is not None
    assert ref_state.m is ref_state.v is None and ref_state.extra[0] is None


def test_hyper_parameters_and_schedules():
    ns = _load(export(dsl.load("lion"), "optax"))
    sched = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 5, STEPS)
    ours, _ = _train(ns["make_optimizer"](sched, b1=0.95, wd=0.1))
    ref, _ = _train(dsl.as_optax(dsl.load("lion", b1=0.95, wd=0.1), sched))
    _assert_same(ours, ref)
    ref_optax, _ = _train(optax.lion(sched, b1=0.95, weight_decay=0.1))  # and the public reference
    _assert_same(ours, ref_optax, rtol=1e-5)


def _program(op: str, args) -> Program:
    return Program((Statement("m", "interp", ("g", "m", 0.5)), Statement("t", op, tuple(args)),
                    Statement("u", "mul", ("t", "lr")), Statement("update", "add", ("u", "m"))))


def _arg_sets(op):
    """Tensors (g, m with zeros, w), scalars (lr, constants), out-of-domain values."""
    a = dsl.OPS[op].arity
    return [("g", "m", "w")[:a], ("lr", -0.5, 2.0)[:a], (-1.5, "g", "m")[:a], ("m", "g", 0.0)[:a]]


@pytest.mark.parametrize("op", list(dsl.OPS))
def test_every_op_has_the_op_tables_semantics(op):
    """The per-tensor step of the export equals the DSL's on tensors with values inside and outside
    each op's domain (negatives, zeros, |x| > 1) and on scalar arguments."""
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    g = jnp.asarray(2.0 * rng.normal(size=(4, 5)), jnp.float32)
    m = jnp.asarray(np.where(rng.random((4, 5)) < 0.3, 0.0, rng.normal(size=(4, 5))), jnp.float32)
    v = jnp.zeros((4, 5), jnp.float32)
    for args in _arg_sets(op):
        p = _program(op, args)
        train = _load(export(p, "optax"))["_train"]
        ours = train(w, g, m, v, 0.3)
        ref = dsl.tree_update(dsl.strip_dead_code(p), w, g, m, v, 0.3, 1.0)  # as as_optax runs it
        for x, y in zip(ours, ref):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=0, equal_nan=True,
                                       err_msg=f"{op}{args}")


def test_one_line_per_live_statement_and_no_lionsearch_import():
    p = dsl.load("adamw_warmstart")
    noisy = p.replace(list(p.statements) + [Statement("junk", "exp", ("g",))])  # dead code
    src = export(noisy, "optax")
    tree = ast.parse(src)
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imports |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imports == {"jax", "jax.numpy", "optax", "typing"}
    train = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_train")
    assigns = [n for n in train.body if isinstance(n, ast.Assign)]
    assert len(assigns) == len(dsl.strip_dead_code(noisy)) == len(p)
    assert "junk" not in src.split('"""', 2)[2]


def test_names_that_clash_with_the_generated_code_are_renamed():
    """Slots named like Python keywords or the code's own names, a hyper-parameter named like a
    local, and a program that reassigns `w` to a scalar."""
    p = Program((Statement("jnp", "mul", ("g", "init")), Statement("lambda", "sqrt", ("jnp",)),
                 Statement("w", "mul", ("lr", 2.0)), Statement("_x", "norm", ("w",)),
                 Statement("update", "add", ("lambda", "_x")), Statement("update", "mul", ("update", "w"))),
                params=(("init", 0.7),))
    ns = _load(export(p, "optax"))
    ours, _ = _train(ns["make_optimizer"](1e-2, init_=0.5))
    ref, _ = _train(dsl.as_optax(p.bind(init=0.5), 1e-2))
    _assert_same(ours, ref)


@pytest.mark.parametrize("name", dsl.builtin_names())
def test_pytorch_export_is_valid_python_with_the_optimizer_class(name):
    src = export(dsl.load(name), "pytorch")
    tree = ast.parse(src)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert len(classes) == 1
    assert ast.unparse(classes[0].bases[0]) == "torch.optim.Optimizer"
    assert {n.name for n in classes[0].body if isinstance(n, ast.FunctionDef)} == {"__init__", "step"}
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imports == {"torch"} and not any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))
    if name == "lion":
        assert classes[0].name == "Lion" and "torch.sign(c)" in src


@pytest.mark.parametrize("to", TARGETS)
def test_every_op_has_an_export_for_both_targets(to):
    for op in dsl.OPS:
        for args in _arg_sets(op):
            src = export(_program(op, args), to, name="Probe")
            ast.parse(src)
            assert "\n    t = " in src, f"{op}{args}"


def _every_op_program() -> Program:
    """Each op once, on inputs, `lr`, constants and the previous op's result (through tanh, to stay
    finite); every result is summed into `update`, and m and v take some of them."""
    stmts, prev = [Statement("update", "mul", ("g", 0.0))], "g"
    for i, op in enumerate(dsl.OPS):
        args = (("g", prev, "m", "w", "v")[i % 5], ("m", "w", "lr", "v", prev)[i % 5], (0.5, "g", -1.5)[i % 3])
        stmts += [Statement(f"t{i}", op, args[:dsl.OPS[op].arity]), Statement(f"s{i}", "tanh", (f"t{i}",)),
                  Statement("update", "add", ("update", f"s{i}"))]
        prev = f"s{i}"
    return Program((*stmts, Statement("m", "interp", ("g", "s13", 0.5)), Statement("v", "interp", ("s8", "v", 0.5))))


def test_a_program_with_every_op_gives_the_updates_of_dsl_execute():
    p = _every_op_program()
    assert {s.op for s in p.statements} == set(dsl.OPS)
    opt = _load(export(p, "optax"))["make_optimizer"](0.3)
    params = _tree()
    state, m, v = opt.init(params), jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params)
    for i in range(3):
        grads = jax.tree.map(lambda x: jnp.sin(3.0 * x + i) + 0.1 * x, params)
        updates, state = opt.update(grads, state, params)
        ref = [run(p, jnp, *a, 0.3, i + 1.0) for a in zip(*map(jax.tree.leaves, (params, grads, m, v)))]
        _assert_same(updates, [-r[0] for r in ref])
        _assert_same((state.m, state.v), ([r[1] for r in ref], [r[2] for r in ref]))
        m, v = state.m, state.v
        params = optax.apply_updates(params, updates)


def test_unknown_target_is_an_error():
    with pytest.raises(ExportError, match="optax, pytorch"):
        export(dsl.load("lion"), "tensorflow")
