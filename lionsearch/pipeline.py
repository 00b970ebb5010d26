"""The whole method in one command: search from the warm start, the funnel, simplification.

`lionsearch run CONFIG [--run-dir DIR] [--seed N]` ends with a verdict in `DIR/final.json`:
- `discovered`: a candidate passed every stage of the funnel, and of the forms its simplification
  went through (its exact simplification, then each ablation's result), the simplest that beats
  the baseline on the funnel's largest stage (each at its best lr multiplier and, with
  `verdict.weight_decays`, decoupled weight decay, with every seed's loss) is written to
  `DIR/final.opt` and named by `dsl.family`. The forms are trained there from the simplest back,
  until one beats the baseline. With `verdict.seeds`, the win must also hold on those seeds of
  the last stage, which no stage trained on: the form and the baseline, each at the lr
  multiplier (and weight decay) the stage chose, are trained on them, and a form whose mean
  difference to the baseline there is not below zero passes the turn to the next longer form;
- `no candidate generalized`: the search found nothing better than its warm start, none passed,
  no form beat the baseline on the last stage, or no win held on the verdict's seeds; no
  `final.opt` is written, the best candidate's numbers are reported, and the command exits with
  `EXIT_NOTHING_FOUND`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import dsl
from search.config import RunConfig, TaskConfig, load_config
from search.record import finite_or_inf, loss_text
from search.rundir import RunDir
from search.runner import connect_ray, run_search
from search.workers import SeedSplit
from selection.funnel import FunnelConfig, Stage, _jsonable, provenance, run_funnel, score_on_stage, tune_on_stage
from simplify import MAX_STATEMENTS, simplify_steps
from simplify.rewrite import exact_simplify

DISCOVERED, NOTHING = "discovered", "no candidate generalized"
EXIT_NOTHING_FOUND = 3  # the exit status of a run whose funnel let no candidate through


@dataclass(frozen=True)
class SimplifyConfig:
    task: TaskConfig | None = None  # the check task for ablation (default: the funnel's first stage)
    tolerance: float = 0.01
    lr_multipliers: tuple[float, ...] = (0.5, 1.0, 2.0)  # each candidate is scored at its best lr
    max_trainings: int | None = None  # a bound on the ablation's compute, in trainings of one seed (None: none)
    screen_seeds: int = 0  # each ablation first on this many of the seeds (0: no screen)
    tune_trainings: int = 0  # a bound on constant tuning, the last step, in trainings of one seed (0: no tuning)

    def __post_init__(self):
        if not self.lr_multipliers or min(self.lr_multipliers) <= 0:
            raise ValueError("lr_multipliers: positive numbers are needed")
        if self.tune_trainings < 0:
            raise ValueError(f"tune_trainings: must be >= 0 (0: no tuning), got {self.tune_trainings}")


@dataclass(frozen=True)
class VerdictConfig:
    # seeds of the last stage on which a final program's win over the baseline must hold too (none
    # of the stage's own): on its 2 seeds a tie can look like a win
    seeds: tuple[int, ...] = ()
    # decoupled weight decays (`Program.add_weight_decay`) the last stage's comparison sweeps with
    # the lr multipliers, for each form and the baseline alike: there the best weight decay moves
    # the loss more than the choice between families does
    weight_decays: tuple[float, ...] = (0.0,)

    def __post_init__(self):
        if min(self.seeds, default=0) < 0 or len(set(self.seeds)) < len(self.seeds):
            raise ValueError(f"seeds: distinct seeds, none negative, are needed; got {list(self.seeds)}")
        if not self.weight_decays or min(self.weight_decays) < 0 or not all(map(math.isfinite, self.weight_decays)):
            raise ValueError(f"weight_decays: one or more numbers >= 0 are needed (0: none); "
                             f"got {list(self.weight_decays)}")


@dataclass(frozen=True)
class PipelineConfig(RunConfig):
    funnel: FunnelConfig = field(default_factory=lambda: FunnelConfig(stages=(Stage("A", TaskConfig()),)))
    simplify: SimplifyConfig = SimplifyConfig()
    verdict: VerdictConfig = VerdictConfig()

    def search_config(self) -> RunConfig:
        """The search part of the whole method's config, as the search runs it."""
        return RunConfig(task=self.task, search=self.search, search_space=self.search_space, ray=self.ray,
                         seed=self.seed)

    def __post_init__(self):
        super().__post_init__()
        if self.search_space.max_statements > MAX_STATEMENTS:  # the survivor must be simplifiable
            raise ValueError(f"search_space.max_statements: at most {MAX_STATEMENTS} for the whole method "
                             f"(the longest program simplification takes), got {self.search_space.max_statements}")
        for stage in self.funnel.stages:  # the leaders' re-score must not train on a stage's held-out seeds
            leak = set(self.search.rescore_seeds) & set(stage.task.seeds)
            if (stage.task.name, stage.task.size) == (self.task.name, self.task.size) and leak:
                raise ValueError(f"search.rescore_seeds: funnel stage {stage.name} checks the search's task on "
                                 f"seeds {sorted(leak)}; seeds no stage of the search's task uses are needed")
        shared = set(self.verdict.seeds) & set(self.funnel.stages[-1].task.seeds)
        if shared:
            raise ValueError(f"verdict.seeds: seeds the last stage does not train on are needed; "
                             f"{sorted(shared)} are stage {self.funnel.stages[-1].name}'s own")


def load_pipeline(path: str | Path) -> PipelineConfig:
    return load_config(path, PipelineConfig)


def furthest(candidates: list[dict], order: list[str]) -> dict | None:
    """The candidate that went furthest through the funnel, the best on the last stage it reached
    among those (None for no candidates)."""
    def key(r):
        reached = [n for n in order if n in r["stages"]]
        return -len(reached), finite_or_inf(r["stages"][reached[-1]]["loss"]) if reached else math.inf

    return min(candidates, key=key, default=None)


def choose(report: dict) -> dict | None:
    """The candidate to simplify: the best survivor on the last stage; None where none passed."""
    return furthest([r for r in report["candidates"] if r["passed"]], [s["name"] for s in report["stages"]])


def run_pipeline(cfg: PipelineConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
                 log=print) -> dict:
    """Search, funnel, simplification; returns (and writes to `final.json`) the verdict. The run
    directory is held (`RunDir.acquire`) from the search to the verdict."""
    held = RunDir(run_dir)
    held.acquire()
    try:
        return _pipeline(cfg, Path(run_dir), resume, progress, log)
    finally:
        held.release()


def _pipeline(cfg: PipelineConfig, run_dir: Path, resume: bool, progress: bool, log) -> dict:
    search_cfg = cfg.search_config()
    budget = f"{cfg.search.evaluations} evaluations" + (f" or {cfg.search.max_trainings} trainings"
                                                        if cfg.search.max_trainings else "")
    log(f"== search ({budget} on {cfg.task.name}, "
        f"{len(cfg.task.seeds)} seed(s) per candidate)")
    connect_ray(cfg.ray, [cfg.task.name, *(s.task.name for s in cfg.funnel.stages),
                          *([cfg.simplify.task.name] if cfg.simplify.task else [])])  # every task's folder travels
    summary = run_search(search_cfg, run_dir, resume=resume, progress=progress)
    funnel = dataclasses.replace(cfg.funnel, ray=cfg.ray)
    saved = run_dir / "selection.json"
    report = json.loads(saved.read_text()) if resume and saved.exists() else None
    if report is not None and report.get("made_from") == provenance(run_dir, funnel):
        log(f"== funnel: done before ({saved}), with the same config and evaluations")
    else:
        log(f"== funnel ({len(funnel.stages)} stages, top {funnel.top_k}"
            + (f", until {funnel.enough} pass)" if funnel.enough else ")"))
        report = run_funnel(run_dir, funnel, progress=progress)
    result = {"run_dir": str(run_dir), "evaluations": summary["evaluations"],
              "search_seconds": summary["seconds"], "funnel_seconds": report.get("seconds")}
    (run_dir / "final.opt").unlink(missing_ok=True)  # only a discovery leaves one
    pick = choose(report)
    if pick is None:
        best = furthest(report["candidates"], [s["name"] for s in report["stages"]])
        result |= {"verdict": NOTHING, "best_candidate": best, "stages": report["stages"]}
        _write(run_dir, result)
        return result
    start = time.monotonic()
    log(f"== simplify candidate {pick['id']}")
    raw = dsl.parse(pick["program"])
    check = cfg.simplify.task or funnel.stages[0].task
    split = SeedSplit(check.name, dict(check.size), tuple(check.seeds), cfg.ray.workers, funnel.timeout_s)
    try:  # one program at a time on many seeds: the seeds are split across the workers
        steps = simplify_steps(raw, task=check.name, tolerance=cfg.simplify.tolerance,
                               seeds=check.seeds, size=dict(check.size),
                               lr_multipliers=cfg.simplify.lr_multipliers, scorer=split.loss,
                               max_trainings=cfg.simplify.max_trainings, screen_seeds=cfg.simplify.screen_seeds,
                               screener=lambda q: split.loss(q, check.seeds[:cfg.simplify.screen_seeds]),
                               tune_trainings=cfg.simplify.tune_trainings,
                               log=lambda s: log(f"- {s.what}: {len(s.program)} statements"
                                                 + ("" if s.loss is None else f" [loss {s.loss:.4f}]")))
    finally:
        split.shutdown()
    _write_steps(run_dir / "simplify.md", pick["id"], steps)
    result["simplify_seconds"] = round(time.monotonic() - start, 1)
    start, last = time.monotonic(), funnel.stages[-1]
    # The ablation proposes on the cheap proxy; the last stage disposes: the functions it reached
    # (the survivor's own, as its exact simplification, then each ablation's result) are trained
    # there from the simplest back, and the first that beats the baseline (and whose win holds on
    # the verdict's seeds) is the result; the longer forms before it need no training.
    forms = [exact_simplify(raw.inline_params())]
    for st in steps[1:]:
        if dsl.equivalent(st.program, forms[-1]):
            forms[-1] = st.program if len(forms) > 1 else forms[-1]  # an exact step: the same function
        else:
            forms.append(st.program)
    grid = refined(funnel.lr_multipliers)
    scored, checks, base = {}, {}, None  # form index -> its stage result, its confirmation
    trained = {}  # the baseline on the verdict's seeds, trained once for every form confirmed
    for i in reversed(range(len(forms))):
        texts = [dsl.to_text(forms[i])] if base else [dsl.to_text(dsl.load(funnel.baseline)),
                                                      dsl.to_text(forms[i])]
        *first, scored[i] = tune_on_stage(last, texts, funnel, cfg.verdict.weight_decays, refine=True)
        base = base or first[0]
        if scored[i]["loss"] <= base["loss"]:
            if not cfg.verdict.seeds:
                break
            checks[i], = confirmations(last, [(forms[i], scored[i])], base, funnel, cfg.verdict.seeds, trained)
            if checks[i]["held"]:
                break
    beat = [i for i, r in scored.items() if r["loss"] <= base["loss"]]
    held = [i for i in beat if i not in checks or checks[i]["held"]]
    k = max(held or beat, default=len(forms) - 1)  # the simplest whose win held (or, failing that, beat)
    simplified, ours = forms[k], scored[k]
    won = bool(held)
    note = None if k == len(forms) - 1 else (
        f"the simplest form lost to the baseline on stage {last.name} ({loss_text(scored[len(forms) - 1]['loss'])} vs "
        f"{loss_text(base['loss'])}); the final program is form {k + 1} of {len(forms)}, the simplest that beat it")
    if checks:
        result["confirmation"] = c = checks[k]
        if not won:
            note = (f"the final program beat the baseline on stage {last.name}'s seeds but not on {len(c['seeds'])} "
                    f"others (final minus baseline: {c['difference']:+.4f} ± {c['se']:.4f})")
        elif k != max(beat):
            note = (f"the win of the simpler forms did not hold on the verdict's {len(c['seeds'])} seeds; the final "
                    f"program is form {k + 1} of {len(forms)}, the simplest whose win held")
    result["final_seconds"] = round(time.monotonic() - start, 1)
    fam = dsl.family(simplified)
    result |= {"verdict": DISCOVERED if won else NOTHING, "note": note,
               "candidate": pick["id"], "found_at_evaluation": pick["id"] + 1,
               "final": dsl.to_text(simplified), "family": fam.name, "constants": fam.constants,
               "family_text": str(fam), "stage": last.name, "stage_seeds": list(last.task.seeds),
               "final_loss": ours["loss"], "baseline_loss": base["loss"],
               "final_seed_losses": ours["seed_losses"], "baseline_seed_losses": base["seed_losses"],
               "final_lr_multiplier": ours["lr_multiplier"], "baseline_lr_multiplier": base["lr_multiplier"],
               "final_weight_decay": ours["weight_decay"], "baseline_weight_decay": base["weight_decay"],
               "lr_multipliers": list(grid), "weight_decays": list(cfg.verdict.weight_decays),
               # a form left untrained (a simpler one won) has no loss
               "forms": [{"program": dsl.to_text(p), "family": str(dsl.family(p)),
                          **{key: scored[i][key] if i in scored else None
                             for key in ("loss", "lr_multiplier", "weight_decay")},
                          "confirmation": checks.get(i)}
                         for i, p in enumerate(forms)]}
    if result["verdict"] == DISCOVERED:
        (run_dir / "final.opt").write_text(dsl.to_text(simplified))
    _write(run_dir, result)
    return result


def confirmations(stage: Stage, finals: list[tuple[dsl.Program, dict]], base: dict, funnel: FunnelConfig,
                  seeds, trained: dict | None = None) -> list[dict]:
    """Each final program and the baseline, each at the lr multiplier and weight decay the stage
    chose (`finals`: (program, its stage result); `base`: the baseline's), trained on other seeds
    of the stage: each seed's loss, the mean of the differences (final minus baseline) with its
    standard error, and whether the win held (the mean below zero; a failed seed fails it).
    `trained` keeps the baseline's training across calls (it is the same at the same setting)."""
    at = lambda r: (r["lr_multiplier"], r.get("weight_decay", 0.0))
    trained = {} if trained is None else trained
    key = ("baseline", *at(base), tuple(seeds))
    items = [(i, dsl.to_text(p), *at(r)) for i, (p, r) in enumerate(finals)]
    if key not in trained:
        items.insert(0, (key, dsl.to_text(dsl.load(funnel.baseline)), *at(base)))
    res = score_on_stage(stage, items, funnel, seeds)
    trained.setdefault(key, res.get(key))
    b, out = trained[key], []
    for i in range(len(finals)):
        f = res[i]
        ok = f.ok and b.ok
        diffs = [x - y for x, y in zip(f.seed_losses, b.seed_losses)] if ok else [math.inf]
        mean = statistics.mean(diffs)
        out.append({"seeds": list(seeds), "final_seed_losses": f.seed_losses, "baseline_seed_losses": b.seed_losses,
                    "difference": mean, "held": ok and mean < 0,
                    "se": statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan})
    return out


def refined(grid) -> tuple[float, ...]:
    """`grid` with the geometric midpoint of each neighbouring pair: the multipliers the last
    stage may choose (it tries each program's best's neighbouring midpoints, `tune_on_stage`'s
    `refine`). The final comparison decides the verdict, and a sign-based update's best lr can
    fall between the funnel's coarse points (x3 apart): the program and the baseline alike."""
    g = sorted(grid)
    return tuple(sorted(set(g) | {round(math.sqrt(a * b), 4) for a, b in zip(g, g[1:])}))


def _write_steps(path: Path, candidate: int, steps) -> None:
    """Each accepted simplification step with its loss on the check task, and the program reached."""
    rows = [f"| {i} | {s.what.replace('|', '/')} | {len(s.program)} | {loss_text(s.loss)} |"
            for i, s in enumerate(steps)]
    path.write_text(f"# Simplification of candidate {candidate}\n\n| step | what | statements | loss |\n"
                    "|---|---|---|---|\n" + "\n".join(rows) + f"\n\n```\n{dsl.to_text(steps[-1].program)}```\n")


def _write(run_dir: Path, result: dict) -> None:
    (run_dir / "final.json").write_text(json.dumps(_jsonable(result), indent=1))
