"""The run directory: what a search leaves behind, readable by a person and resumable by the tool.

    config.yaml       the resolved config
    history.jsonl     append-only, one JSON object per evaluation (flushed and fsynced per line)
    population.json   the latest population checkpoint
    best.opt          the best program so far
    summary.json      final results
"""
from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import yaml

from .record import Record, RecordError

HISTORY = "history.jsonl"


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
            raise RunDirError(str(e) if isinstance(e, RecordError) else
                              f"{path}: line {n} is not valid JSON; the history is damaged") from None
    return records


class RunDir:
    """Writes a run directory; `history` is append-only and durable line by line."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._history = None

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


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a kill never leaves half a checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
