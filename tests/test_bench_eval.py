"""scripts/bench_eval.py on a few steps of the logreg task: every table prints, with the two
floors (the model's own k-seed cost, an element-wise pass per statement) beside the interpreter."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # compiles the interpreter for three buckets and two seed counts
def test_bench_eval_prints_the_interpreter_beside_its_floors():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_eval.py"), "--task", "logreg", "--programs", "3", "--jit-programs", "1",
         "--k-seeds", "1", "2", "--vmap-programs", "1", "--optax-runs", "2", "--set", "steps=4"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    for label in ("adamw_warmstart", "lion", "plain SGD, no interpreter (the floor)"):
        rows = re.findall(rf"^\| {re.escape(label)}[^|]* \| ([12]) \| ([0-9.]+) \| ([0-9.]+) \|", text, re.M)
        assert [k for k, _, _ in rows] == ["1", "2"], label
        assert float(rows[0][2]) == 1.0 and float(rows[1][1]) > 0, label
    floor = re.search(r"plus 20 passes a step: ([0-9.]+) s \(([0-9.]+)x optax\)", text)
    assert floor and float(floor.group(1)) > 0
    assert re.search(r"^\| interpreter, 20 live statements \(median\) \| 10 \|", text, re.M)
