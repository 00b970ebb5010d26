"""Simplification: from a raw discovered program to its essence (the paper's three steps).

1. drop redundant statements (dead code, by dependency analysis);
2. exact rewrites checked by `dsl.equivalent` (memory slots that always hold equal values merged
   into one, no-op arithmetic, `sign(sign(x))`, `m / sqrt(m*m)` as `sign(m)`, merged constants,
   folded `interp` chains), to a fixpoint;
3. with a check task: ablation, keeping (tried in this order) a simple unary op of an argument
   (`arctan2(u, x)` -> `sign(u)`; from the output back; never of lr, whose schedule the update
   must follow, and no edit that leaves a program blind to the lr input: `dsl.check`), a deletion, a replacement by one of a
   statement's arguments, a swap of two neighbouring statements (read the newer value of a
   slot), or a rounder constant, when the validation loss, at the best lr multiplier (the sweep
   goes on past a winning end of the grid), stays within `tolerance` (relative) of the
   reference loss, at first the input's at its best lr; then the exact rewrites again, and the
   pass goes on with the edits it has not tried; passes repeat until one changes nothing. The
   reference moves only where an accepted step beats it by more than the tolerance (to that
   step's loss): the lowest of a run of noisy losses drifts low, and a bar that followed every
   step would reject, by luck, steps that cost nothing; but a bar fixed at a poor input's loss
   would let a program made much better by one step (`sign(m)` for a ratio) give it all back by
   the next (the momentum dropped);
4. with a check task and `tune_trainings`: each constant of the result tuned, as a researcher
   tunes a new optimizer's hyper-parameters (an ablation keeps a constant found for the program
   it was in: `m / |g|` with momentum 0.1 becomes `sign(m)` with momentum 0.1, which wants 0.5).
   An interp weight is tried along `WEIGHT_LADDER`, any other constant at `FACTORS` times its
   value (an lr scale is left to the lr sweep); the best value, each at its best lr, is kept where
   the loss falls by more than the tolerance, the margin within which two programs count as equal.
Deterministic for given seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import dsl
from dsl import Program

from .rewrite import alias, canonical, exact_simplify, replaced, unary_rewrites, with_statement


EXTEND = 3  # extra lr-sweep steps past a grid end that keeps winning
# A screened candidate goes on to the full check only where its loss on the screen's seeds is
# within the tolerance plus this of the current program's loss on the same seeds (a paired
# comparison: the seeds' own difficulty cancels, so a few seeds tell a clearly worse candidate).
SCREEN_MARGIN = 0.10
# Where constant tuning moves an interp weight a (`interp(x, y, a) = (1 - a) x + a y`): decades of
# 1 - a, as averaging constants are usually set; any other constant moves by these factors.
WEIGHT_LADDER = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 0.995, 0.999)
FACTORS = (0.25, 0.5, 2.0, 4.0)
# The longest program simplified: a search's programs have tens of statements, and the exact
# rewrites grow with about the cube of the length (a chain of 60 statements: 24 s; of 200: more
# than 5 minutes).
MAX_STATEMENTS = 100


@dataclass(frozen=True)
class Step:
    what: str
    program: Program
    loss: float | None  # on the check task, where one is used


def _round_constants(x: float) -> list[float]:
    """Rounder values than x, roundest first (1 and 2 significant digits)."""
    out = []
    for digits in (1, 2):
        r = float(f"{x:.{digits - 1}e}")
        if r != x and r not in out:
            out.append(r)
    return out


def _ablations(p: Program):
    """Candidate simplifications that change the function: a simple unary op of an argument
    instead of a statement (`arctan2(u, x)` may act as `sign(u)`), deletions, forwarding an
    argument, swapping two neighbouring statements, rounder constants. Simpler ops come first, so
    that whether a statement matters is judged on the simplified program, and from the output
    back, as a simpler op near the update leaves what fed only it dead."""
    from dsl.text import statement_text
    for i in reversed(range(len(p))):
        # never a unary op of lr: `lr * c` as `sqrt(lr)` or `sign(lr)` would bend or drop the
        # schedule the update follows, which no lr multiplier puts back (its scale is the sweep's)
        yield from unary_rewrites(p, i, [a for a in p.statements[i].args if isinstance(a, str) and a != "lr"])
    for i, s in enumerate(p.statements):
        q = replaced(p, p.statements[:i] + p.statements[i + 1:])
        if q is not None:
            yield f"delete `{statement_text(s)}`", q
        for a in dict.fromkeys(s.args):
            q = alias(p, i, a)
            if q is not None:
                yield f"replace `{statement_text(s)}` by {a}", q
    for i in range(len(p) - 1):  # reorder: a statement reads the newer value of a slot, or the older
        a, b = p.statements[i], p.statements[i + 1]
        q = replaced(p, p.statements[:i] + (b, a) + p.statements[i + 2:])
        if q is not None and not dsl.equivalent(q, p):
            yield f"move `{statement_text(a)}` after `{statement_text(b)}`", q
    for i, s in enumerate(p.statements):
        for j, a in enumerate(s.args):
            if isinstance(a, float):
                for r in _round_constants(a):
                    q = with_statement(p, i, dsl.Statement(s.out, s.op, s.args[:j] + (r,) + s.args[j + 1:]))
                    if q is not None:
                        yield f"round {a!r} to {r!r} in `{statement_text(s)}`", q


def _constants(p: Program) -> list[tuple[int, int]]:
    """(statement, argument) of each constant worth tuning: not in a statement that reads `lr`
    (an lr scale, which the lr sweep moves)."""
    return [(i, j) for i, s in enumerate(p.statements) if "lr" not in s.args
            for j, a in enumerate(s.args) if isinstance(a, float)]


def _retuned(p: Program, i: int, j: int, follow_lr: bool = True) -> list[tuple[float, Program]]:
    """Program `p` with constant j of statement i at each other value tuning tries (each passing
    `dsl.check`)."""
    s = p.statements[i]
    a = s.args[j]
    if s.op == "interp" and j == 2 and 0 <= a < 1:
        values = [x for x in WEIGHT_LADDER if x != a]
    else:
        values = list(dict.fromkeys(float(f"{a * f:.2g}") for f in FACTORS))
    out = [(x, with_statement(p, i, dsl.Statement(s.out, s.op, s.args[:j] + (x,) + s.args[j + 1:])))
           for x in values]
    return [(x, q) for x, q in out if q is not None and dsl.check(q, follow_lr=follow_lr)]


def check_size(p: Program) -> None:
    """ValueError for a program longer than simplification takes (`MAX_STATEMENTS`)."""
    live = len(dsl.strip_dead_code(p.inline_params()))
    if live > MAX_STATEMENTS:
        raise ValueError(f"the program has {live} live statements; simplification takes at most {MAX_STATEMENTS}")


def simplify_steps(p: Program, task: str | None = None, tolerance: float = 0.01, seeds: Sequence[int] = (0,),
                   size: dict | None = None, log: Callable[[Step], None] | None = None,
                   lr_multipliers: Sequence[float] = (1.0,),
                   scorer: Callable[[Program], float] | None = None,
                   max_trainings: int | None = None, screen_seeds: int = 0,
                   screener: Callable[[Program], float] | None = None, tune_trainings: int = 0) -> list[Step]:
    """Every accepted step, the first being the input. `task` (a proxy task name) turns on the
    ablation step; without one only exact, function-preserving steps are taken. Each program on
    the task is scored at its best of `lr_multipliers` (a simpler program may want another lr,
    as optimizers are compared each at its own tuned lr) and kept at that lr. `scorer` (a
    program's mean validation loss on the task and seeds, e.g. `search.workers.SeedSplit`)
    trains elsewhere instead of in this process. `max_trainings` bounds the ablation by its
    compute, counted in trainings of one seed (a check at one lr on 16 seeds is 16), not by the
    clock, so that a loaded machine reaches the same result: past it, no new ablation is tried and
    the program reached so far goes on to the last exact steps. With
    `screen_seeds` k, each ablation is first scored on the first k seeds (by `screener`, or in
    this process) and fully checked only where that screen does not show it clearly worse
    (`SCREEN_MARGIN`): most ablations fail, and a screen costs k / len(seeds) of a check.
    `tune_trainings` (0: no tuning) bounds the last step, constant tuning, the same way; with a
    screen, each constant's values are compared on the screen's seeds and the best one checked."""
    check_size(p)
    if task is not None and scorer is None:
        import proxy_tasks
        evaluator = proxy_tasks.Evaluator(task, **(size or {}))
        scorer = lambda q: evaluator.evaluate(q, seeds).loss
        if screen_seeds and screener is None:
            screener = lambda q: evaluator.evaluate(q, tuple(seeds)[:screen_seeds]).loss
    losses: dict[Program, float] = {}
    screened: dict[Program, float] = {}
    spent = 0  # trainings of one seed so far

    def loss(q: Program) -> float:
        nonlocal spent
        if q not in losses:
            losses[q], spent = scorer(q), spent + len(seeds)
        return losses[q]

    def screen_loss(q: Program) -> float:
        nonlocal spent
        if q not in screened:
            screened[q], spent = screener(q), spent + min(screen_seeds, len(seeds))
        return screened[q]

    grid = sorted(set(lr_multipliers) | {1.0})

    def tuned(q: Program, hopeless: float = math.inf, loss=loss) -> tuple[float, Program, float]:
        """(loss at the best lr multiplier, the program at that lr, the multiplier). Other lrs are
        not tried where the loss at the program's own lr is above `hopeless`. Where the best is at
        an end of the grid the sweep goes on that way (up to `EXTEND` more steps of the grid's outer
        ratio): a rewrite such as `arctan2(m, c)` -> `sign(m)` changes the update's scale by about
        pi, and a grid edge must not decide against it."""
        if loss(q) > hopeless or q.scale_lr(2.0) == q:  # hopeless, or blind to the lr
            return loss(q), q, 1.0
        ks = list(grid)
        score = lambda k: loss(q.scale_lr(k))
        for _ in range(EXTEND):
            best = min(ks, key=score)
            if len(ks) < 2 or best not in (ks[0], ks[-1]):
                break
            ks = [ks[0] ** 2 / ks[1]] + ks if best == ks[0] else ks + [ks[-1] ** 2 / ks[-2]]
        k = min(ks, key=score)
        return score(k), q.scale_lr(k), k

    steps: list[Step] = []

    def take(what: str, q: Program, value: float | None = None) -> None:
        steps.append(Step(what, q, value))
        if log:
            log(steps[-1])

    def _tune(q: Program, current: float, budget: int, tolerance: float) -> Program:
        """Step 4 (see the module's docstring), from `q` at loss `current`."""
        from dsl.text import statement_text
        start = spent
        for n in range(len(_constants(q))):  # an lr found on the way is a new first statement: count, not index
            i, j = _constants(q)[n]
            if spent - start >= budget:
                take(f"stop tuning: {spent - start} trainings spent (budget {budget})", q, current)
                break
            options = _retuned(q, i, j, keep_lr)
            if not options:
                continue
            rank = (lambda r: tuned(r, loss=screen_loss)[0]) if screen_seeds else (lambda r: tuned(r)[0])
            x, r = min(options, key=lambda o: rank(o[1]))
            value, r, k = tuned(r)
            if value < current / (1 + tolerance):
                s = q.statements[i]
                take(f"tune `{statement_text(s)}`: {s.args[j]!r} -> {x!r}" + ("" if k == 1.0 else f" (lr x{k:g})"),
                     r, value)
                q, current = r, value
        return exact_simplify(q, log=lambda w, x: take(w, x, current))

    p = p.inline_params()
    keep_lr = dsl.follows_lr(p)  # a program that follows the lr input keeps following it (`dsl.check`)
    if task is None:
        take("input", p)
        base = None
    else:
        take("input", p, loss(p))
        base, p, k = tuned(p)
        if k != 1.0:
            take(f"tune the lr (x{k:g})", p, base)
    q = dsl.strip_dead_code(p)
    if q != p:
        take(f"drop {len(p) - len(q)} dead statement(s)", q, base)
    q = exact_simplify(q, log=lambda what, r: take(what, r, base))
    if task is not None:
        # within tolerance of the reference: the input's loss, moved only by a step that beats it
        # by more than the tolerance (see the module's docstring)
        ref = base
        bar = ref * (1 + tolerance) if math.isfinite(ref) else math.inf
        seen = {q}  # no program is tried twice, so swaps cannot cycle
        # A pass tries each edit once: after an accepted step it goes on with the edits it has not
        # tried (by description), rather than from the first again, so that a budget buys a whole
        # pass; passes repeat while one takes a step (an edit rejected earlier is then retried).
        tried: set[str] = set()
        stepped = out_of_budget = False
        while not out_of_budget:
            accepted = False
            for what, r in _ablations(q):
                if what in tried:
                    continue
                if max_trainings is not None and spent >= max_trainings:
                    take(f"stop the ablation: {spent} trainings spent (budget {max_trainings})", q, steps[-1].loss)
                    out_of_budget = True
                    break
                tried.add(what)
                r = dsl.strip_dead_code(r)
                if r in seen or not dsl.check(r, follow_lr=keep_lr):
                    continue
                seen.add(r)
                if screen_seeds:
                    screen_bar = screen_loss(q) * (1 + tolerance + SCREEN_MARGIN)
                    if tuned(r, hopeless=2 * screen_bar, loss=screen_loss)[0] > screen_bar:
                        continue
                value, r, k = tuned(r, hopeless=2 * bar)
                if value <= bar:
                    if value * (1 + tolerance) < ref:  # a clear gain: the new reference
                        ref, bar = value, value * (1 + tolerance)
                    take(what + ("" if k == 1.0 else f" (lr x{k:g})"), r, value)
                    q = exact_simplify(r, log=lambda w, x: take(w, x, value))
                    accepted = stepped = True
                    break
            if not accepted:  # the pass is over
                if not stepped:
                    break
                tried.clear()
                stepped = False
        if tune_trainings:
            q = _tune(q, steps[-1].loss, tune_trainings, tolerance)
    final = canonical(q)
    if final != q:
        take("rename temporaries", final, steps[-1].loss)
    return steps


def simplify(p: Program, task: str | None = None, *args, **kwargs) -> Program:
    """The simplest program found: equivalent to `p` without a task; within `tolerance` of its
    validation loss on `task` with one (the arguments of `simplify_steps`)."""
    return simplify_steps(p, task, *args, **kwargs)[-1].program


__all__ = ["MAX_STATEMENTS", "Step", "check_size", "simplify", "simplify_steps"]
