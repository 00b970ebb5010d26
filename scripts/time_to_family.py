"""Time to the Lion family, the search's figure of merit: for each run directory, when the first
program of a family (`dsl.family`: lion or signum by default) was evaluated, and when one first was
the best so far, beside the counts that say how much the search explored and the best fitness it
reached, and whether the search kept the warm start's momentum (`dsl.keeps_momentum`): the rank
among the run's distinct programs, best first, of the best one that keeps a momentum EMA of g, and
its share of the population as the search went (the population replayed from the history, at a
few counts of children trained): a search that loses the momentum loses it all at once, when a
program without one first leads and its descendants fill the tournaments. A run with islands gets
a row for each island besides its own.

    python scripts/time_to_family.py RUN [RUN ...] [--families lion signum]

A change to mutation or caching is judged by this figure (does the search meet the family sooner,
and keep it), not by the share of children spared training alone.
"""
from __future__ import annotations

import argparse
import math

import dsl
from search.config import RunConfig, from_dict, upgrade
from search.evolution import Evolution
from search.record import best_distinct
from search.rundir import RunDir, read_history

MARKS = (50, 100, 200, 500, 1500)  # children trained, at which the population's momentum share is taken


def momentum_shares(run, island: int | None = None, marks=MARKS) -> list[float | None]:
    """The share of the population (of one island) that keeps a momentum (`dsl.keeps_momentum`)
    when the search had trained each of `marks` children (None: it never trained that many). The
    population is replayed from the history by the search's own `Evolution`."""
    cfg = from_dict(RunConfig, upgrade(RunDir(run).read_config()), f"{run}/config.yaml:")
    evo = Evolution(cfg.search, cfg.search_space, cfg.seed)
    keeps: dict[str, bool] = {}  # fingerprint -> whether it keeps a momentum, each program checked once
    shares, trained, todo = [], 0, list(marks)

    def share():
        pop = evo.islands[island or 0] if island is not None else evo.population
        return sum(keeps[r.fingerprint] for r in pop) / len(pop)

    for r in read_history(run):
        keeps.setdefault(r.fingerprint, dsl.keeps_momentum(r.program))
        evo.tell(r)
        trained += r.source == "trained"
        while todo and trained >= todo[0]:
            todo.pop(0)
            shares.append(share())
    return shares + [None] * len(todo)


def first_of(run, families, island: int | None = None) -> dict:
    """The figures of one run directory, or of one of its islands (that island's records; the warm
    start, which joins every island, is counted on island 0)."""
    recs, shares = read_history(run), momentum_shares(run, island)
    if island is not None:
        recs = [r for r in recs if r.island == island]
        run = f"{run} (island {island})"
    names: dict[str, str] = {}  # fingerprint -> family name, each program classified once
    met = led = None
    best = math.inf
    for r in recs:
        fam = names.setdefault(r.fingerprint, dsl.family(r.program).name)
        ok = fam in families and math.isfinite(r.loss)
        if ok and met is None:
            met = r
        if r.loss < best:
            best = r.loss
            if ok and led is None:
                led = r
    spared = sum(r.source in ("dead_code", "cache") for r in recs)
    ranked = best_distinct(recs, len(recs))
    momentum = next(((i + 1, r) for i, r in enumerate(ranked) if dsl.keeps_momentum(r.program)), None)
    return {"momentum": momentum, "run": str(run), "evaluations": len(recs), "trained": sum(r.source == "trained" for r in recs),
            "distinct": len(names), "spared": spared / max(len(recs), 1), "met": met, "led": led,
            "family": None if met is None else names[met.fingerprint], "best": best,
            "shares": shares}


def cell(r) -> str:
    return "never" if r is None else f"{r.id} ({r.time / 60:.1f} min, loss {r.loss:.4f})"


def table(runs, families) -> str:
    """The Markdown table of `first_of` for each run directory."""
    lines = [f"| run | evaluations | trained | distinct programs | spared (dead code, cache) | first {'/'.join(families)} "
             "evaluated: id (search minutes, loss) | first one best so far | best fitness | best with a momentum: rank "
             "(loss) | its population share at " + " / ".join(map(str, MARKS)) + " trained |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        islands = sorted({r.island for r in read_history(run)})
        for f in [first_of(run, set(families))] + ([first_of(run, set(families), i) for i in islands]
                                                   if len(islands) > 1 else []):
            lines.append(f"| {f['run']} | {f['evaluations']} | {f['trained']} | {f['distinct']} | {f['spared']:.0%} | "
                         f"{cell(f['met'])}{'' if f['family'] is None else ' ' + f['family']} | {cell(f['led'])} | "
                         f"{f['best']:.4f} | "
                         + ("none" if f["momentum"] is None else f"{f['momentum'][0]} ({f['momentum'][1].loss:.4f})")
                         + " | " + " / ".join("-" if x is None else f"{x:.0%}" for x in f["shares"]) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories")
    ap.add_argument("--families", nargs="+", default=["lion", "signum"])
    args = ap.parse_args()
    print(table(args.runs, args.families))


if __name__ == "__main__":
    main()
