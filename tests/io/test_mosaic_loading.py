"""Mosaic loading (`glue_starclf.io.mosaic`): bands, memory maps, WCS and shape checks."""

import logging
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from glue_starclf.io.bands import BANDS, VEGA_ZEROPOINT
from glue_starclf.io.mosaic import (BandMismatchError, Mosaic, band_from_header,
                                    is_memory_mapped, open_mosaic, parse_image_arg)
from glue_starclf.sim.mosaic import random_field, write_mosaic


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """A 256 x 256 mock field on disk: (MockField, {band: path, "truth": path})."""
    mock = random_field(seed=0, shape=(256, 256), n_sources=20)
    paths = write_mosaic(mock, tmp_path_factory.mktemp("field"))
    return mock, paths


def _wcs(crval=(150.0, 2.0), scale_arcsec=0.04, shape=(64, 64)):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    s = scale_arcsec / 3600
    w.wcs.cd = [[-s, 0], [0, s]]
    return w


def _write(path, shape=(64, 64), wcs="default", **keywords):
    """A small float32 FITS image with optional WCS and header keywords."""
    header = fits.Header()
    if wcs == "default":
        wcs = _wcs(shape=shape)
    if wcs is not None:
        header.update(wcs.to_header())
    for k, v in keywords.items():
        header[k] = v
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    fits.PrimaryHDU(data, header=header).writeto(path)
    return path


# -- the happy path ---------------------------------------------------------------

def test_bands_from_headers_memory_mapped(field):
    mock, paths = field
    with open_mosaic([paths[b] for b in reversed(BANDS)]) as m:
        assert m.bands == BANDS
        assert m.band_mask.all() and m.missing_bands == ()
        assert m.shape == (256, 256)
        assert m.wcs is not None and m.wcs.has_celestial
        assert m.flags == []
        for j, band in enumerate(BANDS):
            image = m.images[j]
            # A view of the file's memory map, not an in-memory copy.
            assert is_memory_mapped(image)
            assert not isinstance(image.base, np.ndarray) or is_memory_mapped(image.base)
            np.testing.assert_array_equal(image[100:110, 50:60],
                                          mock.images[j][100:110, 50:60].astype(np.float32))
            assert str(m.paths[band]) == str(paths[band])
        assert m[BANDS[3]] is m.images[3]
        sub = m.section("F555W", 10, 20, 30, 25)
        assert sub.shape == (5, 20) and sub.dtype == np.float32 and not is_memory_mapped(sub)
        ra, dec = m.pixel_to_sky([0.0], [0.0])
        sky = mock.wcs.pixel_to_world(0, 0)
        assert abs(ra[0] - sky.ra.deg) < 1e-9 and abs(dec[0] - sky.dec.deg) < 1e-9
        assert m.zeropoint("F555W") == (VEGA_ZEROPOINT["F555W"], "header VEGAZPT")


def test_memory_map_is_lazy(field):
    """Opening does not read the pixels: astropy's data stays a view of the file."""
    _, paths = field
    m = open_mosaic({"F555W": paths["F555W"]})
    hdul = m._hduls[0]
    assert hdul._file.memmap
    assert is_memory_mapped(m.images[3])
    m.close()


def test_explicit_bands_and_missing_band(field, caplog):
    _, paths = field
    args = [f"F336W={paths['F336W']}", f"f438w={paths['F438W']}", str(paths["F555W"]),
            f"F814W={paths['F814W']}"]
    with caplog.at_level(logging.INFO, logger="glue_starclf"):
        m = open_mosaic(args)
    assert m.bands == ("F336W", "F438W", "F555W", "F814W")
    assert m.missing_bands == ("F275W",)
    assert m.images[0] is None
    assert list(m.band_mask) == [False, True, True, True, True]
    assert "missing F275W" in caplog.text
    with pytest.raises(KeyError):
        m["F275W"]
    m.close()
    m = open_mosaic({"F555W": paths["F555W"]})
    assert m.bands == ("F555W",)
    m.close()


def test_parse_image_arg():
    assert parse_image_arg("F336W=a/b.fits")[0] == "F336W"
    assert str(parse_image_arg("F336W=a/b.fits")[1]) == "a/b.fits"
    assert parse_image_arg("some/dir=x/img.fits")[0] is None
    assert parse_image_arg("f555x=img.fits")[0] == "f555x"  # a filter name: checked as a band


def test_acs_filter_pair_and_aliases(tmp_path, caplog):
    b = _write(tmp_path / "acs.fits", FILTER1="CLEAR1L", FILTER2="F435W")
    v = _write(tmp_path / "v.fits", FILTER1="F606W", FILTER2="CLEAR2L")
    uv = _write(tmp_path / "uv.fits", FILTER="F225W")
    with caplog.at_level(logging.INFO, logger="glue_starclf"):
        m = open_mosaic([b, v, uv])
    assert m.bands == ("F275W", "F438W", "F555W")
    assert m.filters == {"F438W": "F435W", "F555W": "F606W", "F275W": "F225W"}
    assert m.flags == ["F225W-as-F275W"]
    assert "F435W used as F438W" in caplog.text
    m.close()
    assert band_from_header(fits.Header({"FILTER1": "CLEAR1L", "FILTER2": "F814W"})) == \
        ("F814W", "F814W")
    assert band_from_header(fits.Header()) is None


def test_band_from_extension_and_primary(tmp_path):
    """HST drc layout: empty primary with FILTER, image and WCS in the SCI extension."""
    primary = fits.PrimaryHDU()
    primary.header["FILTER"] = "F336W"
    primary.header["PHOTZPT"] = -21.1
    primary.header["PHOTFLAM"] = 1e-18
    sci = fits.ImageHDU(np.ones((32, 48), np.float32), header=_wcs(shape=(32, 48)).to_header(),
                        name="SCI")
    path = tmp_path / "drc.fits"
    fits.HDUList([primary, fits.BinTableHDU(Table({"a": [1]})), sci]).writeto(path)
    # the table HDU in between is skipped
    with open_mosaic([path]) as m:
        assert m.bands == ("F336W",) and m.shape == (32, 48) and m.wcs is not None
        zp, source = m.zeropoint("F336W")
        assert zp == pytest.approx(-21.1 + 45.0) and "PHOTZPT" in source
        assert m.zeropoint("F555W")[1].startswith("WFC3/UVIS")


def test_band_from_file_name_is_reported(tmp_path, caplog):
    path = _write(tmp_path / "hlsp_legus_hst_wfc3_ngc628_f814w_v1_drc.fits")
    with caplog.at_level(logging.WARNING, logger="glue_starclf"):
        m = open_mosaic([path])
    assert m.bands == ("F814W",)
    assert "taken from the file name" in caplog.text
    m.close()


# -- errors -----------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fits: no such image file"):
        open_mosaic([f"F555W={tmp_path / 'nope.fits'}"])


def test_not_fits(tmp_path):
    path = tmp_path / "img_f555w.fits"
    path.write_text("this is not a FITS file\n" * 10)
    with pytest.raises(ValueError, match="img_f555w.fits: not a FITS file"):
        open_mosaic([path])


def test_no_2d_image(tmp_path):
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((2, 8, 8), np.float32)).writeto(cube)
    with pytest.raises(ValueError, match="cube.fits: no HDU holds a 2-D image"):
        open_mosaic([f"F555W={cube}"])
    table = tmp_path / "table.fits"
    Table({"x": [1.0]}).write(table)
    with pytest.raises(ValueError, match="no HDU holds a 2-D image"):
        open_mosaic([f"F555W={table}"])


def test_unknown_band(tmp_path):
    path = _write(tmp_path / "a.fits", FILTER="F555W")
    with pytest.raises(ValueError, match="unknown band 'F999W'"):
        open_mosaic([f"F999W={path}"])
    halpha = _write(tmp_path / "ha.fits", FILTER="F658N")
    with pytest.raises(ValueError, match=r"ha.fits: unknown band: header FILTER = 'F658N'"):
        open_mosaic([halpha])
    anon = _write(tmp_path / "image.fits")
    with pytest.raises(ValueError, match=r"image.fits: cannot tell the band.*BAND="):
        open_mosaic([anon])


def test_duplicate_band(tmp_path):
    a = _write(tmp_path / "b438.fits", FILTER="F438W")
    b = _write(tmp_path / "b435.fits", FILTER2="F435W")
    with pytest.raises(ValueError, match=r"duplicate band F438W: given by .*b438.fits.*b435.fits"):
        open_mosaic([a, b])


def test_shapes_differ(tmp_path):
    a = _write(tmp_path / "v.fits", shape=(64, 64), FILTER="F555W")
    b = _write(tmp_path / "i.fits", shape=(64, 60), wcs=_wcs(shape=(64, 60)), FILTER="F814W")
    with pytest.raises(ValueError, match=r"v.fits is 64x64 .* but .*i.fits is 60x64"):
        open_mosaic([a, b])


def test_wcs_differ(tmp_path):
    a = _write(tmp_path / "v.fits", FILTER="F555W")
    shifted = _write(tmp_path / "i.fits", wcs=_wcs(crval=(150.0, 2.0 + 1 / 3600)), FILTER="F814W")
    with pytest.raises(ValueError, match=r"v.fits vs .*i.fits: pixel grids offset by up to 25 px"):
        open_mosaic([a, shifted])
    scaled = _write(tmp_path / "u.fits", wcs=_wcs(scale_arcsec=0.05), FILTER="F336W")
    with pytest.raises(ValueError, match=r"u.fits: pixel scale 0.04\"x0.04\" vs 0.05\"x0.05\""):
        open_mosaic([a, scaled])
    # A tiny offset (0.01 px) is within the tolerance.
    near = _write(tmp_path / "b.fits", wcs=_wcs(crval=(150.0, 2.0 + 0.0004 / 3600)),
                  FILTER="F438W")
    open_mosaic([a, near]).close()
    with pytest.raises(ValueError, match="offset"):
        open_mosaic([a, near], wcs_tolerance_px=0.001)
    bare = _write(tmp_path / "n.fits", wcs=None, FILTER="F275W")
    with pytest.raises(ValueError, match=r"v.fits has a celestial WCS but .*n.fits has none"):
        open_mosaic([a, bare])


def test_no_wcs_warns(tmp_path):
    path = _write(tmp_path / "v.fits", wcs=None, FILTER="F555W")
    with pytest.warns(UserWarning, match="no celestial WCS"):
        m = open_mosaic([path])
    assert m.wcs is None
    ra, dec = m.pixel_to_sky([1.0, 2.0], [3.0, 4.0])
    assert np.isnan(ra).all() and np.isnan(dec).all()
    m.close()


def test_empty_input():
    with pytest.raises(ValueError, match="no image given"):
        open_mosaic([])


def test_mosaic_repr_and_close(field):
    mock, paths = field
    m = open_mosaic({"F555W": paths["F555W"]})
    assert repr(m) == "<Mosaic 256x256 [F555W=mock_f555w_drc.fits]>"
    hdul, image = m._hduls[0], m.images[3]
    assert not hdul._file.closed
    m.close()
    # the file is released, and an array still referenced stays readable
    assert hdul._file.closed
    np.testing.assert_array_equal(image[:4, :4], mock.images[3][:4, :4].astype(np.float32))


def _rss_file_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile:"))


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MADV_DONTNEED"), reason="needs madvise")
def test_release_pages_drops_read_pages_and_keeps_data(tmp_path):
    from glue_starclf.core.cutouts import extract_stamps
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2048, 2048)).astype(np.float32)
    paths = []
    for band in BANDS:
        path = tmp_path / f"{band}.fits"
        fits.PrimaryHDU(data, header=fits.Header({"FILTER": band})).writeto(path)
        paths.append(str(path))
    mosaic = open_mosaic(paths)
    x, y = np.meshgrid(np.arange(16, 2048, 32), np.arange(16, 2048, 32))
    first = extract_stamps(mosaic, x.ravel(), y.ravel(), size=32).stamps
    before = _rss_file_kb()
    mosaic.release_pages()
    after = _rss_file_kb()
    # 5 x 16 MB read; most of it leaves the resident set.
    assert before - after > 40_000
    again = extract_stamps(mosaic, x.ravel(), y.ravel(), size=32).stamps
    np.testing.assert_array_equal(first, again)
    Mosaic.from_arrays(np.zeros((5, 8, 8), np.float32)).release_pages()  # in memory: no-op


# -- files real users have -------------------------------------------------------

def _image(shape=(48, 64)):
    rng = np.random.default_rng(5)
    return rng.normal(2.0, 0.3, shape).astype(np.float32)


def test_folder_name_with_equals_sign_is_a_path(tmp_path, monkeypatch):
    folder = tmp_path / "run=3"
    folder.mkdir()
    _write(folder / "v.fits", FILTER="F555W")
    monkeypatch.chdir(tmp_path)
    assert parse_image_arg("run=3/v.fits") == (None, Path("run=3/v.fits"))
    with open_mosaic(["run=3/v.fits"]) as m:
        assert m.bands == ("F555W",)
    with pytest.raises(ValueError, match="unknown band 'F555X'"):
        open_mosaic(["F555X=run=3/v.fits"])


def test_tile_compressed_image(tmp_path):
    data = _image()
    header = _wcs(shape=data.shape).to_header()
    header["FILTER"] = "F555W"
    path = tmp_path / "rice.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header=header,
                                                       compression_type="RICE_1")]).writeto(path)
    with open_mosaic([path]) as m:
        assert m.bands == ("F555W",) and m.shape == data.shape
        np.testing.assert_allclose(m["F555W"], data, atol=0.02)  # RICE quantises floats


@pytest.mark.parametrize("dtype, blank", [(np.int16, -32768), (np.int32, -2147483648)])
def test_scaled_integers_with_blank(tmp_path, dtype, blank):
    data = _image()
    raw = np.round((data - 2.0) / 1e-3).astype(dtype)
    raw[3, 4] = blank
    hdu = fits.PrimaryHDU(raw, header=_wcs(shape=data.shape).to_header())
    hdu.header.update({"FILTER": "F814W", "BSCALE": 1e-3, "BZERO": 2.0, "BLANK": blank})
    path = tmp_path / f"scaled_{np.dtype(dtype).name}.fits"
    hdu.writeto(path)
    with open_mosaic([path]) as m:
        image = m["F814W"]
        assert not is_memory_mapped(image)
        assert np.isnan(image[3, 4]) and np.isnan(image).sum() == 1
        ok = ~np.isnan(image)
        np.testing.assert_allclose(image[ok], data[ok], atol=6e-4)


@pytest.mark.parametrize("cut", [1000, 15000])
def test_truncated_file_is_one_line(tmp_path, cut):
    full = _write(tmp_path / "full.fits", FILTER="F555W")
    blob = full.read_bytes()
    path = tmp_path / "cut.fits"
    path.write_bytes(blob[:-cut])
    with pytest.raises(ValueError) as exc:
        open_mosaic([path])
    text = str(exc.value)
    assert text.startswith(f"{path}: file ends early: {len(blob) - cut} bytes of ")
    assert "\n" not in text


def test_band_contradicting_the_filter_keyword(tmp_path, caplog):
    """F814W file in the F555W row: refused naming both, unless forced."""
    path = _write(tmp_path / "i.fits", FILTER="F814W")
    with pytest.raises(BandMismatchError) as exc:
        open_mosaic([f"F555W={path}"])
    text = str(exc.value)
    assert str(path) in text and "F555W" in text and "FILTER = 'F814W'" in text
    assert exc.value.given == "F555W" and exc.value.value == "F814W"
    acs = _write(tmp_path / "acs.fits", FILTER1="F606W", FILTER2="CLEAR2L")
    with pytest.raises(BandMismatchError, match="FILTER1 = 'F606W'"):
        open_mosaic([f"F814W={acs}"])
    with caplog.at_level(logging.WARNING, logger="glue_starclf"):
        with open_mosaic([f"F555W={path}"], force_band=True) as m:
            assert m.bands == ("F555W",)
    assert "although its header FILTER = 'F814W'" in caplog.text
    # an alias of the same slot is no contradiction, and its filter is kept
    with open_mosaic([f"F555W={acs}"]) as m:
        assert m.filters == {"F555W": "F606W"}
