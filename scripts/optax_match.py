"""Max relative difference between the DSL's `lion`/`adamw` (through `dsl.as_optax`) and optax's
own `lion`/`adamw`, over 100 steps on a random pytree of mixed shapes, for several settings:

    python scripts/optax_match.py

The training loop and the settings are those of tests/test_optax_match.py, which asserts <= 1e-5.
"""
import sys
from pathlib import Path

import optax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import dsl  # noqa: E402
from test_optax_match import SETTINGS, _train, max_rel_diff  # noqa: E402

print("| optimizer | b1 | b2 | wd | lr | max relative difference |")
print("|---|---|---|---|---|---|")
for b1, b2, wd, lr in SETTINGS:
    for name, ref in (("lion", optax.lion(lr, b1=b1, b2=b2, weight_decay=wd)),
                      ("adamw", optax.adamw(lr, b1=b1, b2=b2, weight_decay=wd))):
        ours, _ = _train(dsl.as_optax(dsl.load(name, b1=b1, b2=b2, wd=wd), lr))
        theirs, _ = _train(ref)
        print(f"| {name} | {b1} | {b2} | {wd} | {lr} | {max_rel_diff(ours, theirs):.2e} |")
sched = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 10, 100)
ours, _ = _train(dsl.as_optax(dsl.load("lion"), sched))
theirs, _ = _train(optax.lion(sched, weight_decay=0.01))
print(f"| lion | 0.9 | 0.99 | 0.01 | warm-up + cosine to 1e-2 | {max_rel_diff(ours, theirs):.2e} |")
