"""Built-in programs, shipped as `.opt` text files in `dsl/programs/`."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from .program import Program, ProgramError
from .text import parse

_DIR = resources.files("dsl") / "programs"


def builtin_names() -> list[str]:
    return sorted(f.name[:-4] for f in _DIR.iterdir() if f.name.endswith(".opt"))


def load(name_or_path: str | Path, **hyper: float) -> Program:
    """A built-in program by name (`"lion"`) or a program from an `.opt` file, with named
    hyper-parameters bound by keyword (`load("lion", b1=0.95)`)."""
    name = str(name_or_path)
    path = Path(name)
    if name in builtin_names():
        text, label = (_DIR / f"{name}.opt").read_text(), name
    elif path.suffix == ".opt" or path.exists():
        if not path.is_file():
            raise ProgramError(f"{path}: " + ("a folder, not a program file" if path.is_dir() else "no such program file"))
        try:
            text, label = path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as e:
            raise ProgramError(f"{path}: not UTF-8 text (byte {e.start})") from None
        except OSError as e:
            raise ProgramError(f"{path}: cannot be read ({e.strerror})") from None
    else:
        raise ProgramError(f"unknown program {name!r}: not a built-in ({', '.join(builtin_names())}) "
                           "and not an .opt file")
    try:
        p = parse(text, name=label)
    except ProgramError as e:
        raise ProgramError(e.why, e.line, e.column, source=label) from None
    return p.bind(**hyper) if hyper else p
