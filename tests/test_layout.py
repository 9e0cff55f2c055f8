"""The package's folders are its layers (issue 17): the import rules, checked on the sources.

Every ``import`` of every module of ``glue_starclf/`` and ``training/`` counts,
also those inside functions (an import made late is still a dependency, and
a loop of late imports is still a loop):

- ``io`` imports nothing else of the package, and no torch;
- ``core`` imports only ``io``; ``learn`` and ``sim`` only ``core`` and ``io``;
- ``glue`` imports no Qt, and only ``qt/`` imports Qt;
- ``cli/`` and ``training/`` are leaves: nothing in the package imports them
  (``python -m training`` shares the one-line argument parser of ``starclf``);
- no module imports itself through others (no import loops).

``glue_starclf.version`` imports nothing and any module may read it.
`check` is also run on small made-up packages that break each rule, so that
the test is known to fail when a rule is broken.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Subpackages (or modules) of glue_starclf each layer may import besides itself.
MAY_IMPORT = {
    "io": set(),
    "core": {"io"},
    "learn": {"core", "io"},
    "sim": {"core", "io"},
    "glue": {"io", "core", "learn", "sim"},
    "qt": {"io", "core", "learn", "sim", "glue"},
    "cli": {"io", "core", "learn", "sim", "glue"},
}
#: Importable by every module (it imports nothing).
SHARED = {"version"}
QT = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "glue_qt", "echo.qt", "pyqtgraph",
      "matplotlib.backends.backend_qt")
#: The layout of issue 17: modules each folder must hold.
LAYOUT = {
    "io": {"mosaic", "catalogs", "writers", "bands"},
    "core": {"cutouts", "detection", "photometry", "networks", "checkpoints", "predict"},
    "learn": {"loop", "finetune"},
    "glue": {"data", "results", "labels", "finetuning"},
    "cli": {"main", "demo", "bench", "batch"},
}


def sources(root=ROOT):
    """``{module name: (source text, is a package)}`` of glue_starclf and training."""
    found = {}
    for top in ("glue_starclf", "training"):
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if package else parts)
            found[name] = (path.read_text(encoding="utf-8"), package)
    return found


def imports(name, text, package, known):
    """Every module (ours: the most specific one known; others: the dotted name) imported."""
    here = name if package else name.rpartition(".")[0]
    out = set()

    def ours(target):
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target

    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod
                       for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] in ("glue_starclf", "training"):
                t = ours(t)
            out.add(t)
    return out


def layer(module):
    """``io``, ``core``, ... for glue_starclf modules; ``training``; ``root`` for the package."""
    parts = module.split(".")
    if parts[0] == "training":
        return "training"
    return parts[1] if len(parts) > 1 else "root"


def _loops(graph):
    """Strongly connected components with more than one module, or a module importing itself."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def check(found):
    """The broken rules, one line each (empty when the layering holds)."""
    known = set(found)
    graph = {m: imports(m, text, pkg, known) for m, (text, pkg) in found.items()}
    errors = []
    for m, deps in sorted(graph.items()):
        src = layer(m)
        for d in sorted(deps):
            if d.startswith(QT) and src != "qt":
                errors.append(f"{m} imports Qt ({d}): only glue_starclf.qt may")
            if src == "io" and (d == "torch" or d.startswith("torch.")):
                errors.append(f"{m} imports torch: io reads and writes files only")
            if d not in known or d == m:
                continue
            dst = layer(d)
            if dst == "training" and src != "training":
                errors.append(f"{m} imports {d}: the package never imports training/")
            elif dst == "cli" and src not in ("cli", "training"):
                errors.append(f"{m} imports {d}: cli/ is a leaf")
            elif src in MAY_IMPORT and dst != src and dst not in MAY_IMPORT[src] | SHARED:
                errors.append(f"{m} imports {d}: {src} may import "
                              f"{', '.join(sorted(MAY_IMPORT[src])) or 'nothing else'}")
    for comp in _loops({m: {d for d in deps if d in known} for m, deps in graph.items()}):
        errors.append("import loop: " + " -> ".join(comp))
    return errors


def test_the_package_keeps_its_layers():
    assert check(sources()) == []


def test_the_tree_has_the_layout():
    found = sources()
    for folder, modules in LAYOUT.items():
        for m in modules:
            assert f"glue_starclf.{folder}.{m}" in found, f"glue_starclf/{folder}/{m}.py"
    flat = {m for m in found if m.count(".") == 1 and m.startswith("glue_starclf.")}
    assert flat == {f"glue_starclf.{p}" for p in (*MAY_IMPORT, "version")}
    # training/ holds the command line only: no loop or fine-tuning core left there
    assert "training.loop" not in found
    assert "def finetune(" not in found["training.finetune"][0]


def _fake(**modules):
    """A made-up package from ``name="source"`` (``__`` for dots; ``_init`` for a package)."""
    out = {"glue_starclf": ("", True)}
    for key, text in modules.items():
        name = key.replace("__", ".")
        pkg = name.endswith("._init")
        name = name.removesuffix("._init")
        out[name] = (text, pkg)
        parent = name.rpartition(".")[0]
        while parent and parent not in out:
            out[parent] = ("", True)
            parent = parent.rpartition(".")[0]
    return out


@pytest.mark.parametrize("modules, expected", [
    ({"glue_starclf__io__mosaic": "from ..core import cutouts",
      "glue_starclf__core__cutouts": ""}, "io may import nothing else"),
    ({"glue_starclf__io__mosaic": "import torch"}, "imports torch"),
    ({"glue_starclf__core__predict": "def f():\n    from ..glue.data import x",
      "glue_starclf__glue__data": ""}, "core may import io"),
    ({"glue_starclf__sim__mosaic": "from glue_starclf.learn import loop",
      "glue_starclf__learn__loop": ""}, "sim may import core, io"),
    ({"glue_starclf__glue__results": "from qtpy import QtWidgets"}, "imports Qt (qtpy)"),
    ({"glue_starclf__core__networks": "def f():\n    import glue_qt.viewers"}, "imports Qt"),
    ({"glue_starclf__glue__finetuning": "import training.finetune",
      "training__finetune": ""}, "never imports training"),
    ({"glue_starclf__qt__actions": "from ..cli import main",
      "glue_starclf__cli__main": ""}, "cli/ is a leaf"),
    ({"glue_starclf__cli__batch": "from .main import f",
      "glue_starclf__cli__main": "def g():\n    from .batch import h"}, "import loop"),
    ({"glue_starclf__qt__a": "from . import b", "glue_starclf__qt__b": "from .c import x",
      "glue_starclf__qt__c": "def f():\n    from .a import y"}, "import loop"),
])
def test_a_broken_rule_is_found(modules, expected):
    errors = check(_fake(**modules))
    assert any(expected in e for e in errors), errors


def test_allowed_imports_pass():
    assert check(_fake(glue_starclf__core__predict="from ..io import mosaic\nimport torch",
                       glue_starclf__io__mosaic="from .bands import B",
                       glue_starclf__io__bands="",
                       glue_starclf__qt__actions="from ..glue.data import x\nimport qtpy",
                       glue_starclf__glue__data="import glue.core",
                       glue_starclf__version="",
                       glue_starclf__sim__mosaic="from ..version import v",
                       training__finetune="from glue_starclf.core import predict")) == []
