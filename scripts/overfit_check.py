"""Does a search learn its training seeds' noise? The top K distinct candidates of each run,
re-scored on seeds the search never trained on, against their fitness on the training seeds.

    python scripts/overfit_check.py RUN [RUN ...] [--top 20] [--unseen 100-107]

For each run directory: its task (from `config.yaml`), its top K (the funnel's pick of distinct
algorithms), each candidate's fitness on the run's own seeds (from the history) and its mean loss
on the unseen seeds (each at the run's own lr, as the search scored it), and the baseline (the
run's warm start) on the unseen seeds. A search that overfits has a large gap: candidates that
look far better than the warm start on its seeds and are no better on others.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rediscovery_rate import seed_list  # noqa: E402


def check(run: Path, top: int, unseen: list[int]) -> dict:
    import dsl
    import proxy_tasks
    from selection.funnel import candidates_of
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    task = cfg["task"]
    ev = proxy_tasks.Evaluator(task["name"], **task.get("size", {}))
    picks = candidates_of(run, top)
    warm = ev.evaluate(dsl.load(cfg["search_space"]["warm_start"][0]), unseen).loss
    rows = []
    for c in picks:
        rows.append({"id": c["id"], "train": c["fitness"], "unseen": ev.evaluate(dsl.parse(c["program"]), unseen).loss})
    return {"run": str(run), "seeds": task.get("seeds", [0]), "warm_unseen": warm, "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--unseen", type=seed_list, default=seed_list("100-107"))
    args = ap.parse_args(argv)
    print("| run | training seeds | top K: loss on training seeds (mean) | on unseen seeds (mean) | gap | "
          "better than the warm start on unseen seeds | warm start on unseen seeds |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        r = check(run, args.top, args.unseen)
        train = statistics.mean(x["train"] for x in r["rows"])
        finite = [x["unseen"] for x in r["rows"] if x["unseen"] != float("inf")]
        unseen = statistics.mean(finite) if finite else float("inf")
        better = sum(x["unseen"] < r["warm_unseen"] for x in r["rows"])
        print(f"| {run} | {r['seeds']} | {train:.4f} | {unseen:.4f} | {unseen / train - 1:+.0%} | "
              f"{better} of {len(r['rows'])} | {r['warm_unseen']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
