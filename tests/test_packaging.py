"""The wheel: shipped data, the PSF licence, no test or training packages.

Builds a wheel offline (``pip wheel --no-deps --no-build-isolation
--no-index``) from a copy of the project, so the working tree gets no
``build/`` folder. Takes a few seconds: the slowest test of this file.
"""

import configparser
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
    for module in ("glue_starclf/__init__.py", "glue_starclf/cli.py",
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
    assert cfg["console_scripts"]["starclf"].strip() == "glue_starclf.cli:main"
    assert cfg["glue.plugins"]["glue_starclf"].strip() == "glue_starclf:setup"


def test_wheel_license_files(names):
    licences = [n for n in names if ".dist-info/licenses/" in n or ".dist-info/LICENSE" in n]
    assert any(n.endswith("LICENSE-drizzlepac.txt") for n in licences), licences
