"""The task interface, the registry, size knobs, the learning-rate schedule and `Fitness`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

# Knobs every task has: the training horizon, the batch, and the shape of the lr schedule that feeds
# the program's `lr` input (warm-up for `warmup` * steps, then cosine decay to `final` * peak).
COMMON_KNOBS: dict[str, Any] = {"steps": 200, "batch": 128, "warmup": 0.1, "peak": 1.0, "final": 0.0}
INT_MAX = 2 ** 31 - 1  # the largest int32: steps, shapes and seeds all enter jitted code as int32


def _short(x) -> str:
    """A value as an error quotes it: its start only."""
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Fitness:
    """The score of one program on one task (mean over seeds). Lower `loss` is better.

    `status` is "ok", or the reason of the first failing seed ("nan": a NaN/inf loss or weight;
    "diverged": a weight beyond the task's blow-up limit). A failure has loss = inf, accuracy None.
    """
    loss: float
    accuracy: float | None
    status: str
    seconds: float
    seed_losses: tuple[float, ...] = field(default=(), compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @staticmethod
    def failure(status: str, seconds: float = 0.0) -> "Fitness":
        return Fitness(math.inf, None, status, seconds)


STATUS = ("ok", "nan", "diverged")  # training loops return an index into this


class Task:
    """A training task family. Subclasses set `name`, `KNOBS` (their own size knobs with cheap
    defaults, on top of COMMON_KNOBS) and implement data / init / loss / metrics / batch.

    The data split is fixed (it never depends on the seed); a seed sets the initialisation and
    the batch order. Validation data is never trained on.
    """
    name: str = ""
    KNOBS: dict[str, Any] = {}
    DEFAULTS: dict[str, Any] = {}  # per-task overrides of COMMON_KNOBS defaults
    # Divergence: a run ends early with status "diverged" once a weight exceeds `blowup` in
    # magnitude or the training loss exceeds `loss_limit` (no task here has either legitimately).
    blowup: float = 1e3
    loss_limit: float = 1e3

    def __init__(self, **knobs):
        valid = self.valid_knobs()
        unknown = sorted(set(knobs) - set(valid))
        if unknown:
            raise ValueError(f"task {self.name!r}: unknown knob(s) {', '.join(map(repr, unknown))}; "
                             f"valid knobs: {', '.join(sorted(valid))}")
        cfg = dict(valid)
        for k, x in knobs.items():
            cfg[k] = self._knob(k, x, valid[k])
        self.config = cfg
        for k, x in cfg.items():
            setattr(self, k, x)
        if self.steps < 1 or self.batch < 1:
            raise ValueError(f"task {self.name!r}: steps and batch must be >= 1")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"task {self.name!r}: warmup is a fraction of steps in [0, 1), got {self.warmup}")
        self._data = None
        self.validate()
        self._check_scale()

    def _knob(self, k: str, x, default):
        """`x` as the type of the knob's default: a finite number; an integer knob (a size, count or
        seed) within [0, INT_MAX], since the compiled loop, shapes and seeds are int32."""
        what = {bool: "a bool", int: f"an integer in [0, {INT_MAX}]", float: "a finite number"}[type(default)]
        try:
            if isinstance(default, bool):
                if not isinstance(x, bool):
                    raise ValueError
            elif isinstance(default, int):
                if isinstance(x, bool) or not math.isfinite(float(x)) or float(x) != int(float(x)):
                    raise ValueError
                x = int(x) if isinstance(x, int) else int(float(x))
                if not 0 <= x <= INT_MAX:
                    raise ValueError
            elif isinstance(default, float):
                x = float(x)
                if not math.isfinite(x):
                    raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"task {self.name!r}: knob {k!r} must be {what}, got {_short(x)}") from None
        return x

    def _check_scale(self) -> None:
        """Sizes that pass each knob's own check can still be absurd together: the model's
        parameters, one flat float32 vector, must have fewer than 2**31 entries (int32 offsets),
        and a batch no larger than the training set (a bigger one only repeats rows, at any cost)."""
        try:
            params = jax.eval_shape(self.init, jax.ShapeDtypeStruct((2,), jnp.uint32))
            n = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
        except OverflowError:  # a size past int32 inside the initialiser itself
            n = None
        if n is None or n > INT_MAX:
            sizes = ", ".join(f"{k}={self.config[k]}" for k in sorted(self.KNOBS))
            raise ValueError(f"task {self.name!r}: {'too many' if n is None else f'{n:,}'} parameters, "
                             f"more than {INT_MAX:,} (2**31 - 1); "
                             f"make the model smaller ({sizes})")
        if self.batch > self.valid_knobs()["batch"]:  # the defaults fit every task: build data only past them
            rows = self.train_rows()
            if self.batch > rows:
                raise ValueError(f"task {self.name!r}: knob 'batch' is {self.batch}, larger than the "
                                 f"{rows} training examples")

    def train_rows(self) -> int:
        """How many distinct training examples a batch draws from (rows of train_x, or windows of
        a token stream `train_ids` of `context` + 1 tokens)."""
        if "n_train" in self.config:  # without generating the data
            return self.n_train
        data = self.make_data()
        if "train_x" in data:
            return len(data["train_x"])
        return len(data["train_ids"]) - getattr(self, "context", 0) - 1

    @classmethod
    def valid_knobs(cls) -> dict[str, Any]:
        return {**COMMON_KNOBS, **cls.DEFAULTS, **cls.KNOBS}

    def validate(self) -> None:
        """Task-specific knob checks (raise ValueError naming the task)."""

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={x}' for k, x in sorted(self.config.items()))})"

    # ---- the schedule --------------------------------------------------------------------------
    def schedule(self, t, peak: float | None = None):
        """The lr schedule at step t (0-based): linear warm-up to `peak`, then cosine to final*peak."""
        peak = self.peak if peak is None else peak
        t = jnp.asarray(t, jnp.float32)
        warm = float(max(int(round(self.warmup * self.steps)), 0))
        decay = float(max(self.steps - warm, 1))
        up = (t + 1.0) / max(warm, 1.0)
        frac = jnp.clip((t - warm) / decay, 0.0, 1.0)
        down = self.final + (1.0 - self.final) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
        return peak * jnp.where(t < warm, up, down)

    # ---- what a task implements ----------------------------------------------------------------
    def make_data(self) -> dict[str, np.ndarray]:
        """Fixed arrays: at least val_x, val_y and whatever `batch_of` samples from."""
        raise NotImplementedError

    def init(self, key) -> Any:
        """Initial parameters (a pytree of float32 arrays)."""
        raise NotImplementedError

    def loss(self, params, x, y) -> jax.Array:
        """Mean training loss on one batch."""
        raise NotImplementedError

    def metrics(self, params, x, y) -> tuple[jax.Array, jax.Array]:
        """(mean loss, accuracy) on validation data."""
        raise NotImplementedError

    def batch_of(self, data, key) -> tuple[jax.Array, jax.Array]:
        """A training batch drawn with `key` (default: `batch` rows of train_x/train_y, with replacement)."""
        idx = jax.random.randint(key, (self.batch,), 0, data["train_x"].shape[0])
        return data["train_x"][idx], data["train_y"][idx]

    # ---- shared ----------------------------------------------------------------------------------
    def data(self) -> dict[str, jax.Array]:
        if self._data is None:
            self._data = {k: jnp.asarray(x) for k, x in self.make_data().items()}
        return self._data


def cross_entropy(logits, y):
    """Mean softmax cross-entropy and accuracy for integer labels (any leading shape)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
    acc = jnp.mean((jnp.argmax(logits, axis=-1) == y).astype(jnp.float32))
    return jnp.mean(nll), acc


class Classifier(Task):
    """A task with integer labels, trained and scored by softmax cross-entropy (accuracy as the
    metric). Subclasses implement `logits` (a model's output over the last axis) instead of
    loss / metrics."""

    def logits(self, params, x) -> jax.Array:
        raise NotImplementedError

    def loss(self, params, x, y):
        return cross_entropy(self.logits(params, x), y)[0]

    def metrics(self, params, x, y):
        return cross_entropy(self.logits(params, x), y)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed train/validation split of range(n)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


_REGISTRY: dict[str, type[Task]] = {}
ENTRY_POINTS = "lionsearch.tasks"  # the entry-point group under which packages offer tasks


def register(cls: type[Task]) -> type[Task]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    """The registered task names, and those offered by installed packages (entry points)."""
    from importlib.metadata import entry_points
    return sorted(set(_REGISTRY) | {e.name for e in entry_points(group=ENTRY_POINTS)})


def task_class(name: str) -> type[Task]:
    """The task class `name` stands for: a registered name, an entry point of group
    `lionsearch.tasks`, or an import path outside the package, `package.module:Class` or
    `path/to/file.py:Class` (a file is found where it is, else by its name on the import path, as a
    Ray worker on another machine has it). Anything else is a ValueError naming it."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    from importlib.metadata import entry_points
    found = [e for e in entry_points(group=ENTRY_POINTS) if e.name == name]
    where, sep, attr = name.rpartition(":")
    if not found and not (sep and where and attr):
        raise ValueError(f"unknown task {name!r}; registered tasks: {', '.join(names())}; a task of your own is "
                         "named 'package.module:Class' or 'path/to/file.py:Class'")
    try:
        cls = found[0].load() if found else getattr(_module(where), attr)
    except AttributeError:
        raise ValueError(f"task {name!r}: {where} has no {attr!r}") from None
    except Exception as e:  # the user's module failing to import: its own error, in one line
        raise ValueError(f"task {name!r}: cannot import {where or found[0].value} ({type(e).__name__}: {e})") from None
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"task {name!r} is {cls!r}, not a subclass of proxy_tasks.Task")
    _REGISTRY[name] = cls  # under the name the config used, which workers resolve the same way
    return cls


def _module(where: str):
    """A module by dotted name, or from a .py file (by its file name on the import path where the
    file is not here)."""
    import importlib
    import importlib.util
    import sys
    from pathlib import Path
    if not where.endswith(".py"):
        return importlib.import_module(where)
    path = Path(where).expanduser()
    if not path.is_file():  # a worker elsewhere: the folder came with the run (`task_folder`)
        return importlib.import_module(f"{path.resolve().parent.name}.{path.stem}")
    key = f"lionsearch_task_{path.resolve()}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[key] = module
    return sys.modules[key]


def task_folder(name: str) -> str | None:
    """The folder a task of the user's own comes from, which Ray ships to every worker (a file's
    folder, or a module's top-level package); None for the package's tasks and entry points."""
    import importlib.util
    from pathlib import Path
    where, sep, _ = name.rpartition(":")
    if (name in _REGISTRY and _REGISTRY[name].__module__.startswith("proxy_tasks.")) or not sep or not where:
        return None
    if where.endswith(".py"):
        return str(Path(where).expanduser().resolve().parent)
    spec = importlib.util.find_spec(where.split(".")[0])
    if spec is None or not spec.submodule_search_locations:  # a single-file module, or installed elsewhere
        return None
    return str(Path(list(spec.submodule_search_locations)[0]))


def get_task(name: str, **knobs) -> Task:
    """A task by name (see `task_class`) with its size knobs (an unknown task or knob is a ValueError)."""
    return task_class(name)(**knobs)


def task_knobs(name: str) -> dict[str, Any]:
    """The knobs of a task with their defaults."""
    return task_class(name).valid_knobs()


def check_contract(task: Task) -> None:
    """What every task must do, checked on one batch before any worker starts (a ValueError names
    the task and what is wrong): data that is the same each time it is made, parameters as a
    pytree of float32 arrays, a finite scalar training loss, and a (loss, accuracy) pair of scalars
    on the validation data."""
    label = f"task {task.name or type(task).__name__!r}"
    try:
        a, b = task.make_data(), task.make_data()
        if not isinstance(a, dict) or "val_x" not in a or "val_y" not in a:
            raise ValueError("make_data must return a dict with at least val_x and val_y")
        if set(a) != set(b) or any(not np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a):
            raise ValueError("make_data gives other data each time it is called (the data must be fixed; "
                             "a seed sets only the initialisation and the batch order)")
        params = task.init(jax.random.PRNGKey(0))
        leaves = jax.tree.leaves(params)
        if not leaves or any(jnp.asarray(x).dtype != jnp.float32 for x in leaves):
            raise ValueError("init must return a pytree of float32 arrays")
        data = task.data()
        x, y = task.batch_of(data, jax.random.PRNGKey(1))
        loss = jnp.asarray(task.loss(params, x, y))
        if loss.shape != () or not bool(jnp.isfinite(loss)):
            raise ValueError(f"loss must be a finite scalar, got shape {loss.shape} value {_short(np.asarray(loss))}")
        out = task.metrics(params, data["val_x"], data["val_y"])
        if not (isinstance(out, tuple) and len(out) == 2 and all(jnp.shape(v) == () for v in out)):
            raise ValueError("metrics must return (mean loss, accuracy), two scalars")
    except ValueError as e:
        raise ValueError(f"{label}: {e}") from None
    except Exception as e:  # a shape error deep in the user's model, say
        raise ValueError(f"{label}: breaks the task contract ({type(e).__name__}: {_short(str(e))})") from None


Schedule = Callable[[Any], jax.Array]
