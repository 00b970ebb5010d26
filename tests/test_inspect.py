"""Inspecting a real run directory (made by a tiny real search on local Ray): show, lineage and its
graph files, plots, and export of a run's program; the CLI for each."""
import argparse
import json
import math

import jax
import jax.numpy as jnp
import matplotlib.image
import networkx as nx
import numpy as np
import optax
import pytest

import dsl
from dsl.export import export
from lionsearch import cli, cli_inspect
from search import inspect
from search.config import RayConfig, RunConfig, SearchConfig, TaskConfig
from search.runner import run_search

EVALUATIONS = 40
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(local_ray, tmp_path_factory):
    """A real run directory: 40 evaluations of the logreg task, with restarts after plateaus
    (seed 0 with one worker gives a few)."""
    task = TaskConfig(name="logreg", size={"steps": 30, "batch": 32, "n_train": 256, "n_val": 128}, seeds=(0,))
    cfg = RunConfig(task=task, search=SearchConfig(population=10, tournament=3, evaluations=EVALUATIONS,
                                                   checkpoint_every=10, timeout_s=60.0, restart_after=10),
                    ray=RayConfig(workers=1), seed=0)  # one worker: reproducible, and quicker here
    path = tmp_path_factory.mktemp("inspect") / "run"
    summary = run_search(cfg, path, progress=False)
    history = [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()]
    assert len(history) == EVALUATIONS
    return path, history, summary


def main(argv):
    """The lionsearch CLI with the inspection subcommands (wired here if search/cli.py isn't yet)."""
    ap = cli.build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    if "lineage" not in sub.choices:
        cli_inspect.add_parsers(sub)
    args = ap.parse_args(argv)
    return args.func(args)


def _loss(r):
    return math.inf if r["fitness"] is None else r["fitness"]


# ---- show ------------------------------------------------------------------------------------------

def test_show_run_lists_the_best_distinct_programs_in_order(run):
    path, history, summary = run
    info = inspect.show_run(path, top=5)
    best = info["best"]
    assert 1 <= len(best) <= 5
    fps = [b["fingerprint"] for b in best]
    assert len(set(fps)) == len(fps)  # functionally distinct
    assert [b["fitness"] for b in best] == sorted(b["fitness"] for b in best)
    assert best[0]["fitness"] == min(_loss(r) for r in history)
    # nothing better was left out: every other fingerprint is no better than the last one listed
    listed = set(fps)
    others = [_loss(r) for r in history if r["fingerprint"] not in listed]
    if len(best) == 5:
        assert all(x >= best[-1]["fitness"] for x in others)
    else:
        assert all(not math.isfinite(x) for x in others)
    by_id = {r["id"]: r for r in history}
    for b in best:
        rec = by_id[b["id"]]
        assert (b["fitness"], b["accuracy"], b["status"], b["fingerprint"]) == \
               (rec["fitness"], rec["accuracy"], rec["status"], rec["fingerprint"])
        assert b["live"] == dsl.to_text(dsl.strip_dead_code(dsl.parse(rec["program"])))
        assert b["evaluations"] == sum(r["fingerprint"] == b["fingerprint"] for r in history)
    assert [b["id"] for b in best] == [b["id"] for b in summary["best"][:len(best)]]
    assert info["warm_start"]["id"] == 0 and info["task"] == "logreg"


def test_counters_match_the_search_own(run):
    path, history, summary = run
    c = inspect.show_run(path)["counters"]
    assert c["evaluations"] == EVALUATIONS
    for k, x in summary["stats"].items():
        assert c[k] == pytest.approx(x), k
    assert c["trained"] + c["cache_hits"] + c["dead_code_only"] + c["restarts"] + 1 == EVALUATIONS
    assert c["failures"] == sum(r["fitness"] is None for r in history)
    assert c["distinct_programs"] == len({r["fingerprint"] for r in history})


def test_show_cli_handles_run_directories_and_programs(run, capsys):
    path, history, summary = run
    assert main(["show", str(path), "--top", "2"]) == 0
    out = capsys.readouterr().out
    best = summary["best"]
    assert f"{EVALUATIONS} evaluations ({summary['stats']['trained']} trained" in out
    assert f"of {summary['stats']['proposed']} children proposed" in out
    assert f"# 1. id {best[0]['id']}: validation loss {best[0]['fitness']:.4f}" in out
    assert "# 3." not in out
    assert dsl.to_text(dsl.strip_dead_code(dsl.parse(best[0]["program"]))) in out
    assert main(["show", "lion"]) == 0  # the built-in path still works
    out = capsys.readouterr().out
    assert out.startswith("def train(w, g, m, v, lr, b1=0.9") and "# fingerprint:" in out


# ---- lineage ---------------------------------------------------------------------------------------

def test_lineage_is_the_chain_of_parents_from_the_warm_start(run):
    path, history, _ = run
    best = min(history, key=lambda r: (_loss(r), r["id"]))
    chain = inspect.lineage(path)
    assert chain[-1].id == best["id"]
    assert chain[0].id == 0 and chain[0].source == "warm_start"
    for prev, step in zip(chain, chain[1:]):
        assert step.parent == prev.id
    g, recs = inspect.lineage_graph(path), inspect.records(path)
    assert [r.to_json() for r in recs] == history  # the typed records read back the history as written
    for r in recs:  # every record's chain ends at the warm start
        ch = inspect.lineage(recs, r.id, graph=g)
        assert ch[0].id == 0 and ch[-1] == r
        assert all(b.parent == a.id for a, b in zip(ch, ch[1:]))
        if r.parent is not None:
            assert g.edges[r.parent, r.id]["mutation"] == r.mutation
    restart = next((r for r in recs if r.source == "restart"), None)
    if restart is not None:  # a restart's chain runs through the best it restarted from
        assert inspect.lineage(recs, restart.id)[-2].id == restart.parent


def test_lineage_by_fingerprint_and_errors(run):
    path, history, _ = run
    trained = [r for r in history if r["source"] == "trained"][-1]
    fp = trained["fingerprint"]
    first = min(r["id"] for r in history if r["fingerprint"] == fp)
    assert inspect.lineage(path, fp)[-1].id == first
    assert inspect.find(path, fp[:6]).fingerprint == fp or len(
        {r["fingerprint"] for r in history if r["fingerprint"].startswith(fp[:6])}) > 1
    with pytest.raises(inspect.InspectError, match="no evaluation with id 999"):
        inspect.lineage(path, "999")
    with pytest.raises(inspect.InspectError, match="neither an evaluation id nor a fingerprint"):
        inspect.lineage(path, "zzzzzzzz")


def test_lineage_cli_prints_the_steps_and_writes_graphs(run, tmp_path, capsys):
    path, history, _ = run
    chain = inspect.lineage(path)
    assert main(["lineage", str(path), "--graph", str(tmp_path / "all.graphml")]) == 0
    out = capsys.readouterr().out
    assert f"{len(chain) - 1} mutation(s) from id 0 (warm_start)" in out
    for r in chain:
        assert f"{r.id:>7}  " in out and r.mutation in out
    g = nx.read_graphml(tmp_path / "all.graphml")
    assert g.number_of_nodes() == EVALUATIONS and g.number_of_edges() == EVALUATIONS - 1
    assert g.nodes["0"]["source"] == "warm_start" and g.nodes["0"]["program"] == history[0]["program"]
    best = str(chain[-1].id)
    assert main(["lineage", str(path), best, "--graph", str(tmp_path / "chain.gexf"), "--chain-only"]) == 0
    capsys.readouterr()
    g = nx.read_gexf(tmp_path / "chain.gexf")
    assert g.number_of_nodes() == len(chain) and g.number_of_edges() == len(chain) - 1
    with pytest.raises(SystemExit, match="no evaluation with id 12345"):
        main(["lineage", str(path), "12345"])
    with pytest.raises(SystemExit, match="unknown graph format"):
        main(["lineage", str(path), "--graph", str(tmp_path / "g.dot")])
    with pytest.raises(SystemExit, match="not a run directory"):
        main(["lineage", str(tmp_path)])


# ---- plots -----------------------------------------------------------------------------------------

def test_plot_writes_valid_pngs(run, tmp_path, capsys):
    path, _, _ = run
    paths = inspect.plot_run(path, tmp_path / "plots")
    assert [p.name for p in paths] == ["fitness_progress.png", "fitness_histogram.png", "pareto_front.png"]
    for p in paths:
        data = p.read_bytes()
        assert p.parent == tmp_path / "plots" and len(data) > 1000 and data.startswith(PNG)
        img = matplotlib.image.imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert img[..., :3].std() > 0  # not a blank canvas
    assert main(["plot", str(path)]) == 0  # default: into the run directory
    printed = capsys.readouterr().out.split()
    assert printed == [str(path / p.name) for p in paths]
    assert all((path / p.name).read_bytes().startswith(PNG) for p in paths)


def test_show_pareto_prints_the_hall_of_fame(run, tmp_path, capsys):
    path, _, _ = run
    front = inspect.pareto(path).front()
    assert main(["show", str(path), "--pareto"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"hall of fame of {path}: {len(front)} program(s) on the Pareto front")
    for n, r in front:
        assert f"# {n} live statement(s): id {r.id}, validation loss {r.loss:.4f}" in out
    saved = json.loads((path / "pareto.json").read_text())  # what the search wrote, from the same history
    assert [(f["live_statements"], f["id"]) for f in saved] == [(n, r.id) for n, r in front]
    with pytest.raises(SystemExit, match="--pareto needs a run directory; lion is not one"):
        main(["show", "lion", "--pareto"])


def test_the_funnel_can_take_the_hall_of_fame_too(run):
    from selection.funnel import candidates_of
    path, _, _ = run
    top = candidates_of(path, 1)
    both = candidates_of(path, 1, pareto=True)
    warm = inspect.records(path)[0].loss
    extra = {(n, r.id) for n, r in inspect.pareto(path).front() if r.loss < warm} - {(0, top[0]["id"])}
    assert both[:1] == top and {c["id"] for c in both[1:]} <= {i for _, i in extra}
    assert all(c["fitness"] < warm for c in both[1:])


# ---- export of a run's program ----------------------------------------------------------------------

def _train(opt, steps=10):
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.ones(4)}
    state = opt.init(params)
    for i in range(steps):
        grads = jax.tree.map(lambda x: jnp.cos(2.0 * x + i), params)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_export_cli_writes_a_runs_best_program(run, tmp_path, capsys):
    path, history, _ = run
    best = inspect.find(path)
    assert main(["export", str(path), "--to", "optax"]) == 0
    src = capsys.readouterr().out
    assert src == export(best.program, "optax")
    ns = {}
    exec(compile(src, "<exported>", "exec"), ns)  # generated code, in a test
    ours, ref = _train(ns["make_optimizer"](1.0)), _train(dsl.as_optax(best.program, 1.0))
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6)
    assert main(["export", str(path), "--id", "0", "--to", "pytorch", "-o", str(tmp_path / "opt.py")]) == 0
    capsys.readouterr()
    assert (tmp_path / "opt.py").read_text() == export(dsl.parse(history[0]["program"]), "pytorch")
    assert main(["export", "lion", "--to", "pytorch", "--name", "MyLion"]) == 0
    assert "class MyLion(torch.optim.Optimizer):" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--id needs a run directory"):
        main(["export", "lion", "--to", "optax", "--id", "3"])
    with pytest.raises(SystemExit, match="unknown program"):
        main(["export", "no_such_program", "--to", "optax"])
