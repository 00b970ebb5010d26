"""Funnel selection (meta-validation): survivors re-evaluated on progressively larger tasks.

Each stage trains every surviving candidate and the baseline with a small sweep of learning-rate
multipliers (a sign-based update wants a smaller lr than AdamW) and keeps each one's best; a
candidate passes the stage when its best validation loss is at most `max_ratio` times the
baseline's best on that stage. Stages run on the same Ray worker pool machinery as the search.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import dsl
from proxy_tasks.engine import BUCKETS, prepare
from search.config import RayConfig, TaskConfig, load_config
from search.record import HallOfFame, best_distinct
from search.rundir import read_history
from search.workers import WorkerPool


@dataclass(frozen=True)
class Stage:
    name: str
    task: TaskConfig
    max_ratio: float = 1.0  # pass: best loss <= max_ratio * the baseline's best loss

    def __post_init__(self):
        if self.max_ratio <= 0:
            raise ValueError("max_ratio: must be positive")


@dataclass(frozen=True)
class FunnelConfig:
    stages: tuple[Stage, ...]
    top_k: int = 10  # functionally distinct candidates taken from the run
    baseline: str = "adamw_warmstart"  # a built-in or .opt path, tuned on each stage like the candidates
    lr_multipliers: tuple[float, ...] = (0.3, 1.0, 3.0)
    timeout_s: float = 600.0
    ray: RayConfig = field(default_factory=RayConfig)
    # also the hall of fame's programs (the Pareto front of live statements against fitness) that
    # beat the warm start on the proxy: shorter candidates than the top K, which are all long
    pareto: bool = False
    # stop once this many candidates have passed every stage (None: train every candidate). The
    # stages rank the passers differently, so training the rest on the last stage buys a choice
    # among passers that a larger task would make differently, at most of the funnel's cost
    enough: int | None = None

    def __post_init__(self):
        if self.enough is not None and self.enough < 1:
            raise ValueError(f"enough: a count >= 1 is needed (or null: train every candidate), got {self.enough}")
        if not self.stages:
            raise ValueError("stages: at least one stage is needed")
        if self.top_k < 1:
            raise ValueError("top_k: must be >= 1")
        if not self.lr_multipliers or min(self.lr_multipliers) <= 0:
            raise ValueError("lr_multipliers: positive numbers are needed")
        try:
            dsl.load(self.baseline)
        except dsl.ProgramError as e:
            raise ValueError(f"baseline: {e}") from None


def load_funnel(path: str | Path) -> FunnelConfig:
    return load_config(path, FunnelConfig)


def candidates_of(run_dir: str | Path, top_k: int, pareto: bool = False) -> list[dict]:
    """The run's best K distinct algorithms, {id, fingerprint, fitness, program}: a program that is
    an earlier pick up to its constants, or that trained to exactly an earlier pick's loss (the
    same training, though the functional hash differs, e.g. through a constant that never binds),
    is skipped, so that a family of near-copies (which a converged population is full of) takes
    one place in the funnel, not all of them. Only programs that beat the warm start (the best
    of the run's warm starts) on the search's task are candidates: the search's start
    is not its finding, and ablating it would credit the simplification's edits to the search.
    A search with islands sends each island's best in turn, so that one island's lineage cannot
    fill the funnel. With `pareto`, the programs of the hall of fame that beat it follow, where
    they are not picks already. Picks come best first."""
    records = read_history(run_dir)
    if not records:
        raise FileNotFoundError(f"{run_dir}: no history.jsonl with evaluations (not a run directory?)")
    start = min((r.loss for r in records if r.source == "warm_start"), default=math.inf)
    picks, programs = [], []

    def take(r) -> bool:
        if any(r.loss == c["fitness"] for c in picks) or any(dsl.equivalent_up_to_constants(r.program, q)
                                                            for q in programs):
            return False
        picks.append({"id": r.id, "fingerprint": r.fingerprint, "fitness": r.loss, "program": r.text})
        programs.append(r.program)
        return True

    ranked = [r for r in best_distinct(records, len(records)) if r.loss < start]
    queues = [iter([r for r in ranked if r.island == i]) for i in sorted({r.island for r in ranked})]
    while queues and len(picks) < top_k:
        for q in list(queues):  # one pick from each island in turn, best first
            if len(picks) == top_k:
                break
            if not any(take(r) for r in q):
                queues.remove(q)
    picks.sort(key=lambda c: (c["fitness"], c["id"]))
    if pareto:
        for _, r in HallOfFame(records).front():
            if r.loss < start:
                take(r)
    return picks


def setting(text: str, lr_multiplier: float, weight_decay: float = 0.0) -> dsl.Program:
    """A program (text) at one point of a sweep: its lr scaled, a decoupled weight decay added."""
    return dsl.strip_dead_code(dsl.parse(text).add_weight_decay(weight_decay).scale_lr(lr_multiplier))


def fits(text: str, lr_multiplier: float, weight_decay: float) -> bool:
    """Whether the engine can train the program at this setting (the statements a weight decay adds
    can take a program at the length cap past the largest length bucket)."""
    return len(prepare(setting(text, lr_multiplier, weight_decay))) <= max(BUCKETS)


def score_on_stage(stage: Stage, items, cfg: FunnelConfig, seeds=None) -> dict:
    """{key: Evaluation} for each (key, program text, lr multiplier, weight decay) trained on the
    stage's task, on `seeds` (default: the stage's)."""
    pool = WorkerPool(stage.task.name, dict(stage.task.size), tuple(seeds or stage.task.seeds), cfg.ray.workers,
                      cfg.timeout_s, warm=False)  # few programs: compile only the buckets used
    try:
        return dict(pool.map((key, setting(t, k, wd)) for key, t, k, wd in items))
    finally:
        pool.shutdown()


def tune_on_stage(stage: Stage, programs: list[str], cfg: FunnelConfig, weight_decays=(0.0,),
                  refine: bool = False) -> list[dict]:
    """Each program's (text's) best on a stage over the lr multipliers and, jointly, the decoupled
    weight decays (a weight decay a program at the length cap has no room for is not tried): loss,
    accuracy, multiplier, weight decay. With `refine`, coarse to fine: then the geometric midpoints
    between each program's best multiplier and its neighbours on the grid, at its best weight
    decay (a sign-based update's best lr can fall between points x3 apart). With 4 multipliers and
    4 weight decays that is 18 settings a program, where every midpoint at every weight decay
    would be 28."""
    grid = {g: [(k, wd) for wd in weight_decays for k in cfg.lr_multipliers if wd == 0 or fits(t, k, wd)]
            for g, t in enumerate(programs)}
    score = lambda todo: score_on_stage(stage, [((g, k, wd), programs[g], k, wd) for g in todo for k, wd in todo[g]],
                                        cfg)
    # on a tie (a program blind to the lr scores alike at every multiplier) the one nearest 1,
    # then the smallest weight decay
    best = lambda g: min(((kw, res[(g, *kw)]) for kw in grid[g]),
                         key=lambda it: (it[1].loss, abs(math.log(it[0][0])), it[0][1]))
    res = score(grid)
    if refine:
        ks = sorted(cfg.lr_multipliers)
        finer = {}
        for g in grid:
            (k, wd), _ = best(g)
            i = ks.index(k)
            finer[g] = [(round(math.sqrt(k * x), 4), wd) for x in ks[max(i - 1, 0):i + 2] if x != k]
        res |= score(finer)
        for g in grid:
            grid[g] += finer[g]
    out = []
    for g in range(len(programs)):
        (k, wd), r = best(g)
        out.append({"loss": r.loss, "accuracy": r.accuracy, "lr_multiplier": k, "weight_decay": wd,
                    "status": r.status, "seed_losses": r.seed_losses})
    return out


def run_funnel(run_dir: str | Path, cfg: FunnelConfig, progress: bool = True) -> dict:
    """Run the funnel on a search's run directory; writes `selection.json` and `selection.md`.
    The candidates go through the stages best on the proxy first, in groups (as many as still
    needed to reach `enough` passers, at least one per worker), until `enough` have passed every
    stage; the rest are not trained (`passed` None). Where fewer pass, every candidate is tried.
    The baseline is tuned once per stage."""
    import time

    from tqdm import tqdm
    start = time.monotonic()

    from search.runner import connect_ray
    connect_ray(cfg.ray, [s.task.name for s in cfg.stages])
    entries = candidates_of(run_dir, cfg.top_k, cfg.pareto)
    baseline = dsl.to_text(dsl.load(cfg.baseline))
    rows = [{"id": e["id"], "fingerprint": e["fingerprint"], "proxy_loss": e["fitness"], "program": e["program"],
             "stages": {}, "passed": None} for e in entries]
    stage_info: dict[str, dict] = {}
    need = cfg.enough or len(rows)
    todo = list(range(len(rows)))  # best on the proxy first (`candidates_of`)
    bar = tqdm(total=len(rows), desc="funnel", unit="candidate", disable=not progress)
    while todo and (short := need - sum(r["passed"] is True for r in rows)) > 0:
        size = max(short, cfg.ray.workers)
        alive, todo = todo[:size], todo[size:]
        for stage in cfg.stages:
            if not alive:
                break
            known = stage_info.get(stage.name)
            best = tune_on_stage(stage, ([] if known else [baseline]) + [rows[i]["program"] for i in alive], cfg)
            if not known:
                known = stage_info[stage.name] = {
                    "name": stage.name, "task": stage.task.name, "size": stage.task.size,
                    "seeds": list(stage.task.seeds), "baseline": best.pop(0), "max_ratio": stage.max_ratio}
            base = known["baseline"]["loss"]
            for got, i in zip(best, alive):
                ok = math.isfinite(got["loss"]) and got["loss"] <= stage.max_ratio * base
                rows[i]["stages"][stage.name] = {**got, "ratio": got["loss"] / base if base else math.inf,
                                                 "passed": ok}
                rows[i]["passed"] = ok  # alive: it passed every stage before this one
            alive = [i for i in alive if rows[i]["passed"]]
        bar.update(len(rows) - len(todo) - bar.n)
    bar.close()
    report = {"run_dir": str(run_dir), "stages": [stage_info[s.name] for s in cfg.stages if s.name in stage_info],
              "candidates": rows, "survivors": [r["id"] for r in rows if r["passed"]],
              "made_from": provenance(run_dir, cfg), "seconds": round(time.monotonic() - start, 1)}
    out = Path(run_dir)
    (out / "selection.json").write_text(json.dumps(_jsonable(report), indent=1))
    (out / "selection.md").write_text(table(report))
    return report


def provenance(run_dir: str | Path, cfg: FunnelConfig) -> dict:
    """What a funnel's result depends on: its config (not where or how wide it ran) and how many
    evaluations the run had, as it reads back from `selection.json`. A report made from the same is
    still valid (`lionsearch run --resume`)."""
    what = dataclasses.replace(cfg, ray=RayConfig())
    return json.loads(json.dumps(_jsonable({"config": dataclasses.asdict(what),
                                            "evaluations": len(read_history(run_dir))})))


def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


VERDICTS = {True: "passed", False: "failed", None: "not trained (enough passed)"}


def table(report: dict) -> str:
    """The funnel as a Markdown table: candidate, loss (and lr multiplier) at each stage, verdict."""
    names = [s["name"] for s in report["stages"]]
    head = "| candidate | proxy loss | " + " | ".join(names) + " | verdict |"
    lines = [head, "|" + "---|" * (len(names) + 3)]
    base = " | ".join(f"{s['baseline']['loss']:.4f} (x{s['baseline']['lr_multiplier']:g})" for s in report["stages"])
    lines.append(f"| baseline | | {base} | |")
    for r in report["candidates"]:
        cells = []
        for n in names:
            s = r["stages"].get(n)
            cells.append("" if s is None else f"{s['loss']:.4f} (x{s['lr_multiplier']:g}) {'pass' if s['passed'] else 'fail'}")
        lines.append(f"| {r['id']} | {r['proxy_loss']:.4f} | " + " | ".join(cells)
                     + f" | {VERDICTS[r['passed']]} |")
    return "\n".join(lines) + "\n"
