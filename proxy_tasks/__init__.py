"""Proxy tasks: small JAX training loops, compiled once, that score optimizer programs.

    import proxy_tasks
    proxy_tasks.names()                                   # registered tasks
    proxy_tasks.evaluate(p, "digits_mlp", seeds=(0,), steps=200)   # -> Fitness
    ev = proxy_tasks.Evaluator("digits_mlp", width=64)    # compiles once per length bucket
    ev.evaluate(p, seeds=(0, 1)); ev.evaluate_direct(p)   # interpreter / per-program jit
"""
from . import xla_cache

xla_cache.one_thread()  # before JAX starts its CPU backend (see xla_cache)
xla_cache.enable()  # before anything compiles (see xla_cache)

from . import digits, lm, mnist1d, synthetic  # noqa: E402,F401  (registers tasks)
from .base import COMMON_KNOBS, Fitness, Task, check_contract, get_task, names, register, task_class, task_knobs
from .engine import BUCKETS, Encoded, Evaluator, encode, evaluate, prepare

__all__ = ["BUCKETS", "COMMON_KNOBS", "Encoded", "Evaluator", "Fitness", "Task", "check_contract", "encode",
           "evaluate", "get_task", "names", "prepare", "register", "task_class", "task_knobs"]
