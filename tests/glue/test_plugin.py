"""The glue plugin entry point, and the cheap-import promise of the package.

``import glue_starclf``, the mock-data engine and ``starclf --help`` must not
pull in torch or a Qt binding: glue loads every plugin at start-up, and the
command line's help must be instant. Each check runs in a fresh interpreter.
"""

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

import glue_starclf

HEAVY = ("torch", "PyQt5", "PyQt6", "PySide2", "PySide6", "qtpy")


def _glue_plugin():
    found = [ep for ep in entry_points(group="glue.plugins") if ep.name == "glue_starclf"]
    assert len(found) == 1, found
    return found[0]


def test_glue_plugin_entry_point_registered():
    ep = _glue_plugin()
    assert ep.value == "glue_starclf:setup"
    assert ep.dist is not None and ep.dist.name.replace("_", "-") == "glue-starclf"


def test_glue_plugin_entry_point_loads_and_runs():
    setup = _glue_plugin().load()
    assert setup is glue_starclf.setup
    assert callable(setup)
    setup()  # registers nothing yet, and must not raise
    setup()  # glue may call plugins more than once per session


def test_console_script_entry_point_registered():
    found = [ep for ep in entry_points(group="console_scripts") if ep.name == "starclf"]
    assert len(found) == 1, found
    assert found[0].value == "glue_starclf.cli.main:main"
    assert callable(found[0].load())


def _modules_after(code):
    """Run ``code`` in a fresh interpreter; return the heavy modules it imported."""
    probe = (f"{code}\n"
             "import sys, json\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_probe_sees_heavy_imports():
    """The probe itself works: importing torch shows up (else the checks below prove nothing)."""
    pytest.importorskip("torch")
    assert "torch" in _modules_after("import torch")


@pytest.mark.parametrize("code", [
    "import glue_starclf",
    "import glue_starclf; glue_starclf.setup()",
    "import glue_starclf.sim.mosaic",
    "import glue_starclf.sim.bank",
    "import glue_starclf.cli.main; glue_starclf.cli.main.build_parser()",
])
def test_import_is_light(code):
    assert _modules_after(code) == []


@pytest.mark.parametrize("argv", [["--help"], ["simulate", "field", "--help"],
                                  ["simulate", "bank", "--help"]])
def test_help_is_light(argv):
    code = ("import contextlib, io\n"
            "from glue_starclf.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            f"        main({argv!r})\n"
            "    except SystemExit as exc:\n"
            "        assert exc.code == 0, exc.code\n")
    assert _modules_after(code) == []
