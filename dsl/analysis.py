"""Static and abstract analysis of programs: dead code, abstract execution, functional hash.

Abstract execution runs a program with numpy (float64) on small random tensors over a few steps;
it is cheap (well under a millisecond per program) so the search can afford it for every child.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from .execute import run
from .program import Program


def _live(p: Program) -> tuple[list[bool], set[str]]:
    """Which statements are live, and which memory slots carry state across steps.

    A statement is live if its result reaches `update`, this step or a later one: `m`'s new value
    is live only if some live statement reads the old `m` (a fixpoint over the memory slots).
    """
    needed = {"update"}
    while True:
        live_names, keep = set(needed), [False] * len(p.statements)
        for i in range(len(p.statements) - 1, -1, -1):
            s = p.statements[i]
            if s.out in live_names:
                keep[i] = True
                live_names.discard(s.out)
                live_names.update(a for a in s.args if isinstance(a, str))
        carried = {k for k in p.memory if k in live_names}  # old value read by a live statement
        if carried <= needed:
            return keep, {k for k in carried if any(k == s.out for s, l in zip(p.statements, keep) if l)}
        needed |= carried


def live_statements(p: Program) -> list[bool]:
    """For each statement, whether its result reaches `update` (this step or a later one)."""
    return _live(p)[0]


def strip_dead_code(p: Program) -> Program:
    """The same optimizer without statements whose results never reach `update`, and without the
    memory slots after `v` that no live statement reads or writes (`m` and `v` always stay)."""
    keep, _ = _live(p)
    stmts = tuple(s for s, k in zip(p.statements, keep) if k)
    used = {s.out for s in stmts} | {a for s in stmts for a in s.args if isinstance(a, str)}
    memory = p.memory[:2] + tuple(k for k in p.memory[2:] if k in used)
    return Program(stmts, p.params, p.uses_step, p.name, memory)


def state_slots(p: Program) -> tuple[str, ...]:
    """The memory slots (of `p.memory`, in its order) that the optimizer must keep between steps."""
    return tuple(k for k in p.memory if k in _live(p)[1])


def redundancy(p: Program) -> float:
    """The fraction of statements that are dead."""
    return 1.0 - len(strip_dead_code(p)) / len(p) if len(p) else 0.0


# ---- abstract execution ------------------------------------------------------------------------

SHAPES = ((3,), (4, 5), (2, 3, 2))
STEPS = 6


# The learning-rate input over the steps: varying, so that programs that ignore it differ, and
# spanning the range a task's schedule feeds (its peak is a knob, e.g. 3.0), so that a bound such
# as `minimum(lr, 1.09)` is not taken for a no-op.
LR_INPUTS = (1.0, 3.0, 0.3, 8.0, 0.05, 1.5)


def _lr_shape(t: int) -> float:
    return LR_INPUTS[t % len(LR_INPUTS)]


def trajectory(p: Program, seed: int = 0, shapes=SHAPES, steps: int = STEPS, grads=None):
    """The updates of `p` over `steps` steps on random tensors: a list (per step) of lists (per tensor).

    `w` starts random, the memory slots at zero, gradients are fresh N(0, 1) draws each step, and the
    caller's rule `w <- w - update` is applied, so the trajectory captures the whole optimizer.
    """
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=s) for s in shapes]
    if grads is None:
        grads = [[rng.normal(size=s) for s in shapes] for _ in range(steps)]
    mem = [[np.zeros(s) for _ in p.memory] for s in shapes]  # per tensor, one per slot
    out = []
    with np.errstate(all="ignore"):
        for t in range(steps):
            ups = []
            for i in range(len(shapes)):
                m, v, *extra = mem[i]
                u, *mem[i] = run(p, np, ws[i], grads[t][i], m, v, _lr_shape(t), float(t + 1), extra=extra)
                ws[i] = ws[i] - u
                ups.append(u)
            out.append(ups)
    return out


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def check(p: Program, seed: int = 0, follow_lr: bool = True) -> Verdict:
    """Abstract execution: is `p` worth training? Rejects NaN/inf, updates blind to the gradient,
    and, with `follow_lr`, updates blind to the learning rate: the lr input carries the schedule
    and is what each task's lr sweep scales, so a program that ignores it (`lr = c`) can follow
    neither (`follow_lr=False` for a search of rules that set their own step size)."""
    return _check_live(strip_dead_code(p), seed, follow_lr)


# The verdict reads the updates alone, which dead statements never reach: judged on the live
# statements, and once for each (a search's dead-code-only children repeat their parent's).
@functools.lru_cache(maxsize=4096)
def _check_live(p: Program, seed: int, follow_lr: bool) -> Verdict:
    try:
        ups = trajectory(p, seed)
    except (ArithmeticError, ValueError, TypeError) as e:  # defensive: ops are total by design
        return Verdict(False, f"execution failed: {e}")
    for t, step in enumerate(ups, 1):
        for u in step:
            if not np.all(np.isfinite(u)):
                return Verdict(False, f"update is NaN or inf at step {t}")
    rng = np.random.default_rng(seed + 1)
    if _same(ups, trajectory(p, seed, grads=[[rng.normal(size=s) for s in SHAPES] for _ in range(STEPS)])):
        return Verdict(False, "update does not depend on the gradient")
    if follow_lr and _same(ups, trajectory(p.scale_lr(2.0), seed)):
        return Verdict(False, "update does not depend on the learning rate")
    return Verdict(True, "ok")


def follows_lr(p: Program, seed: int = 0) -> bool:
    """Whether `p`'s updates change when its lr input is doubled."""
    return not _same(trajectory(p, seed), trajectory(p.scale_lr(2.0), seed))


def _same(ups, other) -> bool:
    """Whether two trajectories (`trajectory`) hold exactly the same updates."""
    return all(np.array_equal(a, b) for x, y in zip(ups, other) for a, b in zip(x, y))


def _rounded(x: np.ndarray, bits: int = 20) -> np.ndarray:
    """Round to `bits` mantissa bits (about 6 significant digits); tiny values become 0."""
    x = np.where(np.abs(x) < 1e-30, 0.0, x)
    mant, exp = np.frexp(x)
    q = np.round(mant * 2.0 ** bits)
    carry = np.abs(q) == 2.0 ** bits  # rounding up to the next power of two
    return np.stack([np.where(carry, q / 2, q), np.where(carry, exp + 1, exp)])


def fingerprint(p: Program) -> str:
    """A functional hash: equal for programs that compute the same updates (dead code, renaming,
    reordering and algebraically equal forms included), different otherwise."""
    h = hashlib.sha256()
    with np.errstate(all="ignore"):
        for step in trajectory(p):
            for u in step:
                h.update(np.nan_to_num(_rounded(u), nan=7.0, posinf=8.0, neginf=9.0).astype(np.int64).tobytes())
    return h.hexdigest()[:16]


def equivalent(p: Program, q: Program, seeds=(0, 1, 2), steps: int = 10, rtol: float = 1e-6) -> bool:
    """Whether `p` and `q` compute the same updates on random inputs over several steps."""
    return all(np.allclose(a, b, rtol=rtol, atol=1e-9, equal_nan=True)
               for seed in seeds for x, y in zip(trajectory(p, seed, steps=steps), trajectory(q, seed, steps=steps))
               for a, b in zip(x, y))
