"""`lionsearch eval`: score programs on a proxy task and print a fitness table.

Wire it into the main CLI with `proxy_tasks.cli.add_eval_parser(sub)` in `search/cli.py`.
"""
from __future__ import annotations

import argparse
import sys

import dsl

from .base import names, task_knobs
from .engine import Evaluator


def _knob(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KNOB=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _value(x: str):
    try:
        return int(x)
    except ValueError:
        try:
            return float(x)
        except ValueError:
            return x


def cmd_eval(args) -> int:
    programs = []
    for ref in args.programs:
        try:
            programs.append((ref, dsl.load(ref)))
        except dsl.ProgramError as e:
            raise SystemExit(f"lionsearch eval: {e}") from None
    size = {k: _value(v) for k, v in (args.set or [])}
    try:
        ev = Evaluator(args.task, **size)
    except ValueError as e:
        raise SystemExit(f"lionsearch eval: {e}") from None
    seeds = tuple(args.seeds)
    print(f"# task {ev.task!r}, seeds {', '.join(map(str, seeds))}")
    print("| program | val loss | accuracy | status | seconds |")
    print("|---|---|---|---|---|")
    for ref, p in programs:
        try:
            f = ev.evaluate_direct(p, seeds) if args.direct else ev.evaluate(p, seeds)
        except ValueError as e:  # e.g. longer than the largest length bucket
            print(f"| {ref} | - | - | error: {e} | - |")
            continue
        acc = "-" if f.accuracy is None else f"{f.accuracy:.4f}"
        print(f"| {ref} | {f.loss:.4f} | {acc} | {f.status} | {f.seconds:.2f} |", flush=True)
    return 0


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `eval` subcommand on an argparse subparsers object."""
    sp = subparsers.add_parser(
        "eval", help="train programs on a proxy task and print their fitness",
        description="Train each PROGRAM (a built-in name or an .opt file) on a proxy task with the "
                    "compile-once engine and print validation loss, accuracy, status and time.")
    sp.add_argument("programs", nargs="+", metavar="PROGRAM",
                    help=f"a built-in ({', '.join(dsl.builtin_names())}) or a path to an .opt file")
    sp.add_argument("--task", default="digits_mlp", choices=names(), help="the proxy task (default digits_mlp)")
    sp.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (the loss is their mean)")
    sp.add_argument("--set", type=_knob, action="append", metavar="KNOB=VALUE",
                    help="a size or schedule knob, repeatable (e.g. --set steps=300 --set width=64); "
                         + "; ".join(f"{t}: {', '.join(sorted(task_knobs(t)))}" for t in names()))
    sp.add_argument("--direct", action="store_true",
                    help="compile each program directly (jax.jit per program) instead of the interpreter")
    sp.set_defaults(func=cmd_eval)
    return sp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lionsearch")
    add_eval_parser(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
