"""Ray evaluator workers: actors that compile a task once and evaluate many programs.

`WorkerPool` keeps one candidate in flight per actor. A candidate whose worker dies is retried
on a fresh actor (elsewhere, if its node is gone); one that runs past the time limit is scored as a
failure and its actor replaced, so the search never waits on a stuck or lost worker.
"""
from __future__ import annotations

import math
import os
import re
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import ray

from .record import Evaluation


@ray.remote(num_cpus=1, max_restarts=0)
class Evaluator:
    def __init__(self, task: str, size: dict, seeds: tuple[int, ...], warm: bool = True, memory: int = 2):
        import proxy_tasks  # one XLA thread per worker (proxy_tasks.xla_cache)
        self.evaluator = proxy_tasks.Evaluator(task, memory=memory, **size)
        self.seeds = tuple(seeds)
        if warm:  # compile every length bucket now, so that time limits see training only
            self.evaluator.warm(seeds=self.seeds)
        # host:pid@node: the node (Ray's id, first 8 characters) tells two nodes on one host apart
        self.name = f"{socket.gethostname()}:{os.getpid()}@{ray.get_runtime_context().get_node_id()[:8]}"

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def evaluate(self, program, seeds=None) -> Evaluation:
        """The program's fitness on `seeds` (default: the worker's own)."""
        f = self.evaluator.evaluate(program, seeds=self.seeds if seeds is None else tuple(seeds))
        return Evaluation.of(f, self.name)


class WorkerError(RuntimeError):
    """Evaluator workers that cannot start (the reason is their own error)."""


@dataclass
class _Job:
    key: object
    program: object
    seeds: tuple | None = None  # None: the actor's own
    tries: int = 1
    actor: object = None
    started: float = 0.0


class WorkerPool:
    """Evaluator actors with a shared queue: a candidate goes to the first actor that is ready."""

    def __init__(self, task: str, size: dict, seeds: tuple[int, ...], workers: int, timeout_s: float,
                 max_tries: int = 3, warm: bool = True, memory: int = 2, xla_flags: str | None = None):
        # memory: the memory slots the programs may use (the executables' rows; see proxy_tasks.Evaluator);
        # xla_flags: the workers' own XLA_FLAGS, which win over one thread per worker (proxy_tasks.xla_cache)
        self.task, self.size, self.seeds, self.warm, self.memory = task, dict(size), tuple(seeds), warm, memory
        self.options = {"runtime_env": {"env_vars": {"XLA_FLAGS": xla_flags}}} if xla_flags else {}
        self.timeout_s, self.max_tries = timeout_s, max_tries
        self.retries = 0  # candidates resubmitted after their worker died
        self.timeouts = 0
        self.start_failures = 0  # workers that died while starting, in a row; at max_tries the pool gives up
        self._ready: deque = deque()  # started, idle actors, longest idle first
        self._starting: dict = {}  # readiness ref -> actor not yet started (may wait for a node)
        self._queue: deque[_Job] = deque()  # candidates waiting for an actor
        self._jobs: dict = {}  # result ref -> _Job running on an actor
        for _ in range(workers):
            self._add_actor()

    def _add_actor(self) -> None:
        actor = Evaluator.options(**self.options).remote(self.task, self.size, self.seeds, self.warm, self.memory)
        self._starting[actor.__ray_ready__.remote()] = actor

    def wait_ready(self) -> list:
        """Block until every actor has started (and compiled its task); returns the actors."""
        while self._starting:
            ref = next(iter(self._starting))
            self._started(ref)
        return list(self._ready)

    def _started(self, ref) -> None:
        """An actor finished starting: ready, or (dead while starting) replaced, until the same
        failure has happened `max_tries` times: a worker that cannot start stops the run with
        its reason (a task size that overflows, say), rather than being restarted forever."""
        actor = self._starting.pop(ref)
        try:
            ray.get(ref)
            self._ready.append(actor)
            self.start_failures = 0  # in a row: a lost node now and then over a long run is no reason to stop
        except ray.exceptions.RayError as e:
            self.start_failures += 1
            if self.start_failures >= self.max_tries:
                raise WorkerError(f"evaluator workers for task {self.task!r} fail to start "
                                  f"({self.start_failures} tries): {_reason(e)}") from None
            self._add_actor()

    def running(self) -> list[tuple[object, object, float]]:
        """(key, actor, seconds running) of each candidate being evaluated now."""
        now = time.monotonic()
        return [(j.key, j.actor, now - j.started) for j in list(self._jobs.values())]

    @property
    def capacity(self) -> int:
        """How many more candidates the live actors can take now."""
        return len(self._ready) + len(self._starting) - len(self._queue)

    def submit(self, key, program, seeds=None) -> None:
        self._queue.append(_Job(key, program, seeds))
        self._dispatch()

    def map(self, items: Iterable[tuple]) -> Iterator[tuple[object, Evaluation]]:
        """Evaluate `(key, program[, seeds])` items, each pulled from `items` only when an actor is
        free (so a generator may propose its next item after seeing earlier results); yields
        `(key, Evaluation)` as they finish."""
        items, more = iter(items), True
        while True:
            while more and self.capacity > 0:
                item = next(items, None)
                more = item is not None
                if more:
                    self.submit(*item)
            if not (self._jobs or self._queue):
                return
            yield from self.wait()

    def _dispatch(self) -> None:
        while self._queue and self._ready:
            job, job.actor, job.started = self._queue.popleft(), self._ready.popleft(), time.monotonic()
            self._jobs[job.actor.evaluate.remote(job.program, job.seeds)] = job

    def wait(self) -> list[tuple[object, Evaluation]]:
        """Block until at least one candidate is finished (or failed); returns (key, result) pairs."""
        results = []
        while not results and (self._jobs or self._queue):
            waiting = list(self._jobs) + list(self._starting)
            deadline = min((j.started for j in self._jobs.values()), default=time.monotonic()) + self.timeout_s
            ready, _ = ray.wait(waiting, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            for ref in ready:
                if ref in self._starting:
                    self._started(ref)
                    continue
                job = self._jobs.pop(ref)
                try:
                    results.append((job.key, ray.get(ref)))
                    self._ready.append(job.actor)
                except ray.exceptions.RayActorError:  # the worker (or its node) died: retry elsewhere
                    self._replace(job.actor)
                    if job.tries >= self.max_tries:
                        results.append((job.key, Evaluation.failure(f"worker died {job.tries} times")))
                    else:
                        self.retries += 1
                        self._queue.appendleft(_Job(job.key, job.program, job.seeds, job.tries + 1))
                except ray.exceptions.RayTaskError as e:  # a bug while evaluating: a failure, not a crash
                    self._ready.append(job.actor)
                    results.append((job.key, Evaluation.failure(f"error: {_reason(e)}")))
            now = time.monotonic()
            for ref, job in list(self._jobs.items()):
                if now - job.started > self.timeout_s:
                    del self._jobs[ref]
                    self.timeouts += 1
                    self._replace(job.actor)
                    results.append((job.key, Evaluation.failure(f"timeout after {self.timeout_s:g} s", now - job.started)))
            self._dispatch()
        return results

    def _replace(self, actor) -> None:
        ray.kill(actor, no_restart=True)
        self._add_actor()

    def shutdown(self) -> None:
        for actor in list(self._ready) + list(self._starting.values()) + [j.actor for j in self._jobs.values()]:
            ray.kill(actor, no_restart=True)
        self._ready, self._starting, self._jobs, self._queue = deque(), {}, {}, deque()


class SeedSplit:
    """One program trained on many seeds at once, the seeds split across workers. Simplification
    scores one program at a time on many seeds; this keeps every worker busy with it."""

    def __init__(self, task: str, size: dict, seeds: tuple[int, ...], workers: int, timeout_s: float):
        self.seeds = tuple(seeds)
        self.pool = WorkerPool(task, size, self.seeds, max(1, min(workers, len(self.seeds))), timeout_s, warm=False)
        self.workers = self.pool.capacity

    def loss(self, program, seeds=None) -> float:
        """The mean validation loss over `seeds` (default: all of them; inf where any seed's
        training failed), the seeds split across the workers."""
        seeds = self.seeds if seeds is None else tuple(seeds)
        chunks = [c for c in (seeds[i::self.workers] for i in range(self.workers)) if c]
        total = 0.0
        for c, r in self.pool.map((c, program, c) for c in chunks):
            total += r.loss * len(c) if r.ok else math.inf
        return total / len(seeds)

    def shutdown(self) -> None:
        self.pool.shutdown()


def _reason(e: Exception) -> str:
    """The worker's own error (`OverflowError: ...`) out of Ray's report, which wraps it in a
    traceback and notes."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"[\w.]*(Error|Exception)\b", line)]
    return (errors or lines or [repr(e)])[-1][:300]
