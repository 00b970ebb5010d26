"""The funnel on a real short run, on a local Ray instance."""
import dataclasses
import json

import pytest

import dsl
from search.config import ConfigError, RayConfig, RunConfig, SearchConfig, TaskConfig
from search.runner import run_search
from selection.funnel import FunnelConfig, Stage, load_funnel, run_funnel

SMALL = {"steps": 30, "batch": 32, "n_train": 256, "n_val": 128}


@pytest.fixture(scope="module")
def run_dir(local_ray, tmp_path_factory):
    d = tmp_path_factory.mktemp("funnel") / "run"
    cfg = RunConfig(task=TaskConfig(name="logreg", size=SMALL),
                    search=SearchConfig(population=10, tournament=3, evaluations=30), ray=RayConfig(workers=2))
    run_search(cfg, d, progress=False)
    return d


def test_funnel_stages_and_thresholds(run_dir):
    cfg = FunnelConfig(
        stages=(Stage("A", TaskConfig(name="logreg", size=SMALL, seeds=(0, 1)), max_ratio=1.05),
                Stage("B", TaskConfig(name="logreg", size={**SMALL, "steps": 80, "dim": 32}), max_ratio=1.0)),
        top_k=4, lr_multipliers=(0.3, 1.0))
    report = run_funnel(run_dir, cfg, progress=False)
    rows = report["candidates"]
    from search.rundir import read_history
    start = next(r.loss for r in read_history(run_dir) if r.source == "warm_start")
    assert all(r["proxy_loss"] < start for r in rows)  # only what beat the warm start
    assert 2 <= len(rows) <= 4 and len({r["fingerprint"] for r in rows}) == len(rows)
    progs = [dsl.parse(r["program"]) for r in rows]  # distinct algorithms, not near-copies
    assert not any(dsl.equivalent_up_to_constants(p, q) for i, p in enumerate(progs) for q in progs[:i])
    assert [r["proxy_loss"] for r in rows] == sorted(r["proxy_loss"] for r in rows)
    a_base = report["stages"][0]["baseline"]["loss"]
    for r in rows:
        a = r["stages"]["A"]
        assert a["lr_multiplier"] in (0.3, 1.0)
        assert a["passed"] == (a["loss"] <= 1.05 * a_base)
        assert ("B" in r["stages"]) == a["passed"]  # only survivors go on
        assert r["passed"] == all(s["passed"] for s in r["stages"].values()) and len(r["stages"]) >= 1
    assert report["survivors"] == [r["id"] for r in rows if r["passed"]]
    saved = json.loads((run_dir / "selection.json").read_text())
    assert saved["survivors"] == report["survivors"]
    table = (run_dir / "selection.md").read_text()
    assert "| baseline |" in table and table.count("\n") == 3 + len(rows)


def test_scale_lr_multiplies_the_update():
    import numpy as np
    from dsl.analysis import trajectory
    p = dsl.load("sgd")
    a, b = trajectory(p), trajectory(p.scale_lr(0.5))
    np.testing.assert_allclose(b[0][0], 0.5 * a[0][0])
    # a program that never reads lr is the same optimizer at every lr: no statement is added
    blind = dsl.parse("def train(w, g, m, v, lr):\n    update = g * 0.1\n    return update, m, v\n")
    assert blind.scale_lr(0.5) is blind


def test_add_weight_decay_adds_a_decoupled_decay_that_follows_the_lr():
    import numpy as np
    from dsl.execute import run
    rng = np.random.default_rng(0)
    w, g, m, v = (rng.normal(size=5) for _ in range(4))
    # `decay` is taken already: the added statements pick another name
    p = dsl.parse("def train(w, g, m, v, lr):\n    m = interp(g, m, 0.5)\n    decay = sign(m)\n"
                  "    lr = lr * 0.002\n    update = decay * lr\n    return update, m, v\n")
    for k in (1.0, 0.3):
        base, wd = run(p.scale_lr(k), np, w, g, m, v, 2.0), run(p.add_weight_decay(0.01).scale_lr(k), np, w, g, m, v, 2.0)
        np.testing.assert_allclose(wd[0], base[0] + 0.01 * 2.0 * k * w)  # the lr input, times the multiplier
        np.testing.assert_allclose(wd[1], base[1])  # the memory is untouched
    assert p.add_weight_decay(0.0) is p
    assert str(dsl.family(p.add_weight_decay(0.002))) == "signum (b 0.5, wd 1, lr x0.002)"


def test_tuning_sweeps_the_weight_decay_with_the_lr(local_ray):
    """The best of the joint sweep, coarse to fine, is the best of the settings scored one by one:
    the grid at every weight decay, then the midpoints beside the best multiplier at the best
    weight decay; a program at the length cap, which has no room for the decay's statements, is
    tried without it."""
    from selection.funnel import fits, score_on_stage, tune_on_stage
    stage = Stage("B", TaskConfig(name="logreg", size=SMALL, seeds=(0,)))
    grid = (1.0, 3.0, 10.0)
    cfg = FunnelConfig(stages=(stage,), lr_multipliers=grid)
    adamw = dsl.to_text(dsl.load("adamw_warmstart"))
    chain = "".join(f"    m = m + {1 + i / 100}\n" for i in range(29))  # 29 live statements, then the update
    long = f"def train(w, g, m, v, lr):\n    m = interp(g, m, 0.9)\n{chain}    update = m * lr\n    return update, m, v\n"
    assert fits(long, 1.0, 0.0) and not fits(long, 1.0, 0.5)
    best, best_long = tune_on_stage(stage, [adamw, long], cfg, (0.0, 0.5), refine=True)
    coarse = score_on_stage(stage, [((k, wd), adamw, k, wd) for k in grid for wd in (0.0, 0.5)], cfg)
    assert len({r.loss for r in coarse.values()}) == 6  # the weight decay changes the training
    k, wd = min(coarse, key=lambda kw: coarse[kw].loss)
    mids = {round((k * x) ** 0.5, 4) for x in grid if x != k and max(k, x) / min(k, x) < 4}
    scored = {**coarse, **score_on_stage(stage, [((m, wd), adamw, m, wd) for m in mids], cfg)}
    k, wd = min(scored, key=lambda kw: scored[kw].loss)
    assert (best["lr_multiplier"], best["weight_decay"]) == (k, wd) and best["loss"] == scored[(k, wd)].loss
    assert k not in grid  # here a midpoint wins
    # trained (a sum of constants diverges at these lrs), not refused as too long
    assert best_long["weight_decay"] == 0.0 and best_long["status"] in ("ok", "diverged")


def test_funnel_config_errors_name_the_key(tmp_path):
    f = tmp_path / "f.yaml"
    f.write_text("stages: [{name: A, task: {name: logreg}, max_ratio: -1}]\n")
    with pytest.raises(ConfigError, match=r"stages\[0\]\.max_ratio: must be positive"):
        load_funnel(f)
    f.write_text("stages: []\n")
    with pytest.raises(ConfigError, match="stages: at least one stage"):
        load_funnel(f)


def test_shipped_funnel_config_loads():
    from pathlib import Path
    cfg = load_funnel(Path(__file__).parent.parent / "configs" / "funnel.yaml")
    assert [s.name for s in cfg.stages] == ["A", "B", "C"]


def test_candidates_skip_a_program_that_trained_exactly_like_an_earlier_pick(tmp_path):
    import json
    from selection.funnel import candidates_of

    def rec(i, text, fitness):
        p = dsl.parse("def train(w, g, m, v, lr):\n" + text + "    return update, m, v\n")
        from search.record import Evaluation, Record
        return Record(i, p, None, "", 0, dsl.fingerprint(p), Evaluation(fitness, None, "ok", 0.0), "trained").to_json()

    records = [
        rec(0, "    m = interp(g, m, 0.9)\n    update = m * lr\n", 0.5),
        # a bound that binds on abstract execution's N(0, 1) gradients, never on a real task's
        # small ones: another hash, the very same training
        rec(1, "    c = minimum(g, 1.5)\n    m = interp(c, m, 0.9)\n    update = m * lr\n", 0.5),
        rec(2, "    update = g * lr\n", 0.7),
    ]
    assert len({r["fingerprint"] for r in records}) == 3
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert [c["id"] for c in candidates_of(tmp_path, 3)] == [0, 2]
    # only what beats the warm start on the search's task is a candidate: not the start itself
    start = rec(0, "    update = g * lr\n", 0.6) | {"source": "warm_start"}
    records = [start, rec(1, "    m = interp(g, m, 0.9)\n    update = m * lr\n", 0.5),
               rec(2, "    s = sign(g)\n    update = s * lr\n", 0.8)]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert [c["id"] for c in candidates_of(tmp_path, 3)] == [1]
    assert [c["id"] for c in candidates_of(tmp_path, 3, pareto=True)] == [1]


def test_candidates_come_from_every_island_in_turn(tmp_path):
    """A search whose islands evolved apart sends each island's best in turn: island 1's programs,
    all worse than island 0's, still take their share of the funnel, and the picks come best first."""
    import json
    from search.record import Evaluation, Record
    from selection.funnel import candidates_of
    texts = ["    update = g * lr\n", "    s = sign(g)\n    update = s * lr\n", "    t = tanh(g)\n    update = t * lr\n",
             "    m = interp(g, m, 0.9)\n    update = m * lr\n", "    m = interp(g, m, 0.9)\n    s = sign(m)\n    update = s * lr\n",
             "    m = interp(g, m, 0.9)\n    t = tanh(m)\n    update = t * lr\n"]

    def rec(i, fitness, island):
        p = dsl.parse("def train(w, g, m, v, lr):\n" + texts[i] + "    return update, m, v\n")
        return Record(i, p, None, "", 0, dsl.fingerprint(p), Evaluation(fitness, None, "ok", 0.0), "trained",
                      island=island).to_json()

    records = [rec(0, 0.30, 0), rec(1, 0.31, 0), rec(2, 0.32, 0), rec(3, 0.40, 1), rec(4, 0.41, 1), rec(5, 0.42, 1)]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert [c["id"] for c in candidates_of(tmp_path, 4)] == [0, 1, 3, 4]
    assert [c["id"] for c in candidates_of(tmp_path, 3)] == [0, 1, 3]
    # one island: the best first, as before
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r | {"island": 0}) + "\n" for r in records))
    assert [c["id"] for c in candidates_of(tmp_path, 4)] == [0, 1, 2, 3]


def test_the_funnel_stops_once_enough_candidates_passed_and_tries_every_one_where_none_does(run_dir):
    stage = Stage("A", TaskConfig(name="logreg", size=SMALL, seeds=(0,)), max_ratio=10.0)  # every finite loss passes
    cfg = FunnelConfig(stages=(stage,), top_k=4, lr_multipliers=(1.0,), enough=1, ray=RayConfig(workers=1))
    report = run_funnel(run_dir, cfg, progress=False)
    rows = report["candidates"]
    assert len(rows) >= 2
    assert rows[0]["passed"] is True and list(rows[0]["stages"]) == ["A"]  # the best on the proxy goes first
    assert all(r["passed"] is None and r["stages"] == {} for r in rows[1:])  # the rest are not trained
    assert report["survivors"] == [rows[0]["id"]]
    assert "not trained (enough passed)" in (run_dir / "selection.md").read_text()
    # a bar nothing meets: every candidate is tried, the baseline once per stage
    strict = Stage("A", stage.task, max_ratio=1e-6)
    report = run_funnel(run_dir, dataclasses.replace(cfg, stages=(strict,)), progress=False)
    assert all(r["passed"] is False and "A" in r["stages"] for r in report["candidates"])
    assert report["survivors"] == [] and len(report["stages"]) == 1
    with pytest.raises(ValueError, match="enough"):
        dataclasses.replace(cfg, enough=0)
