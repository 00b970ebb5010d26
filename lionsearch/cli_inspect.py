"""The `lionsearch` subcommands that look at a program or a run directory, or export a program:

    show PROGRAM|RUN [--top K] a program with its analysis, or the best K distinct programs of a run
    ops                        the op table
    lineage RUN [ID_OR_FP]     the mutation chain from the warm start to a program (default: the best)
    plot RUN [--out DIR]       PNGs of the search's progress and of its fitness distribution
    report RUN [-o FILE]       one self-contained HTML page of a run (--watch: kept fresh while it runs)
    export PROGRAM --to T      stand-alone optax or PyTorch source for a program (or a run's best)
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import yaml

import dsl
from dsl.export import TARGETS, ExportError, export

from search import inspect
from search.config import yaml_why
from search.record import loss_text
from search.rundir import RunDir, RunDirError, repair_history


RUN_ERRORS = (inspect.InspectError, RunDirError)  # a run directory, or a reference into one, that cannot be used


@contextmanager
def exit_on(cmd: str, *errors: type[Exception]):
    """Inside: an error of one of these types ends the command with its message, in one line."""
    try:
        yield
    except errors as e:
        raise SystemExit(f"lionsearch {cmd}: {e}") from None


def _acc(x) -> str:
    return "" if x is None else f", accuracy {x:.4f}"


def _run(cmd: str, path: str) -> str:
    if not inspect.is_run_dir(path):
        raise SystemExit(f"lionsearch {cmd}: {path}: not a run directory (no history.jsonl or config.yaml)")
    return path


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be written in `folder` (made where missing), or None where they can."""
    q = folder
    while not q.exists() and q != q.parent:  # the nearest part of the path that exists
        q = q.parent
    if not q.is_dir():
        return f"{q} is a file, not a folder"
    if not os.access(q, os.W_OK | os.X_OK):
        return f"{q} is not writable (read-only)"
    return None


def out_dir(cmd: str, what: str, path: str | Path) -> Path:
    """A folder to write into, checked before any work (a missing one is made by whoever writes);
    where it cannot be written, one line naming `what` (the option) and why."""
    why = _unwritable(Path(path))
    if why:
        raise SystemExit(f"lionsearch {cmd}: {what} {path}: {why}")
    return Path(path)


def out_file(cmd: str, what: str, path: str | Path) -> Path:
    """A file to write, checked before any work: not a folder, writable, in a folder that is or can
    be made (`write_out` makes missing folders, as `plot --out` and `lineage --graph` always have)."""
    p = Path(path)
    if p.is_dir():
        raise SystemExit(f"lionsearch {cmd}: {what} {path}: is a folder; give a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise SystemExit(f"lionsearch {cmd}: {what} {path}: is not writable (read-only)")
    why = _unwritable(p.parent)
    if why:
        raise SystemExit(f"lionsearch {cmd}: {what} {path}: {why}")
    return p


def write_out(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def run_config(cmd: str, run: str | Path) -> dict:
    """A run directory's config.yaml read before any work: broken YAML, or a file that is not a
    mapping of settings, is one line naming the file. No config.yaml: {}."""
    f = Path(run) / "config.yaml"
    if not f.is_file():
        return {}
    try:
        cfg = yaml.safe_load(f.read_bytes().decode())
    except UnicodeDecodeError:
        raise SystemExit(f"lionsearch {cmd}: {f}: not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise SystemExit(f"lionsearch {cmd}: {f}: not valid YAML: {yaml_why(e)}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("task", {}), (dict, type(None))):
        raise SystemExit(f"lionsearch {cmd}: {f}: expected a mapping of settings (task, search, ...), "
                         f"got {str(cfg)[:40]!r}")
    return cfg


def load_program(ref: str) -> dsl.Program:
    """A program from a built-in name, an `.opt` path, or a run directory (its best program);
    errors exit with the reason."""
    try:
        return inspect.load_program(ref)
    except (dsl.ProgramError, inspect.InspectError) as e:
        raise SystemExit(f"lionsearch: {e}") from None


def add_show_parser(sub) -> None:
    sp = sub.add_parser("show", help="print a program (built-in, .opt file) with its analysis, or a run's best programs")
    sp.add_argument("program", help=f"a built-in ({', '.join(dsl.builtin_names())}), an .opt file, or a run directory")
    sp.add_argument("--strip", action="store_true", help="print it without dead code")
    sp.add_argument("--top", type=int, default=5, help="for a run directory: how many distinct programs to list")
    sp.add_argument("--pareto", action="store_true",
                    help="for a run directory: its hall of fame, the Pareto front of live statements against fitness")
    sp.set_defaults(func=cmd_show)


def cmd_show(args) -> int:
    if inspect.is_run_dir(args.program):
        return show_pareto(args.program) if args.pareto else show_run_dir(args.program, args.top)
    if args.pareto:
        raise SystemExit(f"lionsearch show: --pareto needs a run directory; {args.program} is not one")
    p = load_program(args.program)
    print(dsl.to_text(p if not args.strip else dsl.strip_dead_code(p)), end="")
    verdict = dsl.check(p)
    print(f"# statements: {len(p)} ({len(dsl.strip_dead_code(p))} live)")
    print(f"# state slots: {', '.join(dsl.state_slots(p)) or 'none'}")
    print(f"# fingerprint: {dsl.fingerprint(p)}")
    print(f"# check: {'ok' if verdict else 'rejected: ' + verdict.reason}")
    return 0


def show_run_dir(path: str | Path, top: int = 5) -> int:
    """Print what a run found: counters, the warm start, and the `top` best distinct programs."""
    run_config("show", path)
    with exit_on("show", *RUN_ERRORS):
        info = inspect.show_run(path, top)
    c = info["counters"]
    print(f"run directory: {info['run_dir']}" + (f" (task {info['task']})" if info["task"] else ""))
    if not c["evaluations"]:
        print("no evaluations yet")
        return 0
    print(f"{c['evaluations']} evaluations ({c['trained']} trained, {c['restarts']} restarts, {c['failures']} failures, "
          f"{c['distinct_programs']} distinct programs, {c['training_seconds']:.0f} s of training)")
    print(f"of {c['proposed']} children proposed, {c['saved_rate']:.1%} spared training: rejected "
          f"{c['rejected_rate']:.1%}, cache {c['cache_rate']:.1%}, dead-code-only {c['dead_code_rate']:.1%}")
    for what in ("worker", "node"):
        counts = info[f"trainings_per_{what}"]
        if counts:
            print(f"trainings per {what}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    for isl in info["islands"]:
        b = isl["best"]
        print(f"island {isl['island']}: {isl['children']} children, best "
              + ("none yet" if b is None else f"{loss_text(b.loss)} (id {b.id})"))
    warm = info["warm_start"]
    base = warm["fitness"] if warm else None
    if warm:
        print(f"warm start (id {warm['id']}): validation loss {loss_text(base)}{_acc(warm['accuracy'])}")
    if not info["best"]:
        print("no program has a finite validation loss yet")
    for rank, b in enumerate(info["best"], 1):
        gain = f" ({(b['fitness'] - base) / abs(base):+.1%} vs warm start)" if base else ""
        print(f"\n# {rank}. id {b['id']}: validation loss {loss_text(b['fitness'])}{gain}{_acc(b['accuracy'])}, "
              f"status {b['status']}")
        print(f"# fingerprint {b['fingerprint']}; {b['evaluations']} evaluation(s); "
              f"{b['live_statements']} of {b['statements']} statements live")
        print(b["live"], end="")
    return 0


def show_pareto(path: str | Path) -> int:
    """Print the run's hall of fame: for each length on the Pareto front, its best program."""
    run_config("show", path)
    with exit_on("show", *RUN_ERRORS):
        front = inspect.pareto(path).front()
    print(f"hall of fame of {path}: {len(front)} program(s) on the Pareto front of live statements against fitness")
    for n, r in front:
        print(f"\n# {n} live statement(s): id {r.id}, validation loss {loss_text(r.loss)}")
        print(dsl.to_text(dsl.strip_dead_code(r.program.inline_params())), end="")
    return 0


def add_ops_parser(sub) -> None:
    sub.add_parser("ops", help="list the op table, then the built-in programs with their families").set_defaults(func=cmd_ops)


def cmd_ops(args) -> int:
    for name, op in dsl.OPS.items():
        kind = ("reduction" if op.searched else "shape op") if op.reduces else f"{op.arity}-ary"
        print(f"{name:12s} {kind:10s} {op.doc}")
    print(f"# {len(dsl.OPS)} ops; the search uses all but the shape ops unless search_space.ops lists them")
    names = dsl.builtin_names()
    print(f"# {len(names)} built-in programs and their families (dsl.family):")
    for name in names:
        print(f"{name:18s} {dsl.family(dsl.load(name))}")
    return 0


def add_lineage_parser(sub) -> None:
    sp = sub.add_parser("lineage", help="the mutation chain from the warm start to a program of a run")
    sp.add_argument("run", help="run directory")
    sp.add_argument("program", nargs="?", metavar="ID_OR_FINGERPRINT",
                    help="an evaluation id, or a fingerprint (or a unique prefix of one); default: the best")
    sp.add_argument("--graph", metavar="FILE",
                    help="also write the history as a graph (node per evaluation, edge parent -> child with "
                         f"the mutation); format by suffix: {', '.join(inspect.GRAPH_FORMATS)}")
    sp.add_argument("--chain-only", action="store_true", help="with --graph: write only the chain")
    sp.set_defaults(func=cmd_lineage)


def cmd_lineage(args) -> int:
    run = _run("lineage", args.run)
    if args.graph:
        out_file("lineage", "--graph", args.graph)
    with exit_on("lineage", *RUN_ERRORS):
        recs = inspect.records(run)
        graph = inspect.lineage_graph(recs)
        chain = inspect.lineage(recs, args.program, graph=graph)
        if args.graph:
            g = graph.subgraph(r.id for r in chain).copy() if args.chain_only else graph
            path = inspect.write_graph(g, args.graph)
    end = chain[-1]
    print(f"lineage of id {end.id} (fingerprint {end.fingerprint}, validation loss {loss_text(end.loss)}): "
          f"{len(chain) - 1} mutation(s) from id {chain[0].id} ({chain[0].source})")
    print(f"{'id':>7}  {'loss':>10}  {'source':<10}  mutation")
    for r in chain:
        print(f"{r.id:>7}  {loss_text(r.loss):>10}  {r.source:<10}  {r.mutation}")
    print(f"\n# id {end.id}, live statements:")
    print(dsl.to_text(dsl.strip_dead_code(end.program)), end="")
    if args.graph:
        print(f"\nwrote {'the chain' if args.chain_only else 'the whole history'} as a graph "
              f"({g.number_of_nodes()} nodes, {g.number_of_edges()} edges): {path}")
    return 0


def add_plot_parser(sub) -> None:
    sp = sub.add_parser("plot", help="PNG plots of a run: best fitness over evaluations, fitness histogram")
    sp.add_argument("run", help="run directory")
    sp.add_argument("--out", metavar="DIR", help="where to write the PNGs (default: the run directory)")
    sp.set_defaults(func=cmd_plot)


def cmd_plot(args) -> int:
    run = _run("plot", args.run)
    out_dir("plot", "--out" if args.out else "run directory", args.out or run)
    with exit_on("plot", *RUN_ERRORS):
        paths = inspect.plot_run(run, args.out)
    for p in paths:
        print(p)
    return 0


def add_report_parser(sub) -> None:
    sp = sub.add_parser("report", help="one self-contained HTML page of a run: plots, programs, lineage, funnel, "
                                       "simplification, verdict")
    sp.add_argument("run", help="run directory")
    sp.add_argument("-o", "--out", metavar="FILE", help="the HTML file (default: RUN/report.html)")
    sp.add_argument("--watch", action="store_true",
                    help="rewrite the page (which then reloads itself) while a process holds the run directory")
    sp.add_argument("--every", type=float, default=5.0, metavar="S", help="seconds between rewrites with --watch")
    sp.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from . import report
    run = _run("report", args.run)
    out = out_file("report", "--out" if args.out else "report file", args.out or Path(run) / "report.html")
    if not args.every > 0:
        raise SystemExit(f"lionsearch report: --every: expected a positive number of seconds, got {args.every}")
    with exit_on("report", *RUN_ERRORS, OSError):
        if args.watch:
            print(f"watching {run}: {out} is rewritten every {args.every:g} s while the run goes on", flush=True)
            out = report.watch(run, out, args.every)
        else:
            out = report.write(run, out)
    print(out)
    return 0


def add_export_parser(sub) -> None:
    sp = sub.add_parser("export", help="stand-alone optax or PyTorch source for a program")
    sp.add_argument("program", help=f"a built-in ({', '.join(dsl.builtin_names())}), an .opt file, "
                                    "or a run directory (its best program)")
    sp.add_argument("--to", required=True, choices=TARGETS, help="the framework to write for")
    sp.add_argument("--id", metavar="ID_OR_FINGERPRINT", help="for a run directory: export this program instead")
    sp.add_argument("--name", help="the PyTorch class name (default: from the program's name)")
    sp.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of printing")
    sp.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    if args.output:
        out_file("export", "--output", args.output)
    with exit_on("export", *RUN_ERRORS, ExportError, dsl.ProgramError):
        p = inspect.load_program(args.program, args.id)
        src = export(p, args.to, name=args.name)
    big = float(np.finfo(np.float32).max)  # the exported code computes in float32, as the search did
    for s in p.inline_params().statements:
        for a in s.args:
            if isinstance(a, float) and abs(a) > big:
                print(f"lionsearch export: warning: the constant {a!r} in `{dsl.text.statement_text(s)}` is beyond "
                      f"float32's range and becomes {'-' if a < 0 else ''}inf in the exported code", file=sys.stderr)
    if args.output:
        write_out(Path(args.output), src)
        print(f"wrote {args.to} source: {args.output}")
    else:
        print(src, end="")
    return 0


def add_repair_parser(sub) -> None:
    sp = sub.add_parser("repair", help="keep the valid lines of a damaged history; the rest is set aside in a "
                        "file beside it, never deleted")
    sp.add_argument("run", help="a run directory")
    sp.set_defaults(func=cmd_repair)


def cmd_repair(args) -> int:
    held = RunDir(_run("repair", args.run))
    try:
        held.acquire()  # never under a running search
        kept, aside = repair_history(args.run)
    except RunDirError as e:
        raise SystemExit(f"lionsearch repair: {e}") from None
    finally:
        held.release()
    if aside is None:
        print(f"{args.run}: {kept} evaluations, nothing damaged")
    else:
        print(f"{args.run}: kept the first {kept} evaluations; the rest is in {aside}; "
              f"continue with --run-dir {args.run} --resume")
    return 0
