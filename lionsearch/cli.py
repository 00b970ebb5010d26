"""The `lionsearch` command line: one entry point, a subcommand per job."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import dsl

from search.inspect import is_run_dir

from .cli_eval import add_eval_parser, check_tasks, knob, seed
from .cli_inspect import add_export_parser, add_lineage_parser, add_ops_parser, add_plot_parser, add_report_parser, add_show_parser
from .cli_inspect import add_repair_parser, exit_on, load_program, out_dir, out_file, run_config, write_out


def with_ray(cfg, args):
    """`cfg` with its Ray settings overridden by those of `--address` and `--workers` that are given."""
    given = {k: getattr(args, k) for k in ("address", "workers") if getattr(args, k) is not None}
    return dataclasses.replace(cfg, ray=dataclasses.replace(cfg.ray, **given))


def add_search_parser(sub) -> None:
    sp = sub.add_parser("search", help="run (or resume) a regularized-evolution search from a YAML config")
    sp.add_argument("config", help="YAML config (see configs/)")
    sp.add_argument("--run-dir", help="run directory (default: a new dated folder under runs/)")
    sp.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    sp.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    sp.add_argument("--seed", type=int, help="random seed (a one-worker run is exactly reproducible)")
    sp.add_argument("--workers", type=int, help="evaluator workers")
    sp.add_argument("--evaluations", type=int, help="override the budget of evaluations (with --resume: "
                    "the run's new budget, no fewer than it has done)")
    sp.add_argument("--max-minutes", type=_off_or(float), metavar="M",
                    help="stop after M minutes of search (this time; with --resume too); 'none': no limit")
    sp.add_argument("--target-loss", type=_off_or(float), metavar="X",
                    help="stop once the best fitness is X or lower (with --resume too); 'none': no target")
    sp.add_argument("--max-trainings", type=_off_or(int), metavar="N",
                    help="stop once N children have been trained (with --resume too); 'none': no limit")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_search)


def _off_or(kind):
    """An argparse type: a `kind` value, or 'none' (the condition off)."""
    def parse(text: str):
        if text.strip().lower() == "none":
            return "none"
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None
    return parse


def cmd_search(args) -> int:
    from search.config import ConfigError, from_dict, load_config, to_dict
    from search.runner import resolve, run_search

    check_run_dir("search", args)
    with exit_on("search", ConfigError):
        cfg = load_config(args.config)
        if args.seed is not None:
            cfg = dataclasses.replace(cfg, seed=args.seed)
        if args.evaluations is not None and not args.resume:
            cfg = with_budget(cfg, args.evaluations)
        cfg, run_dir, notes = resolve(with_ray(cfg, args), args.run_dir, args.resume)
        if args.resume and args.evaluations is not None:  # the one setting a resume takes from the command
            cfg, note = resumed_budget(cfg, run_dir, args.evaluations)
            notes.append(note)
        stops = {k: (None if v == "none" else v) for k in ("max_minutes", "target_loss", "max_trainings")
                 if (v := getattr(args, k)) is not None}
        if stops:  # taken from the command on a resume too, as the budget is
            cfg = from_dict(type(cfg), to_dict(cfg) | {"search": to_dict(cfg.search) | stops},
                            "--max-minutes/--target-loss/--max-trainings:")
        for note in notes:
            print(f"note: {note}")
        print(f"run directory: {run_dir}", flush=True)
        summary = run_search(cfg, run_dir, resume=args.resume, progress=not args.no_progress)
    print_summary(summary)
    print(f"run directory: {run_dir}")
    return 0


def check_run_dir(cmd: str, args) -> None:
    """Before any work: the run directory (default: a new one under runs/) can be written, and on
    --resume its config.yaml can be read."""
    out_dir(cmd, "--run-dir" if args.run_dir else "runs folder", args.run_dir or "runs")
    if args.resume and args.run_dir:
        run_config(cmd, args.run_dir)


def with_budget(cfg, evaluations: int):
    """`cfg` with `evaluations` as its budget (--evaluations)."""
    if evaluations < 1:
        raise SystemExit(f"lionsearch search: --evaluations {evaluations}: expected 1 or more")
    return dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, evaluations=evaluations))


def resumed_budget(cfg, run_dir, evaluations: int):
    """The resumed run's config with `evaluations` as its budget, and a note saying so; fewer than the
    run has already done is refused."""
    from search.rundir import read_history
    done, own = len(read_history(run_dir)), cfg.search.evaluations
    if evaluations < done:
        raise SystemExit(f"lionsearch search: --evaluations {evaluations}: the run in {run_dir} has already done "
                         f"{done} evaluations; give {done} or more")
    how = "unchanged" if evaluations == own else ("extended" if evaluations > own else "shrunk")
    return with_budget(cfg, evaluations), (f"--evaluations: budget {how}, {own} -> {evaluations} evaluations "
                                           f"({done} done)")


def print_summary(summary: dict) -> None:
    st = summary["stats"]
    if summary.get("stopped_because"):
        print(f"stopped: {summary['stopped_because']}")
    print(f"{summary['evaluations']} evaluations in {summary['seconds']:.0f} s; "
          f"{st['trained']} trained; of {st['proposed']} children proposed, {st['saved_rate']:.1%} spared "
          f"training (rejected {st['rejected_rate']:.1%}, cache {st['cache_rate']:.1%}, "
          f"dead-code-only {st['dead_code_rate']:.1%})")
    for rank, b in enumerate(summary["best"], 1):
        acc = "" if b.get("accuracy") is None else f", accuracy {b['accuracy']:.4f}"
        print(f"\n# {rank}. id {b['id']}: validation loss {b['fitness']:.4f}{acc}")
        print(dsl.to_text(dsl.strip_dead_code(dsl.parse(b["program"]))), end="")


def add_run_parser(sub) -> None:
    sp = sub.add_parser("run", help="the whole method: search, funnel, simplification; writes final.opt "
                        "where a candidate passed the funnel (exit status 3 where none did)")
    sp.add_argument("config", help="YAML config with search, funnel and simplify sections (configs/quickstart.yaml)")
    sp.add_argument("--run-dir", help="run directory (default: a new dated folder under runs/)")
    sp.add_argument("--resume", action="store_true", help="continue the search in --run-dir, then go on")
    sp.add_argument("--seed", type=int, help="random seed")
    sp.add_argument("--no-progress", action="store_true")
    sp.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from search.config import ConfigError
    from search.rundir import new_run_dir

    from .pipeline import DISCOVERED, EXIT_NOTHING_FOUND, load_pipeline, run_pipeline
    check_run_dir("run", args)
    with exit_on("run", ConfigError):
        cfg = load_pipeline(args.config)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir()
    print(f"run directory: {run_dir}", flush=True)
    r = run_pipeline(cfg, run_dir, resume=args.resume, progress=not args.no_progress)
    print_verdict(r)
    print(f"run directory: {run_dir}")
    return 0 if r["verdict"] == DISCOVERED else EXIT_NOTHING_FOUND


def _spread(losses) -> str:
    """Each seed's loss, where there are several."""
    if not losses or len(losses) < 2:
        return ""
    return " (seeds: " + ", ".join("failed" if x is None else f"{x:.4f}" for x in losses) + ")"


def print_verdict(r: dict) -> None:
    """The end of `lionsearch run`: what was found, named exactly, against the baseline."""
    from .pipeline import DISCOVERED
    if r["verdict"] != DISCOVERED and "final" not in r:
        print(f"\n# verdict: {r['verdict']}: no candidate beat the baseline on every stage of the funnel; "
              "no final.opt is written")
        best = r.get("best_candidate")
        if best is None:
            print("# the search found no program better than its warm start on its own task")
        else:
            print(f"# the candidate that went furthest: {best['id']} (proxy loss {best['proxy_loss']:.4f})")
            for s in r["stages"]:
                got = best["stages"].get(s["name"])
                if got is not None:
                    print(f"#   stage {s['name']}: {got['loss']:.4f} (lr x{got['lr_multiplier']:g}) vs baseline "
                          f"{s['baseline']['loss']:.4f}: {'pass' if got['passed'] else 'fail'}")
        return
    print(f"\n# verdict: {r['verdict']}" + (f" ({r['note']})" if r.get("note") else ""))
    c = r.get("confirmation")
    print((f"# final program ({Path(r['run_dir']) / 'final.opt'})" if r["verdict"] == DISCOVERED
           else "# not a result: " + ("its win did not hold on the verdict's seeds" if c
                                      else "the simplest form, which lost to the baseline"))
          + f", from candidate {r['candidate']} (found at evaluation {r['found_at_evaluation']} of {r['evaluations']}):")
    print(r["final"], end="")
    print(f"# family: {r['family_text']}")
    at = lambda who: f"lr x{r[who + '_lr_multiplier']:g}" + (f", weight decay {wd:g}"
                                                             if (wd := r.get(who + "_weight_decay")) else "")
    print(f"# stage {r['stage']}: final {r['final_loss']:.4f} ({at('final')})"
          f"{_spread(r['final_seed_losses'])} vs baseline {r['baseline_loss']:.4f} "
          f"({at('baseline')}){_spread(r['baseline_seed_losses'])}")
    if c:
        print(f"# on {len(c['seeds'])} other seeds of stage {r['stage']} ({', '.join(map(str, c['seeds']))}): final "
              f"minus baseline {c['difference']:+.4f} ± {c['se']:.4f} (mean ± standard error): "
              + ("the win held" if c["held"] else "the win did not hold"))


def add_select_parser(sub) -> None:
    sp = sub.add_parser("select", help="funnel selection: re-evaluate a run's best on larger tasks")
    sp.add_argument("run", help="a run directory")
    sp.add_argument("--config", default="configs/funnel.yaml", help="funnel YAML config")
    sp.add_argument("--top", type=int, help="override top_k")
    sp.add_argument("--address", help="Ray cluster address (default: a local Ray instance)")
    sp.add_argument("--workers", type=int, help="evaluator workers")
    sp.add_argument("--no-progress", action="store_true")
    sp.set_defaults(func=cmd_select)


def cmd_select(args) -> int:
    from search.config import ConfigError
    from selection.funnel import load_funnel, run_funnel, table
    from search.rundir import read_history
    if not is_run_dir(args.run):
        raise SystemExit(f"lionsearch select: {args.run}: not a run directory (no history.jsonl)")
    run_config("select", args.run)  # before Ray starts: a damaged history is a RunDirError here
    if not read_history(args.run):
        raise SystemExit(f"lionsearch select: {args.run}: the run has no evaluations yet; nothing to select")
    out_dir("select", "run directory", args.run)  # selection.json and selection.md go there
    with exit_on("select", ConfigError):
        cfg = load_funnel(args.config)
    cfg = dataclasses.replace(with_ray(cfg, args), top_k=args.top or cfg.top_k)
    report = run_funnel(args.run, cfg, progress=not args.no_progress)
    print(table(report), end="")
    print(f"survivors: {', '.join(map(str, report['survivors'])) or 'none'}; "
          f"written to {Path(args.run) / 'selection.json'} and selection.md")
    return 0


def add_simplify_parser(sub) -> None:
    sp = sub.add_parser("simplify", help="simplify a program (or a run's best) to its essence")
    sp.add_argument("program", help="a built-in, an .opt file, or a run directory (its best program)")
    sp.add_argument("--task", help="check task for ablation (without one, only exact steps are taken)")
    sp.add_argument("--set", type=knob, action="append", metavar="KNOB=VALUE", help="task size knob, repeatable")
    sp.add_argument("--tolerance", type=float, default=0.01, help="relative loss increase allowed (default 0.01)")
    sp.add_argument("--lr-multipliers", type=float, nargs="+", default=[1.0], metavar="K",
                    help="score each candidate at its best of these lr multipliers (default: 1)")
    sp.add_argument("--seeds", type=seed, nargs="+", default=[0])
    sp.add_argument("--screen-seeds", type=int, default=0, metavar="K",
                    help="score each ablation on the first K seeds first; only those not clearly worse on all")
    sp.add_argument("--max-trainings", type=int,
                    help="stop the ablation after this many trainings of one seed (a count, not a clock)")
    sp.add_argument("--tune-trainings", type=int, default=0, metavar="N",
                    help="then tune the result's constants, for at most N trainings of one seed (default 0: no tuning)")
    sp.add_argument("--out", help="write the result here (default for a run: RUN/simplified.opt)")
    sp.set_defaults(func=cmd_simplify)


def cmd_simplify(args) -> int:
    from simplify import check_size, simplify_steps
    p = load_program(args.program)
    with exit_on("simplify", ValueError):
        check_size(p)
    size = dict(args.set or [])
    if args.task:
        check_tasks("simplify", [args.task], size)
    out = args.out or (Path(args.program) / "simplified.opt" if is_run_dir(args.program) else None)
    if out:  # before the ablation, which can take long
        out = out_file("simplify", "--out" if args.out else "output", out)
    print(f"# simplifying {p.name or args.program}" + (f" on {args.task} {size}" if args.task else " (exact steps only)"))

    def show(step):
        loss = "" if step.loss is None else f"  [loss {step.loss:.4f}]"
        print(f"- {step.what}: {len(step.program)} statements{loss}", flush=True)

    with exit_on("simplify", ValueError):
        steps = simplify_steps(p, task=args.task, tolerance=args.tolerance, seeds=tuple(args.seeds),
                               size=size, log=show, lr_multipliers=tuple(args.lr_multipliers),
                               max_trainings=args.max_trainings, screen_seeds=args.screen_seeds,
                               tune_trainings=args.tune_trainings)
    final = steps[-1].program
    text = dsl.to_text(final)
    print(text, end="")
    print(f"# family: {dsl.family(final)}")
    if out:
        write_out(out, text)
        print(f"# written to {out}")
    return 0


# Every subcommand, in the order `lionsearch --help` lists them; each module defines `add_X_parser(sub)`
# beside its `cmd_X`, and the parser sets `func=cmd_X` for `main` to call.
COMMANDS = (add_show_parser, add_search_parser, add_run_parser, add_select_parser, add_simplify_parser,
            add_ops_parser, add_eval_parser, add_lineage_parser, add_plot_parser, add_report_parser, add_export_parser,
            add_repair_parser)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lionsearch", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    for add_parser in COMMANDS:
        add_parser(sub)
    return ap


def ray_auth_mode() -> None:
    """Clusters started with `ray start` (Ray 2.60) ask for a token, and a client joins one only in
    token mode, which Ray reads once, when it is first imported. Where a token is at hand (the
    file `ray start --head` writes, or RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH) and the user chose no
    mode, take token mode: a cluster without authentication accepts such a client too."""
    import os
    if "RAY_AUTH_MODE" in os.environ or "ray" in sys.modules:  # once Ray is imported, its mode is fixed
        return
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(path):
        os.environ["RAY_AUTH_MODE"] = "token"


def main(argv: list[str] | None = None) -> int:
    import signal
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `lionsearch show RUN | head` ends quietly
    # SIGTERM (a scheduler's, `kill`'s) stops a run as Ctrl-C does: the history is already on disk,
    # the lock is released and Ray is shut down at exit, so no process of the run is left behind
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # (and again once Ray is up: connect_ray)
    args = build_parser().parse_args(argv)
    ray_auth_mode()  # before anything imports ray
    from search.rundir import RunDirError
    from search.workers import WorkerError
    try:
        return args.func(args)
    except (RunDirError, WorkerError) as e:  # a run directory in use, damaged or not a run's; dead workers
        raise SystemExit(f"lionsearch {args.command}: {e}") from None
    except KeyboardInterrupt:  # the history is durable line by line: nothing recorded is lost
        run_dir = getattr(args, "run_dir", None)
        hint = f"; continue with --run-dir {run_dir} --resume" if run_dir else ""
        print(f"\nlionsearch {args.command}: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
