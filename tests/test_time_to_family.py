"""scripts/time_to_family.py: when a run first met the Lion family, and when one first led it."""
import sys
from pathlib import Path

import dsl
from search.record import Evaluation, Record
from search.rundir import RunDir

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
from time_to_family import first_of  # noqa: E402


def test_first_met_and_first_best(tmp_path):
    d = RunDir(tmp_path / "run")
    programs = [("adamw_warmstart", 0.5), ("signsgd", 0.4), ("lion", 0.45), ("lion", 0.3), ("sgd", 0.2)]
    for i, (name, loss) in enumerate(programs):
        p = dsl.load(name).inline_params()
        d.append(Record(i, p, None, "x", 0, dsl.fingerprint(p), Evaluation(loss, None, "ok", 1.0), "trained",
                        time=60.0 * i))
    d.close()
    f = first_of(tmp_path / "run", {"lion", "signum"})
    assert f["met"].id == 2 and f["family"] == "lion"  # met at 2, not yet the best (0.4 is)
    assert f["led"].id == 3  # the best so far at 3
    assert f["evaluations"] == 5 and f["trained"] == 5 and f["distinct"] == 4
    assert first_of(tmp_path / "run", {"signum"})["met"] is None
