"""The whole method in one command: search from the warm start, the funnel, simplification.

`lionsearch run CONFIG [--run-dir DIR] [--seed N]` writes `DIR/final.opt` and ends by printing the
final program, whether it is Lion up to its constants, and its score against the baseline on the
funnel's largest stage (each with its best lr multiplier).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import dsl
from search.config import RunConfig, TaskConfig, load_config
from search.runner import run_search
from search.workers import SeedSplit
from simplify import simplify_steps

from .funnel import FunnelConfig, Stage, _finite, _jsonable, provenance, run_funnel, tune_on_stage


@dataclass(frozen=True)
class SimplifyConfig:
    task: TaskConfig | None = None  # the check task for ablation (default: the funnel's first stage)
    tolerance: float = 0.01
    lr_multipliers: tuple[float, ...] = (0.5, 1.0, 2.0)  # each candidate is scored at its best lr

    def __post_init__(self):
        if not self.lr_multipliers or min(self.lr_multipliers) <= 0:
            raise ValueError("lr_multipliers: positive numbers are needed")


@dataclass(frozen=True)
class PipelineConfig(RunConfig):
    funnel: FunnelConfig = field(default_factory=lambda: FunnelConfig(stages=(Stage("A", TaskConfig()),)))
    simplify: SimplifyConfig = SimplifyConfig()


def load_pipeline(path: str | Path) -> PipelineConfig:
    return load_config(path, PipelineConfig)


def choose(report: dict) -> dict:
    """The candidate to simplify: the one that went furthest through the funnel, the best on the
    last stage it reached among those (the best survivor on the last stage, where one passed)."""
    order = [s["name"] for s in report["stages"]]

    def key(r):
        reached = [n for n in order if n in r["stages"]]
        return -len(reached), _finite(r["stages"][reached[-1]]["loss"]) if reached else math.inf

    survivors = [r for r in report["candidates"] if r["passed"]]
    return min(survivors or report["candidates"], key=key)


def run_pipeline(cfg: PipelineConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
                 log=print) -> dict:
    run_dir = Path(run_dir)
    search_cfg = RunConfig(task=cfg.task, search=cfg.search, ray=cfg.ray, seed=cfg.seed)
    log(f"== search ({cfg.search.evaluations} evaluations on {cfg.task.name})")
    summary = run_search(search_cfg, run_dir, resume=resume, progress=progress)
    funnel = dataclasses.replace(cfg.funnel, ray=cfg.ray)
    saved = run_dir / "selection.json"
    report = json.loads(saved.read_text()) if resume and saved.exists() else None
    if report is not None and report.get("made_from") == provenance(run_dir, funnel):
        log(f"== funnel: done before ({saved}), with the same config and evaluations")
    else:
        log(f"== funnel ({len(funnel.stages)} stages, top {funnel.top_k})")
        report = run_funnel(run_dir, funnel, progress=progress)
    pick = choose(report)
    log(f"== simplify candidate {pick['id']}")
    check = cfg.simplify.task or funnel.stages[0].task
    split = SeedSplit(check.name, dict(check.size), tuple(check.seeds), cfg.ray.workers, funnel.timeout_s)
    try:  # one program at a time on many seeds: the seeds are split across the workers
        steps = simplify_steps(dsl.parse(pick["program"]), task=check.name, tolerance=cfg.simplify.tolerance,
                               seeds=check.seeds, size=dict(check.size),
                               lr_multipliers=cfg.simplify.lr_multipliers, scorer=split.loss,
                               log=lambda s: log(f"- {s.what}: {len(s.program)} statements"
                                                 + ("" if s.loss is None else f" [loss {s.loss:.4f}]")))
    finally:
        split.shutdown()
    final = steps[-1].program
    (run_dir / "final.opt").write_text(dsl.to_text(final))
    last = funnel.stages[-1]
    base, ours = tune_on_stage(last, [dsl.to_text(dsl.load(funnel.baseline)), dsl.to_text(final)], funnel)
    result = {"run_dir": str(run_dir), "candidate": pick["id"], "found_at_evaluation": pick["id"] + 1,
              "final": dsl.to_text(final),
              "lion_family": dsl.is_lion(final),
              "stage": last.name, "final_loss": ours["loss"], "baseline_loss": base["loss"],
              "final_lr_multiplier": ours["lr_multiplier"], "baseline_lr_multiplier": base["lr_multiplier"],
              "evaluations": summary["evaluations"], "search_seconds": summary["seconds"]}
    (run_dir / "final.json").write_text(json.dumps(_jsonable(result), indent=1))
    return result
