"""The `lionsearch` subcommands that inspect a run directory or export a program:

    show RUN [--top K]         the best K distinct programs of a run, with its counters
    lineage RUN [ID_OR_FP]     the mutation chain from the warm start to a program (default: the best)
    plot RUN [--out DIR]       PNGs of the search's progress and of its fitness distribution
    export PROGRAM --to T      stand-alone optax or PyTorch source for a program (or a run's best)

`add_parsers(subparsers)` registers them on the CLI's subparsers; `show` for a built-in or an
.opt file stays where it is, and hands run directories to `show_run_dir`.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import dsl
from dsl.export import TARGETS, ExportError, export

from search import inspect
from search.rundir import RunDirError


def _fail(cmd: str, e: Exception) -> SystemExit:
    return SystemExit(f"lionsearch {cmd}: {e}")


def _loss(x) -> str:
    return "failed" if x is None or not math.isfinite(x) else f"{x:.4f}"


def _acc(x) -> str:
    return "" if x is None else f", accuracy {x:.4f}"


def _run(cmd: str, path: str) -> str:
    if not inspect.is_run_dir(path):
        raise SystemExit(f"lionsearch {cmd}: {path}: not a run directory (no history.jsonl or config.yaml)")
    return path


# ---- show ------------------------------------------------------------------------------------------

def show_run_dir(path: str | Path, top: int = 5) -> int:
    """Print what a run found: counters, the warm start, and the `top` best distinct programs."""
    try:
        info = inspect.show_run(path, top)
    except (inspect.InspectError, RunDirError) as e:
        raise _fail("show", e) from None
    c = info["counters"]
    print(f"run directory: {info['run_dir']}" + (f" (task {info['task']})" if info["task"] else ""))
    if not c["evaluations"]:
        print("no evaluations yet")
        return 0
    print(f"{c['evaluations']} evaluations ({c['trained']} trained, {c['restarts']} restarts, {c['failures']} failures, "
          f"{c['distinct_programs']} distinct programs, {c['training_seconds']:.0f} s of training)")
    print(f"of {c['proposed']} children proposed, {c['saved_rate']:.1%} spared training: rejected "
          f"{c['rejected_rate']:.1%}, cache {c['cache_rate']:.1%}, dead-code-only {c['dead_code_rate']:.1%}")
    warm = info["warm_start"]
    base = warm["fitness"] if warm else None
    if warm:
        print(f"warm start (id {warm['id']}): validation loss {_loss(base)}{_acc(warm['accuracy'])}")
    if not info["best"]:
        print("no program has a finite validation loss yet")
    for rank, b in enumerate(info["best"], 1):
        gain = f" ({(b['fitness'] - base) / abs(base):+.1%} vs warm start)" if base else ""
        print(f"\n# {rank}. id {b['id']}: validation loss {_loss(b['fitness'])}{gain}{_acc(b['accuracy'])}, "
              f"status {b['status']}")
        print(f"# fingerprint {b['fingerprint']}; {b['evaluations']} evaluation(s); "
              f"{b['live_statements']} of {b['statements']} statements live")
        print(b["live"], end="")
    return 0


# ---- lineage ---------------------------------------------------------------------------------------

def cmd_lineage(args) -> int:
    run = _run("lineage", args.run)
    try:
        recs = inspect.records(run)
        graph = inspect.lineage_graph(recs)
        chain = inspect.lineage(recs, args.program, graph=graph)
        if args.graph:
            g = graph.subgraph(r.id for r in chain).copy() if args.chain_only else graph
            path = inspect.write_graph(g, args.graph)
    except (inspect.InspectError, RunDirError) as e:
        raise _fail("lineage", e) from None
    end = chain[-1]
    print(f"lineage of id {end.id} (fingerprint {end.fingerprint}, validation loss {_loss(end.loss)}): "
          f"{len(chain) - 1} mutation(s) from id {chain[0].id} ({chain[0].source})")
    print(f"{'id':>7}  {'loss':>10}  {'source':<10}  mutation")
    for r in chain:
        print(f"{r.id:>7}  {_loss(r.loss):>10}  {r.source:<10}  {r.mutation}")
    print(f"\n# id {end.id}, live statements:")
    print(dsl.to_text(dsl.strip_dead_code(end.program)), end="")
    if args.graph:
        print(f"\nwrote {'the chain' if args.chain_only else 'the whole history'} as a graph "
              f"({g.number_of_nodes()} nodes, {g.number_of_edges()} edges): {path}")
    return 0


# ---- plot ------------------------------------------------------------------------------------------

def cmd_plot(args) -> int:
    run = _run("plot", args.run)
    try:
        paths = inspect.plot_run(run, args.out)
    except (inspect.InspectError, RunDirError) as e:
        raise _fail("plot", e) from None
    for p in paths:
        print(p)
    return 0


# ---- export ----------------------------------------------------------------------------------------

def cmd_export(args) -> int:
    try:
        src = export(inspect.load_program(args.program, args.id), args.to, name=args.name)
    except (inspect.InspectError, RunDirError, ExportError, dsl.ProgramError) as e:
        raise _fail("export", e) from None
    if args.output:
        Path(args.output).write_text(src)
        print(f"wrote {args.to} source: {args.output}")
    else:
        print(src, end="")
    return 0


# ---- wiring ----------------------------------------------------------------------------------------

def _positive(text: str) -> int:
    k = int(text)
    if k < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {k}")
    return k


def add_parsers(subparsers) -> None:
    """Register `lineage`, `plot` and `export`."""
    sp = subparsers.add_parser("lineage", help="the mutation chain from the warm start to a program of a run")
    sp.add_argument("run", help="run directory")
    sp.add_argument("program", nargs="?", metavar="ID_OR_FINGERPRINT",
                    help="an evaluation id, or a fingerprint (or a unique prefix of one); default: the best")
    sp.add_argument("--graph", metavar="FILE",
                    help="also write the history as a graph (node per evaluation, edge parent -> child with "
                         f"the mutation); format by suffix: {', '.join(inspect.GRAPH_FORMATS)}")
    sp.add_argument("--chain-only", action="store_true", help="with --graph: write only the chain")
    sp.set_defaults(func=cmd_lineage)

    sp = subparsers.add_parser("plot", help="PNG plots of a run: best fitness over evaluations, fitness histogram")
    sp.add_argument("run", help="run directory")
    sp.add_argument("--out", metavar="DIR", help="where to write the PNGs (default: the run directory)")
    sp.set_defaults(func=cmd_plot)

    sp = subparsers.add_parser("export", help="stand-alone optax or PyTorch source for a program")
    sp.add_argument("program", help=f"a built-in ({', '.join(dsl.builtin_names())}), an .opt file, "
                                    "or a run directory (its best program)")
    sp.add_argument("--to", required=True, choices=TARGETS, help="the framework to write for")
    sp.add_argument("--id", metavar="ID_OR_FINGERPRINT", help="for a run directory: export this program instead")
    sp.add_argument("--name", help="the PyTorch class name (default: from the program's name)")
    sp.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of printing")
    sp.set_defaults(func=cmd_export)
