"""scripts/rediscovery_rate.py on a tiny config: real runs of the one command per seed, a table of
their verdicts, resumable, and random search under the same budget side by side."""
import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import rediscovery_rate  # noqa: E402

TINY = """
task: {name: logreg, size: {steps: 20, batch: 32, n_train: 256, n_val: 128}, seeds: [0, 1]}
search: {population: 6, tournament: 2, evaluations: 14}
ray: {num_cpus: 2, workers: 2}
funnel:
  top_k: 2
  lr_multipliers: [1.0]
  stages:
    - {name: A, task: {name: logreg, size: {steps: 20, batch: 32, n_train: 256, n_val: 128}, seeds: [2]}, max_ratio: 5.0}
simplify: {tolerance: 0.0, lr_multipliers: [1.0], max_trainings: 20}
"""


def test_seed_list():
    assert rediscovery_rate.seed_list("0-3") == [0, 1, 2, 3]
    assert rediscovery_rate.seed_list("0-1,5,7-8") == [0, 1, 5, 7, 8]


@pytest.mark.slow  # whole pipeline runs on Ray, several of them
def test_rate_script_runs_resumes_and_compares_random_search(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    out = tmp_path / "rate"
    args = ["--seeds", "0", "--config", str(cfg), "--out", str(out)]  # one seed: each run is a whole method
    assert rediscovery_rate.main(args) == 0
    text = (out / "evolution.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| 0 ")]
    assert len(rows) == 1
    final = json.loads((out / "evolution" / "seed-0" / "final.json").read_text())
    assert final["verdict"] in ("discovered", "no candidate generalized")
    assert (out / "evolution" / "seed-0" / "final.opt").exists() == (final["verdict"] == "discovered")
    assert final["verdict"] in rows[0]
    assert "of 1 runs (1 asked) ended in the Lion family" in text
    reached = int(final.get("family") in ("lion", "signum"))
    assert f"; {reached} reported a Lion-family program, whatever the verdict;" in text
    # done seeds are not run again
    capsys.readouterr()
    stamp = (out / "evolution" / "seed-0" / "history.jsonl").stat().st_mtime_ns
    assert rediscovery_rate.main(args) == 0
    assert "== evolution seed" not in capsys.readouterr().out
    assert (out / "evolution" / "seed-0" / "history.jsonl").stat().st_mtime_ns == stamp
    # random search: same budget, the warm start mutated k times, k from the evolution run's lineages
    assert rediscovery_rate.main(args[:2] + ["--method", "random"] + args[2:]) == 0
    rcfg = yaml.safe_load((out / "random" / "seed-0.yaml").read_text())
    assert rcfg["search"]["method"] == "random"
    from search.inspect import lineage_depths
    depths = sorted(set(d for d in lineage_depths(out / "evolution" / "seed-0") if d > 0))
    assert rcfg["search"]["random_depths"] == depths
    assert json.loads((out / "evolution" / "seed-0" / "rate.json").read_text())["lineage_depths"] == depths
    history = [json.loads(line) for line in (out / "random" / "seed-0" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 14 and all(h["parent"] == 0 for h in history[1:])
    assert all(h["mutation"].startswith("random walk of ") for h in history[1:])
    both = (out / "rate.md").read_text()
    assert "- evolution: " in both and "- random: " in both and "### random" in both


def test_a_row_counts_the_trainings_spent_when_the_candidate_was_found(tmp_path):
    """`found at evaluation (training)`: evaluation ids count every child, the bracket only those
    trained (the warm start included), up to and including the final's candidate; the table reads
    it from rate.json, without the run's history."""
    import dsl
    from search.record import Evaluation, Record
    from search.rundir import RunDir
    run = tmp_path / "evolution" / "seed-3"
    d = RunDir(run)
    sources = ["warm_start", "trained", "dead_code", "cache", "trained", "dead_code", "trained", "trained"]
    for i, source in enumerate(sources):
        d.append(Record(i, dsl.load("sgd"), None if i == 0 else 0, "m", 0, "fp", Evaluation(0.5, 0.9, "ok", 1.0), source))
    d.close()
    (run / "final.json").write_text(json.dumps({"verdict": "discovered", "candidate": 5, "found_at_evaluation": 6,
                                                "evaluations": 8, "family": "signum", "family_text": "signum (b 0.5)"}))
    assert rediscovery_rate.found_at_training(run) == 3  # ids 0, 1 and 4
    (run / "rate.json").write_text(json.dumps({"seed": 3, "wall_seconds": 60.0, "code": "abc", "found_at_training": 3}))
    (run / "history.jsonl").unlink()  # the table needs only final.json and rate.json
    text, _ = rediscovery_rate.table(tmp_path, "evolution", [3])
    assert "| 6 of 8 (3) |" in text
