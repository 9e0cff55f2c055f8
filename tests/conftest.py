"""Fixtures shared by every test folder."""

import importlib.util
import sys
from pathlib import Path

import pytest


def _training_fixtures():
    """tests/training/conftest.py, loaded once by path (conftest modules share one name)."""
    name = "starclf_training_fixtures"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent / "training" / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory):
    """Tiny banks and one-epoch models, built once per session (see tests/training)."""
    return _training_fixtures().build_trained_models(tmp_path_factory)
