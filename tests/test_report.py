"""`lionsearch report`: one HTML page of a run, kept fresh while a real search goes on; empty and
damaged run directories give a page with notes, or one line, never a traceback."""
import re
import subprocess
import sys
import time

import pytest

from lionsearch.cli import main
from search.rundir import holder

LIVE = ("config", "progress", "pareto", "best", "lineage", "spared")  # what a search alone has
LATER = ("funnel", "simplify", "final")  # what `lionsearch run` adds


def sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="(\w+)">(.*?)</section>', page, re.S))


def is_note(body: str) -> bool:
    """A section that holds only its heading and a one-line note."""
    return re.fullmatch(r'\s*<h2>[^<]*</h2>\s*<p class="missing">[^<]*</p>\s*', body) is not None


def test_watch_follows_a_real_search_and_stops_when_it_ends(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("task: {name: logreg, size: {steps: 50, batch: 32, n_train: 256, n_val: 128}}\n"
                   "search: {population: 10, tournament: 3, evaluations: 30, checkpoint_every: 10}\n"
                   "ray: {num_cpus: 2, workers: 2}\n")
    run, out = tmp_path / "run", tmp_path / "page" / "report.html"
    search = subprocess.Popen([sys.executable, "-m", "lionsearch", "search", str(cfg), "--run-dir", str(run),
                               "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while holder(run) is None and search.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    watch = subprocess.Popen([sys.executable, "-m", "lionsearch", "report", str(run), "-o", str(out), "--watch",
                              "--every", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    live_pages = []
    while search.poll() is None and time.time() < deadline + 180:
        if out.exists():
            page = out.read_text()
            if 'http-equiv="refresh"' in page:
                live_pages.append(page)
        time.sleep(0.25)
    assert search.wait() == 0, search.stderr.read()[-2000:]
    stdout, stderr = watch.communicate(timeout=120)
    assert watch.returncode == 0, stderr[-2000:]
    assert "is rewritten every 0.5 s" in stdout and str(out) in stdout
    assert live_pages, "no page was written while the search ran"
    assert 'content="0.5"' in live_pages[-1] and "in progress" in live_pages[-1]
    page = out.read_text()  # the last one: the search is over, so no reload
    assert 'http-equiv="refresh"' not in page and "in progress" not in page
    got = sections(page)
    assert list(got) == list(LIVE + LATER)
    for key in LIVE:
        assert not is_note(got[key]) and ("<img" in got[key] or "<table" in got[key] or "<pre" in got[key]), key
    assert 'src="data:image/png;base64,' in got["progress"] and "http" not in re.sub(r"http-equiv", "", page)
    for key in LATER:
        assert is_note(got[key]), key
    assert "no funnel yet" in got["funnel"] and "no final program yet" in got["final"]


def test_an_empty_or_damaged_run_directory_gives_notes_or_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("task: {name: logreg}\n")
    assert main(["report", str(run)]) == 0  # no history yet: every section past the config is a note
    got = sections((run / "report.html").read_text())
    assert not is_note(got["config"]) and all(is_note(got[k]) for k in got if k != "config")
    assert "no evaluations yet" in got["progress"]

    (run / "final.json").write_text('{"verdict": "discovered", "candidate": 99, "final_loss": "x"}')
    assert main(["report", str(run), "-o", str(tmp_path / "odd.html")]) == 0  # odd values are shown, not fatal
    assert "stage None: x" in sections((tmp_path / "odd.html").read_text())["final"]

    (run / "history.jsonl").write_text('{"id": 0, "program": 3}\n')
    (run / "final.json").write_text("{not json")
    assert main(["report", str(run), "-o", str(tmp_path / "r.html")]) == 0
    got = sections((tmp_path / "r.html").read_text())
    assert "the history cannot be read" in got["progress"] and "history.jsonl: line 1" in got["progress"]
    assert "final.json: not valid JSON" in got["final"]

    with pytest.raises(SystemExit, match=r"lionsearch report: .*nothing: not a run directory"):
        main(["report", str(tmp_path / "nothing")])
    with pytest.raises(SystemExit, match="--out .*: is a folder; give a file name"):
        main(["report", str(run), "-o", str(tmp_path)])
    with pytest.raises(SystemExit, match="--every: expected a positive number of seconds, got 0"):
        main(["report", str(run), "--watch", "--every", "0"])
