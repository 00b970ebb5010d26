"""Regularized evolution (Real et al. 2019) over optimizer programs, asynchronous and resumable.

The population is the P most recent evaluations (since the last restart): each step draws T of
them at random, mutates the fittest (lowest validation loss) and adds the child; the oldest ages
out. The run directory's history is the source of truth: population, fitness cache, best and
counters are all rebuilt from it on resume, so a killed run loses at most its in-flight work.
Child k is drawn with the random stream (seed, k), so a one-worker run is exactly reproducible.
With `method: random` the same loop is random search: every child is the warm start mutated k times
(no tournament, no restarts), with the same checks that spare training.
"""
from __future__ import annotations

import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import dsl
from dsl import Program

from .config import ConfigError, RunConfig, to_dict
from .mutation import mutate, random_walk
from .rundir import RunDir

# How a record got its fitness: the ways children are spared training, and the ways they are not.
SOURCES = ("warm_start", "trained", "cache", "dead_code", "restart")


@dataclass
class Stats:
    proposed: int = 0  # children proposed, rejected ones included
    rejected: int = 0  # malformed or failed abstract execution: never trained
    sources: Counter = field(default_factory=Counter)

    def count(self, rec: dict) -> None:
        """Count one history record (the children rejected before it are folded into it)."""
        self.sources[rec["source"]] += 1
        if rec["source"] not in ("warm_start", "restart"):
            self.proposed += 1 + rec.get("rejected", 0)
            self.rejected += rec.get("rejected", 0)

    @property
    def saved(self) -> int:
        """Children that needed no training: rejected, answered by the cache, or dead-code-only."""
        return self.rejected + self.sources["cache"] + self.sources["dead_code"]

    def as_dict(self) -> dict:
        p = max(self.proposed, 1)
        return {"proposed": self.proposed, "rejected": self.rejected, "trained": self.sources["trained"],
                "cache_hits": self.sources["cache"], "dead_code_only": self.sources["dead_code"],
                "restarts": self.sources["restart"],
                "rejected_rate": self.rejected / p, "cache_rate": self.sources["cache"] / p,
                "dead_code_rate": self.sources["dead_code"] / p, "saved_rate": self.saved / p}


def _loss(rec: dict) -> float:
    x = rec.get("fitness")
    return math.inf if x is None or not math.isfinite(x) else x


class Evolution:
    """A search in a run directory. `run()` executes it to its budget (resuming what is there)."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.dir = RunDir(run_dir)
        history = self.dir.history(repair=True)
        if history and not resume:
            raise ConfigError(f"{self.dir.path} already holds a run ({len(history)} evaluations): "
                              "pass --resume to continue it, or choose another --run-dir")
        self.dir.write_config(to_dict(cfg))
        s = cfg.search
        self.population: deque[dict] = deque(maxlen=s.population)
        self.cache: dict[str, dict] = {}  # fingerprint -> record that trained it
        self.records: list[dict] = []
        self.best: dict | None = None
        self.stale = 0  # evaluations since the best improved
        self.stats = Stats()
        self.programs: dict[int, Program] = {}
        for rec in history:
            self._admit(rec)
        self._waiting: dict[str, list] = {}  # fingerprint in training -> children waiting for it
        self._start = time.monotonic()

    # ---- bookkeeping shared by live records and replayed ones ----------------------------------
    def _admit(self, rec: dict) -> None:
        self.records.append(rec)
        self.programs[rec["id"]] = dsl.parse(rec["program"])
        self.stats.count(rec)
        if rec["source"] == "restart":
            self.population.clear()
        self.population.append(rec)
        if rec["source"] in ("trained", "warm_start") and rec.get("fingerprint"):
            self.cache.setdefault(rec["fingerprint"], rec)
        if self.best is None or _loss(rec) < _loss(self.best):
            self.best, self.stale = rec, 0
        elif rec["source"] != "restart":
            self.stale += 1

    def _record(self, **fields) -> dict:
        rec = {"id": len(self.records), **fields, "time": round(time.monotonic() - self._start, 3)}
        if rec["fitness"] is not None and not math.isfinite(rec["fitness"]):
            rec["fitness"] = None  # failures: JSON null, not the non-standard Infinity
        self.dir.append(rec)
        self._admit(rec)
        if rec["id"] % self.cfg.search.checkpoint_every == 0:
            self.checkpoint()
        return rec

    def checkpoint(self) -> None:
        self.dir.write_json("population.json", {
            "evaluations": len(self.records), "stats": self.stats.as_dict(),
            "population": [{k: r[k] for k in ("id", "fitness", "status", "fingerprint", "program")}
                           for r in self.population]})
        if self.best is not None:
            self.dir.write_text("best.opt", f"# id {self.best['id']}, validation loss {self.best['fitness']}\n"
                                + self.best["program"])

    # ---- evolution -------------------------------------------------------------------------------
    def _propose(self, k: int):
        """Child k: tournament, mutation, and the checks that may spare it training."""
        s = self.cfg.search
        rng = np.random.default_rng([self.cfg.seed, k])
        if s.method == "random":
            parent = self.records[0]  # the warm start, mutated k times
            pprog = self.programs[parent["id"]]
            child = random_walk(pprog, rng, s.mutation, int(rng.choice(s.random_depths)))
        else:
            pop = list(self.population)
            picks = rng.choice(len(pop), size=min(s.tournament, len(pop)), replace=False)
            parent = min((pop[i] for i in picks), key=lambda r: (_loss(r), -r["id"]))
            pprog = self.programs[parent["id"]]
            child = mutate(pprog, rng, s.mutation)
        live = dsl.strip_dead_code(child.program)
        base = {"program": dsl.to_text(child.program), "parent": parent["id"], "mutation": child.mutation,
                "rejected": child.rejected}
        if live == dsl.strip_dead_code(pprog.inline_params()):
            return base, live, parent["fingerprint"], {**_result_of(parent), "source": "dead_code"}
        fp = dsl.fingerprint(live)
        if fp in self.cache:
            return base, live, fp, {**_result_of(self.cache[fp]), "source": "cache"}
        return base, live, fp, None

    def _maybe_restart(self) -> None:
        s = self.cfg.search
        if s.method == "evolution" and s.restart_after and self.stale >= s.restart_after \
                and len(self.records) < s.evaluations:
            b = self.best
            self._record(program=b["program"], fingerprint=b["fingerprint"], fitness=b["fitness"],
                         accuracy=b.get("accuracy"), status=b["status"], parent=b["id"],
                         mutation="restart from the best", worker=None, seconds=0.0, source="restart", rejected=0)
            self.stale = 0

    def run(self, pool) -> dict:
        """Evolve until the budget of evaluations is spent; `pool` is a `WorkerPool`."""
        s = self.cfg.search
        bar = _progress(self, s.evaluations) if self.progress else None
        try:
            if not self.records:
                warm = dsl.load(s.warm_start)  # validated with the config
                live = dsl.strip_dead_code(warm.inline_params())
                pool.submit(("warm", dsl.fingerprint(live), {"program": dsl.to_text(warm), "parent": None,
                                                             "mutation": "warm start", "rejected": 0}), live)
                for (_, fp, base), res in pool.wait():
                    self._record(**base, fingerprint=fp, **res, source="warm_start")
                _update(bar, self)
            k = len(self.records) - self.stats.sources["restart"]  # child k uses random stream (seed, k)
            in_flight = 0
            while len(self.records) < s.evaluations:
                while pool.capacity > 0 and len(self.records) + in_flight < s.evaluations:
                    base, live, fp, known = self._propose(k)
                    k += 1
                    if known is not None:
                        self._record(**base, fingerprint=fp, **known)
                        _update(bar, self)
                    elif fp in self._waiting:  # an equal child is training now: share its result
                        self._waiting[fp].append(base)
                        in_flight += 1
                    else:
                        self._waiting[fp] = []
                        pool.submit((fp, base), live)
                        in_flight += 1
                    self._maybe_restart()
                if not in_flight:
                    continue
                for (fp, base), res in pool.wait():
                    rec = self._record(**base, fingerprint=fp, **res, source="trained")
                    for other in self._waiting.pop(fp, []):
                        self._record(**other, fingerprint=fp, **_result_of(rec), source="cache")
                        in_flight -= 1
                    in_flight -= 1
                    _update(bar, self)
                self._maybe_restart()
        finally:
            if bar is not None:
                bar.close()
            self.checkpoint()
        summary = self.summary()
        self.dir.write_json("summary.json", summary)
        self.dir.close()
        return summary

    def summary(self, top: int = 5) -> dict:
        best = [{k: r.get(k) for k in ("id", "fitness", "accuracy", "status", "fingerprint", "program")}
                for r in best_distinct(self.records, top)]
        return {"run_dir": str(self.dir.path), "evaluations": len(self.records),
                "seconds": round(time.monotonic() - self._start, 1), "stats": self.stats.as_dict(), "best": best}


def best_distinct(records: list[dict], top: int) -> list[dict]:
    """The `top` best records with finite fitness and distinct fingerprints, best first (the
    earliest of equals)."""
    seen, best = set(), []
    for r in sorted(records, key=lambda r: (_loss(r), r["id"])):
        if len(best) == top:
            break
        if r["fingerprint"] not in seen and math.isfinite(_loss(r)):
            seen.add(r["fingerprint"])
            best.append(r)
    return best


def _result_of(rec: dict) -> dict:
    return {k: rec.get(k) for k in ("fitness", "accuracy", "status", "seconds", "seed_losses")} | {"worker": None}


def _progress(evo: Evolution, total: int):
    from tqdm import tqdm
    return tqdm(total=total, initial=len(evo.records), desc="search", unit="eval", dynamic_ncols=True)


def _update(bar, evo: Evolution) -> None:
    if bar is None:
        return
    bar.n = len(evo.records)
    st = evo.stats.as_dict()
    bar.set_postfix(best=f"{_loss(evo.best):.4f}", cache=f"{st['cache_rate']:.0%}",
                    dead=f"{st['dead_code_rate']:.0%}", rejected=f"{st['rejected_rate']:.0%}", refresh=False)
    bar.refresh()
