"""`lionsearch run`: search, funnel and simplification end to end on a shortened config."""
import json

import pytest

import dsl
from lionsearch.cli import main
from lionsearch.pipeline import load_pipeline

CONFIG = """
task: {name: logreg, size: {steps: 30, batch: 32, n_train: 256, n_val: 128}, seeds: [0, 1]}
search: {population: 10, tournament: 3, evaluations: 30}
search_space: {max_statements: 15, constant_prob: 0.3}
ray: {num_cpus: 2, workers: 2}
funnel:
  top_k: 3
  lr_multipliers: [0.3, 1.0]
  stages:
    - {name: A, task: {name: logreg, size: {steps: 30, batch: 32, n_train: 256, n_val: 128}, seeds: [1]}, max_ratio: 2.0}
    - {name: B, task: {name: logreg, size: {steps: 60, dim: 32, n_train: 256, n_val: 128}, seeds: [0, 1]}, max_ratio: 2.0}
simplify: {tolerance: 0.05, max_trainings: 60}
"""


@pytest.fixture(scope="module")
def short_run(local_ray, tmp_path_factory):
    """The whole method on the short config: (config file, run directory, what it printed)."""
    import contextlib
    import io
    tmp = tmp_path_factory.mktemp("pipeline")
    cfg_file, run = tmp / "short.yaml", tmp / "run"
    cfg_file.write_text(CONFIG)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", str(cfg_file), "--run-dir", str(run), "--no-progress"]) == 0
    return cfg_file, run, printed.getvalue()


def test_run_does_every_stage_and_writes_final_opt(short_run, capsys):
    cfg_file, run, out = short_run
    # resumed after the funnel (say, killed while simplifying): the search and the funnel
    # are not run again, and the same final program comes out
    selection, final_text = (run / "selection.json").read_bytes(), (run / "final.opt").read_text()
    (run / "final.opt").unlink()
    assert main(["run", str(cfg_file), "--run-dir", str(run), "--resume", "--no-progress"]) == 0
    again = capsys.readouterr().out
    assert "== funnel: done before" in again and (run / "selection.json").read_bytes() == selection
    assert (run / "final.opt").read_text() == final_text
    assert len((run / "history.jsonl").read_text().splitlines()) == 30  # the search ran
    import yaml  # ... in the config's search space
    from search.config import to_dict
    assert yaml.safe_load((run / "config.yaml").read_text())["search_space"] == \
        to_dict(load_pipeline(cfg_file).search_space) | {"max_statements": 15, "constant_prob": 0.3}
    report = json.loads((run / "selection.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["A", "B"]  # the funnel ran
    final = dsl.load(run / "final.opt")  # simplification wrote a valid program
    result = json.loads((run / "final.json").read_text())
    assert result["verdict"] == "discovered"
    assert dsl.parse(result["final"]) == final and result["stage"] == "B"
    assert result["family"] == dsl.family(final).name
    steps = (run / "simplify.md").read_text()  # every accepted step, ending in the final form
    assert f"candidate {result['candidate']}" in steps and "| 0 | input |" in steps
    if result["note"] is None:  # the ablated form is the result (else the exact form is)
        assert dsl.parse(steps.split("```")[1]) == final
    # a discovery never lost to the baseline on the last stage; every seed's loss is reported
    assert result["final_loss"] <= result["baseline_loss"]
    # the functions the simplification reached are trained on the last stage from the simplest
    # back: the result is the first that beat the baseline, and the longer ones were not trained
    forms = result["forms"]
    k = [dsl.parse(f["program"]) for f in forms].index(dsl.parse(result["final"]))
    assert forms[k]["loss"] == result["final_loss"] <= result["baseline_loss"]
    assert all(f["loss"] is None and f["lr_multiplier"] is None for f in forms[:k])
    assert all(f["loss"] > result["baseline_loss"] for f in forms[k + 1:])
    # the deciding comparison on a finer lr grid than the funnel's (geometric midpoints added)
    assert result["lr_multipliers"] == [0.3, 0.5477, 1.0]
    assert {result["final_lr_multiplier"], result["baseline_lr_multiplier"]} <= set(result["lr_multipliers"])
    assert len(result["final_seed_losses"]) == len(result["baseline_seed_losses"]) == 2
    assert result["final_loss"] == pytest.approx(sum(result["final_seed_losses"]) / 2)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert dsl.equivalent(dsl.parse(forms[0]["program"]), dsl.parse(history[result["candidate"]]["program"]))
    assert history[result["found_at_evaluation"] - 1]["id"] == result["candidate"]
    assert all(len(h["seed_losses"]) == 2 for h in history if h["status"] == "ok")  # task.seeds: [0, 1]
    assert f"found at evaluation {result['found_at_evaluation']} of 30" in out
    assert "== search" in out and "== funnel" in out and "== simplify" in out
    assert "# verdict: discovered" in out and "# family: " in out and "vs baseline" in out


def test_the_verdict_must_hold_on_other_seeds(short_run, capsys):
    """With `verdict.seeds`, the final program and the baseline are trained again on those seeds of
    the last stage (at the multipliers the stage chose): a discovery is a win that held there."""
    cfg_file, run, _ = short_run
    strict = cfg_file.with_name("verdict.yaml")
    strict.write_text(CONFIG + "verdict: {seeds: [2, 3, 4], weight_decays: [0.0, 0.01]}\n")
    code = main(["run", str(strict), "--run-dir", str(run), "--resume", "--no-progress"])
    out = capsys.readouterr().out
    result = json.loads((run / "final.json").read_text())
    c = result["confirmation"]
    assert c["seeds"] == [2, 3, 4] and len(c["final_seed_losses"]) == len(c["baseline_seed_losses"]) == 3
    diffs = [a - b for a, b in zip(c["final_seed_losses"], c["baseline_seed_losses"])]
    assert c["difference"] == pytest.approx(sum(diffs) / 3) and c["held"] == (c["difference"] < 0)
    assert (result["verdict"] == "discovered") == c["held"] == (run / "final.opt").exists() == (code == 0)
    # from the simplest form back, each that beat the baseline on the stage was checked, until a
    # win held: the result is the simplest that held (or, where none did, every form was tried)
    forms = result["forms"]
    tried = [i for i, f in enumerate(forms) if f["loss"] is not None]
    assert tried == list(range(tried[0], len(forms)))
    beat = [i for i in tried if forms[i]["loss"] <= result["baseline_loss"]]
    assert beat and all((forms[i]["confirmation"] is not None) == (i in beat) for i in tried)
    held = [i for i in beat if forms[i]["confirmation"]["held"]]
    assert held == [tried[0]] if held else tried[0] == 0
    assert dsl.parse(result["final"]) == dsl.parse(forms[max(held or beat)]["program"])
    assert "on 3 other seeds of stage B (2, 3, 4): final minus baseline" in out
    # each form and the baseline at its own weight decay of the sweep, in the confirmation too
    assert result["weight_decays"] == [0.0, 0.01] and result["baseline_weight_decay"] in (0.0, 0.01)
    assert all(forms[i]["weight_decay"] in (0.0, 0.01) for i in tried)
    assert result["final_weight_decay"] == forms[max(held or beat)]["weight_decay"]
    strict.write_text(CONFIG + "verdict: {weight_decays: [-0.1]}\n")
    with pytest.raises(SystemExit, match=r"verdict.weight_decays: one or more numbers >= 0 are needed"):
        main(["run", str(strict), "--run-dir", str(run), "--resume", "--no-progress"])
    with pytest.raises(SystemExit, match=r"verdict.seeds: seeds the last stage does not train on are needed; \[1\]"):
        strict.write_text(CONFIG + "verdict: {seeds: [1, 5]}\n")
        main(["run", str(strict), "--run-dir", str(run), "--resume", "--no-progress"])


def test_a_confirmation_tells_a_win_from_a_loss(local_ray):
    """On other seeds: AdamW at its tuned lr against AdamW at a hundredth of it holds; the reverse,
    and a program against itself (a difference of exactly zero), do not."""
    from lionsearch.pipeline import confirmations
    from search.config import TaskConfig
    from selection.funnel import FunnelConfig, Stage
    stage = Stage("B", TaskConfig(name="logreg", size={"steps": 30, "batch": 32, "n_train": 256, "n_val": 128},
                                  seeds=(0,)))
    funnel = FunnelConfig(stages=(stage,))
    adamw = dsl.load("adamw_warmstart")
    at = lambda k: {"lr_multiplier": k}
    win, tie = confirmations(stage, [(adamw, at(10.0)), (adamw, at(0.1))], at(0.1), funnel, (1, 2))
    assert win["held"] and win["difference"] < 0 and len(win["final_seed_losses"]) == 2
    assert tie["difference"] == 0 and not tie["held"]
    loss, = confirmations(stage, [(adamw, at(0.1))], at(10.0), funnel, (1, 2))
    assert loss["difference"] > 0 and not loss["held"]


def test_confirmations_train_the_baseline_once(local_ray, monkeypatch):
    """The walk confirms one form at a time: the baseline, at the same setting on the same seeds,
    is trained for the first and reused for the next (the same losses as its own training)."""
    from lionsearch import pipeline
    from search.config import TaskConfig
    from selection.funnel import FunnelConfig, Stage
    stage = Stage("B", TaskConfig(name="logreg", size={"steps": 30, "batch": 32, "n_train": 256, "n_val": 128},
                                  seeds=(0,)))
    funnel = FunnelConfig(stages=(stage,))
    adamw = dsl.load("adamw_warmstart")
    at = lambda k: {"lr_multiplier": k}
    trained = {}
    first, = pipeline.confirmations(stage, [(adamw, at(10.0))], at(0.1), funnel, (1, 2), trained)
    sent, real = [], pipeline.score_on_stage
    monkeypatch.setattr(pipeline, "score_on_stage", lambda st, items, *a: sent.extend(items) or real(st, items, *a))
    second, = pipeline.confirmations(stage, [(adamw, at(0.1))], at(0.1), funnel, (1, 2), trained)
    assert [key for key, *_ in sent] == [0]  # the form alone
    assert second["baseline_seed_losses"] == first["baseline_seed_losses"] and second["difference"] == 0


def test_run_where_nothing_passes_says_so(local_ray, tmp_path, capsys):
    """A funnel no candidate can pass (max_ratio: 0.01): the verdict, no final.opt, exit status 3."""
    cfg_file = tmp_path / "strict.yaml"
    cfg_file.write_text(CONFIG.replace("max_ratio: 2.0", "max_ratio: 0.01").replace("evaluations: 30", "evaluations: 12"))
    run = tmp_path / "run"
    assert main(["run", str(cfg_file), "--run-dir", str(run), "--no-progress"]) == 3
    out = capsys.readouterr().out
    result = json.loads((run / "final.json").read_text())
    assert result["verdict"] == "no candidate generalized" and not (run / "final.opt").exists()
    best = result["best_candidate"]
    assert best["stages"]["A"]["passed"] is False and "B" not in best["stages"]
    assert "# verdict: no candidate generalized" in out and "no final.opt is written" in out
    assert "== simplify" not in out


def test_a_search_that_found_nothing_better_than_its_start_says_so(tmp_path, capsys):
    """No record beat the warm start: no candidate enters the funnel, and the printout says why."""
    from lionsearch.cli import print_verdict
    from lionsearch.pipeline import NOTHING, choose, furthest
    report = {"candidates": [], "stages": [{"name": "A"}]}
    assert choose(report) is None and furthest(report["candidates"], ["A"]) is None
    print_verdict({"verdict": NOTHING, "best_candidate": None, "stages": report["stages"]})
    out = capsys.readouterr().out
    assert "# verdict: no candidate generalized" in out
    assert "the search found no program better than its warm start" in out


def test_shipped_quickstart_config_loads():
    from pathlib import Path
    cfg = load_pipeline(Path(__file__).parent.parent / "configs" / "quickstart.yaml")
    assert cfg.task.name == "digits_vit" and [s.name for s in cfg.funnel.stages] == ["A", "B", "C"]
    assert cfg.search_space.warm_start == ("adamw_warmstart",) and cfg.search_space.max_statements == 30
    assert cfg.simplify.tune_trainings == 600 and cfg.simplify.max_trainings == 1200


def test_the_islands_config_is_the_quickstart_search_split_into_islands():
    """configs/quickstart_islands.yaml (the islands measurement) differs from the quickstart's
    search only in how its population of 100 is split and meets, in its budget (6000 evaluations),
    and in the tune mutation and the leaders' re-score, which the quickstart gained after that
    measurement (the config stays as it was measured)."""
    import dataclasses
    from pathlib import Path
    configs = Path(__file__).parent.parent / "configs"
    quick = load_pipeline(configs / "quickstart.yaml").search_config()
    islands = load_pipeline(configs / "quickstart_islands.yaml").search_config()
    assert islands.search.islands * islands.search.population == quick.search.islands * quick.search.population
    assert dataclasses.replace(islands, search=dataclasses.replace(
        islands.search, population=quick.search.population, islands=quick.search.islands,
        migration_every=quick.search.migration_every,
        migrants=quick.search.migrants, evaluations=quick.search.evaluations,
        max_trainings=quick.search.max_trainings, mutation=quick.search.mutation,
        rescore_seeds=quick.search.rescore_seeds, rescore_top=quick.search.rescore_top)) == quick
    assert islands.search.mutation.tune == 0 and quick.search.mutation.tune > 0
    assert not islands.search.rescore_seeds and quick.search.rescore_seeds


def test_pipeline_config_errors_name_the_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("funnel: {stages: [{name: A, task: {name: logreg}}], top_k: 0}\n")
    with pytest.raises(SystemExit, match=r"funnel.top_k: must be >= 1"):
        main(["run", str(f)])


def test_the_leaders_rescore_must_not_train_on_a_funnel_stages_seeds(tmp_path):
    f = tmp_path / "leak.yaml"
    stage = "{name: A, task: {name: logreg, seeds: [2, 3]}}"
    f.write_text(f"task: {{name: logreg, seeds: [0, 1]}}\nsearch: {{rescore_seeds: [3, 4]}}\n"
                 f"funnel: {{stages: [{stage}]}}\n")
    with pytest.raises(SystemExit, match=r"leak.yaml: search.rescore_seeds: funnel stage A checks the search's task on seeds \[3\]"):
        main(["run", str(f)])
    f.write_text(f"task: {{name: logreg, seeds: [0, 1]}}\nsearch: {{rescore_seeds: [4, 5]}}\n"
                 f"funnel: {{stages: [{stage}]}}\n")
    assert load_pipeline(f).search.rescore_seeds == (4, 5)


def test_simplify_lr_multipliers_are_checked(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("simplify: {lr_multipliers: [0, 1]}\n")
    with pytest.raises(SystemExit, match=r"bad.yaml: simplify.lr_multipliers: positive numbers are needed"):
        main(["run", str(f)])
    f.write_text("simplify: {tune_trainings: -5}\n")
    with pytest.raises(SystemExit, match=r"bad.yaml: simplify.tune_trainings: must be >= 0 .0: no tuning., got -5"):
        main(["run", str(f)])


def test_choose_takes_the_candidate_that_went_furthest():
    from lionsearch.pipeline import choose, furthest

    def row(i, passed, **losses):
        return {"id": i, "passed": passed, "stages": {k: {"loss": x} for k, x in losses.items()}}

    stages = [{"name": "A"}, {"name": "B"}, {"name": "C"}]
    # no survivor: nothing to choose; the furthest is the best on B among those that reached B,
    # not the proxy's best (id 1)
    report = {"stages": stages, "candidates": [row(1, False, A=0.1), row(2, False, A=0.3, B=0.5),
                                                 row(3, False, A=0.2, B=0.4)]}
    assert choose(report) is None
    assert furthest(report["candidates"], ["A", "B", "C"])["id"] == 3
    report["candidates"] += [row(4, True, A=0.9, B=0.9, C=0.9), row(5, True, A=0.9, B=0.9, C=0.8)]
    assert choose(report)["id"] == 5  # the best survivor on the last stage


def _sections(page: str) -> dict[str, str]:
    import re
    return dict(re.findall(r'<section id="(\w+)">(.*?)</section>', page, re.S))


def test_report_of_a_finished_run_has_every_section(short_run, tmp_path):
    _, run, _ = short_run
    assert main(["report", str(run)]) == 0
    got = _sections((run / "report.html").read_text())
    assert list(got) == ["config", "progress", "pareto", "best", "lineage", "spared", "funnel", "simplify", "final"]
    assert all('<p class="missing">' not in body for body in got.values())  # nothing missing
    result = json.loads((run / "final.json").read_text())
    assert f"verdict: {result['verdict']}" in got["final"] and f"candidate {result['candidate']}" in got["lineage"]
    assert "<table>" in got["funnel"] and "<table>" in got["simplify"] and "<pre>" in got["best"]


def test_report_renders_in_a_real_browser(short_run, tmp_path):
    """Headless Chromium loads the report of the whole method's run: no console message (the page
    reports an image that did not decode), every section shown, a screenshot that is not blank."""
    import shutil
    import subprocess
    from matplotlib.image import imread
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if chromium is None:
        pytest.skip("Chromium is not installed here (.ci/run installs Debian's chromium package)")
    _, run, _ = short_run
    page, shot = tmp_path / "report.html", tmp_path / "shot.png"
    assert main(["report", str(run), "-o", str(page)]) == 0
    flags = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000"]
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    snap = subprocess.run(flags + ["--window-size=1200,2400", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and snap.returncode == 0, dom.stderr[-2000:] + snap.stderr[-2000:]
    console = [line for line in (dom.stderr + snap.stderr).splitlines() if ":CONSOLE" in line]
    assert console == []
    got = _sections(dom.stdout)  # the page as the browser built it
    assert len(got) == 9 and all('<p class="missing">' not in body and len(body) > 100 for body in got.values())
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1200)
    assert 0.02 < (pixels < 0.9).any(axis=2).mean() < 0.9  # text and plots on a white page
