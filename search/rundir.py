"""The run directory: what a search leaves behind, readable by a person and resumable by the tool.

    config.yaml       the resolved config
    history.jsonl     append-only, one JSON object per evaluation (flushed and fsynced per line)
    .lock             the process that holds the run (its pid); marks the directory as a run's
    population.json   the latest population checkpoint
    best.opt          the best program so far
    pareto.json       the hall of fame: the Pareto front of live statements against fitness
    summary.json      final results
"""
from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime
from pathlib import Path

import yaml

from .record import Record, RecordError

HISTORY = "history.jsonl"
LOCK = ".lock"
_HELD: dict[Path, list] = {}  # run directory -> [open lock file, holders in this process]


class RunDirError(RuntimeError):
    pass


def new_run_dir(root: str | Path = "runs") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / stamp
    k = 1
    while path.exists():
        path, k = Path(root) / f"{stamp}-{k}", k + 1
    return path


def read_history(run_dir: str | Path, repair: bool = False) -> list[Record]:
    """Every evaluation recorded so far. A torn last line (a kill mid-write) is detected and not
    trusted: with `repair` it is cut off the file; a bad line elsewhere is an error naming it."""
    path = Path(run_dir) / HISTORY
    if not path.exists():
        return []
    raw = path.read_bytes()
    complete, _, torn = raw.rpartition(b"\n")  # every line but a torn last one ends in a newline
    if torn and repair:
        with open(path, "r+b") as f:
            f.truncate(len(complete) + 1 if complete or raw.startswith(b"\n") else 0)
    records = []
    for n, line in enumerate(complete.split(b"\n") if complete else [], 1):
        if not line.strip():
            continue
        try:
            records.append(Record.from_json(json.loads(line), f"{path}: line {n}"))
        except ValueError as e:
            raise RunDirError((str(e) if isinstance(e, RecordError) else f"{path}: line {n} is not valid JSON")
                              + f"; the history is damaged ({REPAIR})") from None
        if records[-1].id != len(records) - 1:  # a line lost or repeated
            raise RunDirError(f"{path}: line {n}: id {records[-1].id} where {len(records) - 1} was expected (ids run "
                              f"0, 1, 2, ... with none lost or repeated); the history is damaged ({REPAIR})")
    return records


REPAIR = "`lionsearch repair RUN` keeps the valid lines and sets the rest aside"


def repair_history(run_dir: str | Path) -> tuple[int, Path | None]:
    """Keep the history's valid prefix (every line up to the first damaged one) and move the rest,
    unchanged, to `history.rejected-<time>.jsonl` beside it: nothing is deleted. Returns how many
    records were kept and where the rest went (None where nothing was damaged)."""
    path = Path(run_dir) / HISTORY
    lines = path.read_bytes().splitlines(keepends=True) if path.exists() else []
    kept = 0
    for n, line in enumerate(lines):
        try:
            if Record.from_json(json.loads(line)).id != kept or not line.endswith(b"\n"):
                break
        except ValueError:
            break
        kept += 1
    if kept == len(lines):
        return kept, None
    aside = path.with_name(f"history.rejected-{datetime.now().strftime('%Y%m%d-%H%M%S')}.jsonl")
    aside.write_bytes(b"".join(lines[kept:]))
    _atomic_write(path, b"".join(lines[:kept]).decode())
    return kept, aside


def holder(run_dir: str | Path) -> int | None:
    """The pid of the process that holds the run directory (`RunDir.acquire`), or None where none
    does (the run ended, or was killed)."""
    lock = Path(run_dir) / LOCK
    if not lock.is_file():
        return None
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = f.read().strip()
            return int(pid) if pid.isdigit() else -1  # held, by a pid not yet written
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


class RunDir:
    """Writes a run directory; `history` is append-only and durable line by line."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._history = None

    def acquire(self) -> None:
        """Hold the run directory for this process (re-entrant): a second process gets an error
        naming the holder's pid. The OS drops the lock of a process that dies, so a killed run
        never blocks its resume. A directory that holds files but no run (no lock file, no
        history) is refused: a run never overwrites files it did not write."""
        key = self.path.resolve()
        if key in _HELD:
            _HELD[key][1] += 1
            return
        lock = self.path / LOCK
        if not lock.exists() and not (self.path / HISTORY).exists() and any(self.path.iterdir()):
            names = ", ".join(sorted(p.name for p in self.path.iterdir())[:5])
            raise RunDirError(f"{self.path}: holds files that no lionsearch run wrote ({names}); "
                              "choose a new or empty --run-dir")
        f = open(lock, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunDirError(f"{self.path}: in use by another process (pid {holder}); "
                              "wait for it to finish or stop it, then --resume") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        _HELD[key] = [f, 1]
        for tmp in self.path.glob("*.tmp"):  # half-written by a killed holder (`_atomic_write`)
            tmp.unlink()

    def release(self) -> None:
        key = self.path.resolve()
        if key in _HELD:
            _HELD[key][1] -= 1
            if not _HELD[key][1]:
                _HELD.pop(key)[0].close()  # closing the file drops the lock

    def write_config(self, cfg: dict) -> None:
        _atomic_write(self.path / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))

    def read_config(self) -> dict:
        f = self.path / "config.yaml"
        if not f.exists():
            raise RunDirError(f"{self.path}: not a run directory (no config.yaml)")
        return yaml.safe_load(f.read_text())

    def append(self, record: Record) -> None:
        if self._history is None:
            self._history = open(self.path / HISTORY, "a", encoding="utf-8")
        self._history.write(json.dumps(record.to_json(), sort_keys=False) + "\n")
        self._history.flush()
        os.fsync(self._history.fileno())

    def history(self, repair: bool = False) -> list[Record]:
        return read_history(self.path, repair)

    def write_json(self, name: str, obj) -> None:
        _atomic_write(self.path / name, json.dumps(obj, indent=1))

    def write_text(self, name: str, text: str) -> None:
        _atomic_write(self.path / name, text)

    def close(self) -> None:
        if self._history is not None:
            self._history.close()
            self._history = None
        self.release()


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a kill never leaves half a checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
