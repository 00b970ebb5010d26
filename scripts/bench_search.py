"""Search throughput with 1 and 2 Ray evaluator workers, side by side in one run; or, with
`--to-family`, the search's figure of merit: evaluations and minutes until the first program of a
family, over a few seeds of a config.

    python scripts/bench_search.py [--task digits_mlp] [--evaluations 300] [--set steps=1000]
    python scripts/bench_search.py --to-family lion signum [--config configs/quickstart.yaml]
                                   [--seeds 0 1 2] [--out runs/to-family] [--evaluations N]
                                   [--search tournament=5 ...]

`--search KEY=VALUE` changes a key of the config's search section (e.g. population=200), so that
variants of one config compare without a config file each; give each variant its own --out.

Two measurements, each for 1 and 2 workers, with the ratio of 2 to 1:
- pool: the same fixed set of distinct candidate programs (children of the AdamW warm start)
  trained through the worker pool, timed after the actors have started and compiled; also one
  unpinned worker (XLA's own thread pool over every core, as a plain process runs), against which
  the whole machine's throughput (the default layout: one single-threaded worker per core) is given;
- search: whole searches of the same config (timed after the first 10 evaluations); these
  differ in which programs they meet, so the ratio is noisier.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import ray

from search.config import RayConfig, RunConfig, SearchConfig, TaskConfig
from search.runner import run_search


def knob(text: str):
    k, _, v = text.partition("=")
    try:
        return k, json.loads(v)
    except ValueError:
        return k, v


def measure(task: TaskConfig, workers: int, evaluations: int, seed: int, skip: int = 10) -> dict:
    cfg = RunConfig(task=task, search=SearchConfig(population=50, tournament=10, evaluations=evaluations),
                    ray=RayConfig(workers=workers), seed=seed)
    with tempfile.TemporaryDirectory() as d:
        summary = run_search(cfg, Path(d) / "run", progress=False)
        recs = [json.loads(l) for l in (Path(d) / "run" / "history.jsonl").read_text().splitlines()]
    span = recs[-1]["time"] - recs[skip]["time"]
    trained = sum(r["source"] == "trained" for r in recs[skip + 1:])
    return {"workers": workers, "evaluations_per_s": (len(recs) - skip - 1) / span,
            "trained_per_s": trained / span, "saved_rate": summary["stats"]["saved_rate"]}


def candidates(n: int, seed: int) -> list:
    """n functionally distinct children along random mutation chains from the warm start."""
    import numpy as np

    import dsl
    from search.mutation import mutate
    rng, seen, out = np.random.default_rng(seed), set(), []
    p = dsl.load("adamw_warmstart")
    while len(out) < n:
        child = mutate(p, rng).program
        fp = dsl.fingerprint(child)
        if fp not in seen:
            seen.add(fp)
            out.append(dsl.strip_dead_code(child))
        p = child if rng.random() < 0.7 and len(child) < 20 else dsl.load("adamw_warmstart")
    return out


UNPINNED = "--xla_cpu_multi_thread_eigen=true"  # XLA's thread pool, one thread per core


def pool_rate(task: TaskConfig, workers: int, programs: list, xla_flags: str | None = None) -> float:
    """Candidates per second through a warm WorkerPool (workers with their own XLA_FLAGS, if given)."""
    import time

    from search.workers import WorkerPool
    pool = WorkerPool(task.name, task.size, task.seeds, workers, timeout_s=600, xla_flags=xla_flags)
    pool.wait_ready()
    t0 = time.perf_counter()
    for _ in pool.map(enumerate(programs)):
        pass
    rate = len(programs) / (time.perf_counter() - t0)
    pool.shutdown()
    return rate


def to_family(config: str, seeds: list[int], out: Path, families: list[str], evaluations: int | None,
              max_trainings: int | None = None, search: dict | None = None) -> str:
    """The search of `config` (its search part, as `lionsearch run` starts it) on each seed, in its
    own run directory under `out` (a finished one is kept, an interrupted one resumed), then the
    time-to-family table (scripts/time_to_family.py) with the spared-children rates beside it.
    `search`: keys of the search section set in place of the config's."""
    import dataclasses

    from lionsearch.pipeline import load_pipeline
    from time_to_family import table
    cfg = load_pipeline(config).search_config()
    budget = {k: v for k, v in (("evaluations", evaluations), ("max_trainings", max_trainings)) if v}
    changed = {k: tuple(v) if isinstance(v, list) else v for k, v in (search or {}).items()}
    unknown = sorted(set(changed) - {f.name for f in dataclasses.fields(cfg.search)})
    if unknown:
        raise SystemExit(f"--search: the search section has no key {', '.join(unknown)}")
    cfg = dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, **{**changed, **budget}))
    runs = []
    for seed in seeds:
        run = out / f"seed-{seed}"
        if not (run / "summary.json").exists():
            print(f"== seed {seed}: {run}", flush=True)
            run_search(dataclasses.replace(cfg, seed=seed), run, resume=(run / "history.jsonl").exists())
        runs.append(run)
    return table(runs, families)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--to-family", nargs="+", metavar="FAMILY", help="time the search to these families instead")
    ap.add_argument("--config", default="configs/quickstart.yaml", help="with --to-family: the config to search")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="with --to-family: the seeds")
    ap.add_argument("--out", default="runs/to-family", help="with --to-family: where the run directories go")
    ap.add_argument("--task", default="digits_mlp")
    ap.add_argument("--set", action="append", default=[], type=knob, help="task size knob, e.g. steps=200")
    ap.add_argument("--evaluations", type=int, help="evaluations per search (default: 300; with --to-family, the config's)")
    ap.add_argument("--max-trainings", type=int, help="with --to-family: children trained per search (default: the config's)")
    ap.add_argument("--search", action="append", default=[], type=knob, metavar="KEY=VALUE",
                    help="with --to-family: a key of the config's search section, e.g. tournament=5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--candidates", type=int, default=100, help="programs for the pool measurement")
    args = ap.parse_args(argv)
    if args.to_family:
        print(to_family(args.config, args.seeds, Path(args.out), args.to_family, args.evaluations, args.max_trainings,
                        dict(args.search)))
        return
    args.evaluations = args.evaluations or 300
    task = TaskConfig(name=args.task, size=dict(args.set))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    programs = candidates(args.candidates, args.seed)
    pool = [pool_rate(task, w, programs) for w in (1, 2)]
    unpinned = pool_rate(task, 1, programs, UNPINNED)
    print(f"pool: {len(programs)} distinct candidates; 1 worker {pool[0]:.2f}/s, 2 workers {pool[1]:.2f}/s, "
          f"ratio {pool[1] / pool[0]:.2f}x")
    print(f"pool: 1 unpinned worker (XLA's thread pool) {unpinned:.2f}/s; the machine as the search runs it "
          f"(2 single-threaded workers) {pool[1] / unpinned:.2f}x that")
    rows = [measure(task, w, args.evaluations, args.seed) for w in (1, 2)]
    print(f"task {args.task} {dict(args.set)}, {args.evaluations} evaluations per run")
    print("| workers | evaluations/s | trainings/s | spared training |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['evaluations_per_s']:.2f} | {r['trained_per_s']:.2f} | {r['saved_rate']:.1%} |")
    print(f"search ratio 2 workers / 1 worker: evaluations/s {rows[1]['evaluations_per_s'] / rows[0]['evaluations_per_s']:.2f}x, "
          f"trainings/s {rows[1]['trained_per_s'] / rows[0]['trained_per_s']:.2f}x")


if __name__ == "__main__":
    main()
