"""How often the one command rediscovers the Lion family: `lionsearch run CONFIG --seed N` for each
seed, each in its own run directory, and a Markdown table of what each run ended with.

    python scripts/rediscovery_rate.py --seeds 0-9 [--method evolution|random] [--config CONFIG]
                                       [--out rate] [--table-only]

Runs are resumable: a seed whose run directory holds a verdict (`final.json`) is not run again,
and a stopped one is resumed. `--method random` runs random search under the same budget, checks,
funnel and simplification: every child is the warm start mutated k times, with k drawn from the
lineage depths of the evolution run of the same seed (where that run is done; otherwise the
config's `random_depths`). Each method's table goes to `OUT/<method>.md`; `OUT/rate.md` puts the
methods side by side. A run counts as a rediscovery when its verdict is `discovered` and its final
program's family (`dsl.family`) is `lion` or `signum` (Lion with b1 = b2); the table names which.
Every row records the code version it ran on; a table of rows from several versions says so.
The tables, and random search's depths, need only each run's `final.json` and `rate.json` (where
the evolution run's lineage depths are kept), so a measurement can be kept (and its table
rewritten with `--table-only`) without the runs' histories (`docs/rate/CODE/`, whose bulky run files
git ignores).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from search.rundir import read_history

ROOT = Path(__file__).resolve().parent.parent
LION_FAMILY = ("lion", "signum")
METHODS = ("evolution", "random")


def seed_list(text: str) -> list[int]:
    """`0-9`, `3`, or `0-4,7,9`."""
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return out


CODE = ("dsl", "proxy_tasks", "search", "selection", "simplify", "lionsearch", "configs", "pyproject.toml")


def code_version() -> str:
    """A short hash of the code and configs a run used (the git trees of those paths; "+changes"
    where the working tree differs), so that a commit touching only the docs keeps the version."""
    try:
        tree = subprocess.run(["git", "ls-tree", "HEAD", *CODE], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    import hashlib
    return hashlib.sha1(tree.encode()).hexdigest()[:10] + ("+changes" if dirty else "")


def method_config(config: Path, method: str, seed: int, out: Path) -> Path:
    """The config a run uses: the given one, or for random search a copy with `method: random`
    and the lineage depths of the evolution run of the same seed."""
    if method == "evolution":
        return config
    cfg = yaml.safe_load(config.read_text())
    cfg.setdefault("search", {})["method"] = "random"
    for key in ("islands", "migration_every", "migrants"):  # random search has no population to split
        cfg["search"].pop(key, None)
    evo = out / "evolution" / f"seed-{seed}" / "rate.json"
    if evo.exists():
        cfg["search"]["random_depths"] = json.loads(evo.read_text())["lineage_depths"]
    path = out / method / f"seed-{seed}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_seed(config: Path, method: str, seed: int, out: Path) -> dict:
    """Run (or resume) one seed; returns its rate record (also kept in the run directory)."""
    run = out / method / f"seed-{seed}"
    rate_file = run / "rate.json"
    if (run / "final.json").exists() and rate_file.exists():
        return json.loads(rate_file.read_text())
    cfg = method_config(config, method, seed, out)
    cmd = [sys.executable, "-m", "lionsearch", "run", str(cfg), "--seed", str(seed), "--run-dir", str(run)]
    if (run / "history.jsonl").exists():
        cmd.append("--resume")
    earlier = json.loads(rate_file.read_text())["wall_seconds"] if rate_file.exists() else 0.0
    print(f"== {method} seed {seed}: {' '.join(cmd[1:])}", flush=True)
    start = time.monotonic()
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    wall = earlier + time.monotonic() - start
    record = {"seed": seed, "method": method, "exit_status": rc, "wall_seconds": round(wall, 1),
              "code": code_version()}
    run.mkdir(parents=True, exist_ok=True)
    final = run / "final.json"
    if final.exists():  # kept here, so that the table and random search need only final.json and rate.json
        record["found_at_training"] = found_at_training(run)
        if method == "evolution":
            from search.inspect import lineage_depths
            record["lineage_depths"] = sorted(set(d for d in lineage_depths(run) if d > 0))
    rate_file.write_text(json.dumps(record, indent=1))
    if not final.exists():
        raise SystemExit(f"{method} seed {seed}: the run ended (exit status {rc}) without a verdict; "
                         f"rerun to resume it from {run}")
    return record


def found_at_training(run: Path) -> int | None:
    """How far into the search's training budget the final's candidate was found: the trainings
    (the warm start's included) up to and including it; None where the run simplified none."""
    candidate = json.loads((run / "final.json").read_text()).get("candidate")
    if candidate is None:
        return None
    return sum(x.source in ("trained", "warm_start") for x in read_history(run) if x.id <= candidate)


def row(out: Path, method: str, seed: int) -> dict | None:
    run = out / method / f"seed-{seed}"
    if not (run / "final.json").exists() or not (run / "rate.json").exists():
        return None
    return {**json.loads((run / "final.json").read_text()), **json.loads((run / "rate.json").read_text())}


def _minutes(r: dict) -> str:
    parts = [r.get(k) for k in ("search_seconds", "funnel_seconds", "simplify_seconds", "final_seconds")]
    return " / ".join("-" if x is None else f"{x / 60:.1f}" for x in parts)


def _losses(r: dict) -> str:
    if r.get("final_loss") is None:
        best = r.get("best_candidate")
        if not best:
            return "-"
        reached = [s for s in r["stages"] if s["name"] in best["stages"]][-1]
        got = best["stages"][reached["name"]]
        return f"best candidate {got['loss']:.4f} vs {reached['baseline']['loss']:.4f} on stage {reached['name']}"
    spread = lambda xs: "" if not xs or len(xs) < 2 else " [" + ", ".join(
        "-" if x is None else f"{x:.4f}" for x in xs) + "]"
    c = r.get("confirmation")
    held = "" if not c else (f"; on {len(c['seeds'])} other seeds, final minus AdamW "
                             f"{c['difference']:+.4f} ± {c['se']:.4f}")
    return (f"{r['final_loss']:.4f}{spread(r.get('final_seed_losses'))} vs "
            f"{r['baseline_loss']:.4f}{spread(r.get('baseline_seed_losses'))} (stage {r['stage']}){held}")


def rediscovered(r: dict) -> bool:
    return r.get("verdict") == "discovered" and r.get("family") in LION_FAMILY


def table(out: Path, method: str, seeds: list[int]) -> tuple[str, list[dict]]:
    rows = [r for r in (row(out, method, s) for s in seeds) if r is not None]
    lines = [f"### {method}", "",
             "| seed | family and constants | found at evaluation (training) | minutes: search / funnel / simplify / final | "
             "last stage: final vs AdamW [seeds] | verdict | wall minutes | code |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fam = (r.get("family_text") or "-") + (f" + weight decay {wd:g}" if (wd := r.get("final_weight_decay")) else "")
        found = (f"{r['found_at_evaluation']} of {r['evaluations']} ({r['found_at_training']})"
                 if r.get("found_at_evaluation") else "-")
        lines.append(f"| {r['seed']} | {fam} | {found} | {_minutes(r)} | {_losses(r)} | {r['verdict']} | "
                     f"{r['wall_seconds'] / 60:.1f} | {r['code']} |")
    lines += ["", summary(rows, len(seeds))]
    if len({r["code"] for r in rows}) > 1:
        lines.append("Rows from several code versions: rerun to get a table of one version.")
    return "\n".join(lines) + "\n", rows


def summary(rows: list[dict], wanted: int) -> str:
    if not rows:
        return "No run finished yet."
    hits = sum(rediscovered(r) for r in rows)
    fams = {}
    for r in rows:
        if r.get("verdict") == "discovered":
            fams[r["family"]] = fams.get(r["family"], 0) + 1
    found = ", ".join(f"{n} {f}" for f, n in sorted(fams.items())) or "none"
    # where both methods discover nothing, how far each got still tells them apart (the program
    # reported: the discovery, or the form that lost)
    reached = sum(r.get("family") in LION_FAMILY for r in rows)
    return (f"{hits} of {len(rows)} runs ({wanted} asked) ended in the Lion family (lion or signum) and beat the "
            f"tuned AdamW warm start on the last stage; discoveries by family: {found}; "
            f"{reached} reported a Lion-family program, whatever the verdict; "
            f"{sum(r['verdict'] != 'discovered' for r in rows)} without a discovery; median wall time "
            f"{statistics.median(r['wall_seconds'] for r in rows) / 60:.1f} minutes.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=seed_list, default=seed_list("0-9"), help="e.g. 0-9 or 0-4,7")
    ap.add_argument("--method", choices=METHODS, default="evolution")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "quickstart.yaml")
    ap.add_argument("--out", type=Path, default=ROOT / "rate", help="where the run directories and tables go")
    ap.add_argument("--table-only", action="store_true", help="write the tables from the runs there are")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for seed in args.seeds:
            run_seed(args.config.resolve(), args.method, seed, args.out.resolve())
            (args.out / f"{args.method}.md").write_text(table(args.out, args.method, args.seeds)[0])
    text, _ = table(args.out, args.method, args.seeds)
    (args.out / f"{args.method}.md").write_text(text)
    side = [f"# Rediscovery rate: `{args.config.name}`, seeds {args.seeds[0]}-{args.seeds[-1]}", ""]
    for method in METHODS:
        t, rows = table(args.out, method, args.seeds)
        side.append(f"- {method}: " + summary(rows, len(args.seeds)))
    side.append("")
    for method in METHODS:
        side.append(table(args.out, method, args.seeds)[0])
    (args.out / "rate.md").write_text("\n".join(side))
    print(text, end="")
    print(f"tables: {args.out / (args.method + '.md')}, {args.out / 'rate.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
