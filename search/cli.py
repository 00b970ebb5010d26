"""The `lionsearch` command line: one entry point, a subcommand per job."""
from __future__ import annotations

import argparse
import sys

import dsl


def _program(ref: str) -> dsl.Program:
    """A program from a built-in name or an `.opt` path (errors exit with the reason)."""
    try:
        return dsl.load(ref)
    except dsl.ProgramError as e:
        raise SystemExit(f"lionsearch: {e}") from None


def cmd_show(args) -> int:
    p = _program(args.program)
    print(dsl.to_text(p if not args.strip else dsl.strip_dead_code(p)), end="")
    verdict = dsl.check(p)
    print(f"# statements: {len(p)} ({len(dsl.strip_dead_code(p))} live)")
    print(f"# state slots: {', '.join(dsl.state_slots(p)) or 'none'}")
    print(f"# fingerprint: {dsl.fingerprint(p)}")
    print(f"# check: {'ok' if verdict else 'rejected: ' + verdict.reason}")
    return 0


def cmd_ops(args) -> int:
    for name, op in dsl.OPS.items():
        kind = "reduction" if op.reduces else f"{op.arity}-ary"
        print(f"{name:12s} {kind:10s} {op.doc}")
    print(f"# {len(dsl.OPS)} ops")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lionsearch", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("show", help="print a program (built-in name or .opt file) with its analysis")
    sp.add_argument("program", help=f"a built-in ({', '.join(dsl.builtin_names())}) or a path to an .opt file")
    sp.add_argument("--strip", action="store_true", help="print it without dead code")
    sp.set_defaults(func=cmd_show)
    sp = sub.add_parser("ops", help="list the op table")
    sp.set_defaults(func=cmd_ops)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
