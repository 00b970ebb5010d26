"""Faults and bad input, grouped by kind: a user's mistake on the command line, in a config or in a
program file ends in one line naming the argument, file, line or key and what was expected, never a
traceback; a run directory never loses or repeats work (held by one process, a damaged history
refused with its line and repaired without deleting anything); SIGTERM stops a run cleanly. Through
the real CLI (`cli.main` in-process; a subprocess where the exit status or "before Ray starts"
matters), on real run directories made by tiny real searches. (A search killed with -9 and resumed,
and workers that cannot start: tests/test_search_ray.py.)"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import dsl
import proxy_tasks
from lionsearch import cli
from lionsearch.cli_eval import seed
from search.record import Evaluation, Record
from search.rundir import RunDir, RunDirError, read_history

TINY = {"task": {"name": "logreg", "size": {"steps": 10, "batch": 16, "n_train": 64, "n_val": 32}, "seeds": [0]},
        "search": {"population": 4, "tournament": 2, "evaluations": 8, "checkpoint_every": 4, "timeout_s": 60,
                   "restart_after": 0},
        "ray": {"workers": 1, "num_cpus": 1}, "seed": 0}


def fails(argv, capsys) -> str:
    """The one-line error `lionsearch ARGV` ends with (its own, or argparse's last line), given before
    any work: nothing is printed before it."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    out, err = capsys.readouterr()
    code = e.value.code
    msg = code if isinstance(code, str) else err.strip().splitlines()[-1]
    assert isinstance(code, str) or code == 2  # a message of ours, or argparse's usage error
    assert "Traceback" not in out + err + msg and "\n" not in msg
    assert out == ""
    return msg


def run_cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lionsearch", *map(str, argv)], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).parent.parent)


def one_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope="module")
def run(local_ray, tmp_path_factory):
    """A real run directory: 8 evaluations of a tiny logreg search, made by `lionsearch search`."""
    root = tmp_path_factory.mktemp("faults")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    path = root / "run"
    assert cli.main(["search", str(root / "tiny.yaml"), "--run-dir", str(path), "--no-progress"]) == 0
    assert len((path / "history.jsonl").read_text().splitlines()) == 8
    return path


def copy_run(run, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns(".lock"))
    return dest


@pytest.fixture
def read_only(monkeypatch):
    """Make a folder read-only: by its mode, or (as root, whom modes do not stop) by denying write
    access under it to os.access, which is what the checks ask, as a read-only mount would."""
    made = []

    def make(path: Path) -> Path:
        path = Path(path).resolve()
        if os.geteuid() != 0:
            path.chmod(0o555)
            made.append(path)
        else:
            real = os.access

            def access(p, mode, *args, **kw):
                if mode & os.W_OK and Path(p).resolve().is_relative_to(path):
                    return False
                return real(p, mode, *args, **kw)
            monkeypatch.setattr(os, "access", access)
        return path
    yield make
    for path in made:
        path.chmod(0o755)


# ---- config files: every value checked before any work, each error one line naming the key ----------
BOMB = "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abc", "bcd")) + "seed: [" + ", ".join(["*d"] * 10) + "]\n"
BAD_CONFIGS = [
    ("", "empty; a config names at least its task"),
    ("seed: 1\nseed: 2\n", "not valid YAML: line 2, column 1: key 'seed' is given twice"),
    ("seed: !!python/object/apply:os.system [echo]\n", "not valid YAML: line 1, column 7: could not determine a constructor"),
    (BOMB, "its aliases expand to more than 10000 values"),
    ("search: {timeout_s: .inf}\n", "search.timeout_s: expected a finite number, got inf"),
    ("search: {timeout_s: .nan}\n", "search.timeout_s: expected a finite number, got nan"),
    ("search: {population: 1e20}\n", "search.population: expected int, got '1e20'"),
    ("search: {population: ten}\n", "search.population: expected int, got 'ten'"),
    ("search: {populaton: 10}\n", "search: unknown key 'populaton' (valid keys: population,"),
    ("search: {mutation: {insert: .nan}}\n", "search.mutation.insert: expected a finite number, got nan"),
    ("search_space: {max_statements: -1}\n", "search_space.max_statements: must be at least 1, got -1"),
    ("search: {mutation: {max_tries: 0}}\n", "search.mutation.max_tries: must be at least 1, got 0"),
    ("search_space: {constant_prob: -3}\n", "search_space.constant_prob: must be between 0 and 1, got -3.0"),
    ("search: {restart_after: -5}\n", "search.restart_after: expected 0 (never) or more, got -5"),
    ("search_space: {warm_start: nosuch}\n", "search_space.warm_start: unknown program 'nosuch'"),
    ("seed: -1\n", "seed: expected 0 or more, got -1"),
    ("ray: {workers: 0}\n", "ray: workers and num_cpus must be at least 1, got 0 and None"),
    ("ray: {num_cpus: 0}\n", "ray: workers and num_cpus must be at least 1, got 2 and 0"),
    ("task: {name: nosuch}\n", "task.name: unknown task 'nosuch'; registered tasks: char_lm,"),
    ("task: {name: logreg, size: {stepz: 3}}\n", "task.size: task 'logreg': unknown knob(s) 'stepz'"),
]


@pytest.mark.parametrize("text, expected", BAD_CONFIGS)
def test_a_bad_config_is_one_line_naming_the_key_before_any_work(text, expected, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(text)
    msg = fails(["search", str(tmp_path / "c.yaml"), "--run-dir", str(tmp_path / "run")], capsys)
    assert msg.startswith(f"lionsearch search: {tmp_path / 'c.yaml'}: {expected}"), msg
    assert not (tmp_path / "run").exists()


def test_a_config_that_is_not_text_or_not_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "latin.yaml").write_bytes(b"seed: \xff\n")
    (tmp_path / "dir.yaml").mkdir()
    for name, expected in [("latin.yaml", "not UTF-8 text (byte 6)"), ("dir.yaml", "a directory, not a config file"),
                           ("none.yaml", "no such config file")]:
        msg = fails(["search", str(tmp_path / name), "--run-dir", str(tmp_path / "run")], capsys)
        assert msg == f"lionsearch search: {tmp_path / name}: {expected}"


# ---- knobs: --set values, task sizes, config sizes ------------------------------------------------

BAD_SETS = [("steps={a: 1", "steps"), ("steps=!!python/object:os.system x", "steps"), ("steps=.inf", "'steps'"),
            ("steps=1e12", "'steps'"), ("peak=.nan", "'peak'"), ("batch=100000", "'batch'"),
            ("steps=[1, 2]", "'steps'"), ("data_seed=-1", "'data_seed'")]


@pytest.mark.parametrize("command", ["eval", "simplify"])
@pytest.mark.parametrize("value,knob", BAD_SETS)
def test_a_bad_set_value_is_one_line_naming_the_knob(command, value, knob, capsys):
    msg = fails([command, "lion", "--task", "logreg", "--set", value], capsys)
    assert msg.startswith(f"lionsearch {command}") and knob in msg


@pytest.mark.parametrize("task,knobs,expected", [
    ("logreg", {"steps": float("inf")}, "knob 'steps' must be an integer in [0, 2147483647], got inf"),
    ("logreg", {"steps": 2 ** 31}, "knob 'steps' must be an integer"),
    ("logreg", {"steps": 10 ** 400}, "knob 'steps' must be an integer"),
    ("logreg", {"peak": float("nan")}, "knob 'peak' must be a finite number"),
    ("logreg", {"final": float("-inf")}, "knob 'final' must be a finite number"),
    ("logreg", {"batch": 1025}, "knob 'batch' is 1025, larger than the 1024 training examples"),
    ("digits_mlp", {"batch": 5000}, "larger than the 1438 training examples"),
    ("char_lm", {"batch": 10 ** 6}, "knob 'batch' is 1000000, larger than the"),
    ("digits_mlp", {"width": 10 ** 6}, "parameters, more than 2,147,483,647"),
    ("digits_vit", {"width": 2 ** 31 - 2, "heads": 1}, "too many parameters"),
    ("logreg", {"steps": True}, "knob 'steps' must be an integer"),
])
def test_task_knobs_must_be_finite_and_in_range(task, knobs, expected):
    with pytest.raises(ValueError) as e:
        proxy_tasks.get_task(task, **knobs)
    assert expected in str(e.value) and f"task {task!r}" in str(e.value)


def test_sane_knobs_still_build():
    assert proxy_tasks.get_task("logreg", steps=5.0, batch=1024, peak="2").config["steps"] == 5
    assert proxy_tasks.get_task("digits_mlp", batch=1438).batch == 1438


@pytest.mark.parametrize("size,knob", [({"steps": float("inf")}, "steps"), ({"batch": 10 ** 9}, "batch"),
                                       ({"peak": float("nan")}, "peak")])
def test_a_config_with_an_absurd_size_is_one_line(size, knob, tiny_config, tmp_path, capsys):
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["task"]["size"].update(size)
    tiny_config.write_text(yaml.safe_dump(cfg))
    msg = fails(["search", str(tiny_config), "--run-dir", str(tmp_path / "r"), "--no-progress"], capsys)
    assert str(tiny_config) in msg and f"'{knob}'" in msg


# ---- seeds ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["eval", "simplify"])
@pytest.mark.parametrize("value", ["99999999999999999999", "-1", str(2 ** 31), "x"])
def test_a_seed_outside_int32_is_one_line(command, value, capsys):
    msg = fails([command, "lion", "--task", "logreg", "--seeds", "0", value], capsys)
    assert "argument --seeds" in msg and value in msg


def test_the_largest_int32_seed_is_accepted():
    assert seed(str(2 ** 31 - 1)) == 2 ** 31 - 1


def test_a_bad_set_exits_with_argparse_status_in_a_subprocess():
    p = run_cli("eval", "lion", "--set", "steps={a: 1")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("lionsearch eval: error: argument --set: steps:")


# ---- output files and folders (-o/--out/--graph) ---------------------------------------------------

@pytest.mark.parametrize("argv,flag", [(["export", "lion", "--to", "optax", "-o"], "--output"),
                                       (["simplify", "lion", "--out"], "--out")])
def test_an_output_file_that_is_a_folder_or_under_a_file_is_one_line(argv, flag, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    msg = fails(argv + [str(tmp_path)], capsys)
    assert f"{flag} {tmp_path}: is a folder; give a file name" in msg
    msg = fails(argv + [str(tmp_path / "file" / "out.py")], capsys)
    assert f"{flag} {tmp_path / 'file' / 'out.py'}: {tmp_path / 'file'} is a file, not a folder" in msg


@pytest.mark.parametrize("argv", [["export", "lion", "--to", "optax", "-o"], ["simplify", "lion", "--out"]])
def test_an_output_file_in_a_missing_folder_makes_the_folder(argv, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "out.txt"
    assert cli.main(argv + [str(out)]) == 0
    assert out.is_file() and out.read_text()


def test_plot_and_lineage_outputs_under_a_file_are_one_line(run, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    msg = fails(["plot", str(run), "--out", str(tmp_path / "file")], capsys)
    assert f"--out {tmp_path / 'file'}: {tmp_path / 'file'} is a file, not a folder" in msg
    msg = fails(["lineage", str(run), "--graph", str(tmp_path)], capsys)
    assert f"--graph {tmp_path}: is a folder; give a file name" in msg
    msg = fails(["lineage", str(run), "--graph", str(tmp_path / "file" / "g.graphml")], capsys)
    assert "is a file, not a folder" in msg and "--graph" in msg


# ---- run directories: a file, under a file, read-only --------------------------------------------

@pytest.mark.parametrize("command", ["search", "run"])
def test_a_run_dir_that_is_or_lies_under_a_file_is_one_line(command, tiny_config, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for run_dir in (f, f / "sub"):
        msg = fails([command, str(tiny_config), "--run-dir", str(run_dir), "--no-progress"], capsys)
        assert msg == f"lionsearch {command}: --run-dir {run_dir}: {f} is a file, not a folder"
    assert f.read_text() == "x"


@pytest.mark.parametrize("command", ["search", "run"])
def test_a_read_only_run_dir_is_refused_before_any_work(command, tiny_config, tmp_path, read_only, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(ro)
    msg = fails([command, str(tiny_config), "--run-dir", str(ro / "run"), "--no-progress"], capsys)
    assert "--run-dir" in msg and "is not writable (read-only)" in msg
    assert not (ro / "run").exists()


def test_read_only_outputs_of_simplify_and_plot_are_refused_up_front(run, tmp_path, read_only, capsys):
    ro = read_only(copy_run(run, tmp_path / "ro_run"))
    msg = fails(["simplify", str(ro)], capsys)  # default output: RUN/simplified.opt
    assert msg == f"lionsearch simplify: output {ro / 'simplified.opt'}: {ro} is not writable (read-only)"
    msg = fails(["plot", str(ro)], capsys)  # default output: the run directory
    assert msg == f"lionsearch plot: run directory {ro}: {ro} is not writable (read-only)"
    msg = fails(["simplify", "lion", "--out", str(ro / "x.opt")], capsys)
    assert "--out" in msg and "read-only" in msg
    assert not list(ro.glob("*.png")) and not (ro / "simplified.opt").exists()


# ---- run directories: broken config.yaml, empty or damaged history ------------------------------

@pytest.mark.parametrize("text,expected", [("task: {name: [\n", "not valid YAML: line 2, column "),
                                           ("[1, 2]\n", "expected a mapping of settings"),
                                           ("", "expected a mapping of settings"),
                                           ("task: 5\n", "expected a mapping of settings")])
def test_show_and_resume_on_a_broken_config_are_one_line(text, expected, run, tmp_path, tiny_config, capsys):
    bad = copy_run(run, tmp_path / "bad")
    (bad / "config.yaml").write_text(text)
    msg = fails(["show", str(bad)], capsys)
    assert msg.startswith(f"lionsearch show: {bad / 'config.yaml'}: {expected}")
    msg = fails(["search", str(tiny_config), "--run-dir", str(bad), "--resume", "--no-progress"], capsys)
    assert msg.startswith(f"lionsearch search: {bad / 'config.yaml'}: {expected}")


def test_select_on_a_config_only_or_damaged_run_stops_before_ray(run, tmp_path):
    only = tmp_path / "only_config"
    only.mkdir()
    shutil.copy(run / "config.yaml", only)
    damaged = copy_run(run, tmp_path / "damaged")
    with open(damaged / "history.jsonl", "a") as f:
        f.write("not json\n")
    for path, expected in ((only, "the run has no evaluations yet"), (damaged, "line 9 is not valid JSON")):
        p = run_cli("select", path, "--no-progress")
        line = one_line(p)  # nothing else: Ray never started
        assert line.startswith(f"lionsearch select: {path}") and expected in line


# ---- resuming with --evaluations --------------------------------------------------------------------

def test_resume_evaluations_extends_the_budget_and_says_so(run, tmp_path, tiny_config, capsys):
    again = copy_run(run, tmp_path / "again")
    assert cli.main(["search", str(tiny_config), "--run-dir", str(again), "--resume", "--evaluations", "11",
                     "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "note: --evaluations: budget extended, 8 -> 11 evaluations (8 done)" in out
    assert len((again / "history.jsonl").read_text().splitlines()) == 11
    assert yaml.safe_load((again / "config.yaml").read_text())["search"]["evaluations"] == 11
    # fewer than done is refused, before anything runs
    msg = fails(["search", str(tiny_config), "--run-dir", str(again), "--resume", "--evaluations", "10"], capsys)
    assert msg == (f"lionsearch search: --evaluations 10: the run in {again} has already done 11 evaluations; "
                   "give 11 or more")
    assert len((again / "history.jsonl").read_text().splitlines()) == 11


def test_resume_evaluations_can_shrink_to_what_is_done(run, tmp_path, tiny_config, capsys):
    again = copy_run(run, tmp_path / "again")
    cfg = yaml.safe_load((again / "config.yaml").read_text())
    cfg["search"]["evaluations"] = 20
    (again / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert cli.main(["search", str(tiny_config), "--run-dir", str(again), "--resume", "--evaluations", "8",
                     "--no-progress"]) == 0
    assert "budget shrunk, 20 -> 8 evaluations (8 done)" in capsys.readouterr().out
    assert len((again / "history.jsonl").read_text().splitlines()) == 8


def test_evaluations_below_one_is_one_line(tiny_config, tmp_path, capsys):
    msg = fails(["search", str(tiny_config), "--run-dir", str(tmp_path / "r"), "--evaluations", "0"], capsys)
    assert msg == "lionsearch search: --evaluations 0: expected 1 or more"


# ---- program files: encoding, line breaks, huge literals, constants beyond float32 ---------------
GOOD = "def train(w, g, m, v, lr):\n    update = g * lr\n    return update, m, v\n"


@pytest.mark.parametrize("name, content, expected", [
    ("latin1.opt", GOOD.replace("g * lr", "g \xff* lr").encode("latin-1"), "latin1.opt: not UTF-8 text (byte 42)"),
    ("sep.opt", GOOD.replace("update = g", "m = interp(g, m, 0.9)\u2028    update = g").encode(),
     "sep.opt: line 2, column 26: unexpected character '\\u2028'"),  # an editor's line 2, not 3
    ("huge.opt", GOOD.replace("g * lr", "g * " + "9" * 400).encode(),
     "huge.opt: line 2, column 18: number 99999999999999999999...9999999999 (400 characters) is out of range"),
])
def test_a_bad_program_file_is_one_line_with_the_editors_line(name, content, expected, tmp_path, capsys):
    (tmp_path / name).write_bytes(content)
    assert fails(["show", str(tmp_path / name)], capsys) == f"lionsearch: {tmp_path / name}: " + expected.split(": ", 1)[1]


def test_a_folder_given_as_a_program_is_named_so(tmp_path, capsys):
    (tmp_path / "d.opt").mkdir()
    assert fails(["show", str(tmp_path / "d.opt")], capsys) == f"lionsearch: {tmp_path / 'd.opt'}: a folder, not a program file"


def test_windows_and_old_mac_line_ends_parse(tmp_path, capsys):
    for end in ("\r\n", "\r"):
        (tmp_path / "p.opt").write_bytes(GOOD.replace("\n", end).encode())
        assert cli.main(["show", str(tmp_path / "p.opt")]) == 0
        assert "update = g * lr" in capsys.readouterr().out


def test_exporting_a_constant_beyond_float32_warns(tmp_path, capsys):
    (tmp_path / "big.opt").write_text(GOOD.replace("g * lr", "g * 1e308"))
    assert cli.main(["export", str(tmp_path / "big.opt"), "--to", "optax", "-o", str(tmp_path / "big.py")]) == 0
    err = capsys.readouterr().err
    assert "warning: the constant 1e+308 in `update = g * 1e+308` is beyond float32's range and becomes inf" in err
    (tmp_path / "ok.opt").write_text(GOOD)
    assert cli.main(["export", str(tmp_path / "ok.opt"), "--to", "pytorch", "-o", str(tmp_path / "ok.py")]) == 0
    assert "warning" not in capsys.readouterr().err


# ---- signals: SIGTERM stops a run as Ctrl-C does, and leaves no process behind ---------------------
def _descendants(pid: int) -> set[int]:
    """Processes under `pid`, from /proc (parent links)."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pids) -> set[int]:
    out = set()
    for p in pids:
        try:
            state = (Path("/proc") / str(p) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(p)
    return out


@pytest.mark.slow
def test_kill_9_leaves_no_process_of_the_run(tmp_path):
    """A driver killed with -9 runs no clean-up; its local Ray instance dies with it anyway
    (search.reaper), Ray's agents included, within seconds."""
    import signal
    import time
    cfg = {**TINY, "search": {**TINY["search"], "evaluations": 100_000}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    history = tmp_path / "run" / "history.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "lionsearch", "search", str(tmp_path / "c.yaml"), "--run-dir",
                             str(tmp_path / "run"), "--no-progress"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=Path(__file__).parent.parent)
    deadline = time.monotonic() + 240
    while not (history.exists() and len(history.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(1.5)  # the reaper has seen the session's processes
    children = _descendants(proc.pid)
    assert any("Agent" in Path(f"/proc/{p}/cmdline").read_text(errors="replace") for p in _alive(children))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for _ in range(40):
        if not _alive(children):
            break
        time.sleep(0.5)
    assert not _alive(children), [Path(f"/proc/{p}/cmdline").read_text()[:80] for p in _alive(children)]


@pytest.mark.slow
def test_sigterm_stops_a_search_cleanly_and_leaves_no_process(local_ray, tmp_path):
    import signal
    import time
    cfg = {**TINY, "search": {**TINY["search"], "evaluations": 100_000}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "lionsearch", "search", str(tmp_path / "c.yaml"), "--run-dir",
                             str(run_dir), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parent.parent)
    deadline = time.monotonic() + 240
    history = run_dir / "history.jsonl"
    while not (history.exists() and len(history.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.5)
    children = _descendants(proc.pid)
    assert children  # Ray's processes
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "SIGTERM received" not in err, err
    assert f"interrupted; continue with --run-dir {run_dir} --resume" in err
    for _ in range(60):
        if not _alive(children):
            break
        time.sleep(0.5)
    assert not _alive(children), [Path(f"/proc/{p}/cmdline").read_text()[:80] for p in _alive(children)]
    n = len(history.read_text().splitlines())
    assert cli.main(["search", str(tmp_path / "c.yaml"), "--run-dir", str(run_dir), "--resume",
                     "--evaluations", str(n + 2), "--no-progress"]) == 0
    assert len(history.read_text().splitlines()) == n + 2  # the lock was released, nothing was lost


def test_simplify_refuses_a_program_longer_than_it_takes_before_any_work(tmp_path, capsys):
    from simplify import MAX_STATEMENTS
    n = MAX_STATEMENTS + 1
    body = ["    t0 = g * 1.0"] + [f"    t{i} = t{i - 1} * 1.0001" for i in range(1, n - 1)]
    (tmp_path / "long.opt").write_text("def train(w, g, m, v, lr):\n" + "\n".join(body)
                                       + f"\n    update = t{n - 2} * lr\n    return update, m, v\n")
    assert fails(["simplify", str(tmp_path / "long.opt")], capsys) == \
        f"lionsearch simplify: the program has {n} live statements; simplification takes at most {MAX_STATEMENTS}"


def test_a_whole_method_config_whose_programs_could_not_be_simplified_is_refused(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("search_space: {max_statements: 500}\n")
    msg = fails(["run", str(tmp_path / "c.yaml"), "--run-dir", str(tmp_path / "run")], capsys)
    assert msg.endswith("c.yaml: search_space.max_statements: at most 100 for the whole method "
                        "(the longest program simplification takes), got 500")
    assert not (tmp_path / "run").exists()


# ---- data loss: a run directory is held by one process; a damaged history is refused and repaired ----
def _rec(i: int) -> Record:
    return Record(i, dsl.load("sgd"), None, "warm start", 0, "fp", Evaluation(0.5, 0.9, "ok", 1.0), "trained")


def test_history_appends_and_detects_a_torn_last_line(tmp_path):
    d = RunDir(tmp_path / "run")
    for i in range(3):
        d.append(_rec(i))
    d.close()
    f = tmp_path / "run" / "history.jsonl"
    last = f.read_bytes().splitlines()[-1]
    with open(f, "ab") as h:
        h.write(b'{"id": 3, "prog')  # killed mid-write
    assert [r.id for r in read_history(d.path)] == [0, 1, 2]
    assert [r.id for r in read_history(d.path, repair=True)] == [0, 1, 2]
    assert f.read_bytes().endswith(last + b"\n")
    d.append(_rec(3))
    assert d.history() == [_rec(i) for i in range(4)]  # to_json / from_json round trip


def test_damaged_history_is_an_error_naming_the_line(tmp_path):
    good = json.dumps(_rec(0).to_json())
    (tmp_path / "history.jsonl").write_text(f'{good}\nnot json\n{good}\n')
    with pytest.raises(RunDirError, match="line 2"):
        read_history(tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"fitness": "low"}, "line 1: field 'fitness': expected int or float or null, got 'low'"),
    ({"source": "magic"}, "line 1: field 'source': expected one of warm_start, trained"),
    ({"program": "def train(w, g, m, v, lr):\n    update = frob(g)\n    return update, m, v\n"},
     "line 1: field 'program': .*frob"),
    ({"id": None}, "line 1: field 'id': expected int, got None"),
])
def test_a_malformed_record_is_an_error_naming_line_and_field(tmp_path, change, message):
    (tmp_path / "history.jsonl").write_text(json.dumps(_rec(0).to_json() | change) + "\n")
    with pytest.raises(RunDirError, match=message):
        read_history(tmp_path)
    missing = {k: v for k, v in _rec(0).to_json().items() if k != "status"}
    (tmp_path / "history.jsonl").write_text(json.dumps(missing) + "\n")
    with pytest.raises(RunDirError, match="line 1: field 'status' is missing"):
        read_history(tmp_path)


def test_a_run_directory_is_held_by_one_process(tmp_path):
    import subprocess
    import sys
    d = RunDir(tmp_path / "run")
    d.acquire()
    d.acquire()  # re-entrant in this process (the pipeline holds it around the search)
    other = "from search.rundir import RunDir; RunDir({!r}).acquire()".format(str(tmp_path / "run"))
    got = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True)
    assert got.returncode != 0 and f"in use by another process (pid {__import__('os').getpid()})" in got.stderr
    d.release()
    d.close()  # the last holder lets go: another process may resume now
    (tmp_path / "run" / "population.json.tmp").write_text("")  # left by a holder killed mid-write
    assert subprocess.run([sys.executable, "-c", other]).returncode == 0
    assert not (tmp_path / "run" / "population.json.tmp").exists()  # the next holder cleared it
    # a killed holder's lock does not block: the OS drops it with the process
    held = subprocess.Popen([sys.executable, "-c", other + "; import time; time.sleep(60)"])
    try:
        import time
        time.sleep(3)
        assert subprocess.run([sys.executable, "-c", other], capture_output=True).returncode != 0
    finally:
        held.kill()
        held.wait()
    assert subprocess.run([sys.executable, "-c", other]).returncode == 0


def test_a_directory_of_someone_elses_files_is_refused(tmp_path):
    mine = tmp_path / "myexp"
    mine.mkdir()
    (mine / "config.yaml").write_text("# my own notes\n")
    with pytest.raises(RunDirError, match="holds files that no lionsearch run wrote .config.yaml."):
        RunDir(mine).acquire()
    assert (mine / "config.yaml").read_text() == "# my own notes\n"


def test_a_lost_or_repeated_line_is_refused_and_repair_sets_the_rest_aside(tmp_path):
    from search.rundir import repair_history
    lines = [json.dumps(_rec(i).to_json()) + "\n" for i in range(4)]
    f = tmp_path / "history.jsonl"
    f.write_text(lines[0] + lines[1] + lines[1] + lines[3])  # line 3 repeats id 1, id 2 is lost
    with pytest.raises(RunDirError, match="line 3: id 1 where 2 was expected.*lionsearch repair"):
        read_history(tmp_path)
    kept, aside = repair_history(tmp_path)
    assert kept == 2 and [r.id for r in read_history(tmp_path)] == [0, 1]
    assert aside.read_text() == lines[1] + lines[3]  # nothing deleted
    assert repair_history(tmp_path) == (2, None)


def test_cli_refuses_a_damaged_run_and_repair_fixes_it(tmp_path, capsys):
    from lionsearch.cli import main
    d = RunDir(tmp_path / "run")
    for i in (0, 1, 1):
        d.append(_rec(i))
    d.close()
    with pytest.raises(SystemExit, match="lionsearch show: .*line 3: id 1 where 2 was expected"):
        main(["show", str(tmp_path / "run")])
    assert main(["repair", str(tmp_path / "run")]) == 0
    assert "kept the first 2 evaluations" in capsys.readouterr().out
    assert [r.id for r in read_history(tmp_path / "run")] == [0, 1]
    assert len(list((tmp_path / "run").glob("history.rejected-*.jsonl"))) == 1


@pytest.mark.parametrize("flag, value, expected", [
    ("--max-minutes", "-1", "lionsearch search: --max-minutes/--target-loss/--max-trainings: search.max_minutes: expected a positive "
                            "number of minutes, got -1.0"),
    ("--max-minutes", "soon", "argument --max-minutes: expected a number or 'none', got 'soon'"),
    ("--target-loss", "nan", "lionsearch search: --max-minutes/--target-loss/--max-trainings: search.target_loss: expected a finite "
                             "number, got nan"),
])
def test_a_bad_stop_condition_is_one_line(flag, value, expected, tiny_config, tmp_path, capsys):
    msg = fails(["search", str(tiny_config), "--run-dir", str(tmp_path / "run"), flag, value], capsys)
    assert msg.endswith(expected), msg
