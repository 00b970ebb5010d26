"""Inspect a run directory: the best distinct programs and the run's counters, the lineage of a
program (its chain of mutations from the warm start), and plots of the search's progress.

Everything here reads the history (`history.jsonl`) and never writes into the run directory, except
`plot_run`, which by default saves its PNGs there. Functions return data and paths; printing is
the CLI's job (`lionsearch/cli_inspect.py`).
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import networkx as nx
import numpy as np
import yaml

import dsl

from .evolution import Stats
from .record import HallOfFame, Record, best_distinct
from .rundir import HISTORY, read_history

GRAPH_FORMATS = {".graphml": nx.write_graphml, ".gexf": nx.write_gexf}


class InspectError(ValueError):
    """A run directory or a reference into it that cannot be used (the message says why)."""


def is_run_dir(path: str | Path) -> bool:
    """Whether `path` is a run directory (it has a history, or at least the resolved config)."""
    p = Path(path)
    return p.is_dir() and ((p / HISTORY).is_file() or (p / "config.yaml").is_file())


def records(run: str | Path | list[Record]) -> list[Record]:
    """The history of a run directory (read only: a torn last line is skipped, not repaired);
    a list of records passes through."""
    if isinstance(run, list):
        return run
    if not is_run_dir(run):
        raise InspectError(f"{run}: not a run directory (no {HISTORY} or config.yaml)")
    return read_history(run)


def counters(recs: list[Record]) -> dict:
    """The run's counters, recomputed from its history the way the search counts them."""
    st = Stats()
    for r in recs:
        st.count(r)
    trained = [r for r in recs if r.source in ("trained", "warm_start")]
    return {"evaluations": len(recs), **st.as_dict(),
            "failures": sum(1 for r in recs if not math.isfinite(r.loss)),
            "distinct_programs": len({r.fingerprint for r in recs}),
            "training_seconds": round(sum(r.evaluation.seconds for r in trained), 3)}


def _program_info(r: Record, uses: Counter | None = None) -> dict:
    live = dsl.strip_dead_code(r.program)
    info = {k: v for k, v in r.to_json().items()
            if k in ("id", "fitness", "accuracy", "status", "fingerprint", "source", "parent")}
    info.update(statements=len(r.program), live_statements=len(live), program=r.text, live=dsl.to_text(live))
    if uses is not None:
        info["evaluations"] = uses[r.fingerprint]
    return info


def show_run(run_dir: str | Path, top: int = 5) -> dict:
    """What a run found: its counters, the warm start's fitness, and the `top` best functionally
    distinct programs, each with its dead-code-stripped text (`live`)."""
    recs = records(run_dir)
    cfg_file = Path(run_dir) / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text()) if cfg_file.is_file() else {}
    uses = Counter(r.fingerprint for r in recs)
    warm = next((r for r in recs if r.source == "warm_start"), None)
    islands = sorted({r.island for r in recs})
    workers = Counter(r.evaluation.worker for r in recs if r.source in ("trained", "warm_start") and r.evaluation.worker)
    return {"run_dir": str(run_dir), "task": (cfg.get("task") or {}).get("name"), "counters": counters(recs),
            "warm_start": None if warm is None else _program_info(warm, uses),
            "best": [_program_info(r, uses) for r in best_distinct(recs, top)],
            "trainings_per_worker": dict(sorted(workers.items())),
            "trainings_per_node": dict(sorted(_by_node(workers).items())),
            "islands": [] if islands == [0] else [  # each island's children and its best
                {"island": i, "children": sum(r.island == i and r.source in ("trained", "cache", "dead_code")
                                              for r in recs),
                 "best": next(iter(best_distinct([r for r in recs if r.island == i], 1)), None)} for i in islands]}


def _by_node(workers: Counter) -> Counter:
    """Trainings per node: the part of a worker's name after '@' (its host where there is none)."""
    out = Counter()
    for w, n in workers.items():
        out[w.rpartition("@")[2] if "@" in w else w.rpartition(":")[0]] += n
    return out


# ---- lineage -------------------------------------------------------------------------------------

_NODE_KEYS = ("fitness", "accuracy", "status", "source", "fingerprint", "mutation", "rejected", "worker",
              "seconds", "time", "program")


def pareto(run: str | Path | list[Record]) -> HallOfFame:
    """The run's hall of fame (the Pareto front of live statements against fitness), from its history."""
    return HallOfFame(records(run))


def lineage_graph(run: str | Path | list[Record]) -> nx.DiGraph:
    """The history as a graph: a node per record (keyed by id, with its fields as attributes; a
    missing or null field is left out), an edge parent -> child carrying the mutation text."""
    g, recs = nx.DiGraph(), records(run)
    for r in recs:
        g.add_node(r.id, **{k: v for k, v in r.to_json().items() if k in _NODE_KEYS and v is not None})
    for r in recs:
        if r.parent is not None:
            if r.parent not in g:
                raise InspectError(f"record {r.id} names parent {r.parent}, which is not in the history")
            g.add_edge(r.parent, r.id, mutation=r.mutation)
    return g


def lineage_depths(run: str | Path | list[Record]) -> list[int]:
    """How many steps from the warm start each record's lineage is (its distance from the root)."""
    g = lineage_graph(run)
    roots = [n for n in g if g.in_degree(n) == 0]
    depth: dict[int, int] = {}
    for root in roots:
        depth.update(nx.single_source_shortest_path_length(g, root))
    return [depth[n] for n in sorted(depth)]


def load_program(ref: str, ident: str | None = None) -> dsl.Program:
    """A program by reference: a built-in name, an .opt path, or a run directory's best program
    (or the one `ident`, an id or fingerprint, names)."""
    if is_run_dir(ref):
        return find(ref, ident).program
    if ident is not None:
        raise InspectError(f"--id needs a run directory; {ref} is a program")
    return dsl.load(ref)


def find(run: str | Path | list[Record], ref: str | int | None = None) -> Record:
    """The record `ref` names: an id, a fingerprint or a unique prefix of one (its earliest
    record: where the search found it), or None for the best record (as `best_distinct` ranks)."""
    recs = records(run)
    if not recs:
        raise InspectError("the run has no evaluations yet")
    if ref is None:
        best = best_distinct(recs, 1)
        if not best:
            raise InspectError("the run has no successful evaluation yet")
        return best[0]
    ref = str(ref).strip()
    if ref.isdigit() and len(ref) < 16:
        by_id = {r.id: r for r in recs}
        if int(ref) not in by_id:
            raise InspectError(f"no evaluation with id {ref} (ids run from 0 to {len(recs) - 1})")
        return by_id[int(ref)]
    fps = sorted({r.fingerprint for r in recs if r.fingerprint and r.fingerprint.startswith(ref.lower())})
    if not fps or len(ref) < 4:
        raise InspectError(f"{ref!r} is neither an evaluation id nor a fingerprint in this run"
                           + (" (give at least 4 characters of a fingerprint)" if fps else ""))
    if len(fps) > 1:
        raise InspectError(f"fingerprint prefix {ref!r} is ambiguous: {', '.join(fps[:5])}"
                           + (", ..." if len(fps) > 5 else ""))
    return min((r for r in recs if r.fingerprint == fps[0]), key=lambda r: r.id)


def lineage(run: str | Path | list[Record], ref: str | int | None = None,
            graph: nx.DiGraph | None = None) -> list[Record]:
    """The ancestry of a program (default: the best) as its records from the root (the warm start)
    to it: each step's `parent` is the step before."""
    recs = records(run)
    target = find(recs, ref)
    g = graph if graph is not None else lineage_graph(recs)
    by_id = {r.id: r for r in recs}
    chain, node = [], target.id
    while True:
        chain.append(by_id[node])
        parents = list(g.predecessors(node))
        if not parents:
            break
        node = parents[0]
        if len(chain) > len(recs):
            raise InspectError(f"the history's parent links form a cycle through id {node}")
    return chain[::-1]


def write_graph(g: nx.DiGraph, path: str | Path) -> Path:
    """Write `g` as GraphML (`.graphml`) or GEXF (`.gexf`), chosen by the file's suffix."""
    path = Path(path)
    writer = GRAPH_FORMATS.get(path.suffix.lower())
    if writer is None:
        raise InspectError(f"{path}: unknown graph format {path.suffix or '(no suffix)'!r}; "
                           f"use one of {', '.join(GRAPH_FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer(g, path)
    return path


# ---- plots -----------------------------------------------------------------------------------------

def plot_run(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """PNGs of the search (saved under `out`, default the run directory): the best fitness so far
    over evaluations with every evaluation as a faint point, the distribution of the finite
    validation losses, and the hall of fame (fitness against live statements, with the Pareto
    front). Returns the files' paths."""
    recs = records(run_dir)
    if not recs:
        raise InspectError(f"{run_dir}: the run has no evaluations yet; nothing to plot")
    out = Path(out) if out is not None else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = np.array([r.id for r in recs])
    loss = np.array([r.loss for r in recs])
    ok = np.isfinite(loss)
    best = np.minimum.accumulate(loss)
    name = Path(run_dir).resolve().name
    fails = int((~ok).sum())
    figs = {}

    figs["fitness_progress.png"], ax = _axes((8, 4.5), f"{name}: best validation loss over {len(recs)} evaluations"
                                             + (f" ({fails} failures)" if fails else ""),
                                             "evaluation", "validation loss (lower is better)")
    if ok.any():
        lo = loss[ok].min()
        first = loss[ok][0]  # the warm start's, usually
        ref = max(first, float(np.median(loss[ok])))
        hi = ref + max(ref - lo, 0.05 * abs(ref) + 1e-12) * 0.5  # outliers far above would flatten it
        shown = ok & (loss <= hi)
        ax.scatter(ids[shown], loss[shown], s=6, alpha=0.25, color="tab:blue", label="evaluations")
        above = ok & (loss > hi)
        if above.any():
            ax.scatter(ids[above], np.full(above.sum(), hi), s=10, marker="^", alpha=0.4, color="tab:orange",
                       label=f"{above.sum()} above the range shown")
        ax.step(ids, np.where(np.isfinite(best), best, np.nan), where="post", color="tab:red", lw=1.8,
                label="best so far")
        ax.axhline(first, color="gray", ls="--", lw=0.8, label=f"first result ({first:.4g})")
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.02 * (hi - lo))
        if (~ok).any():  # failures (NaN, divergence, timeouts): marked along the top
            ax.scatter(ids[~ok], np.full((~ok).sum(), hi), s=12, marker="x", alpha=0.4, color="tab:red",
                       label=f"{(~ok).sum()} failures")
    restarts = [r.id for r in recs if r.source == "restart"]
    for k, x in enumerate(restarts):
        ax.axvline(x, color="green", lw=0.6, alpha=0.5, label="restart" if k == 0 else None)
    ax.legend(fontsize=8, loc="center right")

    finite = loss[ok]
    figs["fitness_histogram.png"], ax = _axes((7, 4.5), f"{name}: {finite.size} finite validation losses"
                                              + (f", {fails} failures" if fails else ""),
                                              "validation loss", "evaluations")
    if finite.size:
        if finite.min() > 0 and finite.max() / finite.min() > 100:  # outliers: bins even in log space
            bins = np.geomspace(finite.min(), finite.max(), 40)
            ax.set_xscale("log")
        else:
            bins = 30
        ax.hist(finite, bins=bins, color="tab:blue", alpha=0.8)
        ax.axvline(finite.min(), color="tab:red", lw=1, label=f"best ({finite.min():.4g})")
        ax.legend(fontsize=8)

    hall = pareto(recs)
    figs["pareto_front.png"], ax = _axes((7, 4.5), f"{name}: hall of fame, fitness against live statements",
                                         "live statements", "validation loss (lower is better)")
    sizes = sorted(hall.by_length)
    best = np.array([hall.by_length[n].loss for n in sizes])
    front = hall.front()
    if front:  # as in the progress plot: a far outlier would flatten the front, so it is marked at the top
        lo, ref = front[-1][1].loss, front[0][1].loss
        hi = ref + max(ref - lo, 0.05 * abs(ref) + 1e-12)
        far = best > hi
        ax.scatter(np.array(sizes)[~far], best[~far], s=14, color="tab:blue", alpha=0.6, label="best program of each length")
        if far.any():
            ax.scatter(np.array(sizes)[far], np.full(far.sum(), hi), s=14, marker="^", color="tab:orange", alpha=0.6,
                       label=f"{far.sum()} above the range shown")
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    ax.step([n for n, _ in front], [r.loss for _, r in front], where="post", color="tab:red", lw=1.8,
            marker="o", label="Pareto front (pareto.json)")
    for n, r in front:
        ax.annotate(f"id {r.id}", (n, r.loss), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.legend(fontsize=8)
    for file, fig in figs.items():
        fig.tight_layout()
        fig.savefig(out / file)
    return [out / file for file in figs]


def _axes(size: tuple[float, float], title: str, xlabel: str, ylabel: str):
    """A figure (drawn off screen) with one titled, labelled and gridded plot: (figure, axes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=size, dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return fig, ax
