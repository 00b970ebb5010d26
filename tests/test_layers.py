"""The packages are layers: each imports only the ones below it, so a lower layer can be used and
tested without those above it. Checked on the source (every import, function bodies included)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top, with what each package may import. `selection` and `simplify` both sit on `search`
# and neither imports the other; `lionsearch` (the command line, the pipeline) imports them all.
LAYERS = {
    "dsl": set(),
    "proxy_tasks": {"dsl"},
    "search": {"dsl", "proxy_tasks"},
    "selection": {"dsl", "proxy_tasks", "search"},
    "simplify": {"dsl", "proxy_tasks", "search"},
    "lionsearch": {"dsl", "proxy_tasks", "search", "selection", "simplify"},
}


def imported_packages(source: str, package: tuple[str, ...]):
    """(line, top-level name) of everything `source` imports, `package` being the dotted package the
    module sits in (for relative imports); imports inside functions and `import_module("x")` count."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else ()
            names = [".".join(base + tuple(filter(None, [node.module])))]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            names = [node.args[0].value]
        else:
            continue
        for name in names:
            yield node.lineno, name.split(".")[0]


def test_every_package_has_a_layer_and_the_layers_have_no_cycle():
    assert {p.parent.name for p in ROOT.glob("*/__init__.py")} == set(LAYERS)
    below = set()
    for name, allowed in LAYERS.items():  # in order: each may import only packages listed before it
        assert allowed <= below, f"{name} may import {allowed - below}, which is not below it"
        below.add(name)


@pytest.mark.parametrize("name", list(LAYERS))
def test_no_package_imports_one_above_it(name):
    modules = sorted((ROOT / name).rglob("*.py"))
    assert modules
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {top}"
             for path in modules
             for line, top in imported_packages(path.read_text(), path.relative_to(ROOT).parent.parts)
             if top in LAYERS and top != name and top not in LAYERS[name]]
    assert not wrong, f"{name} may import only {sorted(LAYERS[name]) or 'none of the packages'}: " + "; ".join(wrong)


def test_imports_anywhere_in_a_module_are_found():
    source = ("import dsl.ops\nfrom . import text\nfrom ..search import runner\n"
              "def f():\n    from selection.funnel import run_funnel\n    importlib.import_module('simplify')\n")
    assert sorted(top for _, top in imported_packages(source, ("dsl", "sub"))) == [
        "dsl", "dsl", "dsl", "selection", "simplify"]
