"""Random text, token sequences and statement lists: a Program or a clear ProgramError, nothing else."""
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dsl
from dsl import Program, ProgramError, Statement

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

NAMES = ["w", "g", "m", "v", "lr", "step", "update", "x", "y", "b1", "def", "train", "return"] + list(dsl.OPS)[:12]
TOKENS = NAMES + ["(", ")", ",", "=", ":", "+", "-", "*", "/", "\n", "    ", "0.9", "-1", "1e-3", "1e999",
                  "#", "$", "**", "lambda", "import", "__import__"]


def parse_or_error(text):
    try:
        p = dsl.parse(text)
    except ProgramError as e:
        assert e.why and str(e)
        return None
    assert isinstance(p, Program)
    assert dsl.parse(dsl.to_text(p)) == p
    return p


@FUZZ
@given(st.text(max_size=200))
def test_random_text(text):
    parse_or_error(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_random_token_sequences(tokens):
    parse_or_error("def train(w, g, m, v, lr):\n    " + " ".join(tokens) + "\n    return update, m, v\n")
    parse_or_error(" ".join(tokens))


@FUZZ
@given(st.lists(st.lists(st.sampled_from(TOKENS), max_size=8).map(" ".join), max_size=8))
def test_random_lines(lines):
    parse_or_error("def train(w, g, m, v, lr, b1=0.9):\n" + "".join(f"    {l}\n" for l in lines)
                   + "    return update, m, v\n")


ARGS = st.one_of(st.sampled_from(["w", "g", "m", "v", "lr", "update", "x", "y", "nope"]),
                 st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-3, 3))
STATEMENTS = st.builds(lambda out, op, args: Statement(out, op, tuple(args)),
                       st.sampled_from(["update", "m", "v", "x", "y", "lr", "b1", "return", "9x"]),
                       st.sampled_from(list(dsl.OPS) + ["nop"]), st.lists(ARGS, max_size=4))


@FUZZ
@given(st.lists(STATEMENTS, max_size=10))
def test_random_statement_lists_and_analysis(stmts):
    try:
        p = Program(tuple(stmts), params=(("b1", 0.9),))
    except ProgramError:
        return
    assert dsl.parse(dsl.to_text(p)) == p
    verdict = dsl.check(p)
    assert isinstance(verdict.ok, bool) and verdict.reason
    assert isinstance(dsl.fingerprint(p), str)
    q = dsl.strip_dead_code(p)
    if verdict.ok:
        assert dsl.equivalent(p, q)


def test_program_text_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    payloads = [
        f"__import__('os').system('touch {marker}')",
        f"def train(w, g, m, v, lr):\n    update = open('{marker}', 'w')\n    return update, m, v\n",
        f"def train(w, g, m, v, lr):\n    import os\n    return update, m, v\n",
    ]
    for text in payloads:
        try:
            dsl.parse(text)
        except ProgramError:
            pass
    assert not marker.exists()
