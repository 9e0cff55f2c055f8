"""Shared fixtures of the mock-engine tests."""

from pathlib import Path

import pytest

LEGUS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "legus"
NGC1566 = LEGUS / "hlsp_legus_hst_wfc3_ngc1566_multiband_v1_padagb-mwext-avgapcor.tab"


@pytest.fixture(scope="session")
def ngc1566_path():
    if not NGC1566.exists():
        pytest.skip("../shared/data/legus not found: the LEGUS catalogs live outside the project")
    return NGC1566
