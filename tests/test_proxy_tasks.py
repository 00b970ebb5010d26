"""Proxy tasks: real JAX training at tiny sizes (compile-once interpreter vs direct jit)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import dsl
import proxy_tasks
from proxy_tasks import Evaluator, Fitness, encode, get_task

# Tiny sizes: every task compiles in a few seconds and trains in milliseconds. The schedule's peak
# is 0.01 so that the built-ins (whose lr input is the schedule) train at a sane learning rate: at
# lr 1.0 sign-like updates (Adam with eps 1e-8) are chaotic and amplify float rounding.
TINY = {
    "logreg": dict(peak=0.01, steps=12, batch=16, dim=4, classes=3, n_train=64, n_val=32),
    "digits_mlp": dict(peak=0.01, steps=12, batch=16, width=8, depth=1),
    "digits_vit": dict(peak=0.01, steps=6, batch=8, width=8, depth=1, heads=2, patch=4),
    "char_lm": dict(peak=0.01, steps=6, batch=4, width=8, depth=1, heads=1, context=8, corpus_chars=20_000, val_windows=8),
    "mnist1d": dict(peak=0.01, steps=12, batch=16, width=4, depth=1, n_train=256, n_val=64),
}
BUCKETS = (32,)  # one interpreter compile per task in the tests (every built-in fits 32 live statements; yogi, the longest, has 24)


def prog(*lines: str) -> dsl.Program:
    return dsl.parse("def train(w, g, m, v, lr):\n" + "".join(f"    {x}\n" for x in lines) + "    return update, m, v\n")


@pytest.fixture(scope="module")
def evaluators():
    return {}


def ev_for(evaluators, task) -> Evaluator:
    if task not in evaluators:
        evaluators[task] = Evaluator(task, buckets=BUCKETS, **TINY[task])
    return evaluators[task]


def test_registry_has_the_required_tasks():
    assert set(TINY) <= set(proxy_tasks.names())


# The paper's programs and the classic ones are checked on every task; the rest of the zoo (each
# matched to optax in test_zoo.py) on one, since compiling every built-in directly on every task
# would double this test's time.
EVERY_TASK = {"adam", "adamw", "adamw_warmstart", "lion", "momentum", "nesterov", "sgd", "signsgd"}


@pytest.mark.slow  # compiles the interpreter and the built-ins directly, per task
@pytest.mark.parametrize("task", sorted(TINY))
def test_interpreter_equals_direct_compilation_for_every_builtin(evaluators, task):
    ev = ev_for(evaluators, task)
    names = [n for n in dsl.builtin_names() if n in EVERY_TASK or task == "logreg"]
    direct = ev.evaluate_direct_many([dsl.load(n) for n in names], seeds=(0,))  # one compile
    for name, b in zip(names, direct):
        p = dsl.load(name)
        a = ev.evaluate(p, seeds=(0,))
        assert a.status == b.status, (task, name, a, b)
        if a.ok:
            assert math.isfinite(a.loss)
            assert a.loss == pytest.approx(b.loss, rel=1e-4, abs=1e-6), (task, name, a, b)
            assert a.accuracy == pytest.approx(b.accuracy, abs=1e-6), (task, name)


def test_training_learns(evaluators):
    ev = Evaluator("digits_mlp", buckets=BUCKETS, steps=60, batch=32, width=16, depth=1)
    untrained = ev.evaluate(prog("update = g * 0.0"))  # rejected by dsl.check, but trainable
    trained = ev.evaluate(prog(
        "m = interp(g, m, 0.9)", "s = sign(m)", "update = s * lr", "update = update * 0.01"))
    assert untrained.ok and trained.ok
    assert trained.loss < untrained.loss - 0.5
    assert trained.accuracy > 0.6


def test_exploding_program_is_a_failure_value(evaluators):
    ev = ev_for(evaluators, "digits_mlp")
    boom = prog("e = exp(g)", "e = exp(e)", "update = e * 1000.0")
    for f in (ev.evaluate(boom, seeds=(0, 1)), ev.evaluate_direct(boom)):
        assert isinstance(f, Fitness) and not f.ok
        assert f.status in ("nan", "diverged") and f.loss == math.inf and f.accuracy is None


def test_growing_weights_are_diverged(evaluators):
    ev = ev_for(evaluators, "logreg")
    f = ev.evaluate(prog("grow = w * -2.0", "update = grow + g"))  # w <- 3 w - g
    assert f.status == "diverged" and f.loss == math.inf and not f.ok


def test_nan_loss_is_a_failure_value(evaluators):
    ev = ev_for(evaluators, "logreg")
    f = ev.evaluate(prog("x = exp(g)", "y = x * 1e38", "z = y * 1e38", "d = z - z", "update = d + g"))
    assert f.status == "nan" and not f.ok and f.loss == math.inf


def test_seeds_are_deterministic_and_averaged(evaluators):
    ev = ev_for(evaluators, "digits_mlp")
    p = dsl.load("lion", b2=0.9)
    a, b = ev.evaluate(p, seeds=(0,)), ev.evaluate(p, seeds=(0,))
    c = ev.evaluate(p, seeds=(1,))
    assert a.loss == b.loss and a.accuracy == b.accuracy
    assert c.loss != a.loss
    # both seeds train in one executable (vmapped): the same runs to float tolerance
    both = ev.evaluate(p, seeds=(0, 1))
    assert both.loss == pytest.approx((a.loss + c.loss) / 2, rel=1e-5)
    assert both.seed_losses == pytest.approx((a.loss, c.loss), rel=1e-5)


@pytest.mark.slow  # the transformer tasks' interpreters
@pytest.mark.parametrize("task", ["digits_vit", "char_lm"])
def test_k_seed_executable_equals_k_separate_trainings(evaluators, task):
    ev = ev_for(evaluators, task)
    for p in (dsl.load("lion", b2=0.9), dsl.load("adamw_warmstart")):
        together = ev.evaluate(p, seeds=(3, 4, 5))
        alone = [ev.evaluate(p, seeds=(s,)) for s in (3, 4, 5)]
        assert len(set(together.seed_losses)) == 3  # the seeds really differ
        assert together.seed_losses == pytest.approx([f.loss for f in alone], rel=1e-5)
        assert together.accuracy == pytest.approx(sum(f.accuracy for f in alone) / 3, rel=1e-5)


def test_schedule_knobs_change_the_run(evaluators):
    p = dsl.load("sgd")
    base = ev_for(evaluators, "logreg")
    high = Evaluator("logreg", buckets=BUCKETS, **{**TINY["logreg"], "peak": 0.1})
    assert base.evaluate(p).loss != high.evaluate(p).loss


def test_schedule_shape():
    t = get_task("logreg", steps=100, warmup=0.1, peak=2.0)
    lr = np.array([float(t.schedule(i)) for i in range(100)])
    assert lr[9] == pytest.approx(2.0) and lr[0] == pytest.approx(0.2)
    assert np.all(np.diff(lr[:10]) > 0) and np.all(np.diff(lr[10:]) <= 0)
    assert lr[-1] < 0.01
    flat = get_task("logreg", steps=10, warmup=0.0)
    assert float(flat.schedule(0)) == pytest.approx(1.0)


def test_unknown_knob_is_a_clear_error():
    with pytest.raises(ValueError) as e:
        get_task("digits_mlp", widht=3)
    msg = str(e.value)
    assert "digits_mlp" in msg and "widht" in msg and "width" in msg and "steps" in msg
    with pytest.raises(ValueError, match="steps"):
        get_task("digits_mlp", steps="many")
    with pytest.raises(ValueError, match="no_such_task"):
        get_task("no_such_task")
    with pytest.raises(ValueError, match="widht"):
        proxy_tasks.evaluate(dsl.load("sgd"), "digits_mlp", widht=3)


def test_too_long_program_names_its_length():
    lines = ["update = g * lr"] + [f"update = update + g" for _ in range(40)]
    with pytest.raises(ValueError, match="41"):
        encode(prog(*lines))


def test_encoding_strips_dead_code_and_pads():
    p = prog("dead = exp(w)", "update = g * 0.5", "update = update * lr")
    enc = encode(p)
    assert enc.n == 2 and enc.bucket == 8 and enc.ops.shape == (8,) and enc.args.shape == (8, 3)
    assert sorted(enc.consts[:1]) == [0.5]
    p2 = dsl.load("lion")
    assert encode(p2).n == len(dsl.strip_dead_code(p2))


def test_fitness_value():
    f = Fitness(0.5, 0.9, "ok", 1.0)
    assert f.ok and not Fitness.failure("nan").ok and Fitness.failure("nan").loss == math.inf
    with pytest.raises(Exception):
        f.loss = 1.0


def test_validation_split_is_fixed_and_disjoint():
    from proxy_tasks.digits import digits_split
    a, b = digits_split(), digits_split()
    assert np.array_equal(a["val_x"], b["val_x"]) and len(a["val_x"]) == 359 and len(a["train_x"]) == 1438
    train = {r.tobytes() for r in a["train_x"]}
    overlap = sum(r.tobytes() in train for r in a["val_x"])
    assert overlap < 5  # digits has a few duplicate images across the dataset, nothing more
    t = get_task("char_lm", **TINY["char_lm"])
    d = t.data()
    assert d["val_x"].shape[1] == 8 and int(d["train_ids"].shape[0]) == 18_000


def test_evaluate_wrapper_caches(evaluators):
    p = dsl.load("signsgd")
    size = dict(TINY["logreg"])
    f1 = proxy_tasks.evaluate(p, "logreg", seeds=(0,), **size)
    f2 = proxy_tasks.evaluate(p, "logreg", seeds=(0,), **size)
    assert f1.ok and f1.loss == f2.loss and f2.seconds < 1.0


@pytest.mark.slow  # three interpreters and two direct compiles
def test_programs_with_more_memory_slots_train_alike_in_both_engines():
    """A 3- and a 4-slot built-in (their further slots carried from step to step in rows of their
    own) train to the same loss in the interpreter as compiled directly (`dsl.tree_update`, which
    runs `dsl.execute`); each number of slots has its executable, two-slot programs keep theirs."""
    ev = Evaluator("logreg", buckets=BUCKETS, **dict(TINY["logreg"], steps=6))
    for name, slots in (("amsgrad", 3), ("adan", 4)):
        p = dsl.load(name)
        assert encode(p).memory == slots
        a, b = ev.evaluate(p), ev.evaluate_direct(p)
        assert a.ok and a.loss == pytest.approx(b.loss, rel=1e-5), name
        assert a.accuracy == pytest.approx(b.accuracy, abs=1e-6), name
    # adan whose previous gradient is never written (it reads zeros) trains otherwise: the slot carries
    no_gp = dsl.load("adan").replace(s for s in dsl.load("adan").statements if s.out != "gp")
    assert ev.evaluate(no_gp).loss != pytest.approx(ev.evaluate(dsl.load("adan")).loss, rel=1e-4)
    assert set(ev._compiled) == {(32, 3), (32, 4)}
    enc = encode(dsl.load("lion"))  # two slots: the first temporary in row 6, as ever
    assert enc.memory == 2 and enc.outs[0] == proxy_tasks.engine.N_IN == 6
    # an evaluator for a search whose programs may use 4 slots trains them all in one executable
    # per bucket, to the same numbers (its unused memory rows stay zero)
    ev4 = Evaluator("logreg", buckets=BUCKETS, memory=4, **dict(TINY["logreg"], steps=6))
    for name in ("lion", "amsgrad", "adan"):
        assert ev4.evaluate(dsl.load(name)).loss == ev.evaluate(dsl.load(name)).loss, name
    assert set(ev4._compiled) == {(32, 4)}


@pytest.mark.slow  # one interpreter step compiled per task
@pytest.mark.parametrize("task", sorted(TINY))
def test_every_builtin_steps_alike_in_the_interpreter_and_dsl_execute_on_every_task(task):
    """Each built-in's first steps on the task's own tensors (its reductions and shape ops at each
    tensor's shape): the interpreter (float32, flat parameters, rows for 4 memory slots, so one
    executable serves every built-in) against `dsl.execute.run` per leaf (numpy, float64).
    Training the same programs end to end is checked above on one task."""
    import jax
    import jax.numpy as jnp
    from dsl.execute import run
    from proxy_tasks.engine import Layout, interpreter_optimizer

    t = get_task(task, **TINY[task])
    layout = Layout(jax.eval_shape(t.init, jax.random.PRNGKey(0)))
    rng = np.random.default_rng(0)
    w0 = [rng.normal(size=s) for s in layout.shapes]
    grads = [[rng.normal(size=s) for s in layout.shapes] for _ in range(3)]
    flat = lambda xs: jnp.asarray(np.concatenate([x.ravel() for x in xs]), jnp.float32)[None]
    init, update = interpreter_optimizer(layout, BUCKETS[0], memory=4)
    update = jax.jit(update)
    for name in dsl.builtin_names():
        p = dsl.load(name).inline_params()
        enc = encode(p, BUCKETS, memory=4)
        prog = {k: jnp.asarray(x) for k, x in enc.arrays().items()}
        env, w = init(flat(w0), prog), flat(w0)
        ws, mem = list(w0), [[np.zeros(s) for s in layout.shapes] for _ in p.memory]
        for k, gs in enumerate(grads):
            u, env = update(prog, w, flat(gs), env, 0.01, float(k + 1))
            w = w - u
            for i in range(len(ws)):
                out = run(p, np, ws[i], gs[i], mem[0][i], mem[1][i], 0.01, float(k + 1),
                          extra=tuple(m[i] for m in mem[2:]))
                ws[i] = ws[i] - out[0]
                for j, x in enumerate(out[1:]):
                    mem[j][i] = x
            np.testing.assert_allclose(np.asarray(w[0]), np.concatenate([x.ravel() for x in ws]),
                                       rtol=1e-4, atol=1e-6, err_msg=f"{task} {name} step {k + 1}")
