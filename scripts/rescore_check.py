"""Does re-scoring the leaders keep a search from learning its seeds' noise? The quickstart's search
on each seed twice, without the re-score and with `search.rescore_seeds` (and `rescore_top`) set,
then each run's top 20 on seeds no search trains on (`scripts/overfit_check.py`) and its momentum
share (`scripts/time_to_family.py`).

    python scripts/rescore_check.py --seeds 137-139 [--rescore-seeds 6 7] [--rescore-top 5]
                                    [--config configs/quickstart.yaml] [--out rescore]

Each search runs with one worker (so that a seed's run is exactly reproducible), the two of a seed
side by side on the 2 cores; runs already done in OUT are kept. The budget is the config's (its
trainings count children; a re-score is an extra training of a child already counted).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rediscovery_rate import ROOT, seed_list  # noqa: E402


def search_config(config: Path, rescore: dict | None, out: Path) -> Path:
    """The config's search alone, on one worker, with the leaders' re-score (`rescore`: its
    `search` keys) or without one."""
    cfg = yaml.safe_load(config.read_text())
    for section in ("funnel", "simplify", "verdict"):
        cfg.pop(section, None)
    cfg["ray"] = {"address": None, "num_cpus": 1, "workers": 1}
    cfg["search"].update(rescore or {"rescore_seeds": [], "rescore_top": 1})
    path = out / ("rescore.yaml" if rescore else "base.yaml")
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=seed_list, default=seed_list("137-139"))
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "quickstart.yaml")
    ap.add_argument("--rescore-seeds", type=int, nargs="+", default=[6, 7])
    ap.add_argument("--rescore-top", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "rescore")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rescore = {"rescore_seeds": args.rescore_seeds, "rescore_top": args.rescore_top}
    configs = {v: search_config(args.config, rescore if v == "rescore" else None, args.out) for v in ("base", "rescore")}
    runs = []
    for seed in args.seeds:
        procs = []
        for variant, cfg in configs.items():
            run = args.out / f"{variant}-{seed}"
            runs.append(run)
            if (run / "summary.json").exists():
                continue
            cmd = [sys.executable, "-m", "lionsearch", "search", str(cfg), "--seed", str(seed), "--run-dir", str(run),
                   "--no-progress"] + (["--resume"] if (run / "history.jsonl").exists() else [])
            print(f"== {' '.join(cmd[2:])}", flush=True)
            procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL))
        if any(p.wait() for p in procs):
            raise SystemExit(f"seed {seed}: a search failed; rerun to resume it")
    names = [str(r) for r in runs]
    subprocess.run([sys.executable, str(ROOT / "scripts" / "overfit_check.py"), *names], cwd=ROOT, check=True)
    print()
    subprocess.run([sys.executable, str(ROOT / "scripts" / "time_to_family.py"), *names], cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
