"""`lionsearch eval`: train programs on proxy tasks and print a fitness table, in this process or
fanned out over Ray workers (a local instance with `--workers N`, a cluster with `--address`)."""
from __future__ import annotations

import argparse
import math
import statistics

import dsl
import proxy_tasks
from proxy_tasks.base import INT_MAX

from search.inspect import InspectError, load_program

from .cli_inspect import exit_on


def knob(text: str):
    """KNOB=VALUE with VALUE read as YAML (plain data only: safe_load refuses python tags)."""
    import yaml
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KNOB=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as e:
        from search.config import yaml_why
        raise argparse.ArgumentTypeError(f"{key.strip()}: cannot read the value {value[:40]!r} ({yaml_why(e)})") from None


def seed(text: str) -> int:
    """A training seed: it becomes an int32 PRNG key, so 0 <= seed < 2**31."""
    try:
        s = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text[:40]!r}") from None
    if not 0 <= s <= INT_MAX:
        raise argparse.ArgumentTypeError(f"a seed must be in [0, 2**31 - 1], got {text[:40]}")
    return s


def check_tasks(cmd: str, tasks, size: dict) -> None:
    """Build each task with the knobs before any work, so a bad knob is one line naming it."""
    for task in tasks:
        with exit_on(cmd, ValueError):
            proxy_tasks.get_task(task, **size)


def _local(programs, task: str, size: dict, seeds, direct: bool):
    from search.record import Evaluation
    ev = proxy_tasks.Evaluator(task, **size)
    for _, p in programs:
        try:
            yield Evaluation.of(ev.evaluate_direct(p, seeds) if direct else ev.evaluate(p, seeds))
        except ValueError as e:  # e.g. longer than the largest length bucket
            yield Evaluation.failure(f"error: {e}")


def _on_ray(programs, task: str, size: dict, seeds, workers: int):
    from search.workers import WorkerPool
    pool = WorkerPool(task, size, tuple(seeds), workers, timeout_s=3600, warm=False)
    try:
        results = dict(pool.map((i, p) for i, (_, p) in enumerate(programs)))
    finally:
        pool.shutdown()
    return [results[i] for i in range(len(programs))]


def add_eval_parser(sub) -> None:
    names = proxy_tasks.names()
    sp = sub.add_parser(
        "eval", help="train programs on proxy tasks and print their fitness (locally or over Ray)",
        description="Train each PROGRAM on each task with the compile-once engine and print validation "
                    "loss, accuracy, status and time. With --workers or --address the evaluations fan "
                    "out over Ray evaluator actors.")
    sp.add_argument("programs", nargs="+", metavar="PROGRAM",
                    help=f"a built-in ({', '.join(dsl.builtin_names())}), an .opt file, or a run directory")
    sp.add_argument("--tasks", "--task", nargs="+", default=["digits_mlp"], choices=names, metavar="TASK",
                    help=f"proxy tasks ({', '.join(names)}; default digits_mlp)")
    sp.add_argument("--seeds", type=seed, nargs="+", default=[0], help="seeds (the loss is their mean)")
    sp.add_argument("--set", type=knob, action="append", metavar="KNOB=VALUE",
                    help="a size or schedule knob for every task, repeatable (e.g. --set steps=300); "
                         + "; ".join(f"{t}: {', '.join(sorted(proxy_tasks.task_knobs(t)))}" for t in names))
    sp.add_argument("--lr-multipliers", type=float, nargs="+", default=[1.0], metavar="K",
                    help="train each program at each of these lr multipliers and report its best (as the "
                         "funnel tunes a candidate and the baseline)")
    sp.add_argument("--baseline", metavar="PROGRAM",
                    help="one of the PROGRAMs: each row also gives its loss minus the baseline's, seed by seed "
                         "(mean and standard error of the paired differences)")
    sp.add_argument("--direct", action="store_true",
                    help="compile each program directly (jax.jit per program) instead of the interpreter")
    sp.add_argument("--workers", type=int, help="evaluate on this many Ray workers (a local Ray instance)")
    sp.add_argument("--address", help="evaluate on the Ray cluster at this address")
    sp.set_defaults(func=cmd_eval)


def _spread(xs) -> str:
    """The standard error of a mean over seeds ("-" for one seed or a failed one)."""
    if len(xs) < 2 or any(x is None or not math.isfinite(x) for x in xs):
        return "-"
    return f"{statistics.stdev(xs) / math.sqrt(len(xs)):.4f}"


def _paired(r, base) -> str:
    """The row's loss minus the baseline's: mean of the seeds' differences, with its standard error."""
    if not (r.ok and base.ok):
        return "-"
    d = [a - b for a, b in zip(r.seed_losses, base.seed_losses)]
    return f"{statistics.mean(d):+.4f} ± {_spread(d)}" if len(d) > 1 else f"{d[0]:+.4f}"


def cmd_eval(args) -> int:
    with exit_on("eval", dsl.ProgramError, InspectError):
        programs = [(ref, load_program(ref)) for ref in args.programs]
    if args.baseline is not None and args.baseline not in args.programs:
        raise SystemExit(f"lionsearch eval: --baseline {args.baseline}: not one of the PROGRAMs")
    if min(args.lr_multipliers) <= 0:
        raise SystemExit(f"lionsearch eval: --lr-multipliers: positive numbers are needed, got {args.lr_multipliers}")
    size, seeds = dict(args.set or []), tuple(args.seeds)
    check_tasks("eval", args.tasks, size)
    on_ray = args.address is not None or args.workers is not None
    if on_ray:
        from search.config import ConfigError, RayConfig
        from search.runner import connect_ray
        with exit_on("eval", ConfigError):
            connect_ray(RayConfig(address=args.address, workers=args.workers or 2), args.tasks)
    mults = args.lr_multipliers
    print(f"# seeds {', '.join(map(str, seeds))}" + (f", knobs {size}" if size else "")
          + (f", each program at its best lr multiplier of {', '.join(f'{k:g}' for k in mults)}" if mults != [1.0] else "")
          + (f", on Ray ({args.workers or 2} workers)" if on_ray else ""))
    vs = f" vs {args.baseline} (paired) |" if args.baseline else ""
    print(f"| program | task | val loss | ± se | lr x | accuracy | status | seconds |{vs}")
    print("|---|---|---|---|---|---|---|---|" + ("---|" if vs else ""))
    jobs = [(ref, k, p.scale_lr(k)) for ref, p in programs for k in mults]
    for task in args.tasks:
        swept = [(ref, q) for ref, _, q in jobs]
        results = (_on_ray(swept, task, size, seeds, args.workers or 2) if on_ray
                   else _local(swept, task, size, seeds, args.direct))
        best = {}  # each program's best multiplier and result
        for (ref, k, _), r in zip(jobs, results):
            if ref not in best or r.loss < best[ref][1].loss:
                best[ref] = (k, r)
        for ref, _ in programs:
            k, r = best[ref]
            acc = "-" if r.accuracy is None else f"{r.accuracy:.4f}"
            paired = f" {_paired(r, best[args.baseline][1])} |" if vs else ""
            print(f"| {ref} | {task} | {r.loss:.4f} | {_spread(r.seed_losses or ())} | {k:g} | {acc} | {r.status} "
                  f"| {r.seconds:.2f} |{paired}", flush=True)
    return 0
