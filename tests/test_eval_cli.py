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


def test_eval_sweeps_lr_and_pairs_with_a_baseline(capsys):
    """--lr-multipliers reports each program at its best multiplier (the same loss as that
    multiplier alone gives); --baseline adds the seed-by-seed difference to the baseline."""
    def table(*extra):
        assert main(["eval", "sgd", "signsgd", "--task", "logreg", "--seeds", "0", "1", *SETS, *extra]) == 0
        return {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[2:-1]]
                for l in capsys.readouterr().out.splitlines() if l.startswith("| ") and "logreg" in l}
    swept = table("--lr-multipliers", "0.1", "10", "--baseline", "sgd")
    alone = {k: table("--lr-multipliers", k) for k in ("0.1", "10")}
    for name in ("sgd", "signsgd"):
        loss, k = float(swept[name][1]), swept[name][3]
        assert loss == float(alone[k][name][1]) == min(float(alone[j][name][1]) for j in alone)
        assert swept[name][2] != "-"  # two seeds: a standard error
    assert swept["sgd"][-1].startswith("+0.0000 ±")
    diff = float(swept["signsgd"][-1].split("±")[0])
    assert abs(diff - (float(swept["signsgd"][1]) - float(swept["sgd"][1]))) < 2e-4  # printed to 4 places
    with pytest.raises(SystemExit, match="--baseline adamw: not one of the PROGRAMs"):
        main(["eval", "sgd", "--task", "logreg", "--baseline", "adamw"])
