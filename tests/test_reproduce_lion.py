"""scripts/reproduce_lion.py: a quick real run on logreg writes the report and its plots, with both
optimizers in the main table, a measured optimizer-state memory where Lion's is below AdamW's, and the
dual-beta ablation (Lion against signum) whose verdicts follow from its own numbers."""
import math
import re
import sys
from pathlib import Path

import jax
import optax
import pytest

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


@pytest.mark.slow  # trains every experiment of the report
def test_quick_report(tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["--quick", "--tasks", "logreg", "--batch-tasks", "logreg", "--batch-mode", "both", "--seeds", "0", "1",
            "--out", str(out)]
    assert reproduce_lion.main(argv) == 0
    assert str(out / "report.md") in capsys.readouterr().out
    for png in ("lr_sweep.png", "batch_gap.png", "memory.png", "dual_beta.png"):
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

    heading = "## 5. Dual beta: Lion (b1 != b2) against signum (b1 = b2)"
    dual = _table(text, heading)
    head = text.split(heading, 1)[1].split("\n|", 1)[1].splitlines()[0]
    assert "Lion (b1 != b2)" in head and "signum (b1 = b2)" in head
    assert [r[0] for r in dual] == ["logreg"]
    _check_dual_row(dual[0])
    b = re.search(r"b1 ([\d.]+), b2 ([\d.]+)", dual[0][3])
    assert b and b[1] != b[2]  # Lion's best has two betas; signum's one
    assert re.fullmatch(r"b [\d.]+, lr [\d.e-]+( †)?", dual[0][5])
    line = re.search(r"Lion's two betas beat one.*", text)[0]
    verdict = dual[0][8]
    assert ("on 1 of 1 tasks" if verdict == "dual beta better" else "on 0 of 1 tasks") in line
    assert ("**holds**" if verdict == "dual beta better" else "**does not hold**") in line
    assert "### Dual beta (section 5)" in text and "| signum | b " in text


def _check_dual_row(row):
    """Finite numbers, and the verdict recomputed from the table's own (rounded) values."""
    (l_loss, l_se), (s_loss, s_se) = ([float(x) for x in row[i].split(" / ")[0].split(" ± ")] for i in (2, 4))
    for cell in (row[2], row[4]):
        assert 0 < float(cell.split(" / ")[1]) <= 1
    gap, comb = float(row[6].split()[0]), float(row[7])
    assert all(map(math.isfinite, (l_loss, l_se, s_loss, s_se, gap, comb)))
    assert l_loss > 0 and s_loss > 0 and l_se >= 0 and s_se >= 0 and comb >= 0
    tol = 2e-4  # four decimals in every cell
    assert abs(gap - (l_loss - s_loss)) < tol and abs(comb - math.hypot(l_se, s_se)) < tol
    allowed = set(reproduce_lion.VERDICTS)
    if gap < -comb - tol:
        allowed = {"dual beta better"}
    elif gap > comb + tol:
        allowed = {"signum better"}
    elif abs(gap) < comb - tol:
        allowed = {"tie within the seeds' spread"}
    assert row[8] in allowed, row


def test_dual_verdict():
    def fit(losses):
        return proxy_tasks.Fitness(sum(losses) / len(losses), 0.5, "ok", 0.0, tuple(losses))

    v = reproduce_lion.dual_verdict
    assert v(fit([1.0, 1.2]), fit([2.0, 2.2]))[2] == "dual beta better"
    assert v(fit([2.0, 2.2]), fit([1.0, 1.2]))[2] == "signum better"
    gap, se, verdict = v(fit([1.0, 1.4]), fit([1.1, 1.5]))  # gap -0.1, each se 0.2
    assert math.isclose(gap, -0.1) and math.isclose(se, math.hypot(0.2, 0.2))
    assert verdict == "tie within the seeds' spread"
    assert v(fit([1.0]), fit([1.1]))[2] == "dual beta better"  # one seed: the means alone
    assert v(fit([1.0, 1.2]), proxy_tasks.Fitness.failure("nan"))[2] == "dual beta better"


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
