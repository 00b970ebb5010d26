"""Typed history records: what one evaluation of a search leaves in `history.jsonl`.

`Evaluation` is a program's score as a record keeps it (the task's `proxy_tasks.Fitness` and the
worker that trained it); `Record` is one line of the history (the program, parsed once, where it
came from, and its evaluation). `to_json` writes the history's format; `from_json` reads it back
and names the field and line of anything malformed, so a damaged run directory is an error, not a
stack trace from deep inside.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import dsl
from dsl import Program

# How a record got its evaluation: the ways children are spared training, and the ways they are not.
SOURCES = ("warm_start", "trained", "cache", "dead_code", "restart", "migrant")


class RecordError(ValueError):
    pass


def finite_or_inf(x) -> float:
    """A loss to compare: None, NaN and inf (failures) all sort last."""
    return math.inf if x is None or not math.isfinite(x) else float(x)


def loss_text(x) -> str:
    """A loss as the command line prints it: four decimals, or "failed" (None, NaN, inf)."""
    return "failed" if x is None or not math.isfinite(x) else f"{x:.4f}"


@dataclass(frozen=True)
class Evaluation:
    """A program's validation loss on the search's task (mean over seeds; inf where training
    failed), its accuracy, status ("ok" or why it failed), seconds, and which worker trained it
    (None where no training was needed)."""
    loss: float
    accuracy: float | None
    status: str
    seconds: float
    worker: str | None = None
    seed_losses: tuple | None = None  # each seed's loss, None for a failed seed

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def of(cls, f, worker: str | None = None) -> "Evaluation":
        """From a task's `Fitness`."""
        return cls(finite_or_inf(f.loss), f.accuracy, f.status, f.seconds, worker,
                   tuple(x if math.isfinite(x) else None for x in f.seed_losses))

    @classmethod
    def failure(cls, status: str, seconds: float = 0.0) -> "Evaluation":
        return cls(math.inf, None, status, seconds)

    def reused(self) -> "Evaluation":
        """The same result, answered without training (no worker)."""
        return dataclasses.replace(self, worker=None)

    def joined(self, other: "Evaluation") -> "Evaluation":
        """This result and the same program's on other seeds as one: the mean over all the seeds
        (inf where any failed), the first failure's status, the seconds of both."""
        seeds = (self.seed_losses or ()) + (other.seed_losses or ())
        ok = self.ok and other.ok and all(x is not None for x in seeds)
        n, m = len(self.seed_losses or ()), len(other.seed_losses or ())
        acc = (None if self.accuracy is None or other.accuracy is None or not n + m
               else (self.accuracy * n + other.accuracy * m) / (n + m))
        return Evaluation(sum(seeds) / len(seeds) if ok and seeds else math.inf, acc,
                          self.status if not self.ok else other.status, self.seconds + other.seconds,
                          self.worker, seeds)

    def to_json(self) -> dict:
        return {"fitness": self.loss if math.isfinite(self.loss) else None, "accuracy": self.accuracy,
                "status": self.status, "seconds": self.seconds, "worker": self.worker,
                "seed_losses": None if self.seed_losses is None else list(self.seed_losses)}

    @classmethod
    def from_json(cls, d: dict, where: str = "record") -> "Evaluation":
        seeds = _field(d, "seed_losses", (list, type(None)), where, default=None)
        return cls(finite_or_inf(_field(d, "fitness", (int, float, type(None)), where)),
                   _field(d, "accuracy", (int, float, type(None)), where, default=None),
                   _field(d, "status", str, where), float(_field(d, "seconds", (int, float, type(None)), where) or 0.0),
                   _field(d, "worker", (str, type(None)), where, default=None),
                   None if seeds is None else tuple(seeds))


@dataclass(frozen=True)
class Record:
    """One evaluation of a search, as one line of `history.jsonl`."""
    id: int
    program: Program
    parent: int | None
    mutation: str
    rejected: int  # children rejected by the checks before this one (never trained, never recorded)
    fingerprint: str | None
    evaluation: Evaluation
    source: str
    time: float = 0.0  # seconds since the search (or its resume) started
    island: int = 0  # the population it joined (a search with `islands`; written where not 0)

    @property
    def loss(self) -> float:
        return self.evaluation.loss

    @property
    def text(self) -> str:
        return dsl.to_text(self.program)

    def to_json(self) -> dict:
        return {"id": self.id, "program": self.text, "parent": self.parent, "mutation": self.mutation,
                "rejected": self.rejected, "fingerprint": self.fingerprint, **self.evaluation.to_json(),
                "source": self.source, "time": self.time, **({"island": self.island} if self.island else {})}

    @classmethod
    def from_json(cls, d, where: str = "record") -> "Record":
        if not isinstance(d, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(d).__name__}")
        try:
            program = dsl.parse(_field(d, "program", str, where))
        except dsl.ProgramError as e:
            raise RecordError(f"{where}: field 'program': {e}") from None
        source = _field(d, "source", str, where)
        if source not in SOURCES:
            raise RecordError(f"{where}: field 'source': expected one of {', '.join(SOURCES)}, got {source!r}")
        return cls(_field(d, "id", int, where), program, _field(d, "parent", (int, type(None)), where),
                   _field(d, "mutation", str, where), _field(d, "rejected", int, where, default=0),
                   _field(d, "fingerprint", (str, type(None)), where, default=None),
                   Evaluation.from_json(d, where), source, float(_field(d, "time", (int, float), where, default=0.0)),
                   _field(d, "island", int, where, default=0))


def _field(d: dict, key: str, types, where: str, **default):
    if key not in d:
        if default:
            return default["default"]
        raise RecordError(f"{where}: field '{key}' is missing")
    x = d[key]
    if not isinstance(x, types) or isinstance(x, bool):
        names = " or ".join(t.__name__.replace("NoneType", "null") for t in (types if isinstance(types, tuple) else (types,)))
        raise RecordError(f"{where}: field '{key}': expected {names}, got {x!r}")
    return x


def best_distinct(records: list[Record], top: int) -> list[Record]:
    """The `top` best records with finite loss and distinct fingerprints, best first (the earliest
    of equals)."""
    seen, best = set(), []
    for r in sorted(records, key=lambda r: (r.loss, r.id)):
        if len(best) == top:
            break
        if r.fingerprint not in seen and math.isfinite(r.loss):
            seen.add(r.fingerprint)
            best.append(r)
    return best


class HallOfFame:
    """The Pareto front of live statements against fitness over a whole run (aging never removes
    anything from it): for each length, the best record; on the front, the lengths whose best beats
    every shorter length's. `add` is cheap enough to call on every record; `records` are added first."""

    def __init__(self, records=()):
        self.by_length: dict[int, Record] = {}
        for r in records:
            self.add(r)

    def add(self, rec: Record) -> None:
        if not math.isfinite(rec.loss):
            return
        n = len(dsl.strip_dead_code(rec.program.inline_params()))
        old = self.by_length.get(n)
        if old is None or rec.loss < old.loss:
            self.by_length[n] = rec

    def front(self) -> list[tuple[int, Record]]:
        """(live statements, record), shortest first, each better than all shorter ones."""
        out: list[tuple[int, Record]] = []
        for n in sorted(self.by_length):
            rec = self.by_length[n]
            if not out or rec.loss < out[-1][1].loss:
                out.append((n, rec))
        return out

    def to_json(self) -> list[dict]:
        return [{"live_statements": n, "id": r.id, "fitness": r.to_json()["fitness"], "fingerprint": r.fingerprint,
                 "program": dsl.to_text(dsl.strip_dead_code(r.program.inline_params()))} for n, r in self.front()]
