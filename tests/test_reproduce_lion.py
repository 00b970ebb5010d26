"""scripts/reproduce_lion.py: a quick real run on logreg writes the report and its plots, with both
optimizers in the main table and a measured optimizer-state memory where Lion's is below AdamW's."""
import re
import sys
from pathlib import Path

import jax
import optax

import dsl
import proxy_tasks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import reproduce_lion  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first Markdown table after `heading`."""
    part = text.split(heading, 1)[1]
    rows = []
    for line in part.splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # drop the header and the |---| line


def test_quick_report(tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["--quick", "--tasks", "logreg", "--batch-tasks", "logreg", "--batch-mode", "both", "--seeds", "0",
            "--out", str(out)]
    assert reproduce_lion.main(argv) == 0
    assert str(out / "report.md") in capsys.readouterr().out
    for png in ("lr_sweep.png", "batch_gap.png", "memory.png"):
        data = (out / png).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000, png
    text = (out / "report.md").read_text()

    main = _table(text, "## 1. Best validation loss")
    assert [r[0] for r in main] == ["logreg"]
    head = text.split("## 1. Best validation loss", 1)[1].splitlines()[2]
    assert "AdamW loss" in head and "Lion loss" in head
    for cell in (main[0][2], main[0][4]):  # AdamW's and Lion's "loss / acc"
        loss, acc = (float(x) for x in cell.split(" / "))
        assert 0 < loss < 2 and 0 < acc <= 1

    mem = _table(text, "## 4. Optimizer state memory")
    assert len(mem) == 1
    adamw, lion = (int(mem[0][i].replace(",", "")) for i in (3, 4))
    dsl_adamw, dsl_lion = (int(mem[0][i].replace(",", "")) for i in (6, 7))
    assert 0 < lion < adamw and 0 < dsl_lion < dsl_adamw
    assert abs(lion / adamw - 0.5) < 0.05 and abs(dsl_lion / dsl_adamw - 0.5) < 0.05

    batch = _table(text, "## 3. The gap as the batch grows")
    assert [(r[1], int(r[2])) for r in batch] == [("epochs", 16), ("epochs", 64), ("steps", 16), ("steps", 64)]
    assert "## Where the paper's claims hold here" in text
    assert re.search(r"Lion's optimizer state is half of AdamW's.*\*\*holds\*\*", text)


def test_memory_is_measured_from_the_states():
    """The figures are the bytes of the arrays the optimizers' init returns (no formula)."""
    task = proxy_tasks.get_task("digits_mlp", width=16, depth=1)
    m = reproduce_lion.measure_memory(task)
    params = task.init(jax.random.PRNGKey(0))
    mu = sum(x.nbytes for x in jax.tree.leaves(params))
    assert m["params"] == mu
    assert m["optax.adamw"] == reproduce_lion.state_bytes(optax.adamw(1e-3).init(params)) >= 2 * mu
    assert mu <= m["optax.lion"] < m["optax.adamw"]
    assert m["dsl lion"] == reproduce_lion.state_bytes(dsl.as_optax(dsl.load("lion"), 1e-3).init(params))
    assert mu <= m["dsl lion"] < m["dsl adamw"]


def test_lr_ladder():
    assert reproduce_lion.lr_step(0.1, +1) == 0.3 and reproduce_lion.lr_step(0.3, +1) == 1.0
    assert reproduce_lion.lr_step(1e-4, -1) == 3e-5 and reproduce_lion.lr_step(3e-4, -1) == 1e-4
