"""scripts/time_to_family.py: when a run first met the Lion family, and when one first led it."""
import sys
from pathlib import Path

import pytest

import dsl
from search.config import RunConfig, SearchConfig, to_dict
from search.record import Evaluation, Record
from search.rundir import RunDir

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
from time_to_family import first_of, momentum_shares  # noqa: E402


def run_dir(path, population: int = 100, islands: int = 1) -> RunDir:
    d = RunDir(path)
    d.write_config(to_dict(RunConfig(search=SearchConfig(population=population, tournament=2, islands=islands))))
    return d


def test_first_met_and_first_best(tmp_path):
    d = run_dir(tmp_path / "run")
    programs = [("adamw_warmstart", 0.5), ("signsgd", 0.4), ("lion", 0.45), ("lion", 0.3), ("sgd", 0.2)]
    for i, (name, loss) in enumerate(programs):
        p = dsl.load(name).inline_params()
        d.append(Record(i, p, None, "x", 0, dsl.fingerprint(p), Evaluation(loss, None, "ok", 1.0), "trained",
                        time=60.0 * i))
    d.close()
    f = first_of(tmp_path / "run", {"lion", "signum"})
    assert f["met"].id == 2 and f["family"] == "lion"  # met at 2, not yet the best (0.4 is)
    assert f["led"].id == 3  # the best so far at 3
    assert f["evaluations"] == 5 and f["trained"] == 5 and f["distinct"] == 4 and f["best"] == 0.2
    assert first_of(tmp_path / "run", {"signum"})["met"] is None
    # the best program (sgd) keeps no momentum; the best that does is Lion at 0.3, second of the distinct
    assert f["momentum"][0] == 2 and f["momentum"][1].id == 3


def test_a_run_with_islands_gets_a_row_for_each(tmp_path):
    """Island 1 lost the momentum (its best is signSGD; its programs with one rank lower): its row
    says so, where the run's row, led by island 0's Lion, does not."""
    from time_to_family import table
    d = run_dir(tmp_path / "run", islands=2)
    programs = [("adamw_warmstart", 0.5, 0), ("lion", 0.3, 0), ("signsgd", 0.2, 1), ("adamw_warmstart", 0.45, 1)]
    for i, (name, loss, island) in enumerate(programs):
        p = dsl.load(name).inline_params()
        d.append(Record(i, p, None, "x", 0, dsl.fingerprint(p), Evaluation(loss, None, "ok", 1.0),
                        "warm_start" if i == 0 else "trained", time=60.0 * i, island=island))
    d.close()
    one = first_of(tmp_path / "run", {"lion"}, island=1)
    assert one["trained"] == 2 and one["best"] == 0.2 and one["met"] is None and one["momentum"][0] == 2
    rows = table([tmp_path / "run"], ["lion"]).splitlines()[2:]
    assert len(rows) == 3 and rows[1].startswith(f"| {tmp_path / 'run'} (island 0) |")
    assert rows[0].endswith("| 2 (0.3000) | - / - / - / - / - |") and rows[2].endswith("| 2 (0.4500) | - / - / - / - / - |")
    # the warm start joins both islands; island 1 then admits signSGD (no momentum) and AdamW again
    assert momentum_shares(tmp_path / "run", 1, marks=(1, 2, 3, 4)) == [1.0, 0.5, 2 / 3, None]
    assert momentum_shares(tmp_path / "run", 0, marks=(2, 9)) == [1.0, None]


def test_the_momentum_share_follows_the_aging_population(tmp_path):
    """A population of 2: the oldest ages out as each child joins, and the share is of those 2."""
    d = run_dir(tmp_path / "run", population=2)
    sources = ["warm_start", "trained", "cache", "trained", "trained", "dead_code", "trained"]
    names = ["adamw_warmstart", "signsgd", "signsgd", "lion", "sgd", "sgd", "lion"]
    for i, (name, source) in enumerate(zip(names, sources)):
        p = dsl.load(name).inline_params()
        d.append(Record(i, p, None, "x", 0, dsl.fingerprint(p), Evaluation(0.1, None, "ok", 1.0), source))
    d.close()
    # trained counts 1..4 are reached at records 1, 3, 4, 6: populations [adamw, signsgd],
    # [signsgd, lion], [lion, sgd], [sgd, lion]
    assert momentum_shares(tmp_path / "run", marks=(1, 2, 3, 4, 5)) == [0.5, 0.5, 0.5, 0.5, None]
    assert momentum_shares(tmp_path / "run", marks=(0,)) == [1.0]  # the warm start alone


def test_bench_search_times_real_searches_to_a_family(local_ray, tmp_path):
    """`bench_search.py --to-family`: the config's search on each seed in its own run directory,
    then the time-to-family table; a finished seed is kept, not run again."""
    from bench_search import to_family
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: {name: logreg, size: {steps: 20, batch: 32, n_train: 256, n_val: 128}}\n"
                   "search: {population: 6, tournament: 2, evaluations: 12}\n"
                   "search_space: {warm_start: [adamw_warmstart, lion]}\n")
    out = tmp_path / "out"
    text = to_family(str(cfg), [3], out, ["lion", "signum"], None)
    row = next(line for line in text.splitlines() if line.startswith(f"| {out / 'seed-3'} "))
    assert row.startswith(f"| {out / 'seed-3'} | 12 | ") and " lion |" in row  # its second warm start is Lion
    stamp = (out / "seed-3" / "history.jsonl").stat().st_mtime_ns
    assert to_family(str(cfg), [3], out, ["lion"], None).count("seed-3") == 1
    assert (out / "seed-3" / "history.jsonl").stat().st_mtime_ns == stamp
    # a budget of children trained in place of the config's
    row = to_family(str(cfg), [4], out, ["lion"], None, max_trainings=3).splitlines()[-1].split(" | ")
    assert row[0] == f"| {out / 'seed-4'}" and row[2] == "3"
    # a key of the search section changed for a variant
    to_family(str(cfg), [5], tmp_path / "t3", ["lion"], None, search={"tournament": 3})
    assert "tournament: 3" in (tmp_path / "t3" / "seed-5" / "config.yaml").read_text()
    with pytest.raises(SystemExit, match="the search section has no key tournment"):
        to_family(str(cfg), [5], tmp_path / "typo", ["lion"], None, search={"tournment": 3})


def test_reachability_counts_the_family_along_random_walks(tmp_path):
    """scripts/reachability.py: from Lion, a mutation often keeps the family (dead code, a constant);
    from AdamW, a few steps almost never reach it."""
    from reachability import walk_hits
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: {name: logreg}\nsearch_space: {warm_start: lion, max_statements: 12}\n")
    hits, distinct = walk_hits(str(cfg), 40, 2, {"lion"}, seed=0)
    assert hits[0] >= 10 and distinct > 20
    cfg.write_text("task: {name: logreg}\nsearch_space: {warm_start: adamw_warmstart, max_statements: 12}\n")
    assert walk_hits(str(cfg), 40, 2, {"lion", "signum"}, seed=0)[0] == [0, 0]
