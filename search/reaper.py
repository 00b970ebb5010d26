"""Fate-sharing for a local Ray instance: `python -m search.reaper DRIVER_PID SESSION` waits for the
driver to end, then stops every process of its Ray session that is still there (and their children).
A driver killed with -9 runs no clean-up of its own; Ray's agents would linger for a minute and
more. A clean exit has shut Ray down already, and the reaper then finds nothing to stop.

Started by `search.runner.connect_ray` for the local instance it starts, in its own session, so
that a signal to the driver's process group does not stop it first."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, command line, start time), from /proc."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
            out[int(d.name)] = (int(fields[1]), cmd, fields[19])
    return out


def session_processes(session: str) -> dict[int, str]:
    """The processes whose command line names `session`, and everything under them: pid -> start
    time (so that a pid used again by another process is never taken for one of them)."""
    procs = _processes()
    found = {p for p, (_, cmd, _) in procs.items() if session in cmd}
    while True:
        more = {p for p, (pp, _, _) in procs.items() if pp in found} - found
        if not more:
            break
        found |= more
    found.discard(os.getpid())
    return {p: procs[p][2] for p in found}


def main(driver: int, session: str) -> None:
    known: dict[int, str] = {}  # seen under the session while the driver lived: Ray's agents lose
    while True:                 # their parent (the raylet) when the driver dies, and with it the link
        try:
            os.kill(driver, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            pass
        known.update(session_processes(session))
        time.sleep(1.0)
    time.sleep(2.0)  # a clean exit's own shutdown first
    known.update(session_processes(session))
    now = _processes()
    for p, started in known.items():
        if p in now and now[p][2] == started:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
