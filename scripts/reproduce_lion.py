"""Lion against AdamW on this project's proxy tasks: which of the paper's findings (Chen et al. 2023,
"Symbolic Discovery of Optimization Algorithms") hold here, and which do not.

    python scripts/reproduce_lion.py [--tasks logreg digits_mlp ...] [--seeds 0 1 2] [--quick]
                                     [--batch-tasks digits_vit digits_mlp] [--batches 32 128 512]
                                     [--out docs/lion_report]

Writes `report.md` and PNG plots into --out:
1. optax's own `optax.lion` and `optax.adamw` on every task, each with a learning-rate sweep (the
   `scripts/baselines.py` grids: Lion's 10x smaller than AdamW's, extended by up to two
   half-decade points when the best lr sits at an edge) for each of three weight decays (Lion's
   10x larger than AdamW's, as the paper advises); best validation loss and accuracy, the gap
   (`lr_sweep.png`);
2. the ratio of the best learning rates, AdamW / Lion (the paper: 3-10x);
3. the gap as the batch grows at a fixed number of training examples (the paper's setting: a fixed
   number of epochs), lr re-tuned per batch at each optimizer's best weight decay (`batch_gap.png`);
4. optimizer-state memory, measured: the bytes of the arrays `tx.init(params)` returns, for optax's
   optimizers and for the project's DSL programs through `dsl.as_optax` (`memory.png`);
5. the dual-beta ablation: Lion (b1 != b2) against signum (Lion with b1 = b2, the sign of a momentum
   EMA), each tuned over four beta settings and Lion's lr sweep at Lion's best weight decay from 1;
   each form's best loss with the standard error over the seeds, and a verdict that calls a form
   better only by more than the seeds' combined standard error (`dual_beta.png`);
6. a "where the paper's claims hold here" section computed from those numbers.

Every training is one `proxy_tasks.Evaluator.evaluate_optax` call (the task's warm-up + cosine
schedule scaled by the lr), training all of --seeds at once; one compile per (task size, optimizer,
weight decay, betas) serves its lr sweep. The default run (seeds 0 1 2) took 23 minutes on 2 CPU cores
shared with other work (about 1000 CPU-seconds; section 5 a little under half of the wall time);
`--quick` is a seconds-long smoke run for the tests.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dsl  # noqa: E402
import proxy_tasks  # noqa: E402
from baselines import OPTIMIZERS as BASELINES  # noqa: E402  (the project's lr grids)

OPTS = ("AdamW", "Lion")
COLORS = {"AdamW": "tab:blue", "Lion": "tab:red", "signum": "tab:purple"}
LR_GRIDS = {o: tuple(BASELINES[o][1]) for o in OPTS}       # AdamW 1e-3..1e-1, Lion 1e-4..1e-2
WD_GRIDS = {"AdamW": (1e-4, 0.1, 1.0), "Lion": (1e-3, 1.0, 10.0)}  # Lion's 10x AdamW's, pairwise
LION_BETAS = (0.9, 0.99)  # the paper's defaults; AdamW keeps optax's (0.9, 0.999), eps 1e-8
EXTEND = 2  # extra half-decade lr points allowed past an edge of the grid
# Section 5, the dual-beta ablation: Lion's (b1, b2) with b1 != b2 against signum (b1 = b2 = b), each
# tuned over as many beta settings (and over Lion's lr grid) at Lion's best weight decay.
FORMS = ("Lion", "signum")
DUAL_GRIDS = {"Lion": ((0.5, 0.9), (0.5, 0.99), (0.9, 0.99), (0.95, 0.98)),
              "signum": tuple((b, b) for b in (0.5, 0.9, 0.95, 0.99))}
QUICK_DUAL_GRIDS = {"Lion": ((0.5, 0.9), (0.9, 0.99)), "signum": ((0.9, 0.9), (0.99, 0.99))}
VERDICTS = ("dual beta better", "signum better", "tie within the seeds' spread")
BATCH_MODES = {"epochs": "fixed number of training examples", "steps": "fixed number of steps"}

# Sizes used instead of a task's defaults, to fit the default run in ~10 minutes on 2 cores.
DEFAULT_SIZES = {
    # the project's own ViT proxy (configs/quickstart.yaml); the default (depth 2, patch 2) is ~9x slower
    "digits_vit": {"width": 32, "depth": 1, "patch": 4},
    # the default (width 64, depth 2, context 32) costs ~3.3 s a training, ~10x this one
    "char_lm": {"width": 32, "depth": 1, "context": 16},
}
QUICK_SIZES = {n: {"steps": 30} for n in ("logreg", "digits_mlp", "digits_vit", "char_lm", "mnist1d")}
QUICK_SIZES["digits_vit"].update(DEFAULT_SIZES["digits_vit"])
QUICK_SIZES["char_lm"].update(DEFAULT_SIZES["char_lm"])
QUICK_SIZES["mnist1d"].update(n_train=1000, n_val=500)


def make_factory(opt: str, wd: float, betas: tuple[float, float] = LION_BETAS):
    """`make_tx(schedule) -> GradientTransformation` for optax's own optimizer (`betas`: Lion's
    (b1, b2); b1 = b2 is signum)."""
    if opt == "AdamW":
        return lambda s: optax.adamw(s, weight_decay=wd)
    return lambda s: optax.lion(s, b1=betas[0], b2=betas[1], weight_decay=wd)


def lr_step(lr: float, direction: int) -> float:
    """The next point of the 1-3-10 ladder above (direction +1) or below (-1) `lr`."""
    e = math.floor(math.log10(lr) + 1e-9)
    m = lr / 10 ** e
    if direction > 0:
        return float(f"{(3 if m < 2 else 10) * 10 ** e:.1g}")
    return float(f"{(1 if m > 2 else 0.3) * 10 ** e:.1g}")


def sweep(ev, make_tx, grid, seeds, bar, label: str) -> dict[float, proxy_tasks.Fitness]:
    """{lr: Fitness} over `grid`, extended by up to EXTEND points while the best is at an edge."""
    res: dict[float, proxy_tasks.Fitness] = {}

    def run(lr):
        bar.set_postfix_str(f"{label} lr {lr:g}")
        res[lr] = ev.evaluate_optax(make_tx, lr, seeds)
        bar.update()

    for lr in grid:
        run(lr)
    for _ in range(EXTEND):
        lrs = sorted(res)
        best = min(lrs, key=lambda x: res[x].loss)
        if not res[best].ok or 0 < lrs.index(best) < len(lrs) - 1:
            break
        bar.total += 1
        bar.refresh()
        run(lr_step(best, -1 if best == lrs[0] else +1))
    return dict(sorted(res.items()))


def best_of(sweeps: dict[float, dict[float, proxy_tasks.Fitness]]):
    """(wd, lr, Fitness, at_edge) with the lowest loss over {wd: {lr: Fitness}}."""
    wd, lr = min(((w, l) for w, s in sweeps.items() for l in s), key=lambda k: sweeps[k[0]][k[1]].loss)
    lrs = list(sweeps[wd])
    return wd, lr, sweeps[wd][lr], lr in (lrs[0], lrs[-1])


def refined_lr(sweep_res: dict[float, proxy_tasks.Fitness]) -> float:
    """The best lr refined by a parabola through the best point and its two neighbours in log10(lr)
    (the grid's lr when the best is at an edge or the parabola does not open upward)."""
    lrs = list(sweep_res)
    y = np.array([sweep_res[l].loss for l in lrs])
    i = int(np.argmin(y))
    if not 0 < i < len(lrs) - 1 or not np.isfinite(y[i - 1:i + 2]).all():
        return lrs[i]
    x = np.log10(lrs[i - 1:i + 2])
    a, b, _ = np.polyfit(x, y[i - 1:i + 2], 2)
    if a <= 0:
        return lrs[i]
    return float(10 ** np.clip(-b / (2 * a), x[0], x[2]))


def spread(f: proxy_tasks.Fitness) -> float:
    """Max - min of the seeds' validation losses (nan with one seed)."""
    s = [x for x in f.seed_losses if math.isfinite(x)]
    return max(s) - min(s) if len(s) > 1 else float("nan")


def std_err(f: proxy_tasks.Fitness) -> float:
    """Standard error of the mean of the seeds' validation losses (nan with one seed or a failure)."""
    s = np.array(f.seed_losses, dtype=float)
    if not f.ok or len(s) < 2 or not np.isfinite(s).all():
        return float("nan")
    return float(s.std(ddof=1) / math.sqrt(len(s)))


def dual_verdict(lion: proxy_tasks.Fitness, signum: proxy_tasks.Fitness) -> tuple[float, float, str]:
    """(Lion's loss - signum's, combined standard error, verdict): a form is better only where its
    loss is lower by more than sqrt(se_Lion^2 + se_signum^2) (0 with one seed: the means alone)."""
    if not (lion.ok and signum.ok):
        v = VERDICTS[0] if lion.ok else VERDICTS[1] if signum.ok else VERDICTS[2]
        return lion.loss - signum.loss if lion.ok or signum.ok else float("nan"), float("nan"), v
    gap = lion.loss - signum.loss
    se = math.hypot(std_err(lion), std_err(signum))
    c = se if math.isfinite(se) else 0.0
    return gap, se, VERDICTS[0] if gap < -c else VERDICTS[1] if gap > c else VERDICTS[2]


def rel_gap(lion: float, adamw: float) -> float:
    """Lion's best loss against AdamW's, in % of AdamW's (negative: Lion better)."""
    return 100.0 * (lion - adamw) / adamw


def state_bytes(state) -> int:
    """Bytes of every array in an optimizer state (the arrays `init` actually returned)."""
    leaves = jax.block_until_ready(jax.tree.leaves(state))
    return int(sum(np.asarray(x).nbytes for x in leaves))


def measure_memory(task: proxy_tasks.Task) -> dict[str, int]:
    params = task.init(jax.random.PRNGKey(0))
    txs = {
        "optax.adamw": optax.adamw(1e-3),
        "optax.lion": optax.lion(1e-3),
        "dsl adamw": dsl.as_optax(dsl.load("adamw"), 1e-3),
        "dsl lion": dsl.as_optax(dsl.load("lion"), 1e-3),
    }
    out = {"params": state_bytes(params), "n_params": int(sum(x.size for x in jax.tree.leaves(params)))}
    out.update({k: state_bytes(tx.init(params)) for k, tx in txs.items()})
    return out


# ---- formatting -------------------------------------------------------------------------------

def fmt_fit(f: proxy_tasks.Fitness) -> str:
    if not f.ok:
        return f.status
    return f"{f.loss:.4f}" + ("" if f.accuracy is None else f" / {f.accuracy:.3f}")


def fmt_se(f: proxy_tasks.Fitness) -> str:
    """"loss ± standard error / accuracy" (no ± with one seed)."""
    if not f.ok:
        return f.status
    se = std_err(f)
    return (f"{f.loss:.4f}" + (f" ± {se:.4f}" if math.isfinite(se) else "")
            + ("" if f.accuracy is None else f" / {f.accuracy:.3f}"))


def fmt_betas(form: str, betas: tuple[float, float]) -> str:
    return f"b {betas[0]:g}" if form == "signum" else f"b1 {betas[0]:g}, b2 {betas[1]:g}"


def size_note(task: proxy_tasks.Task) -> str:
    defaults = proxy_tasks.task_knobs(task.name)
    diff = {k: v for k, v in task.config.items() if defaults[k] != v}
    return ", ".join(f"{k}={v} (default {defaults[k]})" for k, v in sorted(diff.items())) or "defaults"


def verdict(ok: bool) -> str:
    return "**holds**" if ok else "**does not hold**"


# ---- plots ----------------------------------------------------------------------------------------

def _figure(w, h):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h), dpi=80)
    FigureCanvasAgg(fig)
    return fig


def plot_lr(results, best, tasks, path: Path) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FormatStrFormatter
    n = len(tasks)
    cols = min(n + 1, 3)  # one more panel for the legend
    rows = math.ceil((n + 1) / cols)
    fig = _figure(3.6 * cols, 2.9 * rows)
    for k, name in enumerate(tasks):
        ax = fig.add_subplot(rows, cols, k + 1)
        finite = [f.loss for o in OPTS for s in results[name][o].values() for f in s.values() if f.ok]
        for o in OPTS:
            bwd = best[name][o][0]
            for wd, s in results[name][o].items():
                lrs = [l for l, f in s.items() if f.ok]
                main = wd == bwd
                ax.plot(lrs, [s[l].loss for l in lrs], color=COLORS[o], lw=1.8 if main else 0.8,
                        ls="-" if main else "--", alpha=1.0 if main else 0.4, marker="o" if main else None, ms=3)
            _, lr, f, _ = best[name][o]
            if f.ok:
                ax.plot([lr], [f.loss], marker="*", ms=11, color=COLORS[o], mec="k", mew=0.6)
        if finite:
            ax.set_yscale("log")
            ax.set_ylim(min(finite) * 0.9, max(finite) * 1.1)
            for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                axis(FormatStrFormatter("%.2g"))
        ax.set_xscale("log")
        ax.set_title(f"{name} (best wd: " + ", ".join(f"{o} {best[name][o][0]:g}" for o in OPTS) + ")",
                     fontsize=8)
        _style_lr_axis(ax)
    ax = fig.add_subplot(rows, cols, n + 1)
    ax.axis("off")
    handles = []
    for o in OPTS:
        handles += [Line2D([], [], color=COLORS[o], lw=1.8, marker="o", ms=3, label=f"{o}, its best wd"),
                    Line2D([], [], color=COLORS[o], lw=0.8, ls="--", alpha=0.5, label=f"{o}, other wds"),
                    Line2D([], [], color=COLORS[o], ls="", marker="*", ms=11, mec="k", label=f"{o}, best (lr, wd)")]
    ax.legend(handles=handles, fontsize=8, loc="center")
    fig.suptitle("Validation loss vs peak lr (mean over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def plot_dual(dual, dual_best, tasks, path: Path) -> None:
    """Per task: loss vs lr for each beta setting of Lion (b1 != b2) and signum (b1 = b2); each
    form's best setting bold with the seeds' standard error as error bars."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FormatStrFormatter
    n = len(tasks)
    cols = min(n + 1, 3)
    rows = math.ceil((n + 1) / cols)
    fig = _figure(3.6 * cols, 2.9 * rows)
    for k, name in enumerate(tasks):
        ax = fig.add_subplot(rows, cols, k + 1)
        finite = [f.loss for o in FORMS for s in dual[name][o].values() for f in s.values() if f.ok]
        for o in FORMS:
            bb, blr, bf, _ = dual_best[name][o]
            for betas, s in dual[name][o].items():
                lrs = [l for l, f in s.items() if f.ok]
                y = [s[l].loss for l in lrs]
                if betas == bb:
                    err = [std_err(s[l]) for l in lrs]
                    ax.errorbar(lrs, y, yerr=None if not all(map(math.isfinite, err)) else err, color=COLORS[o],
                                lw=1.8, marker="o", ms=3, capsize=2)
                else:
                    ax.plot(lrs, y, color=COLORS[o], lw=0.8, ls="--", alpha=0.4)
            if bf.ok:
                ax.plot([blr], [bf.loss], marker="*", ms=11, color=COLORS[o], mec="k", mew=0.6)
        if finite:  # zoomed on the optima: the forms differ by a few %
            ax.set_yscale("log")
            ax.set_ylim(min(finite) * 0.9, min(max(finite) * 1.1, min(finite) * 2))
            for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                axis(FormatStrFormatter("%.2g"))
        ax.set_xscale("log")
        _, _, v = dual_verdict(dual_best[name]["Lion"][2], dual_best[name]["signum"][2])
        ax.set_title(f"{name}: {v}\n(Lion {fmt_betas('Lion', dual_best[name]['Lion'][0])}; "
                     f"signum {fmt_betas('signum', dual_best[name]['signum'][0])})", fontsize=8)
        _style_lr_axis(ax)
    ax = fig.add_subplot(rows, cols, n + 1)
    ax.axis("off")
    handles = []
    for o, lab in zip(FORMS, ("Lion (b1 != b2)", "signum (b1 = b2)")):
        handles += [Line2D([], [], color=COLORS[o], lw=1.8, marker="o", ms=3, label=f"{lab}, its best betas (± se)"),
                    Line2D([], [], color=COLORS[o], lw=0.8, ls="--", alpha=0.5, label=f"{lab}, other betas"),
                    Line2D([], [], color=COLORS[o], ls="", marker="*", ms=11, mec="k", label=f"{lab}, best")]
    ax.legend(handles=handles, fontsize=8, loc="center")
    fig.suptitle("Dual beta: validation loss vs peak lr at Lion's best weight decay (mean over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def plot_batch(batch_rows, path: Path) -> None:
    modes = sorted({m for _, m in batch_rows}, key=list(BATCH_MODES).index)
    fig = _figure(9, 3.1 * len(modes))
    markers = "osd^v"
    for i, mode in enumerate(modes):
        ax1, ax2 = fig.add_subplot(len(modes), 2, 2 * i + 1), fig.add_subplot(len(modes), 2, 2 * i + 2)
        names = [n for n, m in batch_rows if m == mode]
        for k, name in enumerate(names):
            rows = batch_rows[name, mode]
            bs = [r["batch"] for r in rows]
            for o in OPTS:
                ax1.plot(bs, [r[o][2].loss for r in rows], color=COLORS[o], marker=markers[k % 5],
                         ls="-" if k == 0 else "--", label=f"{name} {o}")
            ax2.plot(bs, [r["gap"] for r in rows], marker=markers[k % 5], label=name)
        ax2.axhline(0, color="gray", lw=0.8)
        ticks = sorted({r["batch"] for n in names for r in batch_rows[n, mode]})
        for ax in (ax1, ax2):
            ax.set_xscale("log", base=2)
            ax.minorticks_off()
            ax.set_xticks(ticks, [str(b) for b in ticks])
            ax.set_xlabel(f"batch ({BATCH_MODES[mode]})", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        ax1.set_ylabel("best validation loss", fontsize=8)
        ax2.set_ylabel("Lion vs AdamW, % of AdamW's loss\n(below 0: Lion better)", fontsize=8)
        ax1.set_title(f"best loss per batch, lr re-tuned ({BATCH_MODES[mode]})", fontsize=9)
        ax2.set_title(f"gap vs batch ({BATCH_MODES[mode]})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def plot_memory(mem, path: Path) -> None:
    names = list(mem)
    keys = ["optax.adamw", "optax.lion", "dsl adamw", "dsl lion"]
    colors = ["tab:blue", "tab:red", "lightsteelblue", "lightsalmon"]
    fig = _figure(max(5.0, 1.3 * len(names) + 2), 3.2)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for j, (k, c) in enumerate(zip(keys, colors)):
        ax.bar(x + (j - 1.5) * 0.2, [mem[n][k] / mem[n]["params"] for n in names], 0.2, color=c, label=k)
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel("optimizer state bytes / parameter bytes", fontsize=8)
    ax.set_title("Optimizer state memory (measured from tx.init(params))", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)


# ---- main -----------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=proxy_tasks.names(), choices=proxy_tasks.names())
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="seeds of every training (default 0 1 2; the means and standard errors are over them)")
    ap.add_argument("--batch-tasks", nargs="*", default=None,
                    help="tasks of the batch-size study (default: digits_vit and digits_mlp where in --tasks)")
    ap.add_argument("--batches", type=int, nargs="+", default=None,
                    help="batch sizes of the batch study (default 32 128 512; --quick: a quarter and all of the task's)")
    ap.add_argument("--batch-mode", choices=[*BATCH_MODES, "both"], default=None,
                    help="what stays fixed as the batch grows: the training examples (epochs, the paper's "
                         "setting), the steps, or both (default both; --quick: epochs)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and grids (a smoke run for the tests)")
    ap.add_argument("--out", default="docs/lion_report", help="output folder (default docs/lion_report)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    tasks, seeds = list(args.tasks), tuple(args.seeds)
    if args.batch_tasks is None:
        batch_tasks = [t for t in ("digits_vit", "digits_mlp") if t in tasks]
    else:
        batch_tasks = list(args.batch_tasks)
        missing = [t for t in batch_tasks if t not in tasks]
        if missing:
            ap.error(f"--batch-tasks {' '.join(missing)}: not in --tasks (the study reuses their weight decay)")
    sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    mode = args.batch_mode or ("epochs" if args.quick else "both")
    modes = list(BATCH_MODES) if mode == "both" else [mode]
    lr_grids = {o: g[1:4] for o, g in LR_GRIDS.items()} if args.quick else LR_GRIDS
    wd_grids = {o: g[:2] for o, g in WD_GRIDS.items()} if args.quick else WD_GRIDS
    dual_grids = QUICK_DUAL_GRIDS if args.quick else DUAL_GRIDS
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # one make_tx object per (optimizer, weight decay), shared by every task and batch size
    txs = {(o, wd): make_factory(o, wd) for o in OPTS for wd in wd_grids[o]}
    evs = {n: proxy_tasks.Evaluator(n, **sizes.get(n, {})) for n in tasks}

    def batch_list(task):
        if args.batches:
            return sorted(set(args.batches))
        return sorted({max(1, task.batch // 4), task.batch}) if args.quick else [32, 128, 512]

    total = sum(len(wd_grids[o]) * len(lr_grids[o]) for o in OPTS) * len(tasks)
    total += sum(len(lr_grids[o]) for o in OPTS) * len(modes) * sum(
        sum(b != evs[t].task.batch for b in batch_list(evs[t].task)) for t in batch_tasks)
    total += len(lr_grids["Lion"]) * sum(b != LION_BETAS for o in FORMS for b in dual_grids[o]) * len(tasks)
    bar = tqdm(total=total, desc="lion vs adamw", unit="sweep point")

    # 1. lr x wd sweeps
    results: dict[str, dict[str, dict[float, dict[float, proxy_tasks.Fitness]]]] = {}
    best: dict[str, dict[str, tuple]] = {}
    for name in tasks:
        ev = evs[name]
        results[name] = {o: {} for o in OPTS}
        for o in OPTS:
            for wd in wd_grids[o]:
                results[name][o][wd] = sweep(ev, txs[o, wd], lr_grids[o], seeds, bar, f"{name} {o} wd {wd:g}")
        best[name] = {o: best_of(results[name][o]) for o in OPTS}

    # 3. the batch study: lr re-tuned at each optimizer's best wd from 1; what stays fixed is the
    # number of training examples ("epochs") or of steps; the task's own batch reuses section 1's sweep
    batch_rows: dict[tuple[str, str], list[dict]] = {}
    for mode in modes:
        for name in batch_tasks:
            base = evs[name].task
            rows = []
            for b in batch_list(base):
                steps = max(1, round(base.steps * base.batch / b)) if mode == "epochs" else base.steps
                row = {"batch": b, "steps": base.steps if b == base.batch else steps}
                if b != base.batch:
                    ev_b = proxy_tasks.Evaluator(name, **{**sizes.get(name, {}), "batch": b, "steps": steps})
                for o in OPTS:
                    wd = best[name][o][0]
                    s = (results[name][o][wd] if b == base.batch
                         else sweep(ev_b, txs[o, wd], lr_grids[o], seeds, bar, f"{name} {mode} batch {b} {o}"))
                    lr = min(s, key=lambda x: s[x].loss)
                    row[o] = (wd, lr, s[lr], lr in (min(s), max(s)))
                row["gap"] = rel_gap(row["Lion"][2].loss, row["AdamW"][2].loss)
                rows.append(row)
            batch_rows[name, mode] = rows

    # 5. dual beta: Lion (b1 != b2) against signum (b1 = b2), each over its beta grid and Lion's lr
    # sweep, at Lion's best wd from 1 (whose sweep at the default betas is reused)
    dual_txs: dict[tuple, object] = {}
    dual: dict[str, dict[str, dict[tuple[float, float], dict[float, proxy_tasks.Fitness]]]] = {}
    dual_best: dict[str, dict[str, tuple]] = {}
    for name in tasks:
        wd = best[name]["Lion"][0]
        dual[name] = {o: {} for o in FORMS}
        for o in FORMS:
            for betas in dual_grids[o]:
                if betas == LION_BETAS:
                    dual[name][o][betas] = results[name]["Lion"][wd]
                    continue
                if (betas, wd) not in dual_txs:
                    dual_txs[betas, wd] = make_factory("Lion", wd, betas)
                dual[name][o][betas] = sweep(evs[name], dual_txs[betas, wd], lr_grids["Lion"], seeds, bar,
                                             f"{name} {o} {fmt_betas(o, betas)}")
        dual_best[name] = {o: best_of(dual[name][o]) for o in FORMS}
    bar.close()

    # 4. memory
    mem = {name: measure_memory(evs[name].task) for name in tasks}

    # plots
    plot_lr(results, best, tasks, out / "lr_sweep.png")
    pngs = ["lr_sweep.png"]
    if batch_rows:
        plot_batch(batch_rows, out / "batch_gap.png")
        pngs.append("batch_gap.png")
    plot_memory(mem, out / "memory.png")
    pngs.append("memory.png")
    plot_dual(dual, dual_best, tasks, out / "dual_beta.png")
    pngs.append("dual_beta.png")

    elapsed = time.perf_counter() - t_start
    text = render(args, argv, tasks, seeds, evs, lr_grids, wd_grids, results, best, batch_rows, mem,
                  dual_grids, dual, dual_best, elapsed)
    (out / "report.md").write_text(text)
    print(f"report written to {out / 'report.md'} (plots: {', '.join(str(out / p) for p in pngs)}; "
          f"{elapsed:.0f} s)")
    return 0


def render(args, argv, tasks, seeds, evs, lr_grids, wd_grids, results, best, batch_rows, mem,
           dual_grids, dual, dual_best, elapsed) -> str:
    cmd = " ".join(["python scripts/reproduce_lion.py", *(sys.argv[1:] if argv is None else argv)])
    L = [
        "# Lion vs AdamW on the proxy tasks: does the paper reproduce here?",
        "",
        f"Generated by `{cmd.strip()}` in {elapsed:.0f} s on {os.cpu_count()} CPU cores "
        f"(JAX {jax.__version__}, optax {optax.__version__}, {platform.machine()}); "
        "every number below is computed by that run, including the verdicts."
        + (" **Quick mode: tiny sizes and grids, a smoke run only.**" if args.quick else ""),
        "",
        "## Set-up",
        f"- Optimizers: optax's own `optax.adamw` (b1 0.9, b2 0.999, eps 1e-8) and `optax.lion` "
        f"(b1 {LION_BETAS[0]}, b2 {LION_BETAS[1]}), both with decoupled weight decay multiplied by the lr "
        "(optax's convention, the paper's too).",
        "- Schedule: each task's own (linear warm-up over 10% of the steps, then cosine decay to 0), "
        "scaled by the peak lr.",
        f"- Peak lr grids: " + "; ".join(f"{o} {', '.join(f'{x:g}' for x in lr_grids[o])}" for o in OPTS)
        + f" (Lion's 10x smaller, as the paper advises); a sweep whose best lr sits at an edge is extended "
        f"by up to {EXTEND} half-decade points past it.",
        "- Weight decay grids: " + "; ".join(f"{o} {', '.join(f'{x:g}' for x in wd_grids[o])}" for o in OPTS)
        + " (Lion's 10x AdamW's, pairwise: the paper's rule keeps lr x wd about equal).",
        f"- Seeds {', '.join(map(str, seeds))}: every number is the mean over them; the validation "
        "loss is the score (lower is better), accuracy is shown beside it.",
        "- Dual beta (section 5): `optax.lion` with b1 != b2 over (b1, b2) "
        + ", ".join(f"({a:g}, {b:g})" for a, b in dual_grids["Lion"]) + ", and with b1 = b2 = b (signum) over b "
        + ", ".join(f"{a:g}" for a, _ in dual_grids["signum"]) + ", each with Lion's lr sweep at Lion's best "
        "weight decay from section 1.",
        "- Task sizes (the 2-core budget):",
    ]
    for n in tasks:
        L.append(f"  - `{n}`: {size_note(evs[n].task)}")
    L += ["  (`digits_vit` runs at the project's own ViT proxy size, `configs/quickstart.yaml`, "
          "and `char_lm` at a smaller size than its defaults, which cost about 10x as much per training.)"
          if not args.quick else "  (quick mode: 30 steps)", ""]

    # 1. main table
    L += ["## 1. Best validation loss per task (lr and weight decay tuned for each optimizer)", "",
          "| task | steps, batch | AdamW loss / acc | AdamW lr, wd | Lion loss / acc | Lion lr, wd | "
          "Lion vs AdamW (loss) | loss diff | accuracy diff | seed spread (A / L) |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    edge_notes = []
    for n in tasks:
        a, li = best[n]["AdamW"], best[n]["Lion"]
        t = evs[n].task
        cells = []
        for o, (wd, lr, f, edge) in (("AdamW", a), ("Lion", li)):
            cells += [fmt_fit(f), f"{lr:g}{' †' if edge else ''}, {wd:g}"]
            if edge:
                edge_notes.append(f"{n} {o}")
        gap = rel_gap(li[2].loss, a[2].loss)
        acc = ("-" if a[2].accuracy is None or li[2].accuracy is None
               else f"{100 * (li[2].accuracy - a[2].accuracy):+.1f} pt")
        L.append(f"| {n} | {t.steps}, {t.batch} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | "
                 f"{gap:+.1f}% | {li[2].loss - a[2].loss:+.4f} | {acc} | {spread(a[2]):.4f} / {spread(li[2]):.4f} |")
    L += ["", "Lion vs AdamW: (Lion's loss - AdamW's) / AdamW's; negative means Lion is better. "
          "Seed spread: max - min of the seeds' losses at the best setting (nan with one seed)."
          + (f" †: the best lr is at the edge of the (extended) sweep: {', '.join(edge_notes)}; "
             "the optimum may lie beyond it." if edge_notes else ""),
          "", "![validation loss vs lr](lr_sweep.png)", ""]

    # 2. lr ratio
    L += ["## 2. Best learning rate: AdamW / Lion (paper: 3-10x)", "",
          "| task | AdamW best lr | Lion best lr | ratio (grid) | ratio (parabola-refined) | "
          "wd ratio Lion / AdamW |", "|---|---|---|---|---|---|"]
    ratios = {}
    for n in tasks:
        a, li = best[n]["AdamW"], best[n]["Lion"]
        r = a[1] / li[1]
        rr = refined_lr(results[n]["AdamW"][a[0]]) / refined_lr(results[n]["Lion"][li[0]])
        ratios[n] = (r, rr, li[0] / a[0])
        L.append(f"| {n} | {a[1]:g}{' †' if a[3] else ''} | {li[1]:g}{' †' if li[3] else ''} | {r:.3g} | "
                 f"{rr:.3g} | {li[0] / a[0]:.3g} |")
    L += ["", "The grid is half-decade (1, 3, 10, ...), so a grid ratio is one of 1, 3, 3.3, 10, 30, ...; "
          "the refined ratio puts a parabola through each best point and its neighbours in log lr "
          "(†: best lr at the edge of the sweep, not refined).", ""]

    # 3. batch
    if batch_rows:
        L += ["## 3. The gap as the batch grows (paper: Lion's gain grows with the batch)", "",
              "Each optimizer's lr is re-tuned at every batch, at its best weight decay from section 1. "
              "*Fixed examples* keeps the number of training examples of the task's own size (the paper "
              "compares batch sizes at a fixed number of epochs), so a larger batch takes fewer steps; "
              "*fixed steps* keeps the task's steps, so a larger batch sees more data.", "",
              "| task | fixed | batch | steps | AdamW loss / acc (lr) | Lion loss / acc (lr) | Lion vs AdamW | "
              "loss diff |", "|---|---|---|---|---|---|---|---|"]
        for (n, mode), rows in batch_rows.items():
            for r in rows:
                c = [f"{fmt_fit(r[o][2])} ({r[o][1]:g}{' †' if r[o][3] else ''})" for o in OPTS]
                L.append(f"| {n} | {mode} | {r['batch']} | {r['steps']} | {c[0]} | {c[1]} | {r['gap']:+.1f}% | "
                         f"{r['Lion'][2].loss - r['AdamW'][2].loss:+.4f} |")
        L += ["", "†: the best lr is at the edge of the (extended) sweep.", "",
              "![gap vs batch](batch_gap.png)", ""]

    # 4. memory
    L += ["## 4. Optimizer state memory (measured)", "",
          "Bytes of the arrays returned by `tx.init(params)` on each task's parameters "
          "(`task.init(jax.random.PRNGKey(0))`), summed over the state's leaves; the DSL programs are "
          "`dsl.as_optax(dsl.load(...))`, which keeps only the memory slots a program uses.", "",
          "| task | parameters | param bytes | optax.adamw | optax.lion | Lion / AdamW | dsl adamw | dsl lion | "
          "Lion / AdamW (dsl) |", "|---|---|---|---|---|---|---|---|---|"]
    for n in tasks:
        m = mem[n]
        L.append(f"| {n} | {m['n_params']:,} | {m['params']:,} | {m['optax.adamw']:,} | {m['optax.lion']:,} | "
                 f"{m['optax.lion'] / m['optax.adamw']:.3f} | {m['dsl adamw']:,} | {m['dsl lion']:,} | "
                 f"{m['dsl lion'] / m['dsl adamw']:.3f} |")
    L += ["", "![optimizer state memory](memory.png)", ""]

    # 5. dual beta
    n_dual = {o: len(dual_grids[o]) for o in FORMS}
    L += ["## 5. Dual beta: Lion (b1 != b2) against signum (b1 = b2)", "",
          "Lion's update is the sign of an interpolation of the gradient and the momentum with b1, while the "
          "momentum is tracked with another b2; with b1 = b2 = b the program is signum (the sign of a momentum "
          "EMA, Bernstein et al. 2018). The paper finds b1 = b2 worse. Both forms are `optax.lion` at Lion's "
          f"best weight decay from section 1, each tuned over {n_dual['Lion']} and {n_dual['signum']} beta "
          "settings (see Set-up) and Lion's lr sweep (with its edge extension); the best of each is shown.", "",
          "| task | wd | Lion (b1 != b2) loss ± se / acc | Lion betas, lr | signum (b1 = b2) loss ± se / acc | "
          "signum b, lr | Lion - signum (loss) | combined se | verdict |",
          "|---|---|---|---|---|---|---|---|---|"]
    dual_v = {}
    for n in tasks:
        li, sg = dual_best[n]["Lion"], dual_best[n]["signum"]
        gap, se, v = dual_verdict(li[2], sg[2])
        dual_v[n] = (gap, se, v)
        rel = f" ({100 * gap / sg[2].loss:+.1f}%)" if math.isfinite(gap) and sg[2].ok else ""
        L.append(f"| {n} | {best[n]['Lion'][0]:g} | {fmt_se(li[2])} | {fmt_betas('Lion', li[0])}, lr {li[1]:g}"
                 f"{' †' if li[3] else ''} | {fmt_se(sg[2])} | {fmt_betas('signum', sg[0])}, lr {sg[1]:g}"
                 f"{' †' if sg[3] else ''} | {gap:+.4f}{rel} | {se:.4f} | {v} |")
    L += ["", f"± se: the standard error of the mean over the {len(seeds)} seeds' losses at that setting"
          + (" (one seed: no spread is measured, so the verdict compares the losses alone)" if len(seeds) < 2 else "")
          + ". Verdict: a form is better only where its loss is lower by more than the combined standard error "
          "sqrt(se_Lion^2 + se_signum^2)"
          + ("; both forms pick their best of as many beta settings, so the selection favours neither"
             if n_dual["Lion"] == n_dual["signum"] else "")
          + ". †: the best lr is at the edge of the (extended) sweep. Every setting's sweep is in the appendix.",
          "", "![dual beta](dual_beta.png)", ""]

    # 5. verdicts
    L += ["## Where the paper's claims hold here", ""]
    wins = [n for n in tasks if rel_gap(best[n]["Lion"][2].loss, best[n]["AdamW"][2].loss) < 0]
    losses = [n for n in tasks if n not in wins]

    def noisy(n):
        d = abs(best[n]["Lion"][2].loss - best[n]["AdamW"][2].loss)
        s = max(spread(best[n]["Lion"][2]), spread(best[n]["AdamW"][2]))
        return math.isfinite(s) and d <= s

    def gaps(ns):
        return ", ".join(f"`{n}` {rel_gap(best[n]['Lion'][2].loss, best[n]['AdamW'][2].loss):+.1f}%"
                         + (" (within the seed spread)" if noisy(n) else "") for n in ns)

    L.append(f"- **Lion reaches a lower validation loss than AdamW** (the paper: on most tasks): "
             f"{verdict(len(wins) > len(tasks) / 2)} here. Lion wins on {len(wins)} of {len(tasks)} tasks"
             + (f" ({gaps(wins)})" if wins else "")
             + (f" and loses on {gaps(losses)}" if losses else "") + ".")
    acc_t = [n for n in tasks if best[n]["AdamW"][2].accuracy is not None and best[n]["Lion"][2].accuracy is not None]
    acc_w = [n for n in acc_t if best[n]["Lion"][2].accuracy > best[n]["AdamW"][2].accuracy]
    if acc_t:
        L.append(f"- By validation accuracy (at each optimizer's best-loss setting; the paper reports accuracy) "
                 f"Lion is ahead on {len(acc_w)} of {len(acc_t)} tasks ("
                 + ", ".join(f"`{n}` {100 * (best[n]['Lion'][2].accuracy - best[n]['AdamW'][2].accuracy):+.1f} pt"
                             for n in acc_t) + ").")
    def wd_gain(n, o):
        small = min(f.loss for f in results[n][o][min(results[n][o])].values())
        return 100.0 * (small - best[n][o][2].loss) / small

    in_range = [n for n in tasks if 2.95 <= ratios[n][0] <= 10.5]
    in_ref = [n for n in tasks if 3.0 <= ratios[n][1] <= 10.0]
    L.append(f"- **Lion's best lr is 3-10x smaller than AdamW's**: {verdict(len(in_range) > len(tasks) / 2)} "
             f"on the grid: the ratio is in [3, 10] on {len(in_range)} of {len(tasks)} tasks ("
             + ", ".join(f"`{n}` {ratios[n][0]:.3g}" for n in tasks) + "); refined by a parabola, "
             f"{len(in_ref)} of {len(tasks)} (" + ", ".join(f"`{n}` {ratios[n][1]:.3g}" for n in tasks) + ").")
    wd_in = [n for n in tasks if 2.95 <= ratios[n][2] <= 10.5]
    L.append(f"- **Lion wants a 3-10x larger weight decay** (the paper's rule): "
             f"{verdict(len(wd_in) > len(tasks) / 2)}: Lion's best wd is 3-10x AdamW's on {len(wd_in)} of "
             f"{len(tasks)} tasks ("
             + ", ".join(f"`{n}` {ratios[n][2]:.3g}x" for n in tasks) + "); the grids pair each AdamW wd "
             "with 10x it for Lion, so 10x means both chose the same rung. Tuning the wd (against the "
             "grid's smallest, each at its best lr) lowered the best loss by "
             + "; ".join(o + " " + ", ".join(f"`{n}` {wd_gain(n, o):.1f}%" for n in tasks) for o in OPTS) + ".")
    memory_steps = 1.0 / (1.0 - LION_BETAS[1])
    for (n, mode), rows in batch_rows.items():
        g = [r["gap"] for r in rows]
        mono = all(g[i + 1] < g[i] for i in range(len(g) - 1))
        how = ("improves at every larger batch" if mono else
               "is better at the largest batch than at the smallest, but not at every step" if g[-1] < g[0]
               else "is worse at the largest batch than at the smallest")
        short = [r for r in rows if r["steps"] < memory_steps]
        L.append(f"- **Lion's gain grows with the batch** on `{n}`, {BATCH_MODES[mode]}: {verdict(mono)}. "
                 "Lion vs AdamW goes " + " -> ".join(f"{x:+.1f}%" for x in g) + " over batches "
                 + ", ".join(f"{r['batch']} ({r['steps']} steps)" for r in rows)
                 + f": Lion's standing {how}; Lion is {'ahead' if g[-1] < 0 else 'behind'} at the largest batch."
                 + (f" At batch {', '.join(str(r['batch']) for r in short)} the run is shorter than Lion's "
                    f"momentum memory (about {memory_steps:.0f} steps at b2 {LION_BETAS[1]}), which may handicap "
                    "Lion there." if short else ""))
    by_v = {v: [n for n in tasks if dual_v[n][2] == v] for v in VERDICTS}

    def dual_cells(ns):
        return ", ".join(f"`{n}` {dual_v[n][0]:+.4f} ± {dual_v[n][1]:.4f}" for n in ns)

    dual_wins = by_v[VERDICTS[0]]
    L.append(f"- **Lion's two betas beat one (b1 = b2, signum)** (the paper: b1 = b2 is worse): "
             f"{verdict(len(dual_wins) > len(tasks) / 2)} here. With each form's betas and lr tuned (Lion - "
             "signum loss ± the combined standard error), the dual-beta form is better by more than the seeds' "
             f"spread on {len(dual_wins)} of {len(tasks)} tasks"
             + (f" ({dual_cells(dual_wins)})" if dual_wins else "")
             + (f"; signum is better on {dual_cells(by_v[VERDICTS[1]])}" if by_v[VERDICTS[1]] else "")
             + (f"; they tie within the spread on {dual_cells(by_v[VERDICTS[2]])}" if by_v[VERDICTS[2]] else "")
             + ".")
    rl = [mem[n]["optax.lion"] / mem[n]["optax.adamw"] for n in tasks]
    rd = [mem[n]["dsl lion"] / mem[n]["dsl adamw"] for n in tasks]
    half = all(0.45 <= x <= 0.55 for x in rl + rd)
    L.append(f"- **Lion's optimizer state is half of AdamW's** (one moment instead of two): {verdict(half)}: "
             f"measured Lion / AdamW {min(rl):.3f}-{max(rl):.3f} with optax, {min(rd):.3f}-{max(rd):.3f} with "
             "the project's DSL programs (a step counter of a few bytes is all that differs from exactly half).")
    if edge_notes:
        L.append(f"- Caveat: the best lr sits at the edge of the extended sweep for {', '.join(edge_notes)}.")
    steps = sorted({evs[n].task.steps for n in tasks} | {r["steps"] for rs in batch_rows.values() for r in rs})
    L += [f"- Caveat: these are {steps[0]}-{steps[-1]}-step trainings of small models (at most "
          f"{max(mem[n]['n_params'] for n in tasks):,} parameters) on CPU, against the paper's far longer "
          "runs of far larger models; Lion's momentum (b2 0.99, a memory of about 100 steps) is slow for runs "
          "this short, and sections 1-3 keep each optimizer's default betas (only "
          "section 5 tunes Lion's).", ""]

    # appendix
    L += ["## Appendix: every sweep point (validation loss, mean over seeds; best per row in bold)", ""]
    for n in tasks:
        L += [f"**{n}** (`{evs[n].task!r}`)", "", "| optimizer | wd | loss at each peak lr |", "|---|---|---|"]
        for o in OPTS:
            for wd, s in results[n][o].items():
                L.append(f"| {o} | {wd:g} | {sweep_cells(s)} |")
        L.append("")
    L += ["### Dual beta (section 5): every beta setting at Lion's best weight decay", ""]
    for n in tasks:
        L += [f"**{n}** (wd {best[n]['Lion'][0]:g})", "", "| form | betas | loss at each peak lr |", "|---|---|---|"]
        for o in FORMS:
            for betas, s in dual[n][o].items():
                L.append(f"| {o} | {fmt_betas(o, betas)} | {sweep_cells(s)} |")
        L.append("")
    return "\n".join(L)


def _style_lr_axis(ax) -> None:
    """The labels, ticks and grid of a loss-against-peak-lr panel."""
    ax.set_xlabel("peak lr", fontsize=8)
    ax.set_ylabel("validation loss (log)", fontsize=8)
    ax.tick_params(labelsize=7, which="both")
    ax.grid(alpha=0.3, which="both")


def sweep_cells(sweep: dict) -> str:
    """A sweep's losses per peak lr, the best in bold."""
    best = min(sweep, key=lambda x: sweep[x].loss)
    cells = [f"{lr:g}: {fmt_fit(f).split(' /')[0]}" for lr, f in sweep.items()]
    return ", ".join(f"**{c}**" if lr == best else c for lr, c in zip(sweep, cells))


if __name__ == "__main__":
    raise SystemExit(main())
