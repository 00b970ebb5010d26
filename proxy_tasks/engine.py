"""Compile-once evaluation: one jitted training run per (task, program-length bucket).

A program enters the compiled training loop as data:
  - `ops`   int32[L]    opcodes (the index in `dsl.OP_NAMES`),
  - `args`  int32[L, 3] argument slots (unused arguments point at slot 0),
  - `outs`  int32[L]    the slot each statement writes,
  - `consts` float32[3L] constant values, held in their own slots,
  - `n`     int32       the number of real statements (the rest is padding, never executed),
  - `update` int32      the slot holding `update` at the end.
All parameters of the model live in one flat vector, and the interpreter's environment is a
matrix `env[slot, :]` over that vector: rows 0-5 are the inputs w, g, m, v, lr, step; then one row
for each further memory slot the program uses (E of them), then L rows for the temporaries, then
3L rows for constants (written once at initialisation). Element-wise ops run on the flat vector;
reductions split it into the model's tensors (static slices) and apply the op to each tensor at its
own shape, as `dsl.execute.run` does per leaf. Memory rows (`m`/`v` are rows 2/3) are written only
by the program, so they carry over from step to step. Each statement is one `lax.switch` over the
op table inside a `fori_loop` bounded by the real length, so padding costs nothing. One executable
serves each (L, 2 + E): with E = 0, a two-slot program's, unchanged by the further slots.

Every compiled run takes a vector of seeds and trains them all in one executable (`vmap` over the
seed, the program's arrays shared): the op index of the switch stays unbatched, so each statement
still runs one op, now on k rows at once. A fitness over several seeds costs far less than k runs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import dsl
from dsl.program import Program

from .base import STATUS, Fitness, Task, get_task

BUCKETS = (8, 16, 32)
INPUT_SLOTS = ("w", "g", "m", "v", "lr", "step")
N_IN = len(INPUT_SLOTS)


# ---- encoding ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Encoded:
    """A program as arrays for the interpreter (see the module docstring)."""
    bucket: int
    ops: np.ndarray
    args: np.ndarray
    outs: np.ndarray
    consts: np.ndarray
    n: int
    update: int
    memory: int = 2  # memory rows (m, v and the E further slots the program uses)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ops": self.ops, "args": self.args, "outs": self.outs, "consts": self.consts,
                "n": np.int32(self.n), "update": np.int32(self.update)}


def prepare(p: Program) -> Program:
    """What both engines train: hyper-parameters inlined, dead code removed."""
    return dsl.strip_dead_code(p.inline_params())


def bucket_for(n: int, buckets: Sequence[int] = BUCKETS) -> int:
    for b in sorted(buckets):
        if n <= b:
            return b
    raise ValueError(f"program has {n} live statements, longer than the largest length bucket "
                     f"({max(buckets)}); pass larger buckets to the Evaluator")


def encode(p: Program, buckets: Sequence[int] = BUCKETS, memory: int = 2) -> Encoded:
    """Encode a program (stripped of dead code, params inlined) into padded arrays, with rows for
    `memory` memory slots or as many as it uses, if more (unused rows stay zero)."""
    p = prepare(p)  # declares only the memory slots its live statements use
    L = bucket_for(len(p), buckets)
    memory = max(memory, len(p.memory))
    opcode = {name: i for i, name in enumerate(dsl.OP_NAMES)}
    slot = {name: i for i, name in enumerate(INPUT_SLOTS)}
    base = N_IN + memory - 2  # the first temporary's row
    slot.update((k, N_IN + i) for i, k in enumerate(p.memory[2:]))
    consts: dict[float, int] = {}
    n_temp = 0
    ops = np.zeros(L, np.int32)
    args = np.zeros((L, 3), np.int32)
    outs = np.zeros(L, np.int32)
    cvals = np.zeros(3 * L, np.float32)
    for i, s in enumerate(p.statements):
        ops[i] = opcode[s.op]
        for j, a in enumerate(s.args):
            if isinstance(a, str):
                args[i, j] = slot[a]
            else:
                if a not in consts:
                    cvals[len(consts)] = a
                    consts[a] = base + L + len(consts)
                args[i, j] = consts[a]
        if s.out not in slot:  # a temporary: rows base .. base + L - 1
            slot[s.out] = base + n_temp
            n_temp += 1
        outs[i] = slot[s.out]
    # padding: never executed (the loop runs n statements), but keep it harmless anyway
    outs[len(p):] = base + L - 1
    return Encoded(L, ops, args, outs, cvals, len(p), slot["update"], memory)


# ---- parameter layout --------------------------------------------------------------------------

class Layout:
    """Flatten a parameter pytree into one vector and back, with each tensor's static slice."""

    def __init__(self, params):
        leaves, self.treedef = jax.tree.flatten(params)
        self.shapes = [tuple(x.shape) for x in leaves]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int).tolist()
        self.size = self.offsets[-1]

    def flatten(self, params):
        return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(params)])

    def unflatten(self, flat):
        return jax.tree.unflatten(self.treedef, self.pieces(flat))

    def pieces(self, flat):
        return [flat[a:b].reshape(s) for a, b, s in zip(self.offsets[:-1], self.offsets[1:], self.shapes)]


def _branches(layout: Layout) -> list[Callable]:
    """One `lax.switch` branch per op: (env, arg slots) -> the result row (one vector per seed).
    Reading the argument rows inside the branch lets XLA fuse the reads into the op (no copies).
    A reduction applies to each seed's tensors at their own shapes."""
    out = []
    for name in dsl.OP_NAMES:
        op = dsl.OPS[name]
        if op.reduces:
            def one(*xs, op=op):
                return jnp.concatenate([op.fn(jnp, *ps).reshape(-1) for ps in zip(*(layout.pieces(x) for x in xs))])

            def br(env, a, op=op, one=jax.vmap(one)):
                return one(*(env[a[j]] for j in range(op.arity)))
        else:
            def br(env, a, op=op):
                r = op.fn(jnp, *(env[a[j]] for j in range(op.arity)))
                return jnp.broadcast_to(r, env.shape[1:]).astype(env.dtype)
        out.append(br)
    return out


# ---- the training loop -------------------------------------------------------------------------

def make_run(task: Task, opt_init: Callable, opt_update: Callable, flat: bool) -> Callable:
    """A function (opt_args, seeds int32[k], data) -> (val_loss[k], val_acc[k], status_index[k]):
    k whole training runs, one per seed, in lockstep. The optimizer works on the k runs at once:
    `opt_init(params, opt_args) -> state` and `opt_update(opt_args, params, grads, state, lr, step)
    -> (update, state)` get params with a leading seed axis (`per_seed` lifts a one-run optimizer);
    the loop applies `params - update`. With `flat`, params are one vector per seed (the
    interpreter's layout); otherwise the task's pytree. A run that fails keeps its status; the
    loop stops computing once every run has failed."""
    layout = Layout(jax.eval_shape(task.init, jax.random.PRNGKey(0)))
    to_model = layout.unflatten if flat else (lambda p: p)
    limit, loss_limit = float(task.blowup), float(task.loss_limit)

    def loss_fn(p, xb, yb):
        return task.loss(to_model(p), xb, yb)

    grad_fn = jax.vmap(jax.value_and_grad(loss_fn))

    def run(opt_args, seeds, data):
        keys = jax.vmap(lambda s: jax.random.split(jax.random.PRNGKey(s)))(seeds)
        k_init, k_data = keys[:, 0], keys[:, 1]
        params = jax.vmap(task.init)(k_init)
        if flat:
            params = jax.vmap(layout.flatten)(params)
        state = opt_init(params, opt_args)

        def live(params, state, code, t):
            xb, yb = jax.vmap(lambda k: task.batch_of(data, jax.random.fold_in(k, t)))(k_data)
            loss, grads = grad_fn(params, xb, yb)
            upd, state = opt_update(opt_args, params, grads, state, task.schedule(t),
                                    (t + 1).astype(jnp.float32))
            params = jax.tree.map(lambda w, u: w - u, params, upd)
            big = jnp.max(jnp.stack([jnp.max(jnp.abs(x.reshape(x.shape[0], -1)), axis=1)
                                     for x in jax.tree.leaves(params)]), axis=0)
            now = jnp.where(~jnp.isfinite(loss) | ~jnp.isfinite(big), 1,
                            jnp.where((big > limit) | (loss > loss_limit), 2, 0))
            return params, state, jnp.where(code == 0, now, code).astype(jnp.int32)

        def step(carry):
            t, params, state, code = carry
            return (t + 1, *live(params, state, code, t))

        # A while loop that ends once every run has failed, not a scan with a cond around the step:
        # the cond's operands (the interpreter's whole environment) were copied every step, which
        # made long programs train 3x slower.
        code = jnp.zeros(seeds.shape, jnp.int32)
        _, params, state, code = jax.lax.while_loop(
            lambda c: (c[0] < task.steps) & jnp.any(c[3] == 0), step, (jnp.int32(0), params, state, code))
        vl, va = jax.vmap(lambda p: task.metrics(to_model(p), data["val_x"], data["val_y"]))(params)
        code = jnp.where((code == 0) & ~jnp.isfinite(vl), 1, code)
        return vl, va, code

    run.layout = layout
    return run


def per_seed(opt_init: Callable, opt_update: Callable) -> tuple[Callable, Callable]:
    """A one-run optimizer (params of the task's shapes) lifted to the k runs of `make_run`."""
    return (jax.vmap(opt_init, in_axes=(0, None)),
            jax.vmap(opt_update, in_axes=(None, 0, 0, 0, None, None)))


def interpreter_optimizer(layout: Layout, L: int, memory: int = 2) -> tuple[Callable, Callable]:
    """The interpreter as `make_run`'s (opt_init, opt_update) on flat parameters of `layout`, for
    programs padded to length L with `memory` memory slots (the program's arrays are the optimizer's
    first argument). The environment is `env[slot, seed, :]`: a statement reads and writes whole
    rows (every seed at once), so the op switch and the row indices stay unbatched."""
    branches = _branches(layout)
    base = N_IN + memory - 2  # the further memory slots' rows come before the temporaries
    rows = base + 4 * L

    def opt_init(params, prog):
        env = jnp.zeros((rows,) + params.shape, jnp.float32)
        return env.at[base + L:].set(jnp.broadcast_to(prog["consts"][:, None, None], (3 * L,) + params.shape))

    def opt_update(prog, w, g, env, lr, step):
        env = env.at[0].set(w).at[1].set(g)
        env = env.at[4].set(jnp.full_like(w, lr)).at[5].set(jnp.full_like(w, step))

        def body(i, env):
            r = jax.lax.switch(prog["ops"][i], branches, env, prog["args"][i])
            return env.at[prog["outs"][i]].set(r)

        env = jax.lax.fori_loop(0, prog["n"], body, env)
        return env[prog["update"]], env

    return opt_init, opt_update


def interpreter(task: Task, L: int, memory: int = 2) -> Callable:
    """The jitted training run of the interpreter for programs padded to length L with `memory`
    memory slots."""
    layout = Layout(jax.eval_shape(task.init, jax.random.PRNGKey(0)))
    return jax.jit(make_run(task, *interpreter_optimizer(layout, L, memory), flat=True))


def _direct_opt(p: Program):
    p = prepare(p)
    slots = dsl.state_slots(p)

    def opt_init(params, _):
        z = lambda: jax.tree.map(jnp.zeros_like, params)
        return tuple(z() if k in slots else None for k in p.memory)

    def opt_update(_, params, grads, state, lr, step):
        upd, *memory = dsl.tree_update(p, params, grads, state[0], state[1], lr, step, extra=state[2:])
        return upd, tuple(memory)

    return per_seed(opt_init, opt_update)


def direct(task: Task, p: Program) -> Callable:
    """The same training run with `p` compiled directly (`dsl.tree_update`), jitted per program."""
    return jax.jit(make_run(task, *_direct_opt(p), flat=False))


def direct_many(task: Task, programs: Sequence[Program]) -> Callable:
    """Several programs compiled directly into one jitted function (_, seeds, data) -> [results]:
    one XLA compile instead of one per program (used by tests; each program is still traced as is)."""
    runs = [make_run(task, *_direct_opt(p), flat=False) for p in programs]
    return jax.jit(lambda _, seeds, data: [r(None, seeds, data) for r in runs])


def optax_run(task: Task, make_tx: Callable) -> Callable:
    """The same training run with an optax optimizer: `make_tx(schedule)` builds the
    GradientTransformation from an lr schedule (the task's schedule times the run's first
    argument, an lr scale that is traced, so one compile serves a whole lr sweep)."""

    def opt_init(params, scale):
        return make_tx(lambda c: scale * task.schedule(c)).init(params)

    def opt_update(scale, params, grads, state, lr, step):
        upd, state = make_tx(lambda c: scale * task.schedule(c)).update(grads, state, params)
        return jax.tree.map(jnp.negative, upd), state

    return jax.jit(make_run(task, *per_seed(opt_init, opt_update), flat=False))


# ---- evaluators --------------------------------------------------------------------------------

def _seeds(seeds) -> jax.Array:
    seeds = (seeds,) if isinstance(seeds, (int, np.integer)) else tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("evaluate needs at least one seed")
    return jnp.asarray(seeds, jnp.int32)


def _fitness(results, t0: float) -> Fitness:
    """The Fitness of one program from a seeded run's (losses[k], accuracies[k], codes[k])."""
    losses, accs, status = [], [], "ok"
    for vl, va, code in zip(*(np.asarray(r) for r in results)):
        code = int(code)
        if code != 0 and status == "ok":
            status = STATUS[code]
        losses.append(float(vl) if code == 0 else math.inf)
        accs.append(float(va))
    secs = time.perf_counter() - t0
    if status != "ok":
        return Fitness(math.inf, None, status, secs, tuple(losses))
    return Fitness(float(np.mean(losses)), float(np.mean(accs)), "ok", secs, tuple(losses))


class Evaluator:
    """Scores programs on one task (with fixed size knobs). Compiles the interpreter lazily, once
    per program-length bucket, and then trains any program of that bucket without compiling."""

    def __init__(self, task: str | Task, buckets: Sequence[int] = BUCKETS, memory: int = 2, **size):
        if isinstance(task, Task):
            if size:
                raise ValueError("pass size knobs to get_task, or a task name with knobs, not both")
            self.task = task
        else:
            self.task = get_task(task, **size)
        self.buckets = tuple(sorted(buckets))
        # the memory rows of every executable: a search whose programs may use more than two slots
        # compiles one executable per bucket for them all, not one per number of slots
        self.memory = memory
        self._compiled: dict[tuple[int, int], Callable] = {}  # by (length bucket, memory slots)
        self._optax: dict[Callable, Callable] = {}

    def __repr__(self):
        return f"Evaluator({self.task!r})"

    @property
    def data(self):
        return self.task.data()

    def compiled(self, bucket: int, memory: int = 2) -> Callable:
        if (bucket, memory) not in self._compiled:
            self._compiled[bucket, memory] = interpreter(self.task, bucket, memory)
        return self._compiled[bucket, memory]

    def warm(self, buckets: Sequence[int] | None = None, seeds: Sequence[int] = (0,)) -> None:
        """Compile ahead of time for this many seeds (by running a one-statement program)."""
        p = dsl.parse("def train(w, g, m, v, lr):\n    update = g * lr\n    return update, m, v\n")
        for b in buckets or self.buckets:
            enc = encode(p, (b,), self.memory)
            jax.block_until_ready(self.compiled(b, enc.memory)(enc.arrays(), _seeds(seeds), self.data))

    def evaluate(self, p: Program, seeds: Sequence[int] = (0,)) -> Fitness:
        """Train `p` on every seed at once with the compile-once interpreter (one executable per
        bucket, number of memory slots and number of seeds); mean validation loss over the seeds."""
        t0 = time.perf_counter()
        enc = encode(p, self.buckets, self.memory)
        return _fitness(self.compiled(enc.bucket, enc.memory)(enc.arrays(), _seeds(seeds), self.data), t0)

    def evaluate_direct(self, p: Program, seeds: Sequence[int] = (0,)) -> Fitness:
        """The same training with `p` compiled directly (jax.jit per program): the reference."""
        t0 = time.perf_counter()
        return _fitness(direct(self.task, p)(None, _seeds(seeds), self.data), t0)

    def evaluate_direct_many(self, programs: Sequence[Program], seeds: Sequence[int] = (0,)) -> list[Fitness]:
        """`evaluate_direct` for several programs with one compile (seconds: the total, shared)."""
        t0 = time.perf_counter()
        results = direct_many(self.task, list(programs))(None, _seeds(seeds), self.data)
        return [_fitness(r, t0) for r in results]

    def optax_fn(self, make_tx: Callable) -> Callable:
        """A compiled training run for an optax optimizer family (see `optax_run`), cached."""
        if make_tx not in self._optax:
            self._optax[make_tx] = optax_run(self.task, make_tx)
        return self._optax[make_tx]

    def evaluate_optax(self, make_tx: Callable, lr: float, seeds: Sequence[int] = (0,)) -> Fitness:
        """Train with an optax optimizer `make_tx(schedule) -> GradientTransformation` whose
        schedule is the task's lr shape times `lr` (e.g. `lambda s: optax.adamw(s, weight_decay=1e-4)`).
        One compile per `make_tx` object serves every lr."""
        t0 = time.perf_counter()
        return _fitness(self.optax_fn(make_tx)(jnp.float32(lr), _seeds(seeds), self.data), t0)


_EVALUATORS: dict[tuple, Evaluator] = {}


def evaluate(p: Program, task: str, seeds: Sequence[int] = (0,), **size) -> Fitness:
    """Score `p` on a task (cached evaluators: the first call per task/size/bucket compiles)."""
    key = (task, tuple(sorted(size.items())))
    if key not in _EVALUATORS:
        _EVALUATORS[key] = Evaluator(task, **size)
    return _EVALUATORS[key].evaluate(p, seeds)
