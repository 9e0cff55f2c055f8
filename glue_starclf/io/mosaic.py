"""Multi-band HST mosaics: one memory-mapped FITS image per band on one pixel grid.

A `Mosaic` holds, for each of the five model bands (`glue_starclf.io.bands.BANDS`),
a 2-D array that is a view of a memory-mapped file (or None for a missing
band), the common shape and WCS, and where every band came from. Nothing is
read until a caller indexes the arrays, so a 10k x 10k x 5 mosaic costs no
memory to open; callers take sub-arrays (`Mosaic.section`) or fancy-indexed
stamps (`glue_starclf.core.cutouts.extract_stamps`).
"""

import logging
import mmap
import os
import re
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

from .bands import ALIASES, BANDS, VEGA_ZEROPOINT, canonical_band
from .calibration import calibrate

__all__ = ["Mosaic", "open_mosaic", "parse_image_arg", "band_from_header",
           "is_memory_mapped", "BandMismatchError", "FILTER_KEYWORDS", "WCS_TOLERANCE_PX"]

log = logging.getLogger("glue_starclf")

#: Header keywords naming the filter, in the order they are tried (ACS
#: images carry a CLEAR in one of FILTER1/FILTER2).
FILTER_KEYWORDS = ("FILTER", "FILTER1", "FILTER2")

#: Largest offset [px] between the pixel grids of two bands, measured at the
#: corners and centre of the image, for their WCS to count as the same.
WCS_TOLERANCE_PX = 0.05

#: Bands whose stand-in is worth a flag on every result: F225W is far bluer
#: than F275W, while F435W/F606W are the usual ACS stand-ins of LEGUS.
_FLAGGED_ALIASES = {"F225W"}

# An HST filter name: F + 3-4 digits + width letter(s) (W, M, N, LP, X ...).
_HST_FILTER = re.compile(r"^F\d{3,4}[A-Z]{1,2}$")
_FILE_BAND = re.compile(r"(?<![a-z0-9])(f\d{3}w)(?![a-z0-9])", re.I)


class BandMismatchError(ValueError):
    """A band given for a file contradicts the file's FILTER keyword.

    Attributes
    ----------
    path : Path
    given : str
        The band as given (``F555W`` of ``F555W=path``).
    keyword, value : str
        The header keyword and the filter it names.
    """

    def __init__(self, path, given, keyword, value):
        self.path, self.given, self.keyword, self.value = Path(path), given, keyword, value
        super().__init__(f"{path}: given as {given} but its header {keyword} = {value!r} "
                         f"names another band; refused (use --force-band to use it as "
                         f"{given} anyway)")


def is_memory_mapped(array):
    """True if ``array`` is a view of a memory-mapped file (nothing read yet).

    Parameters
    ----------
    array : ndarray

    Returns
    -------
    bool
    """
    a = array
    while a is not None:
        if isinstance(a, (np.memmap, mmap.mmap)):
            return True
        a = getattr(a, "base", None)
    return False


def _mmap_of(array):
    """The `mmap.mmap` behind a memory-mapped array, or None."""
    a = array
    while a is not None:
        if isinstance(a, mmap.mmap):
            return a
        m = getattr(a, "_mmap", None)
        if isinstance(m, mmap.mmap):
            return m
        a = getattr(a, "base", None)
    return None


def parse_image_arg(arg):
    """Split an image argument into ``(band or None, path)``.

    Parameters
    ----------
    arg : str or path-like
        ``"F336W=path.fits"`` or a plain path.

    Returns
    -------
    (str or None, Path)
        The band as written (not yet checked) and the path.
    """
    if isinstance(arg, os.PathLike):
        return None, Path(arg)
    text = str(arg)
    head, sep, tail = text.partition("=")
    # "BAND=path" only when the part before "=" is a filter name (a typo such
    # as F555X still is, and is refused as an unknown band); "run=3/f.fits"
    # is a path.
    if sep and _HST_FILTER.match(head.strip().upper()):
        return head.strip(), Path(tail.strip())
    return None, Path(text)


def _named_filters(headers):
    """``(keyword, filter, band or None)`` of every FILTER/FILTER1/FILTER2 naming an HST
    filter (ACS's CLEAR1L and the like skipped), in header and keyword order."""
    for h in headers:
        for key in FILTER_KEYWORDS:
            value = str(h.get(key, "")).strip().upper()
            try:
                yield key, value, canonical_band(value)
            except ValueError:
                if _HST_FILTER.match(value):
                    yield key, value, None


def _header_filter(headers):
    """``(keyword, filter)`` of the first FILTER/FILTER1/FILTER2 naming an HST filter, or None."""
    return next(((k, v) for k, v, _ in _named_filters(headers)), None)


def band_from_header(header, path=None):
    """The model band named by a header's FILTER/FILTER1/FILTER2, or None.

    Parameters
    ----------
    header : astropy.io.fits.Header or sequence of Header
        Headers searched in order (e.g. the image HDU's and the primary).
    path : path-like, optional
        Named in the error message.

    Returns
    -------
    (str, str) or None
        ``(band, filter as written)``, or None when no keyword names a filter.

    Raises
    ------
    ValueError
        If the first filter named is an HST filter that is none of the five
        bands or their aliases (e.g. F658N).
    """
    headers = [header] if isinstance(header, fits.Header) else list(header)
    named = list(_named_filters(headers))
    for _, value, band in named:
        if band is not None:
            return band, value
    if named:
        other = named[0]
        where = f"{path}: " if path is not None else ""
        raise ValueError(f"{where}unknown band: header {other[0]} = {other[1]!r} is not one "
                         f"of {', '.join(BANDS)} (or {', '.join(ALIASES)})")
    return None


def _band_from_name(path):
    found = set()
    for m in _FILE_BAND.finditer(Path(path).name):
        try:
            found.add((canonical_band(m.group(1)), m.group(1).upper()))
        except ValueError:
            pass
    return found.pop() if len(found) == 1 else None


def _image_hdu(hdul, path):
    """Index of the first HDU with 2-D data, from the headers alone."""
    for i, hdu in enumerate(hdul):
        h = hdu.header
        if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)) and \
                not isinstance(hdu, fits.CompImageHDU):
            continue
        if h.get("NAXIS", 0) == 2 or (isinstance(hdu, fits.CompImageHDU) and h.get("ZNAXIS", 0) == 2):
            if isinstance(hdu, fits.CompImageHDU):  # astropy >= 6 shows the image's NAXISn
                ny = h.get("ZNAXIS2", h.get("NAXIS2", 0))
                nx = h.get("ZNAXIS1", h.get("NAXIS1", 0))
            else:
                ny, nx = h.get("NAXIS2", 0), h.get("NAXIS1", 0)
            if ny > 0 and nx > 0:
                return i
    raise ValueError(f"{path}: no HDU holds a 2-D image")


def _is_scaled(header):
    """True for an integer image with BSCALE/BZERO/BLANK (astropy cannot memory-map it)."""
    return header.get("BITPIX", -32) > 0 and any(
        k in header for k in ("BSCALE", "BZERO", "BLANK")) and not (
        header.get("BSCALE", 1) == 1 and header.get("BZERO", 0) == 0 and "BLANK" not in header)


def _check_complete(hdul, i, path):
    """Refuse a file that ends before the image's data do (a truncated download)."""
    info = hdul.fileinfo(i)
    h = hdul[i].header
    if isinstance(hdul[i], fits.CompImageHDU):
        # The compressed table's bytes, less the block padding a writer may omit.
        need = info["datLoc"] + max(info["datSpan"] - 2879, 0)
    else:
        need = info["datLoc"] + abs(h.get("BITPIX", 8)) // 8 * h.get("NAXIS1", 0) * h.get(
            "NAXIS2", 0)
    size = os.path.getsize(path)
    if size < need:
        raise ValueError(f"{path}: file ends early: {size} bytes of {need} (a truncated "
                         f"download? fetch it again)")


def _all_empty(image, block=1 << 20):
    """True if an image holds no finite non-zero pixel (read block by block, stops early)."""
    flat = image.reshape(-1) if image.flags.c_contiguous else np.ravel(image)
    for i in range(0, flat.size, block):
        part = np.asarray(flat[i:i + block])
        if np.any(np.isfinite(part) & (part != 0)):
            return False
    return True


def _read_wcs(header, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            w = WCS(header)
        except Exception as exc:  # malformed keywords: treated as no WCS
            log.warning("%s: WCS unreadable (%s)", path, exc)
            return None
    if not w.has_celestial:
        return None
    w = w.celestial
    # A bare header gives a "celestial" WCS only when CTYPE says so.
    return w if w.wcs.ctype[0] and w.wcs.ctype[1] else None


def _wcs_difference(wa, wb, shape, tol):
    """Why two celestial WCS differ on a grid, or None when they agree."""
    sa = proj_plane_pixel_scales(wa) * 3600.0
    sb = proj_plane_pixel_scales(wb) * 3600.0
    if not np.allclose(sa, sb, rtol=1e-4, atol=0):
        return (f"pixel scale {sa[0]:.5g}\"x{sa[1]:.5g}\" vs "
                f"{sb[0]:.5g}\"x{sb[1]:.5g}\"")
    ny, nx = shape
    px = np.array([0, nx - 1, 0, nx - 1, (nx - 1) / 2], float)
    py = np.array([0, 0, ny - 1, ny - 1, (ny - 1) / 2], float)
    ra, dec = wa.all_pix2world(px, py, 0)
    qx, qy = wb.all_world2pix(ra, dec, 0)
    off = float(np.max(np.hypot(qx - px, qy - py)))
    if not off <= tol:
        ca, cb = wa.wcs.crval, wb.wcs.crval
        return (f"pixel grids offset by up to {off:.3g} px "
                f"(CRVAL {ca[0]:.7f},{ca[1]:.7f} CRPIX {wa.wcs.crpix[0]:g},{wa.wcs.crpix[1]:g} vs "
                f"CRVAL {cb[0]:.7f},{cb[1]:.7f} CRPIX {wb.wcs.crpix[0]:g},{wb.wcs.crpix[1]:g})")
    return None


class Mosaic:
    """Five-band image set on one pixel grid, memory-mapped.

    Build it with `open_mosaic`. Close it (or use it as a context manager)
    to release the files; arrays taken from it before closing stay valid as
    long as they are referenced.

    Attributes
    ----------
    images : tuple of (2-D ndarray or None)
        One per band in `BANDS` order; views of memory-mapped files, None
        for a missing band. Index them (``images[3][y0:y1, x0:x1]``) to read.
    shape : (int, int)
        ``(ny, nx)`` of every band.
    wcs : astropy.wcs.WCS or None
        Celestial WCS of the first band given; None when it has none.
    band_mask : ndarray of bool, shape (5,)
        True for bands present.
    paths : dict
        ``{band: Path}`` of the bands present.
    filters : dict
        ``{band: filter as in the file}``, e.g. ``{"F438W": "F435W"}``.
    headers : dict
        ``{band: Header}`` of each image HDU (primary keywords merged in).
    calibration : dict
        ``{band: glue_starclf.io.calibration.BandCalibration}``: the factor that
        turns each band's pixel values into the models' reference e-/s, and
        where it came from (empty for in-memory mosaics: taken as reference).
    pixel_scale : float or None
        Pixel side ["/px] from the WCS (None without one: taken as 0.04).
    flags : list of str
        Mosaic-wide flags for every result, e.g. ``"F225W-as-F275W"``.
    """

    def __init__(self, images, shape, wcs, paths, filters, headers, hduls=(), calibration=None,
                 pixel_scale=None):
        """Made by `open_mosaic` and `from_arrays`: the arguments are the attributes of the
        same names; ``hduls`` are the open FITS files that `close` closes."""
        self.images = tuple(images)
        self.shape = tuple(int(v) for v in shape)
        self.wcs = wcs
        self.paths = dict(paths)
        self.filters = dict(filters)
        self.headers = dict(headers)
        self.band_mask = np.array([im is not None for im in self.images], bool)
        self.flags = [f"{f}-as-{b}" for b, f in self.filters.items()
                      if f in _FLAGGED_ALIASES]
        self.calibration = dict(calibration or {})
        self.pixel_scale = None if pixel_scale is None else float(pixel_scale)
        self._hduls = list(hduls)

    @property
    def factors(self):
        """Per-band factors (`BANDS` order) from pixel values to reference e-/s (1 if none)."""
        return np.array([self.calibration[b].factor if b in self.calibration else 1.0
                         for b in BANDS], np.float32)

    def release_pages(self):
        """Drop the image pages read so far from this process's resident memory.

        Pages of a memory-mapped file stay resident once read, so a pass over
        a large mosaic would end up holding all of it; after this call they
        are read again (usually from the OS file cache) when next needed.
        In-memory images are untouched.
        """
        if not hasattr(mmap, "MADV_DONTNEED"):
            return
        for image in self.images:
            m = _mmap_of(image) if image is not None else None
            if m is not None and not m.closed:
                m.madvise(mmap.MADV_DONTNEED)

    @classmethod
    def from_arrays(cls, images, wcs=None):
        """A mosaic of in-memory images, shape (5, ny, nx) in `BANDS` order (e.g. a mock).

        Parameters
        ----------
        images : sequence of 5 (2-D array_like or None)
            One per band in `BANDS` order, in reference e-/s; None for a
            missing band (at least one must be given).
        wcs : astropy.wcs.WCS, optional
            Celestial WCS; None for pixel-only use.

        Returns
        -------
        Mosaic
            No files, headers or calibration; pixel scale unknown.
        """
        images = [None if im is None else np.asarray(im) for im in images]
        if len(images) != len(BANDS):
            raise ValueError(f"expected {len(BANDS)} band images, got {len(images)}")
        shape = next(im.shape for im in images if im is not None)
        return cls(images, shape, wcs, {}, {}, {})

    @property
    def bands(self):
        """Bands present, in `BANDS` order."""
        return tuple(b for b, ok in zip(BANDS, self.band_mask) if ok)

    @property
    def missing_bands(self):
        """Bands absent, in `BANDS` order."""
        return tuple(b for b, ok in zip(BANDS, self.band_mask) if not ok)

    def __getitem__(self, band):
        """The (memory-mapped) image of a band; KeyError when it is missing."""
        im = self.images[BANDS.index(canonical_band(band))]
        if im is None:
            raise KeyError(f"band {canonical_band(band)} is not in this mosaic")
        return im

    def section(self, band, x0=0, y0=0, x1=None, y1=None, dtype=np.float32):
        """Read the box ``[y0:y1, x0:x1]`` of one band into memory.

        Parameters
        ----------
        band : str
        x0, y0, x1, y1 : int
            0-based, half-open box (Python slice convention), clipped to the
            image.
        dtype : numpy dtype
            Native-endian type of the copy.

        Returns
        -------
        ndarray
        """
        ny, nx = self.shape
        x1 = nx if x1 is None else x1
        y1 = ny if y1 is None else y1
        sub = self[band][max(y0, 0):min(y1, ny), max(x0, 0):min(x1, nx)]
        return np.asarray(sub, dtype=dtype)

    def zeropoint(self, band):
        """Vega magnitude of 1 image unit (e-/s) in a band, and where it came from.

        The header's ``VEGAZPT`` wins; else ``PHOTZPT`` (with ``PHOTFLAM``:
        the HST STmag zeropoint of 1 e-/s, a few 0.1 mag from Vega); else the
        WFC3/UVIS Vega zeropoint of `glue_starclf.io.bands.VEGA_ZEROPOINT`.

        Returns
        -------
        (float, str)
        """
        band = canonical_band(band)
        h = self.headers.get(band, fits.Header())
        if "VEGAZPT" in h:
            return float(h["VEGAZPT"]), "header VEGAZPT"
        if "PHOTZPT" in h:
            zp = float(h["PHOTZPT"])
            flam = float(h.get("PHOTFLAM", 0) or 0)
            if flam > 0:
                return zp - 2.5 * np.log10(flam), "header PHOTZPT/PHOTFLAM (STmag)"
            return zp, "header PHOTZPT"
        return VEGA_ZEROPOINT[band], "WFC3/UVIS Vega zeropoint (no header keyword)"

    def pixel_to_sky(self, x, y):
        """ICRS ``(ra, dec)`` [deg] of 0-based pixels; NaN without a WCS."""
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        if self.wcs is None or x.size == 0:
            return np.full(x.shape, np.nan), np.full(y.shape, np.nan)
        ra, dec = self.wcs.all_pix2world(x, y, 0)
        return np.asarray(ra, float), np.asarray(dec, float)

    def close(self):
        """Release the files (arrays still referenced stay readable)."""
        for h in self._hduls:
            h.close()
        self._hduls = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        present = ", ".join(f"{b}={p.name}" for b, p in self.paths.items())
        return f"<Mosaic {self.shape[1]}x{self.shape[0]} [{present}]>"


def _as_items(images):
    if isinstance(images, dict):
        return [(str(b), Path(p)) for b, p in images.items()]
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    return [parse_image_arg(a) for a in images]


def _open_one(band_given, path, force_band=False):
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such image file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    try:
        with warnings.catch_warnings():
            # "File may have been truncated": told below, in one line with the sizes.
            warnings.simplefilter("ignore", AstropyUserWarning)
            hdul = fits.open(path, memmap=True, lazy_load_hdus=False)
    except (OSError, ValueError, TypeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a FITS file ({first})") from None
    try:
        i = _image_hdu(hdul, path)
        _check_complete(hdul, i, path)
        if _is_scaled(hdul[i].header):
            # Scaled integers cannot be memory-mapped: read (and scale) them now.
            hdul.close()
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
        hdu = hdul[i]
        header = hdu.header.copy()
        if i > 0:  # inherit primary keywords such as FILTER, PHOTZPT
            for card in hdul[0].header.cards:
                if card.keyword not in header and card.keyword not in ("", "COMMENT", "HISTORY"):
                    try:
                        header[card.keyword] = card.value
                    except (ValueError, KeyError):  # odd cards are not needed
                        pass
        if band_given is not None:
            band = canonical_band(band_given)  # ValueError: unknown band
            written = band_given.strip().upper()
            named = _header_filter([hdu.header, hdul[0].header])
            if named is not None and named[1] != written:
                try:
                    same = canonical_band(named[1]) == band
                except ValueError:
                    same = False
                if not same and not force_band:
                    raise BandMismatchError(path, written, *named)
                if not same:
                    log.warning("%s: used as %s although its header %s = %r (--force-band)",
                                path, written, *named)
                else:
                    written = named[1]  # F438W=acs.fits of an F435W file: calibrated as F435W
        else:
            found = band_from_header([hdu.header, hdul[0].header], path)
            if found is None:
                found = _band_from_name(path)
                if found is None:
                    raise ValueError(
                        f"{path}: cannot tell the band (no {'/'.join(FILTER_KEYWORDS)} "
                        f"header keyword or file name names one); give it as BAND={path}")
                log.warning("%s: band %s taken from the file name (no %s header keyword "
                            "names a band)", path, found[0], "/".join(FILTER_KEYWORDS))
            band, written = found
        if isinstance(hdu, fits.CompImageHDU):
            log.warning("%s: tile-compressed image, decompressed into memory", path)
        elif _is_scaled(hdu.header):
            log.warning("%s: scaled integer image (BSCALE/BZERO/BLANK), read into memory", path)
        data = hdu.data
        wcs = _read_wcs(hdu.header, path)
    except Exception:
        hdul.close()
        raise
    return band, written, data, header, wcs, hdul


def open_mosaic(images, wcs_tolerance_px=None, force_band=False, zeropoints=None):
    """Open one FITS image per band as a memory-mapped `Mosaic`.

    Parameters
    ----------
    images : dict, str, path-like or sequence
        ``{band: path}``, or ``"BAND=path"`` strings and/or plain paths. For a
        plain path the band is the first of the header keywords FILTER,
        FILTER1, FILTER2 (image HDU, then primary) that names one of the five
        bands or an alias (an ACS "CLEAR1L" is skipped); the file name
        (``..._f435w_...``) is the last resort and is logged as a warning.
        Aliases map to their slot (F435W -> F438W, F606W -> F555W, F225W ->
        F275W, the last flagged ``F225W-as-F275W``).
    wcs_tolerance_px : float, optional
        Largest pixel-grid offset between bands; default `WCS_TOLERANCE_PX`.
    force_band : bool
        Use the band of ``BAND=path`` even where the file's FILTER/FILTER1/
        FILTER2 names another one (default: `BandMismatchError`).
    zeropoints : dict, optional
        ``{band: Vega magnitude of one unit per second}``, winning over the
        header's calibration (`glue_starclf.io.calibration.calibrate`).

    Returns
    -------
    Mosaic
        The image of each file is its first HDU with 2-D data, memory-mapped
        (never copied); the WCS is that HDU's. Bands not given are missing
        (``band_mask`` False). Without a celestial WCS, ``wcs`` is None and a
        warning says that sky positions will be NaN.

    Raises
    ------
    FileNotFoundError
        If a file does not exist.
    ValueError
        If a file is not FITS or has no 2-D image, a band is unknown or
        given twice, no image is given, or two bands differ in shape or WCS
        (the message names both files and the difference).
    """
    items = _as_items(images)
    if not items:
        raise ValueError("no image given: need at least one BAND=path")
    tol = WCS_TOLERANCE_PX if wcs_tolerance_px is None else float(wcs_tolerance_px)
    slots = [None] * len(BANDS)
    paths, filters, headers, wcses, hduls = {}, {}, {}, {}, []
    try:
        for band_given, path in items:
            band, written, data, header, wcs, hdul = _open_one(band_given, path, force_band)
            hduls.append(hdul)
            if band in paths:
                raise ValueError(f"duplicate band {band}: given by {paths[band]} "
                                 f"({filters[band]}) and {path} ({written})")
            j = BANDS.index(band)
            slots[j] = data
            paths[band], filters[band], headers[band], wcses[band] = path, written, header, wcs
            if written != band:
                log.info("%s: %s used as %s", path, written, band)
        order = list(paths)  # in the order given
        first = order[0]
        shape = slots[BANDS.index(first)].shape
        for b in order[1:]:
            s = slots[BANDS.index(b)].shape
            if s != shape:
                raise ValueError(f"bands differ in shape: {paths[first]} is {shape[1]}x{shape[0]} "
                                 f"(nx x ny) but {paths[b]} is {s[1]}x{s[0]}; all bands "
                                 f"must share one pixel grid")
        wcs = wcses[first]
        for b in order[1:]:
            wb = wcses[b]
            if (wcs is None) != (wb is None):
                has, lacks = (paths[first], paths[b]) if wb is None else (paths[b], paths[first])
                raise ValueError(f"bands differ in WCS: {has} has a celestial WCS but "
                                 f"{lacks} has none")
            if wcs is not None:
                diff = _wcs_difference(wcs, wb, shape, tol)
                if diff:
                    raise ValueError(f"bands differ in WCS: {paths[first]} vs {paths[b]}: {diff}")
        calibration = {}
        zeropoints = {canonical_band(b): float(v) for b, v in (zeropoints or {}).items()}
        for b in order:
            if b in zeropoints:
                log.info("%s: zeropoint %g given for %s", paths[b], zeropoints[b], b)
            calibration[b] = calibrate(b, filters[b], headers[b], paths[b],
                                       zeropoint=zeropoints.get(b))
        unknown = sorted(set(zeropoints) - set(order))
        if unknown:
            raise ValueError(f"--zeropoint given for {', '.join(unknown)}, which no image is")
        for b in order:
            if _all_empty(slots[BANDS.index(b)]):
                log.warning("%s: all NaN or zero over the mosaic; band %s treated as missing",
                            paths[b], b)
                slots[BANDS.index(b)] = None
        if all(im is None for im in slots):
            raise ValueError(f"every band is all NaN or zero: "
                             f"{', '.join(str(paths[b]) for b in order)}")
    except Exception:
        for h in hduls:
            h.close()
        raise
    scale = None
    if wcs is not None:
        scale = float(np.mean(proj_plane_pixel_scales(wcs)) * 3600.0)
    if wcs is None:
        warnings.warn(f"{paths[first]}: no celestial WCS in the header; ra/dec will be NaN "
                      f"and ra/dec catalogs cannot be used", UserWarning, stacklevel=2)
    mosaic = Mosaic(slots, shape, wcs, paths, filters, headers, hduls, calibration, scale)
    for b, c in calibration.items():
        if c.factor != 1.0:
            log.info("%s: %s %s calibrated to WFC3/UVIS %s e-/s: x %.4g (%s%s%s)", paths[b],
                     c.instrument, c.filter, b, c.factor, c.zeropoint,
                     f", colour term {c.colour_term:+.3f} mag" if c.colour_term else "",
                     f", divided by EXPTIME {c.exptime:g} s" if c.exptime else "")
    log.info("mosaic %dx%d, bands %s%s", shape[1], shape[0], ", ".join(mosaic.bands),
             f"; missing {', '.join(mosaic.missing_bands)}" if mosaic.missing_bands else "")
    return mosaic
