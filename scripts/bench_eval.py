"""Benchmark: candidates per second of the compile-once interpreter vs per-program jax.jit vs a
hand-written optax AdamW loop, on the digits MLP task, in one run.

    python scripts/bench_eval.py [--programs 200] [--jit-programs 8] [--statements 20] [--set steps=200 ...]
                                 [--k-seeds 1 2 4 8] [--vmap-programs 1 8 32] [--device cpu|gpu]

Programs are random valid programs of `--statements` statements (search.mutation.random_program,
checked with dsl.check, distinct by functional hash); the engine trains them after dead-code
removal, as the search does. Reported: candidates/s (with and without the one-time compile), the
per-candidate training time, and the ratios. The engine runs the programs twice: first with a cold
compile, then as a fresh Evaluator that loads the interpreter from the on-disk compile cache (what
a new Ray worker, funnel stage or later run pays). The cache starts empty: a temporary directory.
Then one program on k seeds in one executable against one seed (what a k-seed fitness costs),
beside the floor of any k-seed fitness: the task's model trained by plain SGD (no optimizer
state, no interpreter) on the same k seeds in one executable. And the floor of a statement: one
element-wise pass over the parameter vector (two rows of the interpreter's environment added into
a third, in a loop as the interpreter runs them, without the op switch) against what a live
statement costs the interpreter.
Last, P programs of one length bucket in one executable (`jax.vmap` over the program's arrays: the
op switch becomes a select that computes every op) against one program at a time: on a CPU the
all-branch cost loses, on a GPU the wider batch may pay for it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

# An empty compile cache, set before proxy_tasks is imported (see proxy_tasks.xla_cache).
_CACHE = tempfile.mkdtemp(prefix="bench-xla-")
os.environ["LIONSEARCH_XLA_CACHE"] = _CACHE

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import dsl
import proxy_tasks
from proxy_tasks.engine import BUCKETS, Layout, encode, interpreter, make_run, prepare


def random_programs(n: int, n_statements: int, seed: int) -> list[dsl.Program]:
    """`n` distinct (by functional hash) programs that pass abstract execution."""
    rng = np.random.default_rng(seed)
    try:
        from search.mutation import random_program
    except ImportError:  # fall back to a local generator over the op table
        random_program = _random_program
    out, seen, tries = [], set(), 0
    while len(out) < n:
        tries += 1
        p = random_program(rng, n_statements)
        if len(prepare(p)) > max(BUCKETS) or not dsl.check(p):
            continue
        fp = dsl.fingerprint(p)
        if fp not in seen:
            seen.add(fp)
            out.append(p)
    return out


def _random_program(rng, n_statements: int) -> dsl.Program:
    names = list(dsl.OP_NAMES)
    while True:
        slots, stmts = ["w", "g", "m", "v", "lr"], []
        for i in range(n_statements):
            op = dsl.OPS[names[rng.integers(len(names))]]
            args = tuple(float(rng.normal()) if rng.random() < 0.25 else slots[rng.integers(len(slots))]
                         for _ in range(op.arity))
            out = "update" if i == n_statements - 1 else ["update", "m", "v", "t0", "t1"][rng.integers(5)]
            stmts.append(dsl.Statement(out, op.name, args))
            if out not in slots:
                slots.append(out)
        try:
            return dsl.Program(tuple(stmts))
        except dsl.ProgramError:
            continue


N_ROWS = 6 + 4 * 8  # the interpreter's environment rows at the smallest bucket (inputs, 4 L)

# A 20-statement program in which every statement is live (the worst case for the interpreter).
DENSE20 = """def train(w, g, m, v, lr):
    g2 = square(g)
    m = interp(g, m, 0.9)
    v = interp(g2, v, 0.999)
    s = sqrt(v)
    s = s + 1e-08
    u = m / s
    c = clip(u, -5.0, 5.0)
    t = tanh(c)
    a = abs(g)
    a = a * 0.001
    t = t + a
    r = rms(t)
    r = maximum(r, 1.0)
    t = t / r
    wd = w * 0.01
    update = t + wd
    k = sign(m)
    k = k * 0.0001
    update = update + k
    update = update * 0.003
    return update, m, v
"""


def dense(n: int) -> dsl.Program:
    """A program of n live statements (10, 20 or 30): DENSE20, shortened to its Adam-like core or
    lengthened by ten more statements on its way to `update`."""
    p = dsl.parse(DENSE20)
    lines = [dsl.text.statement_text(s) for s in p.statements]
    if n == 10:
        lines = lines[:6] + ["t = tanh(u)", "wd = w * 0.01", "update = t + wd", "update = update * 0.003"]
    elif n == 30:
        at = lines.index("t = t / r") + 1
        lines[at:at] = ["t = clip(t, -5.0, 5.0)", "t = tanh(t)", "t = t * 1.5", "t = t + a", "q = rms(t)",
                        "q = maximum(q, 1.0)", "t = t / q", "t = sin(t)", "t = t * 0.9", "t = t + a"]
    q = dsl.parse("def train(w, g, m, v, lr):\n" + "".join(f"    {x}\n" for x in lines) + "    return update, m, v\n")
    assert len(dsl.strip_dead_code(q)) == len(q) == n
    return q


def handwritten_adamw(task, lr: float = 3e-3):
    """The same training task as a plain hand-written optax loop (no interpreter, no checks)."""
    tx = optax.adamw(lambda c: lr * task.schedule(c), weight_decay=1e-4)

    @jax.jit
    def run(seed, data):
        k_init, k_data = jax.random.split(jax.random.PRNGKey(seed))
        params = task.init(k_init)

        def step(carry, t):
            params, state = carry
            xb, yb = task.batch_of(data, jax.random.fold_in(k_data, t))
            grads = jax.grad(task.loss)(params, xb, yb)
            upd, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, upd), state), None

        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(task.steps))
        return task.metrics(params, data["val_x"], data["val_y"])

    return run


def median_seconds(call, repeat: int = 5) -> float:
    """The median wall time of `call()` (until its result is ready) over `repeat` runs, after one
    run that compiles or warms it."""
    jax.block_until_ready(call())
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def plain_sgd(task):
    """The task's training run with plain SGD (no optimizer state, the task's own parameter tree,
    no interpreter): the model's own cost, the floor under any optimizer's k-seed fitness."""
    def init(params, _):
        return ()

    def update(_, params, grads, state, lr, step):
        return jax.tree.map(lambda g: 0.01 * lr * g, grads), state

    return jax.jit(make_run(task, init, update, flat=False))


def pass_seconds(task, rows: int = N_ROWS, n: int = 2000) -> float:
    """Seconds of one element-wise statement's pass over the task's parameter vector: in a loop,
    two rows of an environment of `rows` rows added into a third (indices from arrays, as the
    interpreter reads them), without the op switch; the median of 5 loops of n passes."""
    size = Layout(jax.eval_shape(task.init, jax.random.PRNGKey(0))).size
    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.integers(0, 6, n), jnp.int32) for _ in range(2))
    out = jnp.asarray(rng.integers(6, rows, n), jnp.int32)

    @jax.jit
    def loop(env, n):
        return jax.lax.fori_loop(0, n, lambda i, env: env.at[out[i]].set(env[a[i]] + env[b[i]]), env)

    env = jnp.ones((rows, 1, size), jnp.float32)
    return median_seconds(lambda: loop(env, n)) / n


def vmapped_programs(task, data, programs: list[dsl.Program], sizes: list[int]) -> tuple[float, list]:
    """Per-candidate seconds of programs of the smallest bucket, one seed each: one program per
    executable call (the interpreter as the search runs it), then P at once (vmap over the
    program arrays) as (P, seconds). Only programs that train all their steps take part (a
    diverging one stops early when alone, not in a batch); a batch larger than their number
    repeats them (under vmap every op is computed anyway, whatever the program)."""
    L = min(BUCKETS)
    single = interpreter(task, L)
    batched = jax.jit(jax.vmap(single, in_axes=(0, None, None)))
    seeds = jnp.zeros(1, jnp.int32)
    enc = [e.arrays() for e in map(encode, programs) if e.bucket == L]
    enc = [e for e in enc if int(single(e, seeds, data)[2][0]) == 0]

    def timed(fn, arrays):
        return median_seconds(lambda: fn(arrays, seeds, data), repeat=3)

    if not enc:
        print(f"# vmap over programs skipped: no random program of bucket {L} trained all its steps")
        return None, []
    one = statistics.median(timed(single, e) for e in enc[:8])
    rows = []
    for P in sorted(set(sizes)):
        batch = [enc[i % len(enc)] for i in range(P)]
        rows.append((P, timed(batched, {k: jnp.stack([e[k] for e in batch]) for k in enc[0]}) / P))
    return one, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="digits_mlp")
    ap.add_argument("--programs", type=int, default=200, help="programs for the compile-once engine")
    ap.add_argument("--jit-programs", type=int, default=8, help="programs for per-program jax.jit")
    ap.add_argument("--statements", type=int, default=20, help="statements per random program")
    ap.add_argument("--optax-runs", type=int, default=20, help="runs of the hand-written optax loop")
    ap.add_argument("--k-seeds", type=int, nargs="+", default=[1, 2, 4, 8],
                    help="seeds per evaluation for the k-seed comparison")
    ap.add_argument("--vmap-programs", type=int, nargs="+", default=[1, 8, 32],
                    help="programs per executable for the vmap-over-programs comparison")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where JAX runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE", help="task size knobs")
    args = ap.parse_args(argv)
    jax.config.update("jax_platforms", "cuda" if args.device == "gpu" else "cpu")
    try:
        jax.devices()
    except RuntimeError as e:
        raise SystemExit(f"--device {args.device}: JAX finds no such device ({e})")
    size = {}
    for kv in args.set:
        k, _, v = kv.partition("=")
        size[k] = float(v) if "." in v or "e" in v else int(v)
    task = proxy_tasks.get_task(args.task, **size)
    data = task.data()
    print(f"# {task!r} on {jax.devices()[0].platform} ({jax.devices()[0].device_kind}), jax {jax.__version__}")

    t = time.perf_counter()
    progs = random_programs(args.programs, args.statements, args.seed)
    live = [len(prepare(p)) for p in progs]
    print(f"# {len(progs)} distinct valid random programs of {args.statements} statements "
          f"({time.perf_counter() - t:.1f} s to generate); live statements: mean {np.mean(live):.1f}, "
          f"median {np.median(live):.0f}, max {max(live)}")

    # 1. the hand-written optax loop: compile once, then time the training runs
    hw = handwritten_adamw(task)
    t = time.perf_counter()
    jax.block_until_ready(hw(0, data))
    hw_compile = time.perf_counter() - t
    hw_times = []
    for s in tqdm(range(args.optax_runs), desc="hand-written optax adamw", leave=False):
        t = time.perf_counter()
        jax.block_until_ready(hw(s + 1, data))
        hw_times.append(time.perf_counter() - t)
    hw_run = statistics.median(hw_times)

    # 2. the compile-once engine, compile included (a fresh Evaluator): cold, then from disk
    def engine_pass(desc):
        ev = proxy_tasks.Evaluator(task)
        t0 = time.perf_counter()
        per, statuses = [], {}
        for p in tqdm(progs, desc=desc, leave=False):
            f = ev.evaluate(p)
            per.append((len(prepare(p)), f.seconds))
            statuses[f.status] = statuses.get(f.status, 0) + 1
        return ev, per, statuses, time.perf_counter() - t0

    ev, per, statuses, engine_total = engine_pass("compile-once engine, cold compile")
    _, _, _, engine_total_disk = engine_pass("compile-once engine, executable from disk")
    compiles = len(ev._compiled)
    steady = [s for _, s in per]
    steady_sorted = sorted(steady)
    engine_run = statistics.median(steady_sorted[: len(steady) - compiles])  # excluding compiling calls

    # the worst case: 10, 20 and 30 statements, every one live (timed after its bucket is compiled)
    dense_runs = {}
    for n in (10, 20, 30):
        ev.evaluate(dense(n))
        dense_runs[n] = statistics.median(ev.evaluate(dense(n), seeds=(s,)).seconds for s in range(10))

    # 3. per-program jax.jit of the whole training loop (compile included: what a naive search pays)
    jit_times = []
    for p in tqdm(progs[: args.jit_programs], desc="per-program jax.jit", leave=False):
        jit_times.append(ev.evaluate_direct(p).seconds)
    jit_total = sum(jit_times)

    # 4. k seeds of one program in one executable against one seed: each program's k's timed in
    # turn, round after round, so that a slow spell of a shared machine falls on all of them
    sgd = plain_sgd(task)
    runs = {}  # (name, label, k) -> a call that trains k seeds
    for name in ("adamw_warmstart", "lion", "sgd"):
        for k in args.k_seeds:
            seeds = tuple(range(k))
            if name == "sgd":
                call = lambda seeds=jnp.asarray(seeds, jnp.int32): jax.block_until_ready(sgd(None, seeds, data))
                codes = call()[2]  # compiles for k seeds
                ok, status, label = not np.any(np.asarray(codes)), "diverged", "plain SGD, no interpreter (the floor)"
            else:
                call = lambda p=dsl.load(name), seeds=seeds: ev.evaluate(p, seeds)
                f = call()  # compiles for k seeds
                ok, status, label = f.ok, f.status, name
            runs[name, label if ok else f"{label} ({status}: stops early)", k] = call
    times = {key: [] for key in runs}
    for _ in range(7):
        for key, call in runs.items():
            t = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - t)
    k_rows = [(*key, statistics.median(ts)) for key, ts in times.items()]
    pass_s = pass_seconds(task)

    # 5. many programs in one executable (vmap over programs) against one at a time
    v_one, v_rows = vmapped_programs(task, data, progs, args.vmap_programs)

    shutil.rmtree(_CACHE, ignore_errors=True)
    eng_cps = len(progs) / engine_total
    disk_cps = len(progs) / engine_total_disk
    jit_cps = len(jit_times) / jit_total
    print()
    print("| engine | candidates | total s | candidates/s | per candidate s |")
    print("|---|---|---|---|---|")
    print(f"| compile-once interpreter (incl. {compiles} cold compiles) | {len(progs)} | {engine_total:.2f} | "
          f"{eng_cps:.2f} | {engine_total / len(progs):.4f} |")
    print(f"| compile-once interpreter (incl. {compiles} loads from the compile cache) | {len(progs)} | "
          f"{engine_total_disk:.2f} | {disk_cps:.2f} | {engine_total_disk / len(progs):.4f} |")
    print(f"| compile-once interpreter, steady state (median) | {len(progs)} | - | {1 / engine_run:.2f} | {engine_run:.4f} |")
    print(f"| per-program jax.jit (incl. compile) | {len(jit_times)} | {jit_total:.2f} | {jit_cps:.3f} | "
          f"{jit_total / len(jit_times):.3f} |")
    print(f"| hand-written optax AdamW loop (compiled once, {hw_compile:.1f} s) | {len(hw_times)} | "
          f"{sum(hw_times):.2f} | {1 / hw_run:.2f} | {hw_run:.4f} |")
    for n, t in dense_runs.items():
        print(f"| interpreter, {n} live statements (median) | 10 | - | {1 / t:.2f} | {t:.4f} |")
    print()
    print(f"statuses of the random programs: {statuses}")
    by_len = {}
    for n, s in per:
        by_len.setdefault(min(n, 20) // 5 * 5, []).append(s)
    print("per-candidate seconds by live length: " + ", ".join(
        f"{k}-{k + 4}: {statistics.median(v):.4f} (n={len(v)})" for k, v in sorted(by_len.items())))
    print()
    print(f"ratio compile-once / per-program jit (candidates/s, compile included): {eng_cps / jit_cps:.1f}x")
    print(f"ratio compile-once, executable from the compile cache / per-program jit: {disk_cps / jit_cps:.1f}x")
    print(f"ratio compile-once steady state / per-program jit: {(1 / engine_run) / jit_cps:.1f}x")
    print(f"per-candidate cost vs hand-written optax loop: random {args.statements}-statement programs "
          f"{engine_run / hw_run:.2f}x (median), " + ", ".join(
              f"{n} live statements {t / hw_run:.2f}x" for n, t in dense_runs.items()))
    per_statement = (dense_runs[30] - dense_runs[10]) / 20 / task.steps
    sgd_one = {k: s for name, _, k, s in k_rows if name == "sgd"}.get(1)
    print(f"a live statement costs the interpreter {per_statement * 1e6:.2f} us per training step "
          f"((30 live - 10 live) / 20); one element-wise pass over the parameter vector (two of "
          f"{N_ROWS} environment rows added into a third, no op switch) {pass_s * 1e6:.2f} us; "
          f"20 such passes per step alone cost {20 * pass_s * task.steps / hw_run:.2f}x the optax loop's whole run"
          + ("" if sgd_one is None else
             f"; one pass per statement puts 20 live statements at no less than the model's own training (plain "
             f"SGD, no interpreter, {sgd_one:.4f} s) plus 20 passes a step: "
             f"{sgd_one + 20 * pass_s * task.steps:.4f} s ({(sgd_one + 20 * pass_s * task.steps) / hw_run:.2f}x optax)"))
    print()
    print("| program | seeds k | seconds (median of 7) | ratio to 1 seed | k separate runs | target 0.5 + 0.5 k |")
    print("|---|---|---|---|---|---|")
    one = {name: s for name, _, k, s in k_rows if k == min(args.k_seeds)}
    for name, label, k, s in k_rows:
        print(f"| {label} | {k} | {s:.4f} | {s / one[name]:.2f} | {k:.2f} | {0.5 + 0.5 * k:.2f} |")
    if v_one is None:
        return 0
    print()
    print(f"| programs per executable (bucket {min(BUCKETS)}, 1 seed) | per candidate s | candidates/s | "
          "speed-up over one at a time |")
    print("|---|---|---|---|")
    print(f"| 1, the op switch (as the search runs) | {v_one:.4f} | {1 / v_one:.2f} | 1.00x |")
    for P, s in v_rows:
        print(f"| {P} (vmap: every op computed) | {s:.4f} | {1 / s:.2f} | {v_one / s:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
