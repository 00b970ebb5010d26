"""Which proxy lets a sign-momentum update win honestly? (how the quickstart's proxy was chosen:
docs/proxy_study.md)

For each candidate proxy (task and size), trains the paper's AdamW warm start and Lion-family
programs, each with a sweep of learning-rate multipliers (the search tunes the lr scale through
constants, so every family gets its best), and prints the best validation loss per family:

    python scripts/proxy_study.py [--procs 2] [--out proxy_study.md] [--quick] [--proxy TASK:JSON ...]

Families: `adamw_warmstart` (the paper's form); `warm+sign(m)`, the warm start with one inserted
statement `update = sign(m)` (signum with b = 0.9: the sign of the warm start's one momentum EMA,
the first Lion-family step the search can take); `lion` (0.9, 0.99) and `lion` (0.9, 0.95), both
with weight decay 0.01.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

PROXIES = [
    ("digits_mlp", {"steps": 200, "batch": 128}),
    ("digits_mlp", {"steps": 200, "batch": 1024}),
    ("digits_mlp", {"steps": 1000, "batch": 1024}),
    ("digits_mlp", {"steps": 500, "batch": 512, "width": 32}),
    ("digits_vit", {"steps": 300, "batch": 256}),
    ("digits_vit", {"steps": 1000, "batch": 512}),
    ("mnist1d", {"steps": 500, "batch": 512}),
    ("mnist1d", {"steps": 1500, "batch": 1024}),
    ("logreg", {"steps": 300, "batch": 512}),
    ("char_lm", {"steps": 300, "batch": 64}),
]
QUICK = PROXIES[:2]
MULTIPLIERS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def families():
    import dsl
    warm = dsl.load("adamw_warmstart")
    i = next(k for k, s in enumerate(warm.statements) if s.out == "update")
    signed = warm.replace(warm.statements[:i + 1] + (dsl.Statement("update", "sign", ("m",)),)
                          + warm.statements[i + 1:])
    lion = lambda b2: dsl.load("lion", b2=b2).inline_params().scale_lr(1e-3)  # same lr scale as the warm start
    return {"adamw_warmstart": warm, "warm+sign(m)": signed, "lion(0.9,0.99)": lion(0.99),
            "lion(0.9,0.95)": lion(0.95)}


def study(job):
    """One family on one proxy, over the lr sweep."""
    task, size, seeds, name = job
    import proxy_tasks  # one XLA thread per process (proxy_tasks.xla_cache)
    ev = proxy_tasks.Evaluator(task, **size)
    t0 = time.time()
    runs = {k: ev.evaluate(families()[name].scale_lr(k), seeds) for k in MULTIPLIERS}
    k, best = min(runs.items(), key=lambda kv: kv[1].loss)
    return {"task": task, "size": size, "family": name, "seconds": round(time.time() - t0, 1),
            "loss": best.loss, "accuracy": best.accuracy, "lr_multiplier": k,
            "by_multiplier": {str(m): f.loss for m, f in runs.items()}}


def table(results) -> str:
    rows = []
    for r in results:
        key = (r["task"], json.dumps(r["size"]))
        if not rows or (rows[-1]["task"], json.dumps(rows[-1]["size"])) != key:
            rows.append({"task": r["task"], "size": r["size"], "results": {}})
        rows[-1]["results"][r["family"]] = r
    names = list(rows[0]["results"])
    lines = ["| task | size | " + " | ".join(names) + " | best Lion-family vs AdamW |",
             "|" + "---|" * (len(names) + 3)]
    for r in rows:
        res = r["results"]
        cells = [f"{res[n]['loss']:.4f} (x{res[n]['lr_multiplier']:g})" for n in names]
        lion = min(res[n]["loss"] for n in names if n != "adamw_warmstart")
        gap = (lion - res["adamw_warmstart"]["loss"]) / res["adamw_warmstart"]["loss"]
        lines.append(f"| {r['task']} | {r['size']} | " + " | ".join(cells) + f" | {gap:+.1%} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default="proxy_study.md")
    ap.add_argument("--quick", action="store_true", help="two proxies only")
    ap.add_argument("--proxy", action="append", metavar="TASK:JSON",
                    help='a proxy instead of the built-in list, e.g. digits_vit:{"width": 16}; repeatable')
    args = ap.parse_args()
    proxies = [(p.split(":", 1)[0], json.loads(p.split(":", 1)[1])) for p in args.proxy] if args.proxy \
        else QUICK if args.quick else PROXIES
    jobs = [(t, s, tuple(args.seeds), f) for t, s in proxies for f in families()]
    done = {}
    log = open(os.path.splitext(args.out)[0] + ".jsonl", "w")  # each result as it comes
    with ProcessPoolExecutor(args.procs) as pool:
        futures = {pool.submit(study, job): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            r = done[futures[fut]] = fut.result()
            log.write(json.dumps(r) + "\n")
            log.flush()
            print(f"{r['task']} {r['size']} {r['family']}: {r['loss']:.4f} (x{r['lr_multiplier']:g}), "
                  f"{r['seconds']} s", flush=True)
    rows = [done[i] for i in sorted(done)]
    text = table(rows)
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
