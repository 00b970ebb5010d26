"""`lionsearch eval`: in this process, and fanned out over Ray workers."""
import pytest

import dsl
from lionsearch.cli import main

SETS = ["--set", "steps=20", "--set", "n_train=128", "--set", "n_val=64"]


def test_eval_locally(capsys, tmp_path):
    path = tmp_path / "mine.opt"
    path.write_text(dsl.to_text(dsl.load("signsgd")))
    assert main(["eval", "sgd", str(path), "--task", "logreg", "--seeds", "0", "1", *SETS]) == 0
    out = capsys.readouterr().out
    assert "| sgd | logreg |" in out and "mine.opt" in out and "| ok |" in out
    with pytest.raises(SystemExit, match="nope"):
        main(["eval", "nope", "--task", "logreg"])
    with pytest.raises(SystemExit, match="widht"):
        main(["eval", "sgd", "--task", "logreg", "--set", "widht=3"])


def test_eval_fans_out_over_ray(local_ray, capsys):
    assert main(["eval", "sgd", "lion", "adamw_warmstart", "--tasks", "logreg", "--workers", "2", *SETS]) == 0
    on_ray = capsys.readouterr().out
    assert "on Ray (2 workers)" in on_ray
    assert main(["eval", "sgd", "lion", "adamw_warmstart", "--tasks", "logreg", *SETS]) == 0
    local = capsys.readouterr().out
    rows = lambda out: [l.split("|")[1:5] for l in out.splitlines() if l.startswith("| ") and "logreg" in l]
    assert len(rows(on_ray)) == 3 and rows(on_ray) == rows(local)  # same programs, same losses
