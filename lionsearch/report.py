"""`lionsearch report RUN`: one self-contained HTML page of a run, to look at rather than read.

The page holds the config, the search's progress (failures marked), the hall of fame, the best
programs with the diff from each one's parent, the lineage of the final (or best) program as a
graph, the children that training was spared, the funnel's table, the simplification's steps and
the final program with its verdict. Plots are inline PNGs: the file needs no network to view. A
section the run does not have yet is one line saying so. With `watch`, the page is rewritten every
few seconds and reloads itself while a process holds the run directory, and is written a last
time, without the reload, once none does.
"""
from __future__ import annotations

import base64
import difflib
import html
import json
import math
import tempfile
import time
from pathlib import Path

import yaml

import dsl
from search import inspect
from search.record import Record, best_distinct
from search.rundir import RunDirError, holder

TITLES = {"config": "Config", "progress": "Search progress", "pareto": "Hall of fame",
          "best": "Best programs", "lineage": "Lineage", "spared": "Children spared training",
          "funnel": "Funnel", "simplify": "Simplification", "final": "Final program"}

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}
img{max-width:100%}.note,.missing{color:#777;font-style:italic}.add{color:#1a7f37}.del{color:#cf222e}
.verdict{font-size:1.1em;font-weight:bold}"""


def _esc(x) -> str:
    return html.escape(str(x))


def _loss(x) -> str:
    if not isinstance(x, (int, float)) or isinstance(x, bool):  # None, or a damaged file's value
        return "failed" if x is None else _esc(x)
    return "failed" if not math.isfinite(x) else f"{x:.4f}"


def _png(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list, rows: list[list]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def markdown(text: str) -> str:
    """The Markdown the run directory's reports use (headings, tables, fenced code, lines) as HTML."""
    out, rows, code = [], [], None
    for line in text.splitlines() + [""]:
        if code is not None:
            if line.startswith("```"):
                out.append(f"<pre>{_esc(chr(10).join(code))}</pre>")
                code = None
            else:
                code.append(line)
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):  # not the separator row
                rows.append(cells)
            continue
        if rows:
            out.append(_table(rows[0], rows[1:]))
            rows = []
        if line.startswith("```"):
            code = []
        elif line.startswith("#"):
            out.append(f"<h3>{_esc(line.lstrip('#').strip())}</h3>")
        elif line.strip():
            out.append(f"<p>{_esc(line)}</p>")
    return "\n".join(out)


def _diff(parent: Record | None, r: Record) -> str:
    if parent is None:
        return '<p class="note">no parent: the warm start</p>'
    lines = difflib.unified_diff(parent.text.splitlines(), r.text.splitlines(), lineterm="", n=1)
    body = [f'<span class="{"add" if l[0] == "+" else "del" if l[0] == "-" else ""}">{_esc(l)}</span>'
            for l in list(lines)[2:]]  # past the file headers
    return f"<p>diff from its parent, id {parent.id} ({_esc(r.mutation)}):</p><pre>{chr(10).join(body)}</pre>"


def _best(k: int, r: Record, parent: Record | None) -> str:
    """One of the best programs: its live statements, then the diff from its parent."""
    live = dsl.strip_dead_code(r.program)
    return (f"<h3>#{k} id {r.id}: fitness {_loss(r.loss)}</h3><p>its live statements ({len(live)} of "
            f"{len(r.program)}):</p><pre>{_esc(dsl.to_text(live))}</pre>{_diff(parent, r)}")


def _changes(chain: list[Record]) -> list[tuple[Record, int]]:
    """The lineage's steps that changed the fitness (with the root and the end), each with the
    number of neutral mutations (same fitness: dead code, or an equal function) just before it."""
    kept, neutral = [(chain[0], 0)], 0
    for parent, r in zip(chain, chain[1:]):
        if r is chain[-1] or r.loss != parent.loss:
            kept.append((r, neutral))
            neutral = 0
        else:
            neutral += 1
    return kept


def _lineage_png(chain: list[Record], out: Path) -> Path:
    """The lineage as a networkx graph drawn top to bottom: a node per step that changed the
    fitness (id and fitness), each edge labelled with its mutation and the neutral ones before it."""
    import networkx as nx
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = _changes(chain)
    g = nx.DiGraph()
    for depth, (r, _) in enumerate(steps):
        g.add_node(r.id, depth=depth, label=f"id {r.id}\n{_loss(r.loss)}")
    for (a, _), (b, neutral) in zip(steps, steps[1:]):
        what = b.mutation if len(b.mutation) <= 60 else b.mutation[:57] + "..."
        g.add_edge(a.id, b.id, mutation=(f"{neutral} neutral, then " if neutral else "") + what)
    pos = nx.multipartite_layout(g, subset_key="depth", align="horizontal", scale=-1)
    fig = Figure(figsize=(9, 1.2 + 0.8 * len(steps)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    nx.draw_networkx(g, pos, ax=ax, labels=nx.get_node_attributes(g, "label"), node_size=1500,
                     node_color="#dde8f5", font_size=7, arrows=True)
    nx.draw_networkx_edge_labels(g, pos, ax=ax, edge_labels=nx.get_edge_attributes(g, "mutation"), font_size=7,
                                 label_pos=0.5, rotate=False, bbox={"fc": "white", "ec": "none", "alpha": 0.8})
    ax.set_title(f"lineage of id {chain[-1].id}: {len(chain) - 1} mutation(s) from the warm start, "
                 f"{len(steps) - 1} of them changed the fitness (shown)", fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(out)
    return out


def _compact(text: str) -> str:
    """A config with its lists on one line each (as written where it is not valid YAML)."""
    try:
        return yaml.safe_dump(yaml.safe_load(text), sort_keys=False, default_flow_style=None, width=100)
    except yaml.YAMLError:
        return text


def _final(run: Path) -> tuple[dict | None, str | None]:
    """final.json (or None), and why it cannot be read where it cannot."""
    f = run / "final.json"
    try:
        data = json.loads(f.read_text()) if f.is_file() else None
    except (ValueError, UnicodeDecodeError):
        return None, f"{f}: not valid JSON"
    return (data, None) if data is None or isinstance(data, dict) else (None, f"{f}: not a JSON object")


def sections(run: Path) -> dict[str, str | None]:
    """Each section's HTML, or None where the run does not have it (yet); a part of the run that
    cannot be read is the section's note, never an error."""
    out: dict[str, str | None] = dict.fromkeys(TITLES)
    cfg = run / "config.yaml"
    out["config"] = f"<pre>{_esc(_compact(cfg.read_text(errors='replace')))}</pre>" if cfg.is_file() else None
    try:
        recs = inspect.records(run)
    except (RunDirError, inspect.InspectError) as e:
        damaged = f'<p class="missing">the history cannot be read: {_esc(e)}</p>'
        out.update(progress=damaged, best=damaged)
        recs = []
    final, bad = _final(run)
    if bad:
        out["final"] = f'<p class="missing">{_esc(bad)}</p>'
    if recs:
        with tempfile.TemporaryDirectory() as tmp:
            progress, _, front = inspect.plot_run(run, tmp)
            out["progress"] = _png(progress, "best fitness over evaluations")
            front_rows = [[n, r.id, _loss(r.loss)] for n, r in inspect.pareto(recs).front()]
            out["pareto"] = _png(front, "hall of fame") + _table(["live statements", "id", "fitness"], front_rows)
            target = final.get("candidate") if final else None
            if not (isinstance(target, int) and 0 <= target < len(recs)):  # none yet, or not this history's
                target = None
            chain = inspect.lineage(recs, target)
            whose = f"the final program's (candidate {target})" if target is not None else "the best program's"
            every = _table(["id", "fitness", "mutation"], [[r.id, _loss(r.loss), r.mutation] for r in chain])
            out["lineage"] = (f"<p>{whose}, from id {chain[0].id} ({_esc(chain[0].source)})</p>"
                              + _png(_lineage_png(chain, Path(tmp) / "lineage.png"), "lineage")
                              + f"<details><summary>all {len(chain) - 1} mutations</summary>{every}</details>")
        by_id = {r.id: r for r in recs}
        out["best"] = "".join(_best(k, r, by_id.get(r.parent)) for k, r in enumerate(best_distinct(recs, 5), 1))
        c = inspect.counters(recs)
        out["spared"] = _table(["children", "count", "share"], [
            ["proposed", c["proposed"], ""], ["trained", c["trained"], ""],
            ["dead code only", c["dead_code_only"], f"{c['dead_code_rate']:.0%}"],
            ["answered by the cache", c["cache_hits"], f"{c['cache_rate']:.0%}"],
            ["rejected (malformed or abstract execution)", c["rejected"], f"{c['rejected_rate']:.0%}"],
            ["spared in all", "", f"{c['saved_rate']:.0%}"], ["failures", c["failures"], ""]])
    for key, name in (("funnel", "selection.md"), ("simplify", "simplify.md")):
        f = run / name
        if f.is_file():
            out[key] = markdown(f.read_text(errors="replace"))
    if final:
        verdict = final.get("verdict", "?")
        lines = [f'<p class="verdict">verdict: {_esc(verdict)}</p>']
        if final.get("final"):
            lines.append(f"<p>family: {_esc(final.get('family_text', '?'))}</p><pre>{_esc(final['final'])}</pre>")
        if final.get("final_loss") is not None:
            seeds = lambda k: ", ".join(_loss(x) for x in final.get(k) or [])
            lines.append(f"<p>stage {_esc(final.get('stage'))}: {_loss(final['final_loss'])} (seeds: {seeds('final_seed_losses')})"
                         f" against the baseline's {_loss(final.get('baseline_loss'))} (seeds: {seeds('baseline_seed_losses')})</p>")
        if final.get("note"):
            lines.append(f"<p>{_esc(final['note'])}</p>")
        out["final"] = "".join(lines)
    return out


# the page checks itself once loaded: an image that did not decode is a console error
SELF_CHECK = ("window.addEventListener('load', () => document.querySelectorAll('img').forEach(i => {"
              "if (!i.complete || i.naturalWidth === 0) console.error('image did not load: ' + i.alt); }));")

NOT_YET = {"config": "no config.yaml", "progress": "no evaluations yet", "pareto": "no evaluations yet",
           "best": "no evaluations yet", "lineage": "no evaluations yet", "spared": "no evaluations yet",
           "funnel": "no funnel yet (`lionsearch run` or `lionsearch select` writes selection.md)",
           "simplify": "no simplification yet (`lionsearch run` or `lionsearch simplify` writes simplify.md)",
           "final": "no final program yet (`lionsearch run` writes final.json)"}


def render(run: str | Path, refresh_s: float | None = None) -> str:
    """The report of `run` as HTML text; with `refresh_s`, a page that reloads itself that often."""
    run = Path(run)
    if not inspect.is_run_dir(run):
        raise inspect.InspectError(f"{run}: not a run directory (no history.jsonl or config.yaml)")
    parts = []
    for key, body in sections(run).items():
        content = body if body is not None else f'<p class="missing">{_esc(NOT_YET[key])}</p>'
        parts.append(f'<section id="{key}"><h2>{TITLES[key]}</h2>\n{content}\n</section>')
    meta = f'<meta http-equiv="refresh" content="{refresh_s:g}">' if refresh_s else ""
    status = "in progress: this page reloads itself" if refresh_s else "as of"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{meta}'
            f"<title>lionsearch report: {_esc(run.resolve().name)}</title><style>{CSS}</style></head><body>\n"
            f"<h1>lionsearch report: {_esc(run)}</h1>\n"
            f'<p class="note">{status} {time.strftime("%Y-%m-%d %H:%M:%S")}</p>\n'
            + "\n".join(parts) + f"\n<script>{SELF_CHECK}</script>\n</body></html>\n")


def write(run: str | Path, out: str | Path, refresh_s: float | None = None) -> Path:
    """Write the report atomically (a browser reloading it never sees half a page)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render(run, refresh_s), encoding="utf-8")
    tmp.replace(out)
    return out


def watch(run: str | Path, out: str | Path, every_s: float = 5.0, on_write=None) -> Path:
    """Rewrite the report every `every_s` seconds while a process holds the run directory, then a
    last time without the reload."""
    while holder(run) is not None:
        write(run, out, refresh_s=every_s)
        if on_write:
            on_write()
        time.sleep(every_s)
    return write(run, out)
