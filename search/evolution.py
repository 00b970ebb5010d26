"""Regularized evolution (Real et al. 2019) over optimizer programs, asynchronous and resumable.

The population is the P most recent evaluations (since the last restart): each step draws T of
them at random, mutates the fittest (lowest validation loss) and adds the child; the oldest ages
out. `Evolution` is the strategy alone, as ask/tell: `ask()` proposes a child, `tell(record)`
admits a result; it never sees how children are trained. `Search` drives it in a run directory:
the checks that spare training (dead-code-only children, the `FitnessCache`), the workers
(`WorkerPool.map`), the history. The history is the source of truth: population, cache, best and
counters are all rebuilt from it on resume, so a killed run loses at most its in-flight work.
Child k is drawn with the random stream (seed, k), so a one-worker run is exactly reproducible.
With `method: random` the same loop is random search: every child is a warm start mutated k times
(no tournament, no restarts), with the same checks that spare training.
"""
from __future__ import annotations

import dataclasses
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import dsl
from dsl import Program

from .config import ConfigError, RunConfig, SearchConfig, to_dict
from .mutation import SearchSpace, mutate, random_walk
from .record import Evaluation, HallOfFame, Record, best_distinct
from .rundir import RunDir


@dataclass
class Stats:
    proposed: int = 0  # children proposed, rejected ones included
    rejected: int = 0  # malformed or failed abstract execution: never trained
    sources: Counter = field(default_factory=Counter)

    def count(self, rec: Record) -> None:
        """Count one history record (the children rejected before it are folded into it)."""
        self.sources[rec.source] += 1
        if rec.source not in ("warm_start", "restart", "migrant"):
            self.proposed += 1 + rec.rejected
            self.rejected += rec.rejected

    @property
    def saved(self) -> int:
        """Children that needed no training: rejected, answered by the cache, or dead-code-only."""
        return self.rejected + self.sources["cache"] + self.sources["dead_code"]

    def as_dict(self) -> dict:
        p = max(self.proposed, 1)
        return {"proposed": self.proposed, "rejected": self.rejected, "trained": self.sources["trained"],
                "cache_hits": self.sources["cache"], "dead_code_only": self.sources["dead_code"],
                "restarts": self.sources["restart"], "migrants": self.sources["migrant"],
                "rejected_rate": self.rejected / p, "cache_rate": self.sources["cache"] / p,
                "dead_code_rate": self.sources["dead_code"] / p, "saved_rate": self.saved / p}


@dataclass(frozen=True)
class Child:
    """A proposed child: the program as mutated, its live part, its parent and the mutation."""
    program: Program
    live: Program
    parent: Record
    mutation: str
    rejected: int  # children the checks rejected before this one
    island: int = 0

    @property
    def dead_code_only(self) -> bool:
        """The mutation touched only dead code: the parent's function, its result."""
        return self.live == dsl.strip_dead_code(self.parent.program.inline_params())


class Evolution:
    """The strategy: populations (one, or `islands`), tournaments and mutation, as ask/tell."""

    def __init__(self, cfg: SearchConfig, space: SearchSpace, seed: int):
        self.cfg, self.space, self.seed = cfg, space, seed
        self.islands: list[deque[Record]] = [deque(maxlen=cfg.population) for _ in range(cfg.islands)]
        self.warm: list[Record] = []  # the warm starts
        self.k = 0  # the next child's random stream (seed, k); child k lives on island k mod N

    @property
    def population(self) -> list[Record]:
        """Every island's members, island by island."""
        return [r for pop in self.islands for r in pop]

    def ask(self) -> Child:
        """The next child: tournament and mutation (random search: a warm start mutated k times)."""
        s = self.cfg
        rng = np.random.default_rng([self.seed, self.k])
        island = self.k % len(self.islands)
        self.k += 1
        if s.method == "random":
            parent = self.warm[rng.integers(len(self.warm))] if len(self.warm) > 1 else self.warm[0]
            child = random_walk(parent.program, rng, s.mutation, self.space, int(rng.choice(s.random_depths)))
        else:
            pop = list(self.islands[island])
            picks = rng.choice(len(pop), size=min(s.tournament, len(pop)), replace=False)
            parent = min((pop[i] for i in picks), key=lambda r: (r.loss, -r.id))
            child = mutate(parent.program, rng, s.mutation, self.space)
        return Child(child.program, dsl.strip_dead_code(child.program), parent, child.mutation, child.rejected, island)

    def tell(self, rec: Record) -> None:
        """Admit a result: it joins its island, and the oldest there ages out (a restart empties
        the island; a warm start joins every island)."""
        if rec.source == "restart":
            self.islands[rec.island].clear()
        if rec.source == "warm_start":
            self.warm.append(rec)
        for pop in (self.islands if rec.source == "warm_start" else [self.islands[rec.island]]):
            pop.append(rec)

    def migrants(self) -> list[tuple[Record, int]]:
        """One migration: each island's `migrants` best (distinct programs where there are enough)
        with the island they join, the next one round the ring."""
        n, out = len(self.islands), []
        for i, pop in enumerate(self.islands):
            ranked = best_distinct(list(pop), self.cfg.migrants) or list(pop)[:1]
            out += [(ranked[j % len(ranked)], (i + 1) % n) for j in range(self.cfg.migrants)]
        return out


class FitnessCache:
    """Functionally equal programs train once: fingerprint -> the evaluation of the first that
    trained; for a fingerprint in training now, the children waiting for its result."""

    def __init__(self):
        self.known: dict[str, Evaluation] = {}
        self.waiting: dict[str, list[Child]] = {}

    def add(self, fp: str, evaluation: Evaluation) -> None:
        self.known.setdefault(fp, evaluation)

    def get(self, fp: str) -> Evaluation | None:
        e = self.known.get(fp)
        return None if e is None else e.reused()

    def join(self, fp: str, child: Child) -> bool:
        """Whether an equal program is training now (the child then waits for its result);
        otherwise the child's training starts."""
        if fp in self.waiting:
            self.waiting[fp].append(child)
            return True
        self.waiting[fp] = []
        return False

    def finish(self, fp: str) -> list[Child]:
        """The children that waited for this fingerprint's training."""
        return self.waiting.pop(fp, [])


class Search:
    """A search in a run directory. `run()` executes it to its budget (resuming what is there)."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.dir = RunDir(run_dir)
        self.dir.acquire()  # released when `run` ends (`RunDir.close`)
        try:
            history = self.dir.history(repair=True)
            if history and not resume:
                raise ConfigError(f"{self.dir.path} already holds a run ({len(history)} evaluations): "
                                  "pass --resume to continue it, or choose another --run-dir")
        except Exception:
            self.dir.release()
            raise
        self.dir.write_config(to_dict(cfg))
        self.evo = Evolution(cfg.search, cfg.search_space, cfg.seed)
        self.cache = FitnessCache()
        self.records: list[Record] = []
        self.best: Record | None = None
        self.stale = 0  # evaluations since the best improved
        self.stats = Stats()
        self.hall = HallOfFame()  # written to pareto.json at each checkpoint
        self.in_flight = 0  # children in training, or waiting for an equal one's result
        self.rescores: deque = deque()  # (fingerprint, child, result): would-be leaders to train on more seeds
        self.training = 0  # children in training
        self.bar = None
        for rec in history:
            self._admit(rec)
        self._start = time.monotonic()

    # ---- bookkeeping shared by live records and replayed ones ----------------------------------
    def _admit(self, rec: Record) -> None:
        self.records.append(rec)
        self.stats.count(rec)
        self.evo.tell(rec)
        self.hall.add(rec)
        if rec.source in ("trained", "warm_start") and rec.fingerprint:
            self.cache.add(rec.fingerprint, rec.evaluation)
        if self.best is None or rec.loss < self.best.loss:
            self.best, self.stale = rec, 0
        elif rec.source != "restart":
            self.stale += 1

    def _record(self, program: Program, parent: int | None, mutation: str, rejected: int, fingerprint: str | None,
                evaluation: Evaluation, source: str, island: int = 0) -> Record:
        rec = Record(len(self.records), program, parent, mutation, rejected, fingerprint, evaluation, source,
                     round(time.monotonic() - self._start, 3), island)
        self.dir.append(rec)
        self._admit(rec)
        if rec.id % self.cfg.search.checkpoint_every == 0:
            self.checkpoint()
        return rec

    def _child_record(self, c: Child, fp: str, evaluation: Evaluation, source: str) -> Record:
        return self._record(c.program, c.parent.id, c.mutation, c.rejected, fp, evaluation, source, c.island)

    def checkpoint(self) -> None:
        self.dir.write_json("population.json", {
            "evaluations": len(self.records), "stats": self.stats.as_dict(),
            "population": [{"id": r.id, "island": r.island, "fitness": r.to_json()["fitness"], "status": r.evaluation.status,
                            "fingerprint": r.fingerprint, "program": r.text} for r in self.evo.population]})
        self.dir.write_json("pareto.json", self.hall.to_json())
        if self.best is not None:
            self.dir.write_text("best.opt", f"# id {self.best.id}, validation loss {self.best.to_json()['fitness']}\n"
                                + self.best.text)

    # ---- the loop ---------------------------------------------------------------------------------
    def stop_reason(self) -> str | None:
        """Why the search stops proposing children now: "evaluations" or "max_trainings" (that
        budget is spent), "target_loss" (the best reached it) or "max_minutes" (time is up); None: it
        goes on."""
        s = self.cfg.search
        if len(self.records) + self.in_flight >= s.evaluations:
            return "evaluations"
        if s.max_trainings is not None and self.stats.sources["trained"] + self.training >= s.max_trainings:
            return "max_trainings"
        if s.target_loss is not None and self.best is not None and self.best.loss <= s.target_loss:
            return "target_loss"
        if s.max_minutes is not None and time.monotonic() - self._start >= 60 * s.max_minutes:
            return "max_minutes"
        return None

    def _children(self):
        """Children that need training, as `WorkerPool.map` items, proposed until a stop condition
        holds: a child the checks answer (dead code only, the cache) is recorded here at once. A
        would-be leader's re-score (`search.rescore_seeds`) goes before any new child."""
        while True:
            while self.rescores:
                fp, c, first = self.rescores.popleft()
                yield ("rescore", fp, c, first), c.live, self.cfg.search.rescore_seeds
            if self.stop_reason() is not None:
                return
            c = self.evo.ask()
            if c.dead_code_only:
                self._child_record(c, c.parent.fingerprint, c.parent.evaluation.reused(), "dead_code")
                self._after_child()
                continue
            fp = dsl.fingerprint(c.live)
            known = self.cache.get(fp)
            if known is not None:
                self._child_record(c, fp, known, "cache")
                self._after_child()
                continue
            self.in_flight += 1
            if not self.cache.join(fp, c):
                self.training += 1
                yield ("child", fp, c), c.live

    def _would_lead(self, c: Child, res: Evaluation) -> bool:
        """Whether a trained child would rank among the `rescore_top` best of its population."""
        s = self.cfg.search
        if not s.rescore_seeds or not res.ok:
            return False
        ranked = sorted(r.loss for r in self.evo.islands[c.island])
        return not ranked or res.loss < ranked[min(s.rescore_top, len(ranked)) - 1]

    def _trained(self, key: tuple, res: Evaluation) -> None:
        """A training finished: a would-be leader goes back for its re-score; a child is recorded,
        with the children that waited for an equal program."""
        kind, fp, child, *first = key
        if kind == "rescore":
            res = first[0].joined(res)
        elif self._would_lead(child, res):
            self.rescores.append((fp, child, res))
            return
        self._child_record(child, fp, res, "trained")
        self.in_flight -= 1
        self.training -= 1
        for other in self.cache.finish(fp):
            self._child_record(other, fp, res.reused(), "cache")
            self.in_flight -= 1
        self._after_child()

    def _after_child(self) -> None:
        """After a child's record: the progress bar, then a restart or a migration where one is due."""
        _update(self.bar, self)
        self._maybe_restart()
        self._maybe_migrate()

    def _children_done(self) -> int:
        return sum(self.stats.sources[k] for k in ("trained", "cache", "dead_code"))

    def _maybe_migrate(self) -> None:
        """Every `migration_every` children, a migration (`Evolution.migrants`), recorded as
        `migrant` records (the fitness travels with the program), so a resume replays it. A round
        is islands x migrants records, written whole even past the budget (a round cut by the
        budget would start again on resume, and a resumed run would differ from one run at once),
        so the rounds done are counted from the history."""
        s = self.cfg.search
        if s.islands < 2 or s.migration_every is None:
            return
        size = s.islands * s.migrants
        while self.stats.sources["migrant"] // size < self._children_done() // s.migration_every:
            for rec, to in self.evo.migrants():
                self._record(rec.program, rec.id, f"migrant from island {rec.island}", 0, rec.fingerprint,
                             dataclasses.replace(rec.evaluation.reused(), seconds=0.0), "migrant", to)

    def _maybe_restart(self) -> None:
        s = self.cfg.search
        if s.method == "evolution" and s.restart_after and self.stale >= s.restart_after \
                and len(self.records) < s.evaluations:
            b = self.best
            self._record(b.program, b.id, "restart from the best", 0, b.fingerprint,
                         dataclasses.replace(b.evaluation.reused(), seconds=0.0), "restart")
            self.stale = 0

    def run(self, pool) -> dict:
        """Search until a budget is spent (evaluations, trainings, minutes) or the target loss is
        reached; `pool` is a `WorkerPool`."""
        s = self.cfg.search
        self._start = time.monotonic()  # max_minutes counts from here
        bar = self.bar = _progress(self) if self.progress else None
        try:
            todo = [dsl.load(n) for n in self.cfg.search_space.warm_start][len(self.evo.warm):]  # validated
            if todo and len(self.records) == len(self.evo.warm):  # a run starts with its warm starts
                lives = [dsl.strip_dead_code(w.inline_params()) for w in todo]
                done = dict(pool.map([((i, dsl.fingerprint(live)), live) for i, live in enumerate(lives)]))
                for (i, fp), res in sorted(done.items()):  # in the config's order, however they finished
                    self._record(todo[i], None, "warm start", 0, fp, res, "warm_start")
                _update(bar, self)
            self.evo.k = self.stats.sources["warm_start"] + self._children_done()  # resumed: the streams not yet used
            while True:  # once the budget is spent, the re-scores the last trainings asked for
                for key, res in pool.map(self._children()):
                    self._trained(key, res)
                if not self.rescores:
                    break
            summary = self.summary()
            self.dir.write_json("summary.json", summary)
        finally:
            if bar is not None:
                bar.close()
            self.checkpoint()
            self.dir.close()
        return summary

    def summary(self, top: int = 5) -> dict:
        best = [{"id": r.id, "fitness": r.to_json()["fitness"], "accuracy": r.evaluation.accuracy,
                 "status": r.evaluation.status, "fingerprint": r.fingerprint, "program": r.text}
                for r in best_distinct(self.records, top)]
        s = self.cfg.search
        stopped = self.stop_reason() or "evaluations"
        why = (f"the best ({self.best.loss:.4g}) reached target_loss {s.target_loss:g}" if stopped == "target_loss"
               else f"max_minutes ({s.max_minutes:g}) passed" if stopped == "max_minutes"
               else f"the budget of {s.max_trainings} trainings is spent" if stopped == "max_trainings"
               else f"the budget of {s.evaluations} evaluations is spent")
        return {"run_dir": str(self.dir.path), "evaluations": len(self.records), "stopped": stopped,
                "stopped_because": why,
                "seconds": round(time.monotonic() - self._start, 1), "stats": self.stats.as_dict(),
                "rescored": sum(r.source == "trained" and len(r.evaluation.seed_losses or ()) > len(self.cfg.task.seeds)
                                for r in self.records), "best": best}


def _done(search: Search) -> tuple[int, int, str]:
    """The progress of the budget that ends the search: (done, total, unit)."""
    s = search.cfg.search
    if s.max_trainings is not None:
        return search.stats.sources["trained"], s.max_trainings, "training"
    return len(search.records), s.evaluations, "eval"


def _progress(search: Search):
    from tqdm import tqdm
    done, total, unit = _done(search)
    return tqdm(total=total, initial=done, desc="search", unit=unit, dynamic_ncols=True)


def _update(bar, search: Search) -> None:
    if bar is None:
        return
    bar.n = _done(search)[0]
    st = search.stats.as_dict()
    bar.set_postfix(best=f"{search.best.loss:.4f}", cache=f"{st['cache_rate']:.0%}",
                    dead=f"{st['dead_code_rate']:.0%}", rejected=f"{st['rejected_rate']:.0%}", refresh=False)
    bar.refresh()
