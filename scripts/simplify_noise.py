"""How far apart two programs' losses must be before the simplification's check can tell them
apart (the reason for the quickstart's `simplify.tolerance`):

    python scripts/simplify_noise.py [--config configs/quickstart.yaml]

On the config's simplification check task and seeds, each program below is trained at the lr
multipliers 0.25-4 (x2 steps); the table gives its best mean loss and the standard error of that
mean over the seeds. Against signum (b 0.5), the best of them on the quickstart's proxy, it gives
the paired difference (each seed's loss against the same seed's, as the check compares them) with
its standard error: a tolerance must sit well above that noise, or a step that costs nothing is
refused by luck, and below the cost of the steps it must refuse (dropping a momentum, moving b).
"""
from __future__ import annotations

import argparse
import math

import numpy as np

MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def programs():
    import dsl
    lion = lambda b1, b2: dsl.load("lion", b1=b1, b2=b2, wd=0.0).scale_lr(0.002)
    return {"adamw_warmstart": dsl.load("adamw_warmstart"), "signum (b 0.5)": lion(0.5, 0.5),
            "signum (b 0.9)": lion(0.9, 0.9), "lion (0.5, 0.9)": lion(0.5, 0.9), "signsgd": lion(0.0, 0.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/quickstart.yaml")
    args = ap.parse_args()
    import proxy_tasks
    from lionsearch.pipeline import load_pipeline
    cfg = load_pipeline(args.config)
    check = cfg.simplify.task or cfg.funnel.stages[0].task
    seeds = tuple(check.seeds)
    ev = proxy_tasks.Evaluator(check.name, **dict(check.size))
    print(f"check task: {check.name} {dict(check.size)}, {len(seeds)} seeds\n")
    losses = {}
    for name, p in programs().items():
        res = {k: ev.evaluate(p.scale_lr(k), seeds) for k in MULTIPLIERS}
        k = min(MULTIPLIERS, key=lambda k: res[k].loss)
        losses[name] = (np.array(res[k].seed_losses), k)
    ref = losses["signum (b 0.5)"][0]
    print("| program | best loss (lr x) | std error | paired difference from signum (b 0.5) |")
    print("|---|---|---|---|")
    for name, (sl, k) in losses.items():
        se = sl.std(ddof=1) / math.sqrt(len(sl))
        d = sl / ref - 1
        diff = "" if sl is ref else f"{d.mean():+.1%} +- {d.std(ddof=1) / math.sqrt(len(d)):.1%}"
        print(f"| {name} | {sl.mean():.4f} (x{k:g}) | {se:.4f} ({se / sl.mean():.1%}) | {diff} |")


if __name__ == "__main__":
    main()
