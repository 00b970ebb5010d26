"""A real two-node Ray cluster on one machine: a node removed mid-evaluation loses no candidate."""
import json
import threading
import time

import pytest
import ray
from ray.cluster_utils import Cluster

from search.config import RayConfig, RunConfig, SearchConfig, TaskConfig
from search.evolution import Search
from search.workers import WorkerPool


@pytest.mark.slow  # its own two-node cluster, not the shared local_ray
def test_search_survives_losing_a_node(tmp_path):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        # Trainings of about 0.3 s, so that a removal lands mid-evaluation.
        task = TaskConfig(name="logreg", size={"steps": 15000, "batch": 32, "n_train": 256, "n_val": 128})
        cfg = RunConfig(task=task, search=SearchConfig(population=10, tournament=3, evaluations=30),
                        ray=RayConfig(address=cluster.address, workers=2))
        ray.init(address=cluster.address, log_to_driver=False)
        pool = WorkerPool(task.name, task.size, task.seeds, workers=2, timeout_s=120)
        actors = pool.wait_ready()
        where = dict(zip(map(id, actors), ray.get([a.node_id.remote() for a in actors])))
        assert sorted(where.values()) == sorted({node.node_id, cluster.head_node.node_id})  # one per node
        search = Search(cfg, tmp_path / "run", progress=False)
        out = {}
        thread = threading.Thread(target=lambda: out.update(search.run(pool)))
        thread.start()
        deadline = time.time() + 120
        while time.time() < deadline and not any(
                where[id(actor)] == node.node_id and secs > 0.05 for _, actor, secs in pool.running()):
            time.sleep(0.01)
        cluster.remove_node(node)  # its actor is evaluating a candidate right now
        thread.join(timeout=300)
        assert not thread.is_alive()
        recs = [json.loads(l) for l in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
        assert [r["id"] for r in recs] == list(range(30))
        assert pool.retries >= 1  # the lost candidate ran again, on the surviving node
        trained = [r for r in recs if r["source"] == "trained"]
        assert len({r["fingerprint"] for r in trained}) == len(trained)
        assert not any(r["status"].startswith("worker died") for r in recs)
        pool.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()
