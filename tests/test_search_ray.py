"""The search on a real local Ray instance: end to end, reproducibility, timeouts, resume."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

import dsl
from search.config import RayConfig, RunConfig, SearchConfig, TaskConfig, ConfigError
from search.runner import run_search

TASK = TaskConfig(name="logreg", size={"steps": 30, "batch": 32, "n_train": 256, "n_val": 128}, seeds=(0,))


def config(evaluations=40, workers=2, **search):
    s = dict(population=10, tournament=3, evaluations=evaluations, checkpoint_every=10, timeout_s=60.0)
    s.update(search)
    return RunConfig(task=TASK, search=SearchConfig(**s), ray=RayConfig(workers=workers), seed=0)


def history(run_dir):
    return [json.loads(l) for l in (Path(run_dir) / "history.jsonl").read_text().splitlines()]


def test_search_end_to_end(local_ray, tmp_path):
    summary = run_search(config(evaluations=40), tmp_path / "run", progress=False)
    recs = history(tmp_path / "run")
    assert [r["id"] for r in recs] == list(range(40))
    for r in recs:
        assert {"id", "program", "fingerprint", "fitness", "status", "parent", "mutation", "worker",
                "seconds", "source"} <= set(r)
        dsl.parse(r["program"])
    assert recs[0]["source"] == "warm_start" and recs[0]["parent"] is None
    assert dsl.parse(recs[0]["program"]) == dsl.load("adamw_warmstart")
    assert all(r["parent"] < r["id"] for r in recs[1:])
    trained = [r for r in recs if r["source"] == "trained"]
    assert trained and all(r["worker"] for r in trained) and len({r["worker"] for r in trained}) <= 2
    assert len({r["fingerprint"] for r in trained}) == len(trained)  # nothing trained twice
    st = summary["stats"]
    assert st["trained"] + st["cache_hits"] + st["dead_code_only"] == 39
    assert st["proposed"] == 39 + st["rejected"]
    best = min((r for r in recs if r["fitness"] is not None), key=lambda r: r["fitness"])
    assert summary["best"][0]["fitness"] == best["fitness"]
    assert (tmp_path / "run" / "best.opt").exists()
    assert dsl.load(tmp_path / "run" / "best.opt") == dsl.parse(best["program"])
    pop = json.loads((tmp_path / "run" / "population.json").read_text())
    assert [p["id"] for p in pop["population"]] == list(range(30, 40))  # the 10 youngest
    # the hall of fame: over the whole run (aging removes nothing), shortest first, each better
    front = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert front and front[-1]["fitness"] == best["fitness"]
    assert all(a["live_statements"] < b["live_statements"] and a["fitness"] > b["fitness"]
               for a, b in zip(front, front[1:]))
    for f in front:
        n = f["live_statements"]
        assert len(dsl.parse(f["program"])) == n
        assert f["fitness"] == min(r["fitness"] for r in recs if r["fitness"] is not None
                                   and len(dsl.strip_dead_code(dsl.parse(r["program"]))) <= n)
    # a run directory already holding a run is not overwritten by accident
    with pytest.raises(ConfigError, match="--resume"):
        run_search(config(evaluations=40), tmp_path / "run", progress=False)


def test_one_worker_run_is_reproducible(local_ray, tmp_path):
    keys = ("program", "fingerprint", "fitness", "parent", "mutation", "source")
    runs = []
    for name in ("a", "b"):
        run_search(config(evaluations=25, workers=1), tmp_path / name, progress=False)
        runs.append([tuple(r[k] for k in keys) for r in history(tmp_path / name)])
    assert runs[0] == runs[1]
    other = config(evaluations=25, workers=1)
    run_search(dataclasses.replace(other, seed=1), tmp_path / "c", progress=False)
    assert [tuple(r[k] for k in keys) for r in history(tmp_path / "c")] != runs[0]


def test_restart_from_best_after_a_plateau(local_ray, tmp_path):
    run_search(config(evaluations=30, restart_after=8), tmp_path / "run", progress=False)
    recs = history(tmp_path / "run")
    restarts = [r for r in recs if r["source"] == "restart"]
    assert restarts
    for r in restarts:
        earlier = [x for x in recs[:r["id"]] if x["fitness"] is not None]
        assert r["fitness"] == min(x["fitness"] for x in earlier)


def test_a_candidate_past_the_time_limit_is_a_failure(local_ray, tmp_path):
    slow = dataclasses.replace(TASK, size={**TASK.size, "steps": 30000})  # about half a second
    cfg = dataclasses.replace(config(evaluations=3, timeout_s=0.05), task=slow)
    summary = run_search(cfg, tmp_path / "run", progress=False)
    recs = history(tmp_path / "run")
    assert len(recs) == 3
    assert recs[0]["status"].startswith("timeout") and recs[0]["fitness"] is None
    assert summary["timeouts"] >= 1


def test_seed_split_scores_like_one_process_over_all_seeds(local_ray):
    import math
    import proxy_tasks
    from search.workers import SeedSplit
    seeds = (0, 1, 2)
    split = SeedSplit(TASK.name, dict(TASK.size), seeds, 2, timeout_s=60.0)
    try:
        assert split.workers == 2  # seeds 0, 2 go to one worker, 1 to the other
        here = proxy_tasks.Evaluator(TASK.name, **TASK.size)
        for name in ("adamw", "lion"):
            p = dsl.load(name)
            assert split.loss(p) == pytest.approx(here.evaluate(p, seeds).loss, rel=1e-5)
            # a subset of the seeds (the simplification's screen), split the same way
            assert split.loss(p, seeds[:2]) == pytest.approx(here.evaluate(p, seeds[:2]).loss, rel=1e-5)
        diverging = dsl.parse("def train(w, g, m, v, lr):\n    t = exp(w)\n    update = t * 1e30\n    return update, m, v\n")
        assert split.loss(diverging) == math.inf
    finally:
        split.shutdown()


def test_workers_take_their_own_xla_flags_over_one_thread(local_ray):
    """The benchmark's unpinned layout: XLA_FLAGS given to the pool reach the workers (and win over
    proxy_tasks' one thread per worker); without them, each worker runs XLA on one thread."""
    from search.workers import WorkerPool

    def flags(pool):
        actors = pool.wait_ready()
        return ray.get(actors[0].__ray_call__.remote(lambda self: os.environ.get("XLA_FLAGS", "")))

    for given, expected in ((None, "intra_op_parallelism_threads=1"), ("--xla_cpu_multi_thread_eigen=true", None)):
        pool = WorkerPool(TASK.name, dict(TASK.size), (0,), 1, timeout_s=60.0, warm=False, xla_flags=given)
        try:
            got = flags(pool)
            assert (expected in got) if expected else got == given
        finally:
            pool.shutdown()


@pytest.mark.slow  # a search in a subprocess, on its own Ray
def test_resume_after_kill_9_loses_and_repeats_nothing(tmp_path):
    cfg_file = tmp_path / "quick.yaml"
    cfg_file.write_text(
        "task: {name: logreg, size: {steps: 300, batch: 32, n_train: 256, n_val: 128}}\n"
        "search: {population: 10, tournament: 3, evaluations: 60, checkpoint_every: 5}\n"
        "ray: {num_cpus: 2, workers: 2}\n")
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "lionsearch", "search", str(cfg_file), "--run-dir", str(run_dir), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    hist = run_dir / "history.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not hist.exists() or len(hist.read_text().splitlines()) < 15):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray, mid-search
    proc.wait()
    before = history(run_dir)
    assert 15 <= len(before) < 60
    with open(hist, "ab") as f:
        f.write(b'{"id": 999, "program": "def tr')  # and a torn last line, as a kill mid-write leaves
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    after = history(run_dir)
    assert [r["id"] for r in after] == list(range(60))
    assert after[:len(before)] == before  # nothing rewritten
    assert "run directory: " + str(run_dir) in done.stdout


def test_a_worker_that_cannot_start_stops_the_pool_with_its_reason(local_ray):
    from search.workers import WorkerError, WorkerPool
    pool = WorkerPool("logreg", {"steps": 10 ** 12}, (0,), 1, timeout_s=60.0, max_tries=2)  # the task refuses it
    try:
        with pytest.raises(WorkerError, match="fail to start .2 tries.: ValueError: task 'logreg': knob 'steps'"):
            list(pool.map([(0, dsl.load("sgd"))]))
        assert pool.start_failures == 2
    finally:
        pool.shutdown()


def test_stop_conditions_end_a_search_and_a_resume_goes_on(local_ray, tmp_path, capsys):
    """target_loss stops a search as soon as the best reaches it, max_minutes when time is up; the
    summary says which, and a resume on new conditions goes on from the history, losing nothing."""
    run = tmp_path / "run"
    first = run_search(config(evaluations=40, workers=1, target_loss=100.0), run, progress=False)
    assert first["stopped"] == "target_loss" and first["evaluations"] < 40
    assert "reached target_loss 100" in first["stopped_because"]
    done = [r["id"] for r in history(run)]
    again = run_search(config(evaluations=40, workers=1), run, resume=True, progress=False)
    assert again["stopped"] == "evaluations" and [r["id"] for r in history(run)] == list(range(40))
    assert [r["id"] for r in history(run)][:len(done)] == done
    timed = run_search(config(evaluations=10 ** 6, workers=1, max_minutes=0.05), tmp_path / "timed", progress=False)
    assert timed["stopped"] == "max_minutes" and timed["evaluations"] < 10 ** 6
    assert json.loads((tmp_path / "timed" / "summary.json").read_text())["stopped"] == "max_minutes"
    with pytest.raises(ValueError, match="max_minutes: expected a positive number of minutes, got 0"):
        config(max_minutes=0)


def test_a_budget_of_trainings_counts_trained_children_only(local_ray, tmp_path):
    """max_trainings ends a search once that many children were trained, however many more the checks
    and the cache answered; a resume with a larger budget trains exactly the difference."""
    run = tmp_path / "run"
    first = run_search(config(evaluations=10 ** 6, workers=2, max_trainings=12), run, progress=False)
    trained = [r for r in history(run) if r["source"] == "trained"]
    assert first["stopped"] == "max_trainings" and "budget of 12 trainings" in first["stopped_because"]
    assert len(trained) == 12 and first["evaluations"] > 12  # some children were spared
    again = run_search(config(evaluations=10 ** 6, workers=2, max_trainings=20), run, resume=True, progress=False)
    assert again["stopped"] == "max_trainings"
    assert sum(r["source"] == "trained" for r in history(run)) == 20
    with pytest.raises(ValueError, match="max_trainings: expected a positive number of trainings, got 0"):
        config(max_trainings=0)


def test_islands_evolve_apart_migrate_and_resume_exactly(local_ray, tmp_path, capsys):
    """Three islands: each child's parent lives on the child's island; every 4 children each
    island's best joins the next island as a `migrant` record; with one worker the run is
    reproducible, and a run stopped half way and resumed gives the same history line for line."""
    cfg = config(evaluations=24, workers=1, islands=3, migration_every=4, migrants=1)
    run_search(cfg, tmp_path / "a", progress=False)
    recs = history(tmp_path / "a")
    by_id = {r["id"]: r for r in recs}
    island = lambda r: r.get("island", 0)
    children = [r for r in recs if r["source"] in ("trained", "cache", "dead_code")]
    assert {island(r) for r in children} == {0, 1, 2}
    for r in children:
        parent = by_id[r["parent"]]
        assert parent["source"] == "warm_start" or island(parent) == island(r)
    migrants = [r for r in recs if r["source"] == "migrant"]
    assert migrants and len(migrants) % 3 == 0
    for r in migrants:
        parent = by_id[r["parent"]]
        assert r["fitness"] == parent["fitness"] and r["program"] == parent["program"]
        assert f"migrant from island {island(parent)}" == r["mutation"]
        if parent["source"] != "warm_start":
            assert island(r) == (island(parent) + 1) % 3
    assert 1 <= len(migrants) // 3 <= len(children) // 4  # a round after every 4 children
    run_search(cfg, tmp_path / "b", progress=False)
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("time", "seconds", "worker")} for r in rs]
    assert strip(history(tmp_path / "b")) == strip(recs)
    half = dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, evaluations=12))
    run_search(half, tmp_path / "c", progress=False)
    run_search(cfg, tmp_path / "c", resume=True, progress=False)
    assert strip(history(tmp_path / "c")) == strip(recs)
    pop = json.loads((tmp_path / "a" / "population.json").read_text())["population"]
    assert {p["island"] for p in pop} <= {0, 1, 2} and len(pop) <= 3 * 10
    from lionsearch.cli import main
    assert main(["show", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    for i in range(3):
        best = min((r for r in recs if island(r) == i and r["fitness"] is not None), key=lambda r: (r["fitness"], r["id"]))
        n = sum(island(r) == i for r in children)
        assert f"island {i}: {n} children, best {best['fitness']:.4f} (id {best['id']})" in out
    with pytest.raises(ValueError, match="more than one island takes neither restarts"):
        config(islands=2, restart_after=5)
    # islands that never meet (`migration_every: null`): no migrant, each lineage on its own island
    apart = config(evaluations=16, workers=1, islands=2, migration_every=None)
    run_search(apart, tmp_path / "d", progress=False)
    recs = history(tmp_path / "d")
    by_id = {r["id"]: r for r in recs}
    assert not [r for r in recs if r["source"] == "migrant"]
    children = [r for r in recs if r["source"] in ("trained", "cache", "dead_code")]
    assert {island(r) for r in children} == {0, 1}
    assert all(by_id[r["parent"]]["source"] == "warm_start" or island(by_id[r["parent"]]) == island(r) for r in children)
    with pytest.raises(ValueError, match="migration_every: or null"):
        config(islands=2, migration_every=0)


def test_the_search_space_section_shapes_a_real_search(local_ray, tmp_path):
    """Several warm starts (one from the optimizer zoo) are each trained first, in the config's
    order, and parent children (random search starts from either); children use only the
    configured ops and inputs, and no insert grows a program past max_statements."""
    from search.config import SearchSpaceConfig
    space = SearchSpaceConfig(warm_start=("adabelief", "lion"), ops=("sign", "mul", "add", "interp"),
                              inputs=("g", "m", "v", "lr", "step"), max_statements=20)
    for method, evaluations in (("evolution", 16), ("random", 12)):
        cfg = dataclasses.replace(config(evaluations=evaluations, workers=1, method=method), search_space=space)
        run_search(cfg, tmp_path / method, progress=False)
        recs = history(tmp_path / method)
        assert [r["source"] for r in recs[:2]] == ["warm_start"] * 2 and recs[2]["source"] != "warm_start"
        assert [dsl.parse(r["program"]) for r in recs[:2]] == [dsl.load("adabelief"), dsl.load("lion")]
        warm_ops = {s.op for n in space.warm_start for s in dsl.load(n).statements}
        for r in recs[2:]:
            p = dsl.parse(r["program"])
            assert {s.op for s in p.statements} <= warm_ops | set(space.ops) and len(p) <= 20
        if method == "random":  # every child is a walk from one of the two warm starts, and both are used
            assert {r["parent"] for r in recs[2:]} == {0, 1}


def test_would_be_leaders_are_rescored_on_more_seeds_and_replay_on_resume(local_ray, tmp_path):
    """A trained child that would rank among the population's best 2 is trained again on seed 7;
    its fitness is the mean of both seeds' losses, and the budget still counts children."""
    from proxy_tasks import Evaluator
    cfg = config(evaluations=10_000, workers=1, max_trainings=25, rescore_seeds=(7,), rescore_top=2)
    summary = run_search(cfg, tmp_path / "run", progress=False)
    recs = history(tmp_path / "run")
    trained = [r for r in recs if r["source"] == "trained"]
    assert len(trained) == 25 and summary["stats"]["trained"] == 25
    again = [r for r in trained if len(r["seed_losses"]) == 2]
    assert again and summary["rescored"] == len(again) < len(trained)
    for r in again:
        assert r["fitness"] == pytest.approx(sum(r["seed_losses"]) / 2)
        population = sorted(x["fitness"] if x["fitness"] is not None else float("inf") for x in recs[:r["id"]][-10:])
        assert r["seed_losses"][0] < population[1]  # on seed 0 it would have ranked 1st or 2nd
    ev = Evaluator(TASK.name, **TASK.size)
    r = again[-1]
    assert ev.evaluate(dsl.parse(r["program"]), seeds=(7,)).loss == pytest.approx(r["seed_losses"][1], rel=1e-5)
    # a resumed run replays the re-scored fitnesses: the same population, and it goes on
    more = dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, max_trainings=30))
    run_search(more, tmp_path / "run", resume=True, progress=False)
    assert history(tmp_path / "run")[:len(recs)] == recs
    with pytest.raises(ValueError, match="rescore_seeds"):
        dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, rescore_seeds=(0,)))
