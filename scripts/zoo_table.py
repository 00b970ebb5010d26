"""The table of docs/zoo.md: every built-in with its family (`dsl.family(p).name`), the reference
it is checked against, the settings tested and the max relative difference of the parameters
after 100 steps on a mixed-shape tree (the training loop of tests/test_optax_match.py):

    python scripts/zoo_table.py

The cases are those of tests/test_zoo.py (ZOO) and tests/test_optax_match.py, which assert the
differences are <= 1e-5.
"""
import sys
from pathlib import Path

import optax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import dsl  # noqa: E402
from test_optax_match import OTHER_BUILTINS, SETTINGS  # noqa: E402
from test_zoo import NO_REFERENCE, ZOO, Case, measure  # noqa: E402

LABELS = {"sgd": "optax.sgd", "momentum": "optax.sgd(momentum=0.9)",
          "nesterov": "optax.sgd(momentum=0.9, nesterov=True)", "adam": "optax.adam"}
CASES = {
    "lion": Case("optax.lion", lambda lr, b1, b2, wd: optax.lion(lr, b1=b1, b2=b2, weight_decay=wd),
                 tuple({"lr": lr, "b1": b1, "b2": b2, "wd": wd} for b1, b2, wd, lr in SETTINGS)),
    "adamw": Case("optax.adamw", lambda lr, b1, b2, wd: optax.adamw(lr, b1=b1, b2=b2, weight_decay=wd),
                  tuple({"lr": lr, "b1": b1, "b2": b2, "wd": wd} for b1, b2, wd, lr in SETTINGS)),
    **{name: Case(LABELS[name], lambda lr, ref=ref: ref(lr), ({"lr": 1e-2},)) for name, ref in OTHER_BUILTINS},
    **ZOO,
}


def settings_text(setting: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in setting.items())


print("| built-in | family | checked against | lr and hyper-parameters (others at their defaults) "
      "| max relative difference |")
print("|---|---|---|---|---|")
for name in dsl.builtin_names():
    family = dsl.family(dsl.load(name)).name
    if name in NO_REFERENCE:
        print(f"| {name} | {family} | none (see below) | | |")
        continue
    case = CASES[name]
    for i, setting in enumerate(case.settings):
        first = f"| {name} | {family} | {case.reference} |" if i == 0 else "| | | |"
        print(f"{first} {settings_text(setting)} | {measure(name, setting, case.make):.1e} |", flush=True)
