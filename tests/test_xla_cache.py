"""The on-disk compile cache: a second process loads the interpreter the first one compiled."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from proxy_tasks import xla_cache

pytestmark = pytest.mark.slow  # every test compiles in fresh processes

# A fresh process: compile the logreg interpreter once, train a program, and report how many
# compiles JAX answered from its persistent cache, with the loss.
CHILD = """
import json, jax
import dsl, proxy_tasks
ev = proxy_tasks.Evaluator("logreg", buckets=(16,), steps=5, batch=8, n_train=32, n_val=16)
p, data = dsl.load("adamw"), ev.data
hits = []  # from here on, the only compile is the interpreter's
jax.monitoring.register_event_listener(lambda e, **kw: hits.append(e) if e.endswith("cache_hits") else None)
f = ev.evaluate(p)
print(json.dumps({"hits": len(hits), "loss": f.loss, "dir": str(proxy_tasks.xla_cache.directory())}))
"""


def _child(tmp_path, cache: str) -> dict:
    env = {**os.environ, xla_cache.ENV: cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_the_compiled_interpreter(tmp_path):
    cache = tmp_path / "xla"
    first = _child(tmp_path, str(cache))
    assert first["hits"] == 0 and first["dir"] == str(cache)
    assert any(p.name.startswith("jit_run-") for p in cache.iterdir())  # the interpreter was written
    second = _child(tmp_path, str(cache))
    assert second["hits"] >= 1  # ... and loaded, not compiled again
    assert second["loss"] == first["loss"]  # the same executable trains the same


def test_off_leaves_the_cache_unused(tmp_path, monkeypatch):
    monkeypatch.setenv(xla_cache.ENV, "off")
    assert xla_cache.directory() is None
    out = _child(tmp_path, "off")
    assert out["hits"] == 0 and out["dir"] == "None"
    monkeypatch.setenv(xla_cache.ENV, str(tmp_path / "c"))
    assert xla_cache.directory() == tmp_path / "c"
