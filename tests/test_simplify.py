"""Simplification: bloated Lion variants come back as Lion; ablation keeps quality."""
import re

import pytest

import dsl
from simplify import simplify, simplify_steps
from simplify.rewrite import canonical

HEAD = "def train(w, g, m, v, lr):\n"
RET = "    return update, m, v\n"
LION = dsl.load("lion")


def prog(text):
    return dsl.parse(HEAD + "\n".join("    " + l.strip() for l in text.strip().splitlines()) + "\n" + RET)


BLOATED = {
    "dead statements and a v nobody reads": """
        junk = exp(g)
        c = interp(g, m, 0.9)
        v = interp(g, v, 0.999)
        sq = square(v)
        update = sign(c)
        unused = update * w
        decay = w * 0.01
        update = update + decay
        update = update * lr
        m = interp(g, m, 0.99)
    """,
    "no-op arithmetic": """
        g1 = g * 1.0
        g2 = g1 + 0.0
        g3 = g2 - 0.0
        g4 = g3 / 1.0
        c = interp(g4, m, 0.9)
        update = sign(c)
        decay = w * 0.01
        decay = decay * 1.0
        update = update + decay
        update = update * lr
        m = interp(g4, m, 0.99)
    """,
    "double negation, sign of sign, abs that keeps the sign": """
        a = m * 0.9
        b = g * 0.1
        c = a + b
        nc = -c
        nnc = -nc
        s = sign(nnc)
        s = sign(s)
        lr2 = abs(lr)
        decay = w * 0.01
        update = s + decay
        update = update * lr2
        m = interp(g, m, 0.99)
    """,
    "sign as m / sqrt(m * m), constants to merge, chained interps": """
        c = interp(g, m, 0.9)
        c2 = c * c
        r = sqrt(c2)
        update = c / r
        decay = w * 0.005
        decay = decay * 2.0
        update = update + decay
        update = update * lr
        m1 = interp(g, m, 0.9)
        m = interp(g, m1, 1.1)
        v = m1 * 3.0
    """,
}


@pytest.mark.parametrize("name", list(BLOATED))
def test_bloated_lion_simplifies_to_lion(name):
    p = prog(BLOATED[name])
    assert dsl.equivalent(p, LION)  # the fixture really is Lion plus redundancy
    q = simplify(p)
    assert dsl.equivalent(q, LION)
    assert len(q) == len(LION)  # and nothing redundant is left
    assert dsl.state_slots(q) == ("m",)


def test_papers_raw_style_program_simplifies():
    # Redundancy of the kind the paper's appendix shows: bias correction inside a sign,
    # a clipped copy nothing needs, a second momentum nobody reads.
    p = prog("""
        bc = interp(g, m, 0.9)
        corr = bc / 0.5
        t = clip(corr, -10.0, 10.0)
        update = sign(corr)
        v = interp(g, v, 0.5)
        u2 = t * v
        decay = w * 0.01
        update = update + decay
        update = update * lr
        m = interp(g, m, 0.99)
    """)
    q = simplify(p)
    assert dsl.equivalent(q, LION) and len(q) == len(LION)


def test_simplify_never_changes_the_function_without_a_task():
    p = dsl.load("adamw_warmstart")
    q = simplify(p)
    assert dsl.equivalent(p, q) and len(q) <= len(p)


def test_steps_are_reported_and_deterministic():
    p = prog(BLOATED["no-op arithmetic"])
    a = simplify_steps(p)
    b = simplify_steps(p)
    assert [s.what for s in a] == [s.what for s in b] and a[-1].program == b[-1].program
    assert a[0].what == "input" and len(a) > 2
    assert all(dsl.equivalent(s.program, p) for s in a)


@pytest.mark.slow  # trains every ablation candidate
def test_ablation_on_a_task_keeps_the_loss_within_tolerance():
    # Lion plus a statement that matters little: a tiny gradient term added to the update.
    p = prog("""
        c = interp(g, m, 0.9)
        update = sign(c)
        tiny = g * 1e-06
        update = update + tiny
        decay = w * 0.01
        update = update + decay
        lr = lr * 0.03
        update = update * lr
        m = interp(g, m, 0.9)
    """)
    size = {"steps": 40, "batch": 32, "n_train": 256, "n_val": 128}
    steps = simplify_steps(p, task="logreg", tolerance=0.01, size=size)
    losses = [s.loss for s in steps]
    assert all(x <= losses[0] * 1.01 for x in losses)  # within tolerance of the input's loss
    final = steps[-1].program
    assert len(final) < len(p)
    assert all(s.args != ("g", 1e-06) for s in final.statements)  # the tiny term is gone
    assert simplify(p, task="logreg", tolerance=0.01, size=size) == final  # deterministic


def test_canonical_names():
    p = prog("""
        zz = interp(g, m, 0.9)
        update = sign(zz)
        update = update * lr
        m = interp(g, m, 0.99)
    """)
    q = canonical(p)
    assert q.statements[0].out == "t1" and q.statements[1].args == ("t1",)
    assert dsl.equivalent(p, q)


def test_cli_simplify_prints_steps_and_writes_the_result(tmp_path, capsys):
    from lionsearch.cli import main
    src = tmp_path / "bloated.opt"
    src.write_text(dsl.to_text(prog(BLOATED["double negation, sign of sign, abs that keeps the sign"])))
    out = tmp_path / "simple.opt"
    assert main(["simplify", str(src), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "- input: 12 statements" in text and "# family: lion (b1 0.9, b2 0.99, wd 0.01, lr x1)" in text
    assert dsl.equivalent(dsl.load(out), LION) and len(dsl.load(out)) == 6


def test_a_memory_slot_that_forgets_at_once_is_dropped_exactly():
    # v = interp(c2, v, 0) is c2 itself: v's carried value is never read, so v goes, and
    # c / sqrt(c * c) becomes sign(c): Lion without weight decay.
    p = prog("""
        c = interp(g, m, 0.9)
        c2 = square(c)
        v = interp(c2, v, 0.0)
        r = sqrt(v)
        update = c / r
        update = update * lr
        m = interp(g, m, 0.99)
    """)
    q = simplify(p)
    assert dsl.equivalent(q, p) and len(q) == 4 and "v" not in dsl.state_slots(q)
    assert dsl.is_lion(q) and any(s.op == "sign" for s in q.statements)


def test_ablation_proposes_reordering_neighbours_but_not_no_op_swaps():
    from simplify import _ablations
    lagged = prog("""
        update = sign(m)
        m = interp(g, m, 0.9)
        decay = w * 0.01
        lr = lr * 0.03
        update = update * lr
    """)
    moves = {what: q for what, q in _ablations(lagged) if what.startswith("move")}
    # sign reads the new momentum once moved: signum (Lion with b1 = b2)
    assert dsl.family(moves["move `update = sign(m)` after `m = interp(g, m, 0.9)`"]).name == "signum"
    # decay and lr are independent: swapping them changes nothing, so it is not a candidate
    assert not any("decay" in what and "lr = lr" in what for what in moves)


def test_ablation_scores_each_candidate_at_its_best_lr():
    p = prog("""
        c = interp(g, m, 0.9)
        update = sign(c)
        lr = lr * 0.5
        update = update * lr
        m = interp(g, m, 0.9)
    """)
    size = {"steps": 40, "batch": 32, "n_train": 256, "n_val": 128}
    steps = simplify_steps(p, task="logreg", tolerance=0.01, size=size, lr_multipliers=(0.25, 1.0))
    # lr 0.5 is far too large for sign steps: the grid's lower end wins, and the sweep goes on
    # past it (x1/16, x1/64, ...) while the smaller lr keeps winning
    k = float(re.fullmatch(r"tune the lr \(x(.*)\)", steps[1].what).group(1))
    assert k < 0.25 and steps[1].loss < steps[0].loss
    assert all(s.loss <= steps[1].loss * 1.01 for s in steps[1:])


def test_ablation_tries_simpler_ops_from_the_output_back_before_deletions():
    from simplify import _ablations
    p = prog("""
        m = interp(g, m, 0.9)
        s = m / 2.0
        update = arctan2(s, 0.5)
        lr = lr * 0.001
        update = update * lr
    """)
    whats = [what for what, _ in _ablations(p)]
    first_delete = next(i for i, w in enumerate(whats) if w.startswith("delete"))
    rewrites = [w for w in whats[:first_delete] if w.startswith("rewrite")]
    assert rewrites and len(rewrites) == first_delete  # every simpler-op rewrite comes first
    # nearest the output first: statement by statement from the last one back
    order = [s for s in ("update = update * lr", "update = arctan2(s, 0.5)", "s = m / 2.0",
                         "m = interp(g, m, 0.9)") if any(w.startswith(f"rewrite `{s}`") for w in rewrites)]
    assert [s for s in dict.fromkeys(w.split("`")[1] for w in rewrites)] == order
    assert "rewrite `update = arctan2(s, 0.5)` as `update = sign(s)`" in rewrites
    # never a unary op of lr (`lr * 0.001` as `sqrt(lr)` would bend the schedule)
    assert not [w for w in rewrites if "(lr)" in w] and any("update = sign(update)" in w for w in rewrites)


# Exactly Lion (from a real run): the momentum is computed in v, and m copies it at the end.
LION_COPIED = prog("""
    v = interp(g, v, 0.99)
    c = interp(g, m, 0.9)
    s = sign(c)
    d = w * 0.01
    update = s + d
    m = v * 1.0
    update = update * lr
""")
# The paper's Program 4 simplified (from a real run): signum, its momentum carried through v.
PROGRAM_4 = prog("""
    m = interp(g, v, 0.9)
    v = interp(g, m, 1.0)
    s = sign(m)
    update = s + w
""")


def test_slots_that_always_hold_equal_values_are_merged():
    q = simplify(LION_COPIED)
    assert dsl.equivalent(q, LION_COPIED) and dsl.family(q).name == "lion"
    # m's new value is written last, as c still reads its old value
    assert q == canonical(prog("""
        c = interp(g, m, 0.9)
        s = sign(c)
        d = w * 0.01
        update = s + d
        update = update * lr
        m = interp(g, m, 0.99)
    """))
    steps = simplify_steps(LION_COPIED)
    assert steps[1].what == "merge v into m (always equal)"


def test_momentum_carried_through_the_other_slot_is_merged():
    q = simplify(PROGRAM_4)
    assert dsl.equivalent(q, PROGRAM_4) and dsl.family(q) == dsl.family(PROGRAM_4)
    assert q == canonical(prog("""
        m = interp(g, m, 0.9)
        s = sign(m)
        update = s + w
    """))


@pytest.mark.parametrize("p", [
    dsl.load("adamw_warmstart"),
    LION,
    # v copies the momentum, and m then moves on: not equal
    prog("""
        m = interp(g, v, 0.9)
        v = m * 1.0
        d = w * 0.01
        m = m + d
        update = sign(m)
        update = update * lr
    """),
], ids=["adamw_warmstart", "lion", "a copy before m moves on"])
def test_slots_that_differ_are_not_merged(p):
    from simplify.rewrite import merged_slots
    assert list(merged_slots(p)) == []
    q = simplify(p)
    assert dsl.equivalent(q, p) and dsl.state_slots(q) == dsl.state_slots(p)


def test_adamw_warmstart_is_left_as_it_is():
    p = dsl.load("adamw_warmstart")
    assert simplify(p) == canonical(p.inline_params())


def test_no_merge_where_it_would_need_a_copy():
    # the new momentum is read after the old one: one slot cannot hold both
    from simplify.rewrite import merged_slots
    p = prog("""
        v = interp(g, v, 0.99)
        c = interp(g, m, 0.9)
        s = sign(c)
        e = v * 0.001
        update = s + e
        m = v * 1.0
    """)
    assert dsl.equal_slots(p) == [("m", "v")]
    assert list(merged_slots(p)) == []
    assert dsl.equivalent(simplify(p), p)


def test_max_trainings_bounds_the_ablation():
    """Past its budget of trainings the ablation stops and says so; the exact steps still happened,
    and the same budget gives the same result (it counts trainings, not seconds)."""
    p = prog("""
        c = interp(g, m, 0.9)
        x = c * 1.0
        update = sign(x)
        update = update * lr
        m = interp(g, m, 0.99)
    """)
    size = {"steps": 10, "batch": 16, "n_train": 64, "n_val": 32}
    steps = simplify_steps(p, task="logreg", tolerance=1.0, size=size, max_trainings=1)
    assert any(s.what.startswith("stop the ablation: 1 trainings spent") for s in steps)
    assert not any(s.what.startswith(("delete", "rewrite", "replace")) for s in steps)
    assert dsl.equivalent(steps[-1].program, p) and len(steps[-1].program) == 4
    unbounded = simplify_steps(p, task="logreg", tolerance=1.0, size=size)
    assert len(unbounded[-1].program) < 4  # with more, a 100% tolerance lets the ablation drop more
    some = [simplify_steps(p, task="logreg", tolerance=1.0, size=size, max_trainings=3) for _ in range(2)]
    assert [s.what for s in some[0]] == [s.what for s in some[1]]
    assert any(s.what.startswith("stop the ablation: 3 trainings") for s in some[0])
    assert len(some[0][-1].program) >= len(unbounded[-1].program)


def test_a_pass_tries_each_edit_once_and_passes_repeat_until_nothing_changes():
    """After an accepted step the pass goes on with the edits it has not tried, so an edit it
    rejected is retried once per pass (on the input, then on the result in the closing pass),
    not after every step."""
    p = prog("""
        c = interp(g, m, 0.9)
        d = c + g
        e = d * w
        f = e - g
        h = arctan(f)
        update = sign(c)
        update = update + h
        s = lr * 1.05
        update = update * s
        m = interp(g, m, 0.99)
    """)
    scored = []

    def scorer(q):  # a rule, not a training: what keeps Lion's two momenta and a sign costs nothing
        t = dsl.to_text(q)
        scored.append(t)
        return 1.0 if "m = interp(g, m, 0.99)" in t and "interp(g, m, 0.9)" in t and "sign(" in t else 5.0

    steps = simplify_steps(p, task="logreg", scorer=scorer, tolerance=0.01)
    # Lion's 4 statements (the rule would take `update = sign(c)` alone, blind to the lr input)
    assert dsl.family(steps[-1].program).name == "lion" and len(steps[-1].program) == 4
    # more than one step in the first pass (a rewrite, then `s` replaced by lr)
    assert sum(s.what.startswith(("rewrite", "replace")) for s in steps) >= 2
    # the first edit tried (the slot write nearest the output as `m = sign(g)`) is rejected in
    # both passes, and tried in no other
    assert sum("m = sign(g)" in t for t in scored) == 2


def test_a_screen_on_few_seeds_spares_full_checks_and_keeps_the_result():
    """With a screen, clearly worse ablations are scored on 2 seeds only; the steps taken are
    still checked on all the seeds, within the tolerance."""
    p = prog("""
        c = interp(g, m, 0.9)
        x = c * 1.0
        t = tanh(x)
        update = sign(t)
        update = update * lr
        m = interp(g, m, 0.99)
    """)
    size = {"steps": 20, "batch": 16, "n_train": 64, "n_val": 32}
    scored = {"full": [], "screen": []}
    import proxy_tasks
    ev = proxy_tasks.Evaluator("logreg", **size)

    def counted(kind, seeds):
        def score(q):
            scored[kind].append(q)
            return ev.evaluate(q, seeds).loss
        return score

    seeds = (0, 1, 2, 3, 4, 5)
    steps = simplify_steps(p, task="logreg", tolerance=0.02, seeds=seeds, size=size,
                           scorer=counted("full", seeds), screen_seeds=2, screener=counted("screen", seeds[:2]))
    spared = set(scored["screen"]) - set(scored["full"])
    assert scored["full"] and spared  # the screen told some apart without a full check
    first = steps[0].loss
    for s in steps[1:]:
        assert s.loss is None or s.loss <= first * 1.02 + 1e-9 or s.what.startswith("tune the lr")
    assert len(steps[-1].program) <= len(p) and dsl.check(steps[-1].program)


TUNE_SIZE = {"steps": 40, "batch": 32, "n_train": 256, "n_val": 128}


def test_tuning_moves_a_constant_that_helps_and_says_so():
    """An lr scale hidden outside an lr statement (far too small here) and a momentum that averages
    over a thousand steps: tuning moves them (the lr sweep is off: one multiplier; the ablation is
    off: no trainings for it)."""
    p = prog("""
        m = interp(g, m, 0.999)
        t = m * 0.1
        update = t * lr
    """)
    off = simplify_steps(p, task="logreg", tolerance=0.05, size=TUNE_SIZE, max_trainings=0)
    on = simplify_steps(p, task="logreg", tolerance=0.05, size=TUNE_SIZE, max_trainings=0, tune_trainings=1000)
    assert not any(s.what.startswith("tune") for s in off)
    tunes = [s for s in on if s.what.startswith("tune `")]
    assert tunes and tunes[-1].loss < off[-1].loss / 1.05
    assert "0.999 -> " in tunes[0].what
    consts = {a for s in on[-1].program.statements for a in s.args if isinstance(a, float)}
    assert 0.999 not in consts
    assert on[-1].loss is None or on[-1].loss == tunes[-1].loss


def test_tuning_keeps_a_constant_where_no_value_is_clearly_better():
    """Within the tolerance two programs count as equal: with a 1000% tolerance nothing moves,
    although the trainings were spent."""
    p = prog("""
        m = interp(g, m, 0.9)
        t = sign(m)
        update = t * lr
    """)
    steps = simplify_steps(p, task="logreg", tolerance=10.0, size=TUNE_SIZE, max_trainings=0, tune_trainings=1000,
                           lr_multipliers=(0.5, 1.0, 2.0))
    assert not any(s.what.startswith("tune `") for s in steps)
    assert dsl.equivalent(steps[-1].program, steps[1].program if len(steps) > 1 else p)


def test_tuning_stops_at_its_budget():
    p = prog("""
        m = interp(g, m, 0.999)
        t = m * 0.0001
        update = t * lr
    """)
    steps = simplify_steps(p, task="logreg", tolerance=0.05, size=TUNE_SIZE, max_trainings=0, tune_trainings=1)
    assert steps[-1].what.startswith("stop tuning: ") or any(s.what.startswith("stop tuning: ") for s in steps)
    assert len([s for s in steps if s.what.startswith("tune `")]) <= 1


def test_an_lr_scale_and_a_non_weight_constant_are_tuned_their_own_way():
    from simplify import FACTORS, WEIGHT_LADDER, _constants, _retuned
    p = prog("""
        m = interp(g, m, 0.9)
        t = m * 0.01
        lr = lr * 0.001
        update = t * lr
    """)
    assert _constants(p) == [(0, 2), (1, 1)]  # the lr scale is the lr sweep's
    assert [x for x, _ in _retuned(p, 0, 2)] == [x for x in WEIGHT_LADDER if x != 0.9]
    assert [x for x, _ in _retuned(p, 1, 1)] == [0.01 * f for f in FACTORS]


def test_the_cli_tunes_with_tune_trainings(tmp_path, capsys):
    from lionsearch.cli import main
    (tmp_path / "p.opt").write_text("def train(w, g, m, v, lr):\n    m = interp(g, m, 0.999)\n    t = m * 0.1\n"
                                    "    update = t * lr\n    return update, m, v\n")
    argv = ["simplify", str(tmp_path / "p.opt"), "--task", "logreg", "--tolerance", "0.05", "--max-trainings", "0",
            *sum((["--set", f"{k}={v}"] for k, v in TUNE_SIZE.items()), [])]
    assert main(argv) == 0
    assert "- tune `" not in capsys.readouterr().out
    assert main(argv + ["--tune-trainings", "1000"]) == 0
    assert "- tune `m = interp(g, m, 0.999)`: 0.999 -> " in capsys.readouterr().out


def test_slot_merges_work_over_every_memory_slot():
    # the momentum lives in a third slot n and is copied to m (read) and v (unread) each step
    p = dsl.parse("""def train(w, g, m, v, n, lr):
    n = interp(g, n, 0.99)
    c = interp(g, m, 0.9)
    update = sign(c)
    d = w * 0.01
    update = update + d
    update = update * lr
    m = n * 1.0
    v = n + 0.0
    return update, m, v, n
""")
    assert dsl.equal_slots(p) == [("m", "v", "n")]
    steps = simplify_steps(p)
    assert any(s.what == "merge n into m (always equal)" for s in steps)
    q = simplify(p)
    assert q.memory == ("m", "v") and q == canonical(LION.inline_params()) and dsl.equivalent(q, p)
    # a further slot that copies the gradient differs from every other: nothing to merge
    from simplify.rewrite import merged_slots
    adan = dsl.load("adan")
    assert dsl.equal_slots(adan) == [("m",), ("v",), ("n",), ("gp",)] and list(merged_slots(adan)) == []


def test_the_ablation_keeps_the_update_following_the_lr_input():
    """Ablations that would leave the update blind to the lr input (`s = sign(t)`, `s` replaced
    by the constant 0.01, ...) ignore the schedule: they are not even trained."""
    import proxy_tasks
    p = prog("""
        t = lr * 1e-4
        s = t + 0.01
        update = g * s
    """)
    ev = proxy_tasks.Evaluator("logreg", steps=30, batch=32, n_train=256, n_val=128)
    scored = []
    steps = simplify_steps(p, task="logreg", tolerance=0.05, seeds=(0,),
                           scorer=lambda q: scored.append(q) or ev.evaluate(q, (0,)).loss)
    assert len(scored) >= 3 and all(dsl.follows_lr(q) for q in scored)
    assert all(dsl.follows_lr(s.program) for s in steps)


def test_a_step_that_beats_the_reference_by_more_than_the_tolerance_becomes_the_reference():
    """A poor input made much better by one step (`sign(m)` for a scaled momentum) does not give
    the gain back by the next: dropping the momentum, within the tolerance of the input's loss but
    not of the better program's, is rejected. Steps within the tolerance move nothing."""
    p = prog("""
        m = interp(g, m, 0.5)
        update = m * 2.0
        update = update * lr
    """)

    def scorer(q):  # a rule, not a training: signum 1, signSGD 1.5, the rest 2
        return {"signum": 1.0, "signsgd": 1.5}.get(dsl.family(q).name, 2.0)

    steps = simplify_steps(p, task="logreg", scorer=scorer, tolerance=0.1)
    assert [s.loss for s in steps if s.what.startswith("rewrite")][:1] == [1.0]
    assert dsl.family(steps[-1].program).name == "signum" and steps[-1].loss == 1.0
    # the fixed bar of the input (2.2) would have taken the momentum's drop (1.5)
    assert all(s.loss != 1.5 for s in steps)
