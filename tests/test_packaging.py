"""The wheel: shipped data, the PSF licence, no test or training packages.

Builds a wheel offline (``pip wheel --no-deps --no-build-isolation
--no-index``) from a copy of the project, so the working tree gets no
``build/`` folder. Takes a few seconds: the slowest test of this file.
"""

import configparser
import json
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
    """A new venv with only the wheel (dependencies reached through a path file).

    Returns its python and its site-packages folder.
    """
    import site
    import sysconfig
    env = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    py = env / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path("
                              "'purelib'))"], capture_output=True, text=True,
                             check=True).stdout.strip()
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(purelib)
    # The project's dependencies, without its editable install (.pth files of a
    # directory named in a path file are not run, so its finder stays out).
    deps = [p for p in site.getsitepackages() + [sysconfig.get_path("purelib")]
            if Path(p).is_dir()]
    (Path(purelib) / "deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    return py, purelib


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
