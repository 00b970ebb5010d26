"""Baselines: AdamW, Lion and SGD with momentum (optax's own) on every proxy task, with a small
learning-rate sweep (best lr per optimizer by validation loss), plus the search's warm start
program (`adamw_warmstart`, trained by the compile-once interpreter at its own lr constant).

    python scripts/baselines.py [--tasks digits_mlp char_lm] [--seeds 0 1] [--out baselines.md]
                                [--set digits_mlp.steps=300 ...]

Every optimizer gets the task's schedule (warm-up + cosine) scaled by its lr; one compile per
(task, optimizer) serves the whole sweep (the lr is a traced argument). Prints a Markdown table
and writes it to --out when given. The default run takes a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import time

import optax
from tqdm import tqdm

import dsl
import proxy_tasks

OPTIMIZERS = {
    # name: (factory of a GradientTransformation from an lr schedule, lr grid)
    "AdamW": (lambda s: optax.adamw(s, weight_decay=1e-4), (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)),
    "Lion": (lambda s: optax.lion(s, b1=0.9, b2=0.99, weight_decay=1e-3), (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)),
    "SGD-momentum": (lambda s: optax.sgd(s, momentum=0.9), (1e-2, 3e-2, 1e-1, 3e-1, 1.0)),
}


def _fmt(f, lr=None) -> str:
    if not f.ok:
        return f"{f.status}"
    acc = "" if f.accuracy is None else f" / {f.accuracy:.3f}"
    return f"{f.loss:.3f}{acc}" + (f" (lr {lr:g})" if lr is not None else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=proxy_tasks.names())
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--set", action="append", default=[], metavar="TASK.KNOB=VALUE",
                    help="a size knob for one task, e.g. digits_mlp.steps=300")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args(argv)
    sizes: dict[str, dict] = {}
    for kv in args.set:
        key, _, v = kv.partition("=")
        task, _, knob = key.partition(".")
        sizes.setdefault(task, {})[knob] = float(v) if any(c in v for c in ".e") else int(v)
    seeds = tuple(args.seeds)
    t_start = time.perf_counter()
    rows = []
    jobs = [(t, o) for t in args.tasks for o in OPTIMIZERS]
    bar = tqdm(total=sum(len(OPTIMIZERS[o][1]) for _, o in jobs) + len(args.tasks), desc="baselines")
    for task_name in args.tasks:
        ev = proxy_tasks.Evaluator(task_name, **sizes.get(task_name, {}))
        t = ev.task
        row = {"task": task_name, "size": f"{t.steps}, {t.batch}", "config": repr(t)}
        for opt, (make_tx, grid) in OPTIMIZERS.items():
            best = None
            for lr in grid:
                bar.set_postfix_str(f"{task_name} {opt} lr {lr:g}")
                f = ev.evaluate_optax(make_tx, lr, seeds)
                if best is None or f.loss < best[0].loss:
                    best = (f, lr)
                bar.update()
            row[opt] = _fmt(*best)
        bar.set_postfix_str(f"{task_name} warm start")
        row["warm start program"] = _fmt(ev.evaluate(dsl.load("adamw_warmstart"), seeds))
        bar.update()
        rows.append(row)
    bar.close()
    cols = ["task", "size", *OPTIMIZERS, "warm start program"]
    lines = [
        f"Validation loss / accuracy (best lr of the sweep; mean over seeds {', '.join(map(str, seeds))}). "
        "Schedule: warm-up + cosine. AdamW wd 1e-4, Lion (0.9, 0.99) wd 1e-3, SGD momentum 0.9; "
        "lr grids: " + "; ".join(f"{o} {', '.join(f'{x:g}' for x in g)}" for o, (_, g) in OPTIMIZERS.items()) + ".",
        "",
        "| task | steps, batch | " + " | ".join(cols[2:]) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    lines += ["", "Task configurations: " + "; ".join(r["config"] for r in rows),
              f"({time.perf_counter() - t_start:.0f} s)"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
