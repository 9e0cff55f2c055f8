"""The wheel: shipped data, the PSF licence, no test or training packages.

Builds a wheel offline (``pip wheel --no-deps --no-build-isolation
--no-index``) from a copy of the project, so the working tree gets no
``build/`` folder. Takes a few seconds: the slowest test of this file.
"""

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WFC3_PSFS = [f"glue_starclf/data/psf/wfc3_uvis_{b}.fits"
             for b in ("f275w", "f336w", "f438w", "f555w", "f814w")]
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                              ".pytest_cache", "*.pyc", ".cache", "out", "demo-output")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    dist = base / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(dist), "."],
        cwd=src, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(dist.glob("glue_starclf-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def names(wheel):
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_wheel_ships_the_data(names):
    assert "glue_starclf/data/isochrones_parsec_mist_wfc3.fits" in names
    for psf in WFC3_PSFS:
        assert psf in names, psf
    assert "glue_starclf/data/psf/LICENSE-drizzlepac.txt" in names


def test_wheel_ships_the_code(names):
    for module in ("glue_starclf/__init__.py", "glue_starclf/cli/main.py",
                   "glue_starclf/io/mosaic.py", "glue_starclf/core/predict.py",
                   "glue_starclf/learn/finetune.py", "glue_starclf/glue/finetuning.py",
                   "glue_starclf/qt/inspector.py",
                   "glue_starclf/sim/mosaic.py", "glue_starclf/sim/bank.py"):
        assert module in names, module


def test_wheel_has_no_tests_or_training(names):
    assert (ROOT / "tests").is_dir()  # present in the source, so leaving it out is a choice
    top = {n.split("/")[0] for n in names}
    assert "tests" not in top and "training" not in top, sorted(top)
    assert not [n for n in names if "/tests/" in n or n.startswith("tests/")
                or "/training/" in n or n.startswith("training/")]
    assert top <= {"glue_starclf"} | {n for n in top if n.endswith((".dist-info", ".data"))}


def test_wheel_entry_points(wheel, names):
    ep_files = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert len(ep_files) == 1, ep_files
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(ep_files[0]).decode()
    cfg = configparser.ConfigParser()
    cfg.optionxform = str
    cfg.read_string(text)
    assert cfg["console_scripts"]["starclf"].strip() == "glue_starclf.cli.main:main"
    assert cfg["glue.plugins"]["glue_starclf"].strip() == "glue_starclf:setup"


def test_wheel_license_files(names):
    licences = [n for n in names if ".dist-info/licenses/" in n or ".dist-info/LICENSE" in n]
    assert any(n.endswith("LICENSE-drizzlepac.txt") for n in licences), licences


def test_every_package_is_listed():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "glue_starclf").rglob("__init__.py")}
    assert found | {"glue_starclf.models"} == listed


def test_wheel_ships_the_bundled_models(names):
    bundled = sorted(p.name for p in (ROOT / "models").glob("*.safetensors"))
    assert len([n for n in bundled if n.startswith("classifier-")]) >= 5
    assert len([n for n in bundled if n.startswith("physical-")]) >= 5
    for name in bundled:
        assert f"glue_starclf/models/{name}" in names
        if name != "classifier.ood.safetensors":  # statistics, not a model: no card
            assert f"glue_starclf/models/{name[:-len('.safetensors')]}.json" in names
    assert "glue_starclf/models/classifier.ood.safetensors" in names


@pytest.fixture(scope="module")
def fresh_env(wheel, tmp_path_factory):
    """A fresh venv where plain ``pip install WHEEL`` (no extras) installed glue-starclf.

    Offline: the dependencies (and pip) are those of the test environment,
    reached through a path file pointing at a folder of links to its
    site-packages without glue-starclf itself, so that pip installs the
    wheel and checks its requirements against what is there; ``--no-index``
    only keeps pip from looking online.
    """
    import site
    import sysconfig
    base = tmp_path_factory.mktemp("installed")
    deps = base / "deps"
    deps.mkdir()
    for folder in dict.fromkeys(site.getsitepackages() + [sysconfig.get_path("purelib")]):
        if not Path(folder).is_dir():
            continue
        for entry in Path(folder).iterdir():
            name = entry.name.lower()
            if name.startswith(("glue_starclf", "__editable__", "__pycache__")) or \
                    name.endswith(".pth") or (deps / entry.name).exists():
                continue
            (deps / entry.name).symlink_to(entry)
    env = base / "venv"
    # pip (and a setuptools torch accepts) come from the linked folder too.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True,
                   timeout=300)
    py = env / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path("
                              "'purelib'))"], capture_output=True, text=True,
                             check=True).stdout.strip()
    (Path(purelib) / "deps.pth").write_text(f"{deps}\n")
    proc = subprocess.run([str(py), "-m", "pip", "install", "--no-index", str(wheel)],
                          capture_output=True, text=True, cwd=base, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return py, purelib


def test_wheel_requires_glue_without_extras(fresh_env):
    py, purelib = fresh_env
    code = ("import json; from importlib.metadata import requires; "
            "print(json.dumps(requires('glue-starclf')))")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(purelib).parent)  # not the checkout (its egg-info)
    plain = {r.split(";")[0].strip() for r in json.loads(out.stdout) if "extra ==" not in r}
    names = {re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].lower() for r in plain}
    assert {"glue-core", "glue-qt", "qtpy", "pyqt5", "torch"} <= names, sorted(names)


def test_wheel_in_a_fresh_environment_finds_the_models_and_classifies(fresh_env, tmp_path):
    from glue_starclf.sim.mosaic import random_field, write_mosaic
    py, purelib = fresh_env
    mock = random_field(seed=2, shape=(256, 256), n_sources=6)
    paths = write_mosaic(mock, tmp_path / "field", prefix="w")
    code = ("import glue_starclf, glue_starclf.core.checkpoints as c, sys; "
            "print(glue_starclf.__file__); print(c.bundled_models_dir()); "
            "from glue_starclf.cli.main import main; sys.exit(main(sys.argv[1:]))")
    args = ["classify", *sum((["--image", f"{b}={p}"] for b, p in paths.items()
                              if b != "truth"), []),
            "--catalog", str(paths["truth"]), "--distance-mpc", "10",
            "--out", str(tmp_path / "r.ecsv")]
    proc = subprocess.run([str(py), "-c", code, *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    module, models = proc.stdout.splitlines()[:2]
    assert module.startswith(purelib) and models.startswith(purelib)
    assert "classified 6 sources" in proc.stdout


def test_wheel_in_a_fresh_environment_fine_tunes(fresh_env, tmp_path):
    """The glue action's fine-tuning (`glue_starclf.glue.finetuning`) from the wheel alone.

    Run outside the source tree, where ``training/`` cannot be imported: a
    bundled classifier member is tuned on 24 labelled mock sources (2 folds,
    1 epoch) and registered as a user model version.
    """
    from glue_starclf.sim.mosaic import random_field, write_mosaic
    py, purelib = fresh_env
    mock = random_field(seed=2, shape=(256, 256), n_sources=24)
    paths = write_mosaic(mock, tmp_path / "field", prefix="w")
    code = f"""
import importlib.util, json, sys
import numpy as np
from astropy.table import Table
import glue_starclf
from glue_starclf.core.checkpoints import bundled_models_dir, list_models
from glue_starclf.glue.finetuning import FinetuneJob, register_finetuned, run_finetune
from glue_starclf.io.mosaic import open_mosaic
assert importlib.util.find_spec("training") is None, "training/ is importable"
truth = Table.read({str(paths["truth"])!r})
member = next(c for c in list_models() if c["family"] == "classifier")["_path"]
job = FinetuneJob(mosaic=open_mosaic({[f"{b}={p}" for b, p in paths.items() if b != "truth"]!r}),
                  x=np.asarray(truth["x"]), y=np.asarray(truth["y"]),
                  targets=np.eye(4)[np.asarray(truth["class"]) - 1], model=member,
                  models_folder=None, name="from-the-wheel",
                  settings=dict(folds=2, curve_folds=1, epochs=1, batch_size=16))
result = run_finetune(job)
folder = register_finetuned(result, job, root={str(tmp_path / "user-models")!r})
print(json.dumps(dict(package=glue_starclf.__file__, models=str(bundled_models_dir()),
                      folder=str(folder), files=sorted(p.name for p in folder.iterdir()),
                      n_labels=result.report["n_labels"],
                      before=result.report["cv"]["before"]["accuracy"]["mean"],
                      after=result.report["cv"]["after"]["accuracy"]["mean"])))
"""
    work = tmp_path / "elsewhere"
    work.mkdir()
    proc = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=work,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["package"].startswith(purelib) and out["models"].startswith(purelib)
    assert out["n_labels"] == 24
    assert 0.0 <= out["before"] <= 1.0 and 0.0 <= out["after"] <= 1.0
    files = out["files"]
    assert "classifier-from-the-wheel.safetensors" in files
    assert "classifier-from-the-wheel.json" in files and "labels.ecsv" not in files
    assert any(f.startswith("physical-") for f in files)
    card = json.loads((Path(out["folder"]) / "classifier-from-the-wheel.json").read_text())
    assert card["family"] == "classifier" and card["finetune"]["freeze"] == 0


#: Run in the installed venv: glue's own plugin loading, then the plugin's
#: menu items classify a mock mosaic in a (headless) glue application.
GLUE_SESSION = """
import sys, time
from glue.main import load_plugins
load_plugins()
from glue_qt.config import menubar_plugin
from glue_qt.app import GlueApplication
import glue_starclf
from glue_starclf.qt.dialogs import OpenMosaicDialog
print(glue_starclf.__file__)
assert "Open HST mosaic…" in [label for label, _ in menubar_plugin.members]
app = GlueApplication()
actions = {a.text(): a for a in app._actions["plugins"]}
actions["Open HST mosaic…"].trigger()
dialog = app.findChildren(OpenMosaicDialog)[-1]
assert dialog.set_files(sys.argv[2:]) == []
dialog.catalog_edit.setText(sys.argv[1])
dialog.buttons.button(dialog.buttons.Ok).click()
actions["Classify catalog sources…"].trigger()
from glue_starclf.qt.dialogs import ClassifyDialog
classify = app.findChildren(ClassifyDialog)[-1]
classify.distance.edit.setText("10")
classify.buttons.button(classify.buttons.Ok).click()
t0 = time.time()
while classify.runner.state == "running" and time.time() - t0 < 240:
    app.app.processEvents()
    time.sleep(0.02)
print(classify.runner.state, classify.runner.message.splitlines()[0])
catalog = next(d for d in app.data_collection if d.label == "g_truth")
print(sorted(set(int(c) for c in catalog["class_starclf"])))
"""


def test_wheel_in_a_fresh_environment_is_a_glue_plugin_that_classifies(fresh_env, tmp_path):
    """glue loads the installed plugin by its entry point; its menu items classify."""
    from glue_starclf.sim.mosaic import random_field, write_mosaic
    py, purelib = fresh_env
    mock = random_field(seed=3, shape=(256, 256), n_sources=6)
    paths = write_mosaic(mock, tmp_path / "field", prefix="g")
    script = tmp_path / "session.py"
    script.write_text(GLUE_SESSION)
    bands = [str(p) for b, p in paths.items() if b != "truth"]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "GLUE_TESTING": "True",
           "STARCLF_USER_MODELS": str(tmp_path / "user-models")}
    proc = subprocess.run([str(py), str(script), str(paths["truth"]), *bands],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(purelib)
    assert lines[1].startswith("done Classified the 6 rows of “g_truth”"), lines
    assert set(json.loads(lines[2])) <= {1, 2, 3, 4}


def test_checkout_uses_the_bundled_models():
    from glue_starclf.core.checkpoints import bundled_models_dir
    from glue_starclf.core.predict import load_ensemble
    assert bundled_models_dir() == ROOT / "models"
    for family in ("classifier", "physical"):
        ens = load_ensemble(family)            # verifies every member's sha256
        assert len(ens.members) >= 5
        assert len({card["seed"] for _, card in ens.members}) == len(ens.members)
        for _, card in ens.members:
            assert (ROOT / "models" / (Path(card["_path"]).stem + ".safetensors")
                    ).stat().st_size <= 5 * 1024 ** 2
            assert card["training"]["command"].startswith("python -m training train-")
