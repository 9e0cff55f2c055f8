"""A glue session saved before the layout move of issue 17 restores.

``data/flat_layout_session.glu`` was saved by glue-starclf 0.1 with the
flat layout: it names ``glue_starclf.glue_io.mosaic_factory``,
``glue_starclf.glue_io.catalog_factory`` and the viewer and layer classes
of ``glue_starclf.qt``. It holds the conftest mock field (320 × 320 px,
seed 11) opened with its truth catalog, the results of a region classified
with the bundled models, the catalog classified in place, the diagnostics
layout and the cluster inspector (sorted by p_cluster, on the region). The
files it opened are referred to as ``@MOSAIC_DIR@`` and ``@CATALOG_DIR@``;
the test writes them again and puts their folders in.
"""

from pathlib import Path

import numpy as np
from conftest import truth_catalog

from glue_starclf.glue.data import RESULTS, kind_of
from glue_starclf.qt.image_viewer import StarClusterImageViewer
from glue_starclf.qt.inspector import ClusterInspectorViewer

SESSION = Path(__file__).parent / "data" / "flat_layout_session.glu"


def test_flat_layout_session_restores(app, qtbot, mock_files, tmp_path):
    from glue_qt.app import GlueApplication
    text = SESSION.read_text()
    for old in ("glue_starclf.glue_io.mosaic_factory", "glue_starclf.glue_io.catalog_factory",
                "glue_starclf.qt.image_viewer.StarClusterImageViewer",
                "glue_starclf.qt.inspector.ClusterInspectorViewer",
                "glue_starclf.qt.inspector.InspectorLayerArtist"):
        assert f'"{old}"' in text
    truth_catalog(mock_files, tmp_path)
    text = (text.replace("@MOSAIC_DIR@", str(Path(mock_files["F555W"]).parent))
            .replace("@CATALOG_DIR@", str(tmp_path)))
    path = tmp_path / "flat_layout_session.glu"
    path.write_text(text)
    restored = GlueApplication.restore_session(str(path))
    try:
        dc = restored.data_collection
        assert {d.label for d in dc} == {"mock_drc", "catalog", "star clusters"}
        mosaic = next(d for d in dc if d.label == "mock_drc")
        assert mosaic.shape == (320, 320)
        np.testing.assert_allclose(mosaic["F555W"][:8, :8],
                                   mock_files_pixels(mock_files["F555W"])[:8, :8])
        res = next(d for d in dc if kind_of(d) == RESULTS)
        assert res.shape[0] > 0
        catalog = next(d for d in dc if d.label == "catalog")
        assert "p_cluster" in [c.label for c in catalog.components]
        assert np.isfinite(catalog["p_cluster"]).all()
        viewers = [v for tab in restored.viewers for v in tab]
        assert {type(v).__name__ for v in viewers} >= {
            "StarClusterImageViewer", "ClusterInspectorViewer", "ScatterViewer", "HistogramViewer"}
        image = next(v for v in viewers if isinstance(v, StarClusterImageViewer))
        assert any(la.layer is res for la in image.layers)
        assert "starclf:classify" in image.toolbar.tools
        insp = next(v for v in viewers if isinstance(v, ClusterInspectorViewer))
        assert insp.state.sort_by == "p_cluster"
        qtbot.waitUntil(lambda: len(insp.tiles) == min(res.shape[0], insp.state.max_stamps),
                        timeout=60_000)
    finally:
        restored.close()


def mock_files_pixels(path):
    from astropy.io import fits
    with fits.open(path) as hdul:
        return next(h.data for h in hdul if h.data is not None).astype(float)
