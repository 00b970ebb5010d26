"""Export a program as stand-alone optimizer source for users' training scripts (optax or PyTorch).

`export(program, "optax")` writes a module with `make_optimizer(learning_rate, **hyper)` returning an
`optax.GradientTransformation`; `export(program, "pytorch")` writes a `torch.optim.Optimizer`
subclass. Either needs only its framework: the generated code never imports lionsearch.

The code is the program's live statements, one line each, in the framework's own ops, with the op
table's semantics (see dsl/ops.py): ops with a restricted domain (div, sqrt, log, power, ...) go
through small helpers that return 0 outside the domain, reductions are per tensor and broadcast
back, and every output has the parameter's shape and dtype. Each op's code is its `src` in the op
table with `xp` bound to the framework; `tests/test_export.py` checks every op against the table.
"""
from __future__ import annotations

import keyword
import re

from .analysis import state_slots, strip_dead_code
from .ops import OPS
from .program import MEMORY, STEP, Program
from .text import to_text

TARGETS = ("optax", "pytorch")

# ---- per-op code, from the op table's `src` (see dsl/ops.py) ------------------------------------
# Each target names the module `xp` stands for, the functions it names differently, and `_full`.
_NAMESPACES = {
    "optax": ("jnp", {}, "jnp.broadcast_to(jnp.asarray(x, dtype=w.dtype), jnp.shape(w))"),
    "pytorch": ("torch", {"arcsin": "asin", "arccos": "acos", "arctan": "atan", "arcsinh": "asinh",
                          "arctanh": "atanh", "arctan2": "atan2", "power": "pow"},
                "torch.broadcast_to(torch.as_tensor(x, dtype=w.dtype, device=w.device), w.shape)"),
}
_PARAMS = ("x", "y", "z")
_FULL = 'def _full(x, w):\n    """x (a scalar or a tensor) at w\'s shape and dtype."""\n    return {}'


def _src(op) -> str:
    """The op's `src`, or by default its infix form or the array function of its name."""
    if op.src:
        return op.src
    if op.infix:
        return f"{op.infix}x" if op.arity == 1 else f"x {op.infix} y"
    return f"xp.{op.name}({', '.join(_PARAMS[:op.arity])})"


def _render(src: str, to: str, args=_PARAMS) -> str:
    """`src` in target `to`'s functions, with the arguments (atoms) in place of x, y, z."""
    mod, renamed = _NAMESPACES[to][:2]
    src = re.sub(r"\bxp\.(\w+)", lambda m: f"{mod}.{renamed.get(m[1], m[1])}", src)
    return re.sub(r"\b[xyz]\b", lambda m: args[_PARAMS.index(m[0])], src)


def _is_helper(op) -> bool:
    """Domain guards and reductions become a named helper, so that each statement stays one short line."""
    return op.reduces or "where(" in _src(op) or "\n" in _src(op)


def _helper(op, to: str) -> str:
    params = _PARAMS[:op.arity]
    *lines, value = _render(_src(op), to).split("\n")
    what = f"{op.name}({', '.join(params)})" + (" of the whole tensor" if op.reduces else "")
    what += f": {op.doc}" if op.doc else ""
    return "\n".join([f"def _{op.name}({', '.join(params)}):", f'    """{what}."""',
                      *("    " + t for t in lines), f"    return {value}"])


# Names the generated code uses itself: a program slot or hyper-parameter with one of these names
# (or a Python keyword, or a leading underscore) gets a trailing underscore in the export.
_RESERVED = frozenset({
    "jax", "jnp", "optax", "torch", "NamedTuple", "ProgramState", "make_optimizer", "init", "params",
    "grads", "state", "learning_rate", "zeros", "leaves", "tree", "ms", "vs", "outs", "updates", "self",
    "group", "closure", "loss", "super", "dict", "float", "zip", "callable", "betas", "weight_decay",
    "extra", "extras",
})

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
                new = (n.lstrip("_") or "x") + "_"
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


def _body(p: Program, names: _Names, to: str) -> tuple[list[str], dict[str, str]]:
    """The statement lines of the per-tensor function and the helpers they call (name -> source)."""
    full = {"w", "g", *p.memory}  # values known to be at the parameter's shape
    lines, ref, helpers = [], _ref(p), {"_full": _FULL.format(_NAMESPACES[to][2])}
    for s in p.statements:
        op = OPS[s.op]
        slots = [a for a in s.args if isinstance(a, str)]
        # In the PyTorch code every value is a tensor (scalars are 0-dim tensors on the parameter's
        # device), except that pure arithmetic (no torch function) keeps number literals as they are.
        tensor_consts = to == "pytorch" and ("xp." in _src(op) or not slots)
        args = []
        for a in s.args:
            text = names(a) if isinstance(a, str) else f"_t({float(a)!r})" if tensor_consts else _const(a)
            if op.reduces and not (isinstance(a, str) and a in full):
                text = f"_full({text}, {ref})"
            args.append(text)
        if _is_helper(op):
            helpers[f"_{op.name}"] = _helper(op, to)
            lines.append(f"{names(s.out)} = _{op.name}({', '.join(args)})")
        else:
            lines.append(f"{names(s.out)} = {_render(_src(op), to, args)}")
        if op.reduces or any(a in full for a in slots):
            full.add(s.out)
        else:
            full.discard(s.out)
    return lines, helpers


def _header(p: Program, what: str) -> list[str]:
    text = to_text(p).rstrip("\n").splitlines()
    return ['"""' + what + ", exported by lionsearch from this program (dead code removed):", "",
            *("    " + t for t in text), "",
            f"`update` is subtracted from the weights (w <- w - update); {', '.join(p.memory[:-1])} and "
            f"{p.memory[-1]} start at zero.",
            "Self-contained: it does not import lionsearch.", '"""']


def _signature_args(p: Program, names: _Names) -> tuple[list[str], list[str]]:
    """The per-tensor function's parameters: the inputs it reads, then the hyper-parameters."""
    return [names(a) for a in p.inputs], [names(k) for k, _ in p.params]


def _prologue(p: Program, torch: bool) -> list[str]:
    lines = ["_like = w  # the parameter tensor (the program reassigns `w`)"] if _ref(p) == "_like" else []
    if torch:
        ref = _ref(p)
        scalars = ["lr"] + ([STEP] if p.uses_step else []) + [k for k, _ in p.params]
        # scalars (hyper-parameters, lr, step, constants) in float32 at least, as torch.optim keeps
        # them: in bfloat16, b2 = 0.999 would round to 1.0 and AdamW's bias correction to 0; as
        # 0-dim tensors they do not change the dtype of the parameter-sized values they meet
        lines.append(f"_t = lambda x: torch.as_tensor(x, dtype=torch.promote_types({ref}.dtype, torch.float32), "
                     f"device={ref}.device)")
        lines += [f"{n} = _t({n})" for n in scalars]
    return lines


def _epilogue(p: Program, names: _Names) -> str:
    ref = _ref(p)
    return f"return {', '.join(f'_full({names(k)}, {ref})' for k in p.outputs)}"


def _functions(p: Program, names: _Names, to: str) -> list[str]:
    """The helpers, then `_train`: the program's step on one tensor."""
    lines, helpers = _body(p, names, to)
    ins, hyper = _signature_args(p, names)
    out = [line for h in sorted(helpers) for line in ("", helpers[h], "")]
    out += ["", f"def _train({', '.join(ins + hyper)}):",
            f'    """One step on one tensor: returns ({", ".join(p.outputs)}), each at w\'s shape and dtype."""']
    return out + ["    " + line for line in _prologue(p, to == "pytorch") + lines + [_epilogue(p, names)]]


def _optax(p: Program, names: _Names, _cls: str | None) -> str:
    slots = state_slots(p)
    _, hyper = _signature_args(p, names)
    extra = p.memory[2:]  # in the state's `extra` tuple, in order (the code below is today's without them)
    live = lambda k: f"{k} (memory)" if k in slots else f"{k} (unused: None)"
    out = [*_header(p, "An optax optimizer"),
           "from typing import NamedTuple", "", "import jax", "import jax.numpy as jnp", "import optax", "",
           *_functions(p, names, "optax")]
    out += ["", "", "class ProgramState(NamedTuple):",
            "    count: jax.Array  # steps taken so far",
            f"    m: optax.Params | None  # {'memory slot m' if 'm' in slots else 'unused: None'}",
            f"    v: optax.Params | None  # {'memory slot v' if 'v' in slots else 'unused: None'}",
            *([f"    extra: tuple = ()  # the memory slots after v: {', '.join(map(live, extra))}"] if extra else []),
            "", ""]
    hp = "".join(f", {names(k)}={x!r}" for k, x in p.params)
    call = ", ".join(["w", "g", "m", "v"] + (["*extra"] if extra else []) + ["lr"] + (["step"] if p.uses_step else [])
                     + hyper)
    zm, zv = ("zeros()" if k in slots else "None" for k in MEMORY)
    um, uv = (k if k in slots else "None" for k in MEMORY)
    tup = lambda xs: f"({', '.join(xs)}{',' if len(xs) == 1 else ''})"
    zx = f", {tup(['zeros()' if k in slots else 'None' for k in extra])}" if extra else ""
    ux = ", extra" if extra else ""
    out += [f"def make_optimizer(learning_rate{hp}) -> optax.GradientTransformationExtraArgs:",
            '    """The optimizer; `learning_rate` (a float or an optax schedule of the step count) feeds',
            '    the program\'s `lr` input. Every argument can be injected and scheduled with',
            '    `optax.inject_hyperparams(make_optimizer)(learning_rate=..., ...)`."""', "",
            "    def init(params):",
            "        zeros = lambda: jax.tree.map(jnp.zeros_like, params)",
            f"        return ProgramState(jnp.zeros([], jnp.int32), {zm}, {zv}{zx})", "",
            "    def update(grads, state, params=None, **extra_args):  # optax's extra arguments: ignored",
            "        if params is None:",
            '            raise ValueError("this optimizer needs params: call update(grads, state, params)")',
            "        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate",
            "        step = (state.count + 1).astype(jnp.float32)",
            "        leaves, tree = jax.tree.flatten(params)",
            "        zeros = [jnp.zeros_like(x) for x in leaves]",
            "        ms = zeros if state.m is None else tree.flatten_up_to(state.m)",
            "        vs = zeros if state.v is None else tree.flatten_up_to(state.v)",
            *(["        extras = [zeros if x is None else tree.flatten_up_to(x) for x in state.extra]"] if extra else []),
            f"        outs = [_train({call})",
            f"                for w, g, m, v{', *extra' if extra else ''} in zip(leaves, tree.flatten_up_to(grads), "
            f"ms, vs{', *extras' if extra else ''})]",
            "        updates = tree.unflatten([-o[0] for o in outs])",
            *(f"        {k} = tree.unflatten([o[{i}] for o in outs])" for i, k in ((1, "m"), (2, "v")) if k in slots),
            *([f"        extra = " + tup([f"tree.unflatten([o[{i}] for o in outs])" if k in slots else "None"
                                           for i, k in enumerate(extra, 3)])] if extra else []),
            f"        return updates, ProgramState(optax.safe_increment(state.count), {um}, {uv}{ux})", "",
            "    return optax.GradientTransformationExtraArgs(init, update)", ""]
    return "\n".join(out)


def _class_name(p: Program, name: str | None) -> str:
    if name:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ExportError(f"{name!r} is not a valid Python class name")
        return name
    stem = re.sub(r"\.opt$", "", p.name.replace("\\", "/").rsplit("/", 1)[-1])
    cls = "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", stem) if w)
    return cls if cls.isidentifier() and cls not in _RESERVED and cls != "torch" else "SearchedOptimizer"


# torch.optim's names for the hyper-parameters of the built-ins (b1 and b2 go together as `betas`)
_TORCH_NAMES = {"wd": "weight_decay"}
_TORCH_LR = 1e-3  # torch.optim.Adam's and AdamW's default


def _torch_hyper(p: Program, names: _Names) -> tuple[list[str], dict[str, str]]:
    """The constructor's keyword arguments (torch's names, `betas` for b1 and b2) and, for each
    program hyper-parameter, how `step` reads it from a param group."""
    params = dict(p.params)
    betas = "b1" in params and "b2" in params
    args = [f"betas=({params['b1']!r}, {params['b2']!r})"] if betas else []
    reads = {}
    for k, x in p.params:
        if betas and k in ("b1", "b2"):
            reads[k] = f'group["betas"][{int(k == "b2")}]'
            continue
        torch_name = _TORCH_NAMES.get(k, names(k))
        args.append(f"{torch_name}={x!r}")
        reads[k] = f'group["{torch_name}"]'
    return args, reads


def _pytorch(p: Program, names: _Names, name: str | None) -> str:
    slots = state_slots(p)
    cls = _class_name(p, name)
    out = [*_header(p, "A PyTorch optimizer"), "import torch", "", *_functions(p, names, "pytorch")]
    args, reads = _torch_hyper(p, names)
    keys = [a.split("=", 1)[0] for a in args]
    mem = [f'state["{k}"]' if k in slots else "torch.zeros_like(p)" for k in p.memory]
    call = ", ".join(["p", "p.grad", *mem, 'group["lr"]'] + (['float(state["step"])'] if p.uses_step else [])
                     + [reads[k] for k, _ in p.params])
    out += ["", "", f"class {cls}(torch.optim.Optimizer):",
            '    """A torch.optim optimizer: param groups with their own hyper-parameters, `state_dict` and',
            '    `load_state_dict`, `zero_grad`, and `step(closure)`. `lr` feeds the program\'s `lr` input',
            '    (a learning-rate scheduler may set it per step)."""', "",
            f"    def __init__(self, params, lr={_TORCH_LR!r}{''.join(', ' + a for a in args)}):",
            f"        super().__init__(params, dict({', '.join(['lr=lr'] + [f'{k}={k}' for k in keys])}))", "",
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
            *(f'                    state["{k}"] = torch.zeros_like(p)' for k in p.memory if k in slots),
            '                state["step"] += 1',
            f"                update, m, v{', *extra' if len(p.memory) > 2 else ''} = _train({call})",
            *(f'                state["{k}"] = {k}' for k in MEMORY if k in slots),
            *(f'                state["{k}"] = extra[{i}]' for i, k in enumerate(p.memory[2:]) if k in slots),
            "                p.sub_(update)",
            "        return loss", ""]
    return "\n".join(out)
