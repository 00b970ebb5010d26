"""Tasks of the user's own, from outside the package: named by import path or file in a config,
checked against the task contract when the config is read, shipped to Ray workers with the run, and
run through the whole method from YAML alone."""
import json
import sys
import textwrap
from pathlib import Path

import pytest
import ray
import yaml
from ray.cluster_utils import Cluster

import dsl
import proxy_tasks
from lionsearch.cli import main
from search.config import ConfigError, RayConfig, RunConfig, SearchConfig, TaskConfig, load_config
from search.runner import run_search
from search.workers import WorkerPool

ROOT = Path(__file__).parent.parent
BLOBS = '''
import jax, jax.numpy as jnp, numpy as np
from proxy_tasks.base import Classifier


class Blobs(Classifier):
    name = "blobs"
    KNOBS = {"n_train": 256, "n_val": 128}
    DEFAULTS = {"steps": 30, "batch": 32}

    def make_data(self):
        rng = np.random.default_rng(0)
        y = rng.integers(0, 3, self.n_train + self.n_val).astype(np.int32)
        x = (rng.normal(size=(len(y), 2)) + 2.0 * np.eye(3)[y][:, :2]).astype(np.float32)
        return {"train_x": x[:self.n_train], "train_y": y[:self.n_train], "val_x": x[self.n_train:], "val_y": y[self.n_train:]}

    def init(self, key):
        return {"w": jax.random.normal(key, (2, 3), jnp.float32) * 0.1, "b": jnp.zeros(3, jnp.float32)}

    def logits(self, params, x):
        return x @ params["w"] + params["b"]
'''


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package `mytasks` importable here only (on this process's sys.path, not the workers')."""
    (tmp_path / "mytasks").mkdir()
    (tmp_path / "mytasks" / "__init__.py").write_text("")
    (tmp_path / "mytasks" / "blobs.py").write_text(BLOBS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for m in [m for m in sys.modules if "mytasks" in m]:
        del sys.modules[m]
    for name in [n for n in proxy_tasks.base._REGISTRY if "mytasks" in n]:  # a name resolves once per process
        del proxy_tasks.base._REGISTRY[name]


def test_a_task_by_import_path_or_file(package):
    by_module = proxy_tasks.get_task("mytasks.blobs:Blobs", steps=10)
    by_file = proxy_tasks.get_task(f"{package}/mytasks/blobs.py:Blobs", steps=10)
    assert by_module.name == by_file.name == "blobs" and by_module.steps == 10
    proxy_tasks.check_contract(by_module)
    assert proxy_tasks.base.task_folder("mytasks.blobs:Blobs") == str(package / "mytasks")
    assert proxy_tasks.base.task_folder("logreg") is None


@pytest.mark.parametrize("body, expected", [
    ("import no_such_module\n", "cannot import mytasks.bad (ModuleNotFoundError: No module named 'no_such_module')"),
    ("Blobs = 3\n", "is 3, not a subclass of proxy_tasks.Task"),
    ("x = 1\n", "mytasks.bad has no 'Blobs'"),
    (BLOBS.replace("return x @ params[\"w\"] + params[\"b\"]", "return x @ params[\"w\"]").replace(
        '"w": jax.random.normal(key, (2, 3)', '"w": jax.random.normal(key, (3, 3)'),
     "breaks the task contract (TypeError"),
    (BLOBS.replace("np.random.default_rng(0)", "np.random.default_rng()"), "make_data gives other data each time"),
    (BLOBS.replace("jnp.zeros(3, jnp.float32)", "jnp.zeros(3, jnp.int32)"), "init must return a pytree of float32 arrays"),
])
def test_a_task_that_breaks_the_contract_is_refused_when_the_config_is_read(package, body, expected, tmp_path):
    (package / "mytasks" / "bad.py").write_text(body)
    f = tmp_path / "c.yaml"
    f.write_text("task: {name: 'mytasks.bad:Blobs'}\n")
    with pytest.raises(ConfigError, match="c.yaml: task.name: task 'mytasks.bad:Blobs'|c.yaml: task.name: task 'blobs'") as e:
        load_config(f)
    assert expected in str(e.value), str(e.value)


def test_an_unknown_task_name_says_how_to_name_ones_own():
    with pytest.raises(ValueError, match="unknown task 'cifar'; registered tasks: .*; a task of your own is named "
                                         "'package.module:Class' or 'path/to/file.py:Class'"):
        proxy_tasks.task_class("cifar")


@pytest.mark.slow  # its own two-node cluster, not the shared local_ray
def test_a_task_module_travels_to_workers_on_a_two_node_cluster(package, tmp_path):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        cfg = RunConfig(task=TaskConfig(name="mytasks.blobs:Blobs", seeds=(0,)),
                        search=SearchConfig(population=6, tournament=2, evaluations=16),
                        ray=RayConfig(address=cluster.address, workers=2))
        summary = run_search(cfg, tmp_path / "run", progress=False)
        recs = [json.loads(l) for l in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
        assert summary["evaluations"] == 16 and all(r["status"] == "ok" for r in recs)
        # a worker on each node imports the task from the folder shipped with the run, and trains
        pool = WorkerPool(cfg.task.name, {}, (0,), workers=2, timeout_s=120)
        actors = pool.wait_ready()
        nodes = ray.get([a.node_id.remote() for a in actors])
        assert len(set(nodes)) == 2
        assert all(e.status == "ok" for e in ray.get([a.evaluate.remote(dsl.load("lion")) for a in actors]))
        pool.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_the_whole_method_runs_on_the_example_task_from_yaml_alone(local_ray, tmp_path, capsys, monkeypatch):
    cfg = yaml.safe_load((ROOT / "configs" / "examples" / "moons.yaml").read_text())
    cfg["search"]["evaluations"] = 20  # the example's own budget, cut to keep the suite short
    cfg["funnel"]["top_k"] = 2
    cfg["funnel"]["stages"][1]["task"]["size"] = {"steps": 100}
    cfg["simplify"]["max_trainings"] = 20
    (tmp_path / "moons.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(ROOT)  # the config names the task file relative to the repository
    code = main(["run", str(tmp_path / "moons.yaml"), "--run-dir", str(tmp_path / "run"), "--no-progress"])
    out = capsys.readouterr().out
    assert code in (0, 3) and "== funnel" in out
    result = json.loads((tmp_path / "run" / "final.json").read_text())
    assert result["verdict"] in ("discovered", "no candidate generalized")
    assert len((tmp_path / "run" / "history.jsonl").read_text().splitlines()) == 20
