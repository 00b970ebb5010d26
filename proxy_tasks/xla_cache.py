"""How this process runs XLA: one thread per evaluation, and compiled interpreters kept on disk.

One thread: a program's fitness is then the same number in every process (a Ray worker,
`lionsearch eval`, a test). With XLA's thread pool the order of float reductions follows the
number of threads, and an update that divides by a gradient's own size turns that rounding into a
different loss (0.084 in a worker, 0.107 in a 2-thread process, for one program the search found).
Small models gain little from more threads anyway, and workers share the cores. A user's own
XLA_FLAGS that set the threading win. XLA reads the flags when JAX starts its CPU backend, so
this runs when `proxy_tasks` is imported.

The compilation cache (JAX's persistent compilation cache):

The interpreter for one (task, size, length bucket) is the same executable in every process, so
each Ray worker, each funnel stage and each later run can load it instead of compiling it again
(seconds per bucket on a CPU). Per-program executables are different every time and gain nothing.

The directory is `$LIONSEARCH_XLA_CACHE`, by default `~/.cache/lionsearch/xla`; `off` turns the
cache off. A directory the user gave JAX (`JAX_COMPILATION_CACHE_DIR`) wins. JAX decides once per
process, at its first compile, whether the cache is used, so this runs when `proxy_tasks` is
imported.
"""
from __future__ import annotations

import os
from pathlib import Path

import jax

ENV = "LIONSEARCH_XLA_CACHE"
MAX_BYTES = 2 ** 30  # a size limit also makes JAX lock the directory, so concurrent workers are safe


ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def one_thread() -> None:
    """Ask XLA for one thread per computation (see the module's docstring)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags and "intra_op_parallelism_threads" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {ONE_THREAD}".strip()


def directory() -> Path | None:
    """Where compiled executables are kept, or None when the cache is off."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() == "off":
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "lionsearch" / "xla"


def enable() -> Path | None:
    """Point JAX's compilation cache at `directory()` unless JAX already has one; returns the
    directory in use (None when off)."""
    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    path = directory()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: compile as before
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    if jax.config.jax_compilation_cache_max_size == -1:
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return path
