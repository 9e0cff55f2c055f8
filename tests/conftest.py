"""Fixtures shared by every test folder."""

from pathlib import Path

import pytest

import training_runs


@pytest.fixture(scope="session")
def run_training():
    """``run_training(*argv)``: ``python -m training argv`` in-process -> (status, out, err)."""
    return training_runs.run_training


#: NGC 1566's LEGUS catalog in ../shared/data (tests that read it skip without it).
NGC1566_TAB = (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "legus"
               / "hlsp_legus_hst_wfc3_ngc1566_multiband_v1_padagb-mwext-avgapcor.tab")


@pytest.fixture(scope="session")
def ngc1566_bank(tmp_path_factory):
    """A LEGUS-anchored bank of an 800 x 800 px region of NGC 1566 (seed 2), built once."""
    out = tmp_path_factory.mktemp("ngc1566") / "bank"
    status, _, err = training_runs.run_training("make-bank", "--kind", "legus", "--catalogs",
                                                NGC1566_TAB, "--region-size", 800, "--seed", 2,
                                                "--out", out)
    assert status == 0, err
    return out


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory):
    """Tiny banks and one-epoch models, built once per session (see tests/training)."""
    return training_runs.build_trained_models(tmp_path_factory)


def _write_legus_tab(path, x0, y0, ra, dec, classes):
    """A LEGUS-format .tab: 1-based x/y in columns 2-3, class in column 34."""
    rows = []
    for i, (x, y, r, d, c) in enumerate(zip(x0, y0, ra, dec, classes)):
        cols = [float(i + 1), x + 1.0, y + 1.0, r, d] + [20.0, 0.05] * 5 \
            + [1.5] + [1e7, 1e6, 1e8, 1e4, 1e3, 1e5, 0.1, 0.0, 0.2] + [1.0] * 7 + [5.0, float(c)]
        assert len(cols) == 34
        rows.append(" ".join(f"{v:.6f}" if j not in (0, 33) else f"{int(v)}"
                             for j, v in enumerate(cols)))
    Path(path).write_text("\n".join(rows) + "\n")


@pytest.fixture
def write_legus_tab():
    """``write(path, x0, y0, ra, dec, classes)``: a LEGUS-format catalog (0-based x0/y0 in)."""
    return _write_legus_tab
