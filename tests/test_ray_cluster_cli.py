"""A Ray cluster started the way a user starts one (scripts/ray_cluster.md): `ray start --head`, then
`ray start --address` for a second node, token authentication included; `lionsearch search` and
`lionsearch eval` join it with `--address`. The second node's raylet is killed mid-search and the
run still completes with no evaluation lost or repeated. The cluster is stopped whatever happens,
by its own processes (never `ray stop`, which would stop every Ray on the machine)."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from search.reaper import _processes, session_processes

ROOT = Path(__file__).parent.parent
RAY = str(Path(sys.executable).parent / "ray")
pytestmark = pytest.mark.slow


def _cmdlines() -> dict[int, str]:
    return {p: cmd for p, (_, cmd, _) in _processes().items()}


@pytest.fixture
def cluster(tmp_path):
    """A head and a second node on this machine, one CPU each; yields (address, session name)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # as scripts/ray_cluster.md says for every node
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, capture_output=True, timeout=60)
    session = None
    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false"],
                       env=env, check=True, capture_output=True, timeout=120)
        session = next(re.search(r"session_[\d_-]+", c)[0] for c in _cmdlines().values()
                       if f"gcs_server_port={port}" in c and "session_" in c)
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1"], env=env, check=True,
                       capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}", session
    finally:
        if session:
            for p in session_processes(session):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass


def test_search_and_eval_on_a_cluster_started_with_ray_start(cluster, tmp_path):
    address, session = cluster
    cfg = {"task": {"name": "logreg", "size": {"steps": 15000, "batch": 32, "n_train": 256, "n_val": 128},
                    "seeds": [0]},
           "search": {"population": 10, "tournament": 3, "evaluations": 20, "timeout_s": 120},
           "ray": {"workers": 2}, "seed": 0}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # lionsearch takes token mode itself
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "lionsearch", "search", str(tmp_path / "c.yaml"), "--address",
                             address, "--run-dir", str(run), "--no-progress"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    history = run / "history.jsonl"
    deadline = time.monotonic() + 240
    while not (history.exists() and len(history.read_text().splitlines()) >= 8):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    second = [p for p, c in _cmdlines().items() if session in c and "raylet/raylet" in c and "sockets/raylet.1" in c]
    assert len(second) == 1
    os.kill(second[0], signal.SIGKILL)  # the second node goes away mid-search
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    recs = [json.loads(line) for line in history.read_text().splitlines()]
    assert [r["id"] for r in recs] == list(range(20))  # none lost, none repeated
    trained = [r for r in recs if r["source"] == "trained"]
    assert len({r["fingerprint"] for r in trained}) == len(trained)
    workers = {r["worker"] for r in recs if r["source"] in ("trained", "warm_start")}
    nodes = {w.rpartition("@")[2] for w in workers}
    assert len(nodes) == 2  # both nodes trained (a replacement worker may have joined on the head)
    shown = subprocess.run([sys.executable, "-m", "lionsearch", "show", str(run)], cwd=ROOT, capture_output=True,
                           text=True, timeout=120).stdout
    line = next(l for l in shown.splitlines() if l.startswith("trainings per node: "))
    assert all(n in line for n in nodes)
    assert sum(int(x.split()[-1]) for x in line.removeprefix("trainings per node: ").split(", ")) == \
        sum(r["source"] in ("trained", "warm_start") for r in recs)
    got = subprocess.run([sys.executable, "-m", "lionsearch", "eval", "lion", "--task", "logreg", "--set", "steps=20",
                          "--address", address], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert got.returncode == 0 and "| lion | logreg |" in got.stdout and "| ok |" in got.stdout, got.stderr[-2000:]
    # a client that will not use the token: one line saying what to set (after 3 tries of Ray's
    # connection to the cluster, 1 s apart, not its default 20)
    refused = subprocess.run([sys.executable, "-m", "lionsearch", "eval", "lion", "--task", "logreg", "--address",
                              address], env={**env, "RAY_AUTH_MODE": "disabled", "RAY_NUM_REDIS_GET_RETRIES": "3"},
                             cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(
        f"lionsearch eval: ray.address {address}: the cluster answers but did not let this client in. Where it "
        "uses token authentication")


def test_an_unreachable_address_is_one_line_at_once(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    got = subprocess.run([sys.executable, "-m", "lionsearch", "eval", "lion", "--task", "logreg",
                          "--address", f"127.0.0.1:{port}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert got.returncode == 1 and "Traceback" not in got.stderr
    assert got.stderr.strip().splitlines()[-1].startswith(
        f"lionsearch eval: ray.address 127.0.0.1:{port}: cannot join the cluster: nothing answers there")


def test_fewer_cpus_than_workers_says_so_and_runs_with_what_there_is(tmp_path):
    cfg = {"task": {"name": "logreg", "size": {"steps": 10, "batch": 16, "n_train": 64, "n_val": 32}, "seeds": [0]},
           "search": {"population": 4, "tournament": 2, "evaluations": 6}, "ray": {"num_cpus": 1, "workers": 3}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    got = subprocess.run([sys.executable, "-m", "lionsearch", "search", str(tmp_path / "c.yaml"), "--run-dir",
                          str(tmp_path / "run"), "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr[-2000:]
    assert "note: the Ray cluster has 1 CPU(s) for 3 workers: 1 start, the others wait" in got.stderr
    assert len((tmp_path / "run" / "history.jsonl").read_text().splitlines()) == 6
