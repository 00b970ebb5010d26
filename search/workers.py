"""Ray evaluator workers: actors that compile a task once and evaluate many programs.

`WorkerPool` keeps one candidate in flight per actor. A candidate whose worker dies is retried
on a fresh actor (elsewhere, if its node is gone); one that runs past the time limit is scored as a
failure and its actor replaced, so the search never waits on a stuck or lost worker.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

import ray

# Small models: one thread per worker beats XLA's thread pool fighting the other workers.
_WORKER_ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


@ray.remote(num_cpus=1, max_restarts=0)
class Evaluator:
    def __init__(self, task: str, size: dict, seeds: tuple[int, ...]):
        os.environ.update(_WORKER_ENV)
        import proxy_tasks
        self.evaluator = proxy_tasks.Evaluator(task, **size)
        self.seeds = tuple(seeds)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def evaluate(self, program) -> dict:
        f = self.evaluator.evaluate(program, seeds=self.seeds)
        return {"fitness": f.loss, "accuracy": f.accuracy, "status": f.status,
                "seconds": f.seconds, "worker": self.name}


@dataclass
class _Job:
    key: object
    program: object
    actor: object
    started: float
    tries: int = 1


@dataclass
class WorkerPool:
    task: str
    size: dict
    seeds: tuple[int, ...]
    workers: int
    timeout_s: float
    max_tries: int = 3
    retries: int = 0  # candidates resubmitted after a worker died
    timeouts: int = 0
    _idle: list = field(default_factory=list)
    _jobs: dict = field(default_factory=dict)  # ObjectRef -> _Job

    def __post_init__(self):
        self._idle = [self._new_actor() for _ in range(self.workers)]

    def _new_actor(self):
        return Evaluator.remote(self.task, self.size, self.seeds)

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def busy(self) -> int:
        return len(self._jobs)

    def submit(self, key, program, tries: int = 1) -> None:
        actor = self._idle.pop()
        self._jobs[actor.evaluate.remote(program)] = _Job(key, program, actor, time.monotonic(), tries)

    def wait(self) -> list[tuple[object, dict]]:
        """Block until at least one candidate is finished (or failed); returns (key, result) pairs."""
        done_results = []
        while not done_results and self._jobs:
            now = time.monotonic()
            deadline = min(j.started for j in self._jobs.values()) + self.timeout_s
            ready, _ = ray.wait(list(self._jobs), num_returns=1, timeout=max(0.0, deadline - now))
            for ref in ready:
                job = self._jobs.pop(ref)
                try:
                    done_results.append((job.key, ray.get(ref)))
                    self._idle.append(job.actor)
                except ray.exceptions.RayActorError:
                    self._replace(job.actor)
                    if job.tries >= self.max_tries:
                        done_results.append((job.key, _failure(f"worker died {job.tries} times")))
                    else:
                        self.retries += 1
                        self.submit(job.key, job.program, job.tries + 1)
                except ray.exceptions.RayTaskError as e:  # a bug while evaluating: a failure, not a crash
                    self._idle.append(job.actor)
                    done_results.append((job.key, _failure(f"error: {str(e).splitlines()[-1][:200]}")))
            now = time.monotonic()
            for ref, job in list(self._jobs.items()):
                if now - job.started > self.timeout_s:
                    del self._jobs[ref]
                    self.timeouts += 1
                    self._replace(job.actor)
                    done_results.append((job.key, _failure(f"timeout after {self.timeout_s:g} s",
                                                           seconds=now - job.started)))
        return done_results

    def _replace(self, actor) -> None:
        ray.kill(actor, no_restart=True)
        self._idle.append(self._new_actor())

    def shutdown(self) -> None:
        for actor in self._idle + [j.actor for j in self._jobs.values()]:
            ray.kill(actor, no_restart=True)
        self._idle, self._jobs = [], {}


def _failure(status: str, seconds: float = 0.0) -> dict:
    return {"fitness": float("inf"), "accuracy": None, "status": status, "seconds": seconds, "worker": None}
