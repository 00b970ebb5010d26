"""Start a search: validate the config against the task registry, connect Ray, evolve."""
from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from pathlib import Path

import ray

from .config import ConfigError, RayConfig, RunConfig, from_dict, upgrade
from .evolution import Search
from .rundir import RunDir, new_run_dir
from .workers import WorkerPool


def resolve(cfg: RunConfig, run_dir: str | Path | None, resume: bool) -> tuple[RunConfig, Path, list[str]]:
    """The config and run directory to use; on resume the run's own config wins (notes say where
    the given one differs), except for where and how wide to run (ray settings)."""
    notes = []
    if resume:
        if run_dir is None:
            raise ConfigError("--resume needs --run-dir DIR (the run to continue)")
        saved = from_dict(RunConfig, upgrade(RunDir(run_dir).read_config()), f"{run_dir}/config.yaml:")
        if dataclasses.replace(saved, ray=cfg.ray) != cfg:
            notes.append(f"resuming with the run's own config ({run_dir}/config.yaml), not the one given")
        cfg = dataclasses.replace(saved, ray=cfg.ray)
    path = Path(run_dir) if run_dir is not None else new_run_dir()
    return cfg, path, notes


def connect_ray(cfg: RayConfig, tasks=()) -> None:
    """`ray.init()`: a local instance by default, or the cluster at `address`. The folders of
    `tasks` of the user's own (`proxy_tasks.base.task_folder`) travel to every worker."""
    if ray.is_initialized():
        return
    import proxy_tasks
    folders = sorted({f for t in tasks if (f := proxy_tasks.base.task_folder(t))})
    env = {"py_modules": folders} if folders else None
    if cfg.address:
        _reachable(cfg.address)
        try:
            ray.init(address=cfg.address, log_to_driver=False, runtime_env=env)
        except (ConnectionError, ray.exceptions.AuthenticationError):
            # the address answers (`_reachable`), so the cluster refused this client: most often its
            # token, which Ray reports only as a failed connection
            raise ConfigError(
                f"ray.address {cfg.address}: the cluster answers but did not let this client in. Where it "
                "uses token authentication (Ray's default), this machine needs its token: copy the head's "
                "~/.ray/auth_token here (or set RAY_AUTH_TOKEN) and leave RAY_AUTH_MODE unset or 'token'; "
                "a cluster on a private network may opt out (RAY_AUTH_MODE=disabled on every node)") from None
    else:
        # address="local": always a new local instance, even where another cluster runs here
        ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=False, log_to_driver=False,
                 runtime_env=env)
        _reap_with_driver()
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cfg.workers > cpus:  # each worker holds one CPU: the others wait for room, which may never come
        print(f"note: the Ray cluster has {cpus} CPU(s) for {cfg.workers} workers: {cpus} start, the others "
              "wait for a CPU to free up (ask for fewer with --workers)", file=sys.stderr)
    if threading.current_thread() is threading.main_thread():
        # Ray's driver answers SIGTERM with a C++ stack dump and no clean-up; stop as on Ctrl-C
        # instead (KeyboardInterrupt): the history is on disk, and Ray is shut down at exit
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def _reap_with_driver() -> None:
    """The local instance dies with this process, even by kill -9 (`search.reaper`)."""
    import os
    import subprocess
    try:
        session = ray._private.worker._global_node.session_name  # Ray keeps it private
    except AttributeError:  # another Ray: no reaper, Ray's own clean-up only
        return
    subprocess.Popen([sys.executable, "-m", "search.reaper", str(os.getpid()), session], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _reachable(address: str) -> None:
    """A one-line error at once where nothing listens at the cluster's address (Ray itself retries
    for minutes)."""
    import socket
    host, _, port = address.rpartition(":")
    if address == "auto" or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=10).close()
    except OSError as e:
        raise ConfigError(f"ray.address {address}: cannot join the cluster: nothing answers there ({e.strerror or e}); "
                          f"is it up? (`ray status --address {address}`)") from None


def run_search(cfg: RunConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True) -> dict:
    search = Search(cfg, run_dir, resume=resume, progress=progress)
    connect_ray(cfg.ray, [cfg.task.name])
    pool = WorkerPool(cfg.task.name, dict(cfg.task.size), tuple(cfg.task.seeds), cfg.ray.workers,
                      cfg.search.timeout_s, memory=cfg.search_space.memory)
    try:
        summary = search.run(pool)
    finally:
        pool.shutdown()
    summary["worker_retries"], summary["timeouts"] = pool.retries, pool.timeouts
    return summary
