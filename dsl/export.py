"""Export a program as stand-alone optimizer source for users' training scripts (optax or PyTorch).

`export(program, "optax")` writes a module with `make_optimizer(learning_rate, **hyper)` returning an
`optax.GradientTransformation`; `export(program, "pytorch")` writes a `torch.optim.Optimizer`
subclass. Either needs only its framework: the generated code never imports lionsearch.

The code is the program's live statements, one line each, in the framework's own ops, with the op
table's semantics (see dsl/ops.py): ops with a restricted domain (div, sqrt, log, power, ...) go
through small helpers that return 0 outside the domain, reductions are per tensor and broadcast
back, and every output has the parameter's shape and dtype. The formulas below are the op table's,
written out for each framework; `tests/test_export.py` checks every op against the table.
"""
from __future__ import annotations

import keyword
import re

from .analysis import state_slots, strip_dead_code
from .ops import OPS
from .program import MEMORY, STEP, Program
from .text import to_text

TARGETS = ("optax", "pytorch")

# ---- per-op code: an expression template over the argument strings {0}, {1}, {2} ------------------
# Helpers (functions the generated module defines) are named `_name`; each op lists the helpers its
# template calls. Arguments are always atoms (a name, or a parenthesised constant).

_JAX = {
    "neg": "-{0}", "abs": "jnp.abs({0})", "sign": "jnp.sign({0})", "square": "{0} * {0}",
    "sqrt": "_sqrt({0})", "rsqrt": "_rsqrt({0})", "reciprocal": "_div(1.0, {0})",
    "exp": "jnp.exp({0})", "expm1": "jnp.expm1({0})", "log": "_log({0})", "log1p": "_log1p({0})",
    "sin": "jnp.sin({0})", "cos": "jnp.cos({0})", "tan": "jnp.tan({0})",
    "arcsin": "_arcsin({0})", "arccos": "_arccos({0})", "arctan": "jnp.arctan({0})",
    "sinh": "jnp.sinh({0})", "cosh": "jnp.cosh({0})", "tanh": "jnp.tanh({0})",
    "arcsinh": "jnp.arcsinh({0})", "arctanh": "_arctanh({0})", "relu": "jnp.maximum({0}, 0.0)",
    "sigmoid": "0.5 * (jnp.tanh(0.5 * {0}) + 1.0)",
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": "_div({0}, {1})",
    "maximum": "jnp.maximum({0}, {1})", "minimum": "jnp.minimum({0}, {1})", "power": "_power({0}, {1})",
    "arctan2": "jnp.arctan2({0}, {1})",
    "interp": "(1.0 - {2}) * {0} + {2} * {1}", "clip": "jnp.minimum(jnp.maximum({0}, {1}), {2})",
    "norm": "_norm({0})", "mean": "_mean({0})", "rms": "_rms({0})", "std": "_std({0})",
    "max_abs": "_max_abs({0})", "dot": "_dot({0}, {1})", "cosine_sim": "_cosine_sim({0}, {1})",
}

_JAX_HELPERS = {
    "_div": '''def _div(x, y):
    """x / y; 0 where y == 0."""
    ok = y != 0
    return jnp.where(ok, x / jnp.where(ok, y, 1.0), 0.0)''',
    "_sqrt": '''def _sqrt(x):
    """sqrt(x); 0 where x < 0."""
    return jnp.where(x >= 0, jnp.sqrt(jnp.where(x >= 0, x, 1.0)), 0.0)''',
    "_rsqrt": '''def _rsqrt(x):
    """1 / sqrt(x); 0 where x <= 0."""
    return jnp.where(x > 0, 1.0 / jnp.sqrt(jnp.where(x > 0, x, 1.0)), 0.0)''',
    "_log": '''def _log(x):
    """log(x); 0 where x <= 0."""
    return jnp.where(x > 0, jnp.log(jnp.where(x > 0, x, 1.0)), 0.0)''',
    "_log1p": '''def _log1p(x):
    """log(1 + x); 0 where x <= -1."""
    return jnp.where(x > -1, jnp.log1p(jnp.where(x > -1, x, 0.0)), 0.0)''',
    "_arcsin": '''def _arcsin(x):
    """arcsin(x); 0 where |x| > 1."""
    ok = jnp.abs(x) <= 1
    return jnp.where(ok, jnp.arcsin(jnp.where(ok, x, 0.0)), 0.0)''',
    "_arccos": '''def _arccos(x):
    """arccos(x); 0 where |x| > 1."""
    ok = jnp.abs(x) <= 1
    return jnp.where(ok, jnp.arccos(jnp.where(ok, x, 0.0)), 0.0)''',
    "_arctanh": '''def _arctanh(x):
    """arctanh(x); 0 where |x| >= 1."""
    ok = jnp.abs(x) < 1
    return jnp.where(ok, jnp.arctanh(jnp.where(ok, x, 0.0)), 0.0)''',
    "_power": '''def _power(x, y):
    """Real-valued x ** y: a negative base needs an integer exponent; 0 where undefined."""
    y = jnp.broadcast_to(y, jnp.broadcast_shapes(jnp.shape(x), jnp.shape(y)))
    ok = (x > 0) | ((x < 0) & (jnp.floor(y) == y)) | ((x == 0) & (y >= 0))
    return jnp.where(ok, jnp.power(jnp.where(ok, x, 1.0), jnp.where(ok, y, 1.0)), 0.0)''',
    "_norm": '''def _norm(x):
    """The L2 norm of the tensor, broadcast to its shape."""
    return jnp.zeros_like(x) + jnp.sqrt(jnp.sum(x * x))''',
    "_mean": '''def _mean(x):
    """The mean of the tensor, broadcast to its shape."""
    return jnp.zeros_like(x) + jnp.mean(x)''',
    "_rms": '''def _rms(x):
    """sqrt(mean(x ** 2)) of the tensor, broadcast to its shape."""
    return jnp.zeros_like(x) + jnp.sqrt(jnp.mean(x * x))''',
    "_std": '''def _std(x):
    """The standard deviation (ddof 0) of the tensor, broadcast to its shape."""
    return jnp.zeros_like(x) + jnp.std(x)''',
    "_max_abs": '''def _max_abs(x):
    """max |x| over the tensor, broadcast to its shape."""
    return jnp.zeros_like(x) + jnp.max(jnp.abs(x))''',
    "_dot": '''def _dot(x, y):
    """sum(x * y) over the tensor, broadcast to its shape."""
    x, y = jnp.broadcast_arrays(x, y)
    return jnp.zeros_like(x) + jnp.sum(x * y)''',
    "_cosine_sim": '''def _cosine_sim(x, y):
    """dot(x, y) / (norm(x) * norm(y)), broadcast to the tensor's shape; 0 if a norm is 0."""
    x, y = jnp.broadcast_arrays(x, y)
    den = jnp.sqrt(jnp.sum(x * x)) * jnp.sqrt(jnp.sum(y * y))
    ok = den != 0
    return jnp.zeros_like(x) + jnp.where(ok, jnp.sum(x * y) / jnp.where(ok, den, 1.0), 0.0)''',
    "_full": '''def _full(x, w):
    """x (a scalar or a tensor) at w's shape and dtype."""
    return jnp.broadcast_to(jnp.asarray(x, dtype=w.dtype), jnp.shape(w))''',
}

_TORCH = {
    "neg": "-{0}", "abs": "torch.abs({0})", "sign": "torch.sign({0})", "square": "{0} * {0}",
    "sqrt": "_sqrt({0})", "rsqrt": "_rsqrt({0})", "reciprocal": "_div(torch.ones_like({0}), {0})",
    "exp": "torch.exp({0})", "expm1": "torch.expm1({0})", "log": "_log({0})", "log1p": "_log1p({0})",
    "sin": "torch.sin({0})", "cos": "torch.cos({0})", "tan": "torch.tan({0})",
    "arcsin": "_arcsin({0})", "arccos": "_arccos({0})", "arctan": "torch.atan({0})",
    "sinh": "torch.sinh({0})", "cosh": "torch.cosh({0})", "tanh": "torch.tanh({0})",
    "arcsinh": "torch.asinh({0})", "arctanh": "_arctanh({0})", "relu": "torch.clamp_min({0}, 0.0)",
    "sigmoid": "0.5 * (torch.tanh(0.5 * {0}) + 1.0)",
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": "_div({0}, {1})",
    "maximum": "torch.maximum({0}, {1})", "minimum": "torch.minimum({0}, {1})", "power": "_power({0}, {1})",
    "arctan2": "torch.atan2({0}, {1})",
    "interp": "(1.0 - {2}) * {0} + {2} * {1}", "clip": "torch.minimum(torch.maximum({0}, {1}), {2})",
    "norm": "_norm({0})", "mean": "_mean({0})", "rms": "_rms({0})", "std": "_std({0})",
    "max_abs": "_max_abs({0})", "dot": "_dot({0}, {1})", "cosine_sim": "_cosine_sim({0}, {1})",
}

# In the PyTorch code every value is a tensor (scalars are 0-dim tensors on the parameter's device),
# except that pure arithmetic keeps number literals as they are.
_TORCH_ARITH = frozenset({"neg", "square", "add", "sub", "mul", "interp"})

_TORCH_HELPERS = {
    "_div": '''def _div(x, y):
    """x / y; 0 where y == 0."""
    ok = y != 0
    return torch.where(ok, x / torch.where(ok, y, 1.0), 0.0)''',
    "_sqrt": '''def _sqrt(x):
    """sqrt(x); 0 where x < 0."""
    return torch.where(x >= 0, torch.sqrt(torch.where(x >= 0, x, 1.0)), 0.0)''',
    "_rsqrt": '''def _rsqrt(x):
    """1 / sqrt(x); 0 where x <= 0."""
    return torch.where(x > 0, 1.0 / torch.sqrt(torch.where(x > 0, x, 1.0)), 0.0)''',
    "_log": '''def _log(x):
    """log(x); 0 where x <= 0."""
    return torch.where(x > 0, torch.log(torch.where(x > 0, x, 1.0)), 0.0)''',
    "_log1p": '''def _log1p(x):
    """log(1 + x); 0 where x <= -1."""
    return torch.where(x > -1, torch.log1p(torch.where(x > -1, x, 0.0)), 0.0)''',
    "_arcsin": '''def _arcsin(x):
    """arcsin(x); 0 where |x| > 1."""
    ok = torch.abs(x) <= 1
    return torch.where(ok, torch.asin(torch.where(ok, x, 0.0)), 0.0)''',
    "_arccos": '''def _arccos(x):
    """arccos(x); 0 where |x| > 1."""
    ok = torch.abs(x) <= 1
    return torch.where(ok, torch.acos(torch.where(ok, x, 0.0)), 0.0)''',
    "_arctanh": '''def _arctanh(x):
    """arctanh(x); 0 where |x| >= 1."""
    ok = torch.abs(x) < 1
    return torch.where(ok, torch.atanh(torch.where(ok, x, 0.0)), 0.0)''',
    "_power": '''def _power(x, y):
    """Real-valued x ** y: a negative base needs an integer exponent; 0 where undefined."""
    x, y = torch.broadcast_tensors(x, y)
    ok = (x > 0) | ((x < 0) & (torch.floor(y) == y)) | ((x == 0) & (y >= 0))
    return torch.where(ok, torch.pow(torch.where(ok, x, 1.0), torch.where(ok, y, 1.0)), 0.0)''',
    "_norm": '''def _norm(x):
    """The L2 norm of the tensor, broadcast to its shape."""
    return torch.zeros_like(x) + torch.sqrt(torch.sum(x * x))''',
    "_mean": '''def _mean(x):
    """The mean of the tensor, broadcast to its shape."""
    return torch.zeros_like(x) + torch.mean(x)''',
    "_rms": '''def _rms(x):
    """sqrt(mean(x ** 2)) of the tensor, broadcast to its shape."""
    return torch.zeros_like(x) + torch.sqrt(torch.mean(x * x))''',
    "_std": '''def _std(x):
    """The standard deviation (ddof 0) of the tensor, broadcast to its shape."""
    return torch.zeros_like(x) + torch.std(x, unbiased=False)''',
    "_max_abs": '''def _max_abs(x):
    """max |x| over the tensor, broadcast to its shape."""
    return torch.zeros_like(x) + torch.max(torch.abs(x))''',
    "_dot": '''def _dot(x, y):
    """sum(x * y) over the tensor, broadcast to its shape."""
    x, y = torch.broadcast_tensors(x, y)
    return torch.zeros_like(x) + torch.sum(x * y)''',
    "_cosine_sim": '''def _cosine_sim(x, y):
    """dot(x, y) / (norm(x) * norm(y)), broadcast to the tensor's shape; 0 if a norm is 0."""
    x, y = torch.broadcast_tensors(x, y)
    den = torch.sqrt(torch.sum(x * x)) * torch.sqrt(torch.sum(y * y))
    ok = den != 0
    return torch.zeros_like(x) + torch.where(ok, torch.sum(x * y) / torch.where(ok, den, 1.0), 0.0)''',
    "_full": '''def _full(x, w):
    """x (a scalar or a tensor) at w's shape and dtype."""
    return torch.broadcast_to(torch.as_tensor(x, dtype=w.dtype, device=w.device), w.shape)''',
}

_HELPER = re.compile(r"\b(_[a-z0-9_]+)\(")

# Names the generated code uses itself: a program slot or hyper-parameter with one of these names
# (or a Python keyword, or a leading underscore) gets a trailing underscore in the export.
_RESERVED = frozenset({
    "jax", "jnp", "optax", "torch", "NamedTuple", "ProgramState", "make_optimizer", "init", "params",
    "grads", "state", "learning_rate", "zeros", "leaves", "tree", "ms", "vs", "outs", "updates", "self",
    "group", "closure", "loss", "super", "dict", "float", "zip", "callable",
})

_JAX_CHECKED = set(_JAX) == set(OPS) and set(_TORCH) == set(OPS)
assert _JAX_CHECKED, "dsl/export.py: every op in dsl/ops.py needs an optax and a pytorch form"


class ExportError(ValueError):
    pass


def export(program: Program, to: str, name: str | None = None) -> str:
    """Stand-alone source for `program` (dead code removed) in framework `to` ("optax" or
    "pytorch"); `name` names the PyTorch class (default: from the program's name)."""
    if to not in TARGETS:
        raise ExportError(f"unknown export target {to!r}; choose one of {', '.join(TARGETS)}")
    p = strip_dead_code(program)
    return (_optax if to == "optax" else _pytorch)(p, _Names(p), name)


class _Names:
    """Python-safe names for the program's slots and hyper-parameters."""

    def __init__(self, p: Program):
        self.map: dict[str, str] = {}
        taken = set(p.inputs) | {s.out for s in p.statements} | {k for k, _ in p.params}
        for n in sorted(taken):
            if keyword.iskeyword(n) or n in _RESERVED or n.startswith("_"):
                new = n.lstrip("_") or "x"
                new = new + "_"
                while new in taken or new in _RESERVED or keyword.iskeyword(new):
                    new += "_"
                taken.add(new)
                self.map[n] = new

    def __call__(self, n: str) -> str:
        return self.map.get(n, n)


def _const(x: float) -> str:
    s = repr(float(x))
    return f"({s})" if s.startswith("-") else s


def _ref(p: Program) -> str:
    """The name that holds the parameter tensor all along (a program may reassign `w`)."""
    return "_like" if any(s.out == "w" for s in p.statements) else "w"


def _body(p: Program, names: _Names, table: dict, torch: bool) -> tuple[list[str], set[str]]:
    """The statement lines of the per-tensor function and the helpers they call."""
    full = {"w", "g", "m", "v"}  # values known to be at the parameter's shape
    lines, helpers, ref = [], set(), _ref(p)
    known = _TORCH_HELPERS if torch else _JAX_HELPERS
    for s in p.statements:
        op = OPS[s.op]
        slots = [a for a in s.args if isinstance(a, str)]
        args = []
        for a in s.args:
            if isinstance(a, str):
                text = names(a)
            elif torch and (s.op not in _TORCH_ARITH or not slots):
                text = f"_t({float(a)!r})"
            else:
                text = _const(a)
            if op.reduces and not (isinstance(a, str) and a in full):
                text = f"_full({text}, {ref})"
            args.append(text)
        expr = table[s.op].format(*args)
        helpers.update(h for h in _HELPER.findall(expr) if h in known)
        lines.append(f"{names(s.out)} = {expr}")
        if op.reduces or any(a in full for a in slots):
            full.add(s.out)
        else:
            full.discard(s.out)
    return lines, helpers


def _header(p: Program, what: str) -> list[str]:
    text = to_text(p).rstrip("\n").splitlines()
    return ['"""' + what + ", exported by lionsearch from this program (dead code removed):", "",
            *("    " + t for t in text), "",
            "`update` is subtracted from the weights (w <- w - update); m and v start at zero.",
            "Self-contained: it does not import lionsearch.", '"""']


def _signature_args(p: Program, names: _Names) -> tuple[list[str], list[str]]:
    """The per-tensor function's parameters: the inputs it reads, then the hyper-parameters."""
    ins = ["w", "g", "m", "v", "lr"] + ([STEP] if p.uses_step else [])
    return [names(a) for a in ins], [names(k) for k, _ in p.params]


def _prologue(p: Program, torch: bool) -> list[str]:
    lines = ["_like = w  # the parameter tensor (the program reassigns `w`)"] if _ref(p) == "_like" else []
    if torch:
        ref = _ref(p)
        scalars = ["lr"] + ([STEP] if p.uses_step else []) + [k for k, _ in p.params]
        lines.append(f"_t = lambda x: torch.as_tensor(x, dtype={ref}.dtype, device={ref}.device)")
        lines += [f"{n} = _t({n})" for n in scalars]
    return lines


def _epilogue(p: Program, names: _Names) -> str:
    ref = _ref(p)
    return f"return {', '.join(f'_full({names(k)}, {ref})' for k in ('update', 'm', 'v'))}"


def _optax(p: Program, names: _Names, _cls: str | None) -> str:
    lines, helpers = _body(p, names, _JAX, torch=False)
    slots = state_slots(p)
    ins, hyper = _signature_args(p, names)
    out = [*_header(p, "An optax optimizer"),
           "from typing import NamedTuple", "", "import jax", "import jax.numpy as jnp", "import optax", ""]
    for h in sorted(helpers | {"_full"}):
        out += ["", _JAX_HELPERS[h], ""]
    out += ["", f"def _train({', '.join(ins + hyper)}):",
            '    """One step on one tensor: returns (update, m, v), each at w\'s shape and dtype."""']
    out += ["    " + line for line in _prologue(p, False) + lines + [_epilogue(p, names)]]
    out += ["", "", "class ProgramState(NamedTuple):",
            "    count: jax.Array  # steps taken so far",
            f"    m: optax.Params | None  # {'memory slot m' if 'm' in slots else 'unused: None'}",
            f"    v: optax.Params | None  # {'memory slot v' if 'v' in slots else 'unused: None'}", "", ""]
    hp = "".join(f", {names(k)}={x!r}" for k, x in p.params)
    call = ", ".join(["w", "g", "m", "v", "lr"] + (["step"] if p.uses_step else []) + hyper)
    zm, zv = ("zeros()" if k in slots else "None" for k in MEMORY)
    um, uv = (k if k in slots else "None" for k in MEMORY)
    out += [f"def make_optimizer(learning_rate{hp}) -> optax.GradientTransformation:",
            '    """The optimizer; `learning_rate` (a float or an optax schedule of the step count) feeds',
            '    the program\'s `lr` input."""', "",
            "    def init(params):",
            "        zeros = lambda: jax.tree.map(jnp.zeros_like, params)",
            f"        return ProgramState(jnp.zeros([], jnp.int32), {zm}, {zv})", "",
            "    def update(grads, state, params=None):",
            "        if params is None:",
            '            raise ValueError("this optimizer needs params: call update(grads, state, params)")',
            "        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate",
            "        step = (state.count + 1).astype(jnp.float32)",
            "        leaves, tree = jax.tree.flatten(params)",
            "        zeros = [jnp.zeros_like(x) for x in leaves]",
            "        ms = zeros if state.m is None else tree.flatten_up_to(state.m)",
            "        vs = zeros if state.v is None else tree.flatten_up_to(state.v)",
            f"        outs = [_train({call})",
            "                for w, g, m, v in zip(leaves, tree.flatten_up_to(grads), ms, vs)]",
            "        updates = tree.unflatten([-o[0] for o in outs])",
            *(f"        {k} = tree.unflatten([o[{i}] for o in outs])" for i, k in ((1, "m"), (2, "v")) if k in slots),
            f"        return updates, ProgramState(optax.safe_increment(state.count), {um}, {uv})", "",
            "    return optax.GradientTransformation(init, update)", ""]
    return "\n".join(out)


def _class_name(p: Program, name: str | None) -> str:
    if name:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ExportError(f"{name!r} is not a valid Python class name")
        return name
    stem = re.sub(r"\.opt$", "", p.name.replace("\\", "/").rsplit("/", 1)[-1])
    cls = "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", stem) if w)
    return cls if cls.isidentifier() and cls not in _RESERVED and cls != "torch" else "SearchedOptimizer"


def _pytorch(p: Program, names: _Names, name: str | None) -> str:
    lines, helpers = _body(p, names, _TORCH, torch=True)
    slots = state_slots(p)
    ins, hyper = _signature_args(p, names)
    cls = _class_name(p, name)
    out = [*_header(p, "A PyTorch optimizer"), "import torch", ""]
    for h in sorted(helpers | {"_full"}):
        out += ["", _TORCH_HELPERS[h], ""]
    out += ["", f"def _train({', '.join(ins + hyper)}):",
            '    """One step on one tensor: returns (update, m, v), each at w\'s shape and dtype."""']
    out += ["    " + line for line in _prologue(p, True) + lines + [_epilogue(p, names)]]
    hp_init = "".join(f", {names(k)}={x!r}" for k, x in p.params)
    hp_dict = ", ".join(["lr=lr"] + [f"{h}={h}" for h in hyper])
    mem = [f'state["{k}"]' if k in slots else "torch.zeros_like(p)" for k in MEMORY]
    call = ", ".join(["p", "p.grad", *mem, 'group["lr"]'] + (['float(state["step"])'] if p.uses_step else [])
                     + [f'group["{h}"]' for h in hyper])
    out += ["", "", f"class {cls}(torch.optim.Optimizer):",
            '    """`lr` feeds the program\'s `lr` input (a learning-rate scheduler may set it per step)."""', "",
            f"    def __init__(self, params, lr{hp_init}):",
            f"        super().__init__(params, dict({hp_dict}))", "",
            "    @torch.no_grad()",
            "    def step(self, closure=None):",
            "        loss = None",
            "        if closure is not None:",
            "            with torch.enable_grad():",
            "                loss = closure()",
            "        for group in self.param_groups:",
            '            for p in group["params"]:',
            "                if p.grad is None:",
            "                    continue",
            "                state = self.state[p]",
            "                if not state:",
            '                    state["step"] = 0',
            *(f'                    state["{k}"] = torch.zeros_like(p)' for k in MEMORY if k in slots),
            '                state["step"] += 1',
            f"                update, m, v = _train({call})",
            *(f'                state["{k}"] = {k}' for k in MEMORY if k in slots),
            "                p.sub_(update)",
            "        return loss", ""]
    return "\n".join(out)
