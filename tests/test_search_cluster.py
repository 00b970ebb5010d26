"""A real two-node Ray cluster on one machine: a node removed mid-search loses no candidate."""
import json
import threading
import time

import ray
from ray.cluster_utils import Cluster

from search.config import RayConfig, RunConfig, SearchConfig, TaskConfig
from search.runner import run_search


def test_search_survives_losing_a_node(tmp_path):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        cfg = RunConfig(
            task=TaskConfig(name="logreg", size={"steps": 60, "batch": 32, "n_train": 256, "n_val": 128}),
            search=SearchConfig(population=10, tournament=3, evaluations=40, timeout_s=120.0),
            ray=RayConfig(address=cluster.address, workers=2))
        ray.init(address=cluster.address, log_to_driver=False)
        out = {}
        thread = threading.Thread(target=lambda: out.update(run_search(cfg, tmp_path / "run", progress=False)))
        thread.start()
        hist = tmp_path / "run" / "history.jsonl"
        deadline = time.time() + 180
        while time.time() < deadline and (not hist.exists() or len(hist.read_text().splitlines()) < 12):
            time.sleep(0.05)
        cluster.remove_node(node)  # one of the two evaluator actors lived there
        thread.join(timeout=300)
        assert not thread.is_alive()
        recs = [json.loads(l) for l in hist.read_text().splitlines()]
        assert [r["id"] for r in recs] == list(range(40))
        assert out["worker_retries"] >= 1  # the lost candidate ran again on the surviving node
        trained = [r for r in recs if r["source"] == "trained"]
        assert len({r["fingerprint"] for r in trained}) == len(trained)
        assert not any(r["status"].startswith("worker died") for r in recs)
    finally:
        ray.shutdown()
        cluster.shutdown()
