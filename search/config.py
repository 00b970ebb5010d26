"""Run configs: dataclasses loaded from YAML, validated, with errors that name the file and key."""
from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .mutation import MutationConfig, SearchSpace


class ConfigError(ValueError):
    """A bad config: the message names the file and the key."""


MAX_VALUES = 10_000  # a config is small: YAML aliases that expand beyond this are refused
_short = reprlib.Repr()  # an error quotes the start of a value, never the whole of one
_short.maxstring = _short.maxother = _short.maxlong = 80
_quote = _short.repr


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice (the last would win silently)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        for i, (key_node, _) in enumerate(node.value):
            if keys[i] in keys[:i]:
                raise yaml.constructor.ConstructorError(None, None, f"key {_quote(keys[i])} is given twice",
                                                        key_node.start_mark)
        return super().construct_mapping(node, deep)


def yaml_why(e: yaml.YAMLError) -> str:
    """A YAML error in one line: where (line and column) and what."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + str(getattr(e, "problem", None) or "cannot be read")


def _values(x, memo: dict) -> int:
    """How many values `x` holds once its aliases are expanded (shared objects counted per use)."""
    if id(x) not in memo:
        memo[id(x)] = 1 + (sum(_values(v, memo) for v in x.values()) if isinstance(x, dict) else
                           sum(_values(v, memo) for v in x) if isinstance(x, list) else 0)
    return memo[id(x)]


def _check(tp, value, where: str):
    """`value` converted to type `tp`, or a ConfigError naming `where`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for t in options:
            if t is type(None):
                continue
            try:
                return _check(t, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: expected {tp}, got {_quote(value)}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_quote(value)}")
        (item,) = typing.get_args(tp)[:1]
        return origin(_check(item, x, f"{where}[{i}]") for i, x in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_quote(value)}")
        _, vt = typing.get_args(tp)
        return {str(k): _check(vt, x, f"{where}.{k}") for k, x in value.items()}
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            x = float(value)
        except OverflowError:  # an int past float's range
            x = math.inf
        if not math.isfinite(x):  # .nan would turn a check off, .inf a limit
            raise ConfigError(f"{where}: expected a finite number, got {_quote(value)}")
        return x
    if tp is typing.Any or (isinstance(tp, type) and isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        return value
    raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {_quote(value)}")


# keys that the search_space section took over: a config file of the older layout is told where
# each went, and a run directory's saved config of that layout is upgraded (`upgrade`)
_FROM_MUTATION = ("ops", "max_statements", "constant_prob")
MOVED = {("SearchConfig", "warm_start")} | {("MutationConfig", k) for k in _FROM_MUTATION}


def upgrade(saved: dict) -> dict:
    """A run directory's config as an older lionsearch saved it (the warm start under `search`,
    the op set, length and constants under `search.mutation`) in today's layout, so that a run
    made before resumes."""
    search = saved.get("search")
    if not isinstance(search, dict):
        return saved
    search, mutation = dict(search), search.get("mutation")
    moved = {}
    if isinstance(mutation, dict):
        mutation = dict(mutation)
        moved = {k: mutation.pop(k) for k in _FROM_MUTATION if k in mutation}
        search["mutation"] = mutation
    if "warm_start" in search:
        moved["warm_start"] = search.pop("warm_start")
    return {**saved, "search": search, "search_space": {**moved, **(saved.get("search_space") or {})}} if moved else saved


def from_dict(cls, data, where: str):
    """Build dataclass `cls` from a mapping; unknown keys and wrong types are errors naming `where`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip(':')}: expected a mapping of {cls.__name__} fields, got {_quote(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    moved = [k for k in unknown if (cls.__name__, k) in MOVED]
    if moved:
        raise ConfigError(f"{where.rstrip(':')}: key {moved[0]!r} has moved to the search_space section "
                          f"(search_space.{moved[0]})")
    if unknown:
        raise ConfigError(f"{where.rstrip(':')}: unknown key {unknown[0]!r} (valid keys: {', '.join(fields)})")
    kwargs = {k: _check(hints[k], v, f"{where}.{k}".lstrip(".").replace(":.", ": ")) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        key, _, why = str(e).partition(": ")
        if key in fields and why:  # the check names its field: report it as where.field
            raise ConfigError(f"{where}.{key}: {why}".replace(":.", ": ")) from None
        raise ConfigError(f"{where.rstrip(':')}: {e}") from None


@dataclass(frozen=True)
class TaskConfig:
    name: str = "digits_mlp"
    size: dict[str, typing.Any] = field(default_factory=dict)  # the task's size knobs (steps, width, ...)
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self):
        import proxy_tasks
        try:
            cls = proxy_tasks.task_class(self.name)
        except ValueError as e:
            raise ValueError(f"name: {e}") from None
        try:
            task = cls(**self.size)
        except (ValueError, TypeError) as e:
            raise ValueError(f"size: {e}") from None
        if not cls.__module__.startswith("proxy_tasks."):  # a task of the user's own: its contract, up front
            try:
                proxy_tasks.check_contract(task)
            except ValueError as e:
                raise ValueError(f"name: {e}") from None
        if not self.seeds or min(self.seeds) < 0:
            raise ValueError(f"seeds: at least one seed, none negative, is needed; got {_quote(self.seeds)}")


@dataclass(frozen=True)
class SearchConfig:
    population: int = 100
    tournament: int = 10
    evaluations: int = 1000  # budget: children given a fitness (trained or answered by the cache)
    restart_after: int = 0  # evaluations without improvement before restarting from the best; 0: never
    timeout_s: float = 120.0  # a candidate training longer than this is scored as a failure
    checkpoint_every: int = 100  # evaluations between population checkpoints
    mutation: MutationConfig = MutationConfig()
    # "evolution" (regularized evolution), or "random": the baseline the method must beat, where
    # every child is the warm start mutated k times, k drawn from `random_depths`, with the same
    # checks (abstract execution, dead code, cache) and no selection
    method: str = "evolution"
    random_depths: tuple[int, ...] = tuple(range(1, 21))
    # stop conditions besides the budget (None: off): the search's wall minutes since it started or
    # resumed, and a fitness (validation loss) to reach; the summary says which one stopped it
    max_minutes: float | None = None
    target_loss: float | None = None
    # a budget of trainings (children trained, not answered by the checks or the cache): the compute
    # a search spends, whatever share of its children dead code or the cache spares
    max_trainings: int | None = None
    # islands (PySR, FunSearch): N populations of `population` each evolve apart, child k on island
    # k mod N; every `migration_every` children each island's `migrants` best join the next island;
    # with `migration_every: null` they never meet (the paper's parallel restarts from the warm
    # start, for diversity: a population that lost the momentum early does not take the others)
    islands: int = 1
    migration_every: int | None = 500
    migrants: int = 1
    # a trained child that would rank among the `rescore_top` best of its population is trained
    # again on these seeds before it joins, and its fitness is the mean over all its seeds: a
    # search scored on few seeds promotes the children its seeds' noise favours, and it is the
    # population's leaders, the parents of most children, whose luck costs most
    rescore_seeds: tuple[int, ...] = ()
    rescore_top: int = 1

    def __post_init__(self):
        if self.method not in ("evolution", "random"):
            raise ValueError(f"method: expected 'evolution' or 'random', got {self.method!r}")
        if not self.random_depths or min(self.random_depths) < 1:
            raise ValueError("random_depths: positive integers are needed")
        if not 1 <= self.tournament <= self.population:
            raise ValueError(f"tournament must be between 1 and population ({self.population}), got {self.tournament}")
        if self.evaluations < 1 or self.checkpoint_every < 1 or self.timeout_s <= 0:
            raise ValueError("evaluations, checkpoint_every and timeout_s must be positive")
        if self.islands < 1 or (self.migration_every is not None and self.migration_every < 1) or self.migrants < 1:
            raise ValueError(f"islands, migration_every and migrants must be at least 1 (migration_every: or null, "
                             f"never), got {self.islands}, {self.migration_every} and {self.migrants}")
        if self.islands > 1 and (self.restart_after or self.method == "random"):
            raise ValueError("islands: more than one island takes neither restarts (restart_after; migration plays "
                             "their part) nor method random")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes: expected a positive number of minutes, got {self.max_minutes}")
        if self.max_trainings is not None and self.max_trainings < 1:
            raise ValueError(f"max_trainings: expected a positive number of trainings, got {self.max_trainings}")
        if self.restart_after < 0:
            raise ValueError(f"restart_after: expected 0 (never) or more, got {self.restart_after}")
        if min(self.rescore_seeds, default=0) < 0 or len(set(self.rescore_seeds)) < len(self.rescore_seeds):
            raise ValueError(f"rescore_seeds: distinct seeds, none negative, are needed; got {list(self.rescore_seeds)}")
        if self.rescore_top < 1:
            raise ValueError(f"rescore_top: expected 1 or more, got {self.rescore_top}")


@dataclass(frozen=True)
class SearchSpaceConfig(SearchSpace):
    """The config's `search_space` section: what the mutations may write (`SearchSpace`) and where
    the search starts: one warm start, or several (each trained and put in the first population;
    random search draws its start among them)."""
    warm_start: str | tuple[str, ...] = "adamw_warmstart"  # built-in names or .opt paths

    def __post_init__(self):
        super().__post_init__()
        names = (self.warm_start,) if isinstance(self.warm_start, str) else tuple(self.warm_start)
        object.__setattr__(self, "warm_start", names)
        if not names or len(set(names)) < len(names):
            raise ValueError(f"warm_start: one program or a list of distinct ones is needed, got {_quote(list(names))}")
        import dsl
        from proxy_tasks.engine import BUCKETS
        for name in names:
            try:
                warm = dsl.load(name)
            except dsl.ProgramError as e:
                raise ValueError(f"warm_start: {e}") from None
            verdict = dsl.check(warm, follow_lr=self.follow_lr)
            if not verdict:
                raise ValueError(f"warm_start: {name} fails abstract execution: {verdict.reason}")
            live = len(dsl.strip_dead_code(warm.inline_params()))
            if live > max(BUCKETS):  # every evaluation would fail
                raise ValueError(f"warm_start: {name} has {live} live statements; the engine trains "
                                 f"programs of up to {max(BUCKETS)}")


@dataclass(frozen=True)
class RayConfig:
    address: str | None = None  # None: start a local Ray instance (the embedded default)
    num_cpus: int | None = None  # for the local instance; None: all cores
    workers: int = 2  # evaluator actors

    def __post_init__(self):  # zero workers or cores would wait forever for a result
        if self.workers < 1 or (self.num_cpus is not None and self.num_cpus < 1):
            raise ValueError(f"workers and num_cpus must be at least 1, got {self.workers} and {self.num_cpus}")


@dataclass(frozen=True)
class RunConfig:
    task: TaskConfig = TaskConfig()
    search: SearchConfig = SearchConfig()
    search_space: SearchSpaceConfig = SearchSpaceConfig()
    ray: RayConfig = RayConfig()
    seed: int = 0

    def __post_init__(self):  # a negative seed fails only once the warm start has trained
        if self.seed < 0:
            raise ValueError(f"seed: expected 0 or more, got {self.seed}")
        again = self.search.rescore_seeds
        if again and (set(again) & set(self.task.seeds) or len(again) != len(self.task.seeds)):
            # as many seeds as the task's: the workers' compiled executables serve the re-score too
            raise ValueError(f"search.rescore_seeds: {len(self.task.seeds)} seeds (as many as task.seeds, none of "
                             f"them) are needed; got {list(again)} beside task.seeds {list(self.task.seeds)}")


def load_config(path: str | Path, cls=RunConfig):
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a directory, not a config file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {yaml_why(e)}") from None
    if data is None:
        raise ConfigError(f"{path}: empty; a config names at least its task (see configs/quick.yaml)")
    if _values(data, {}) > MAX_VALUES:
        raise ConfigError(f"{path}: its aliases expand to more than {MAX_VALUES} values")
    return from_dict(cls, data, f"{path}:")


def to_dict(cfg) -> dict:
    """A plain mapping (YAML-ready) of a config dataclass."""
    def plain(x):
        if isinstance(x, tuple):
            return [plain(i) for i in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x
    return plain(dataclasses.asdict(cfg))
