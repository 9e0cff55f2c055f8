"""Clean-room renderer of LEGUS-anchored 5-band HST mosaics (third implementation).

Written from ``shared/specs/mock-hst-data.md`` alone, as a measurement tool:
it renders a region of a real LEGUS field with one mock source per catalog
row, so that models can be scored on renderings they were not trained on.

Interpretation choices
----------------------
- **Region**: the ``region_size``² window (searched on a 100 px grid inside
  the catalog's extent) holding the most human-classified rows (class 1-4).
- **WCS**: a TAN WCS fitted to the catalog's x/y -> ra/dec
  (`astropy.wcs.utils.fit_wcs_from_points`), shifted to the region origin.
- **PSF**: TinyTim WFC3/UVIS PSF per band, broadened by one Gaussian (same
  sigma in all bands, standing in for drizzling and jitter) chosen so that
  the V stellar CI equals the field's stellar locus, taken as the 5th
  percentile of the class-4 CIs (LEGUS cut the catalog just above the locus).
- **Totals**: every source's noiseless flux in each band equals the row's
  magnitude (Vega zeropoints of the brief). Bands with no magnitude get the
  median colour (relative to V) of the class's rows; bands flagged outside
  are left at zero flux there.
- **CI**: each extended profile's scale is read off a table of V CI versus
  scale for that profile (computed once per field with the broadened PSF),
  so the isolated CI follows the row's CI.
- **Classes**: 1 = round EFF (q 0.85-1, gamma 2.5-4); 2 = elongated EFF
  (q 0.4-0.8) or EFF plus an offset component with 15-35 % of the flux;
  3 = 2-6 point-like peaks (each >= 10 % of the brightest, >= 1.5 FWHM
  apart, within 3-15 pc) on a diffuse EFF holding 30-70 % of the flux;
  4 = star with a faint blend (CI within 0.1 of the locus), else asterism (2-4 stars 2-8 px
  apart), galaxy (Sérsic n 0.8-4, CI-matched r_e) or cosmic-ray artifact
  (half of one band's flux in an unconvolved 1-3 px track) in 25:20:20.
- **Class 0 rows** (never inspected) get the class of a random human row
  among the 25 nearest in CI (``drawn`` True).
- **Background**: exponential disk plus a two-arm logarithmic spiral with a
  dust lane on its inner edge, resolved field stars (power-law luminosity
  function), sky; Poisson noise and read noise (3.1 e⁻), exposure times
  x0.5-2 around the LEGUS typical values, registration offsets <= 0.1 px
  of the non-V bands (applied to the sources' positions, not the WCS).
- **CI measurement**: apertures of 1 and 3 px with the sky the median of a
  7-8 px annulus, on the image and on the isolated model alike.
"""

from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs.utils import fit_wcs_from_points
from photutils.aperture import CircularAnnulus, CircularAperture, aperture_photometry
from scipy.ndimage import fourier_shift, gaussian_filter
from scipy.signal import fftconvolve, oaconvolve

from glue_starclf.io.bands import BANDS
from glue_starclf.io.catalogs import legus_distance_mpc, read_legus_tab

__all__ = ["VEGA", "PHOTFLAM", "PHOTPLAM", "EXPTIME", "render_anchored_field"]

#: Vega mag of 1 e⁻/s, WFC3/UVIS2 (STScI 2020 tables).
VEGA = {"F275W": 22.65, "F336W": 23.46, "F438W": 24.98, "F555W": 25.81, "F814W": 24.67}
#: Inverse sensitivity [erg cm⁻² Å⁻¹ per e⁻], same tables.
PHOTFLAM = {"F275W": 3.216e-18, "F336W": 1.321e-18, "F438W": 6.760e-19,
            "F555W": 1.963e-19, "F814W": 1.498e-19}
#: Pivot wavelength [Å], same tables.
PHOTPLAM = {"F275W": 2709.7, "F336W": 3354.5, "F438W": 4326.2, "F555W": 5308.4,
            "F814W": 8039.1}
#: Typical LEGUS exposure times [s] (spec), randomised x0.5-2 per render.
EXPTIME = {"F275W": 2400.0, "F336W": 1100.0, "F438W": 900.0, "F555W": 1100.0,
           "F814W": 900.0}
PSF_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "psf"
PIXEL_SCALE = 0.04
READ_NOISE = 3.1
OVERSAMPLE = 3
HALF = 20  # model stamp half-size [px]; the PSF adds its own half-size
V = "F555W"
N_TRIES = 6  # shape draws per source, see the render loop


def _flux(mag, band):
    return 10.0 ** (-0.4 * (mag - VEGA[band]))


def _ci(image, x, y):
    """V CI at (x, y): mag(r=1 px) - mag(r=3 px), local sky from a 7-8 px annulus.

    The sky annulus is the LEGUS photometry's; without it the galaxy light
    under faint sources would raise their CI by tenths of a magnitude.
    """
    # median, so that a neighbour in the annulus does not lift the sky
    values = CircularAnnulus((x, y), 7.0, 8.0).to_mask(method="center").get_values(image)
    sky = np.nanmedian(values) if values.size else 0.0
    t = aperture_photometry(image, [CircularAperture((x, y), 1.0),
                                    CircularAperture((x, y), 3.0)])
    f1 = t["aperture_sum_0"][0] - sky * np.pi
    f3 = t["aperture_sum_1"][0] - sky * 9 * np.pi
    return float(-2.5 * np.log10(f1 / f3)) if f1 > 0 and f3 > 0 else np.nan


def _grid(dx, dy):
    """Oversampled pixel-centre offsets of the model stamp from the source."""
    n = 2 * HALF + 1
    s = (np.arange(n * OVERSAMPLE) + 0.5) / OVERSAMPLE - HALF - 0.5
    return np.meshgrid(s - dx, s - dy)


def _bin(model):
    n = 2 * HALF + 1
    return model.reshape(n, OVERSAMPLE, n, OVERSAMPLE).sum(axis=(1, 3))


def _eff(dx, dy, a, gamma, q=1.0, theta=0.0, rmax=np.inf):
    """Unit-sum EFF (004 eq. 1) of core radius ``a`` [px] and axis ratio ``q``."""
    x, y = _grid(dx, dy)
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * x + s * y, (-s * x + c * y) / q
    r2 = u ** 2 + v ** 2
    img = (1 + r2 / a ** 2) ** (-gamma / 2) * (r2 <= rmax ** 2)
    img = _bin(img)
    return img / img.sum()


def _sersic(dx, dy, re, n, q=1.0, theta=0.0):
    """Unit-sum Sérsic profile of effective radius ``re`` [px]."""
    x, y = _grid(dx, dy)
    c, s = np.cos(theta), np.sin(theta)
    r = np.hypot(c * x + s * y, (-s * x + c * y) / q)
    b = 2 * n - 1 / 3 + 0.009876 / n
    img = _bin(np.exp(-b * ((r / re) ** (1 / n) - 1)))
    return img / img.sum()


def _point(dx, dy):
    """Unit delta at sub-pixel offset (dx, dy), as a band-limited Fourier shift."""
    n = 2 * HALF + 1
    img = np.zeros((n, n))
    img[HALF, HALF] = 1.0
    return np.real(np.fft.ifft2(fourier_shift(np.fft.fft2(img), (dy, dx))))


class _Field:
    """PSFs and CI-versus-scale tables of one render."""

    def __init__(self, sigma):
        self.sigma = sigma
        self.psf = {}
        for band in BANDS:
            psf = fits.getdata(PSF_DIR / f"wfc3_uvis_{band.lower()}.fits").astype(float)
            if sigma:
                psf = gaussian_filter(psf, sigma, mode="constant")
            self.psf[band] = psf / psf.sum()
        self._tables = {}

    def convolve(self, model, band):
        return fftconvolve(model, self.psf[band])

    def ci_of(self, model):
        img = self.convolve(model, V)
        c = img.shape[0] // 2
        return _ci(img, c, c)

    def scale_for_ci(self, key, make, ci):
        """Scale of ``make(scale)`` whose V CI is ``ci`` (clipped to the table)."""
        if key not in self._tables:
            scales = np.geomspace(0.1, 16.0, 26)
            cis = np.array([self.ci_of(make(s)) for s in scales])
            self._tables[key] = (np.maximum.accumulate(cis), scales)
        cis, scales = self._tables[key]
        return float(np.interp(ci, cis, scales))


def _stellar_ci(sigma):
    f = _Field(sigma)
    return f.ci_of(_point(0.0, 0.0))


def _psf_sigma(target):
    """Gaussian broadening [px] giving the V stellar CI ``target`` (bisection)."""
    lo, hi = 0.0, 3.0
    if _stellar_ci(lo) >= target:
        return 0.0
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _stellar_ci(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


def _choose_region(tab, size):
    human = (tab["class"] >= 1) & (tab["class"] <= 4)
    x, y = np.asarray(tab["x"], float), np.asarray(tab["y"], float)
    best, region = -1, (0, 0)
    xs = np.arange(max(0, np.nanmin(x) - 50), max(1, np.nanmax(x) - size + 51), 100)
    ys = np.arange(max(0, np.nanmin(y) - 50), max(1, np.nanmax(y) - size + 51), 100)
    for x0 in xs if xs.size else [0]:
        for y0 in ys if ys.size else [0]:
            n = np.sum(human & (x >= x0) & (x < x0 + size) & (y >= y0) & (y < y0 + size))
            if n > best:
                best, region = n, (int(x0), int(y0))
    return region


def _fill_mags(tab, rows):
    """Magnitudes to render per band: catalog, else the class's median colour."""
    mags = {b: np.asarray(tab[f"mag_{b}"], float)[rows] for b in BANDS}
    cls = np.asarray(tab["class"])[rows]
    v = mags[V].copy()
    # a missing V comes from any measured band and that band's median V colour
    for b in BANDS:
        col = np.nanmedian(mags[V] - mags[b])
        fill = np.isnan(v) & np.isfinite(mags[b])
        v[fill] = mags[b][fill] + (col if np.isfinite(col) else 0.0)
    v[np.isnan(v)] = 25.0
    out = {}
    for b in BANDS:
        m = mags[b].copy()
        for c in np.unique(cls):
            sel = cls == c
            col = np.nanmedian(mags[b][sel] - mags[V][sel])
            col = col if np.isfinite(col) else np.nanmedian(mags[b] - mags[V])
            col = col if np.isfinite(col) else 0.0
            fill = sel & np.isnan(m)
            m[fill] = v[fill] + col
        out[b] = m
    return out


def _assign_classes(cls, ci, rng):
    """Class of each row; class 0 gets the class of a CI neighbour among human rows."""
    cls = np.asarray(cls).copy()
    drawn = cls == 0
    human = np.flatnonzero(~drawn)
    ci_h = np.nan_to_num(ci[human], nan=np.nanmedian(ci))
    for i in np.flatnonzero(drawn):
        near = np.argsort(np.abs(ci_h - np.nan_to_num(ci[i], nan=np.nanmedian(ci))))[:25]
        cls[i] = cls[human[rng.choice(near)]] if human.size else 4
    return cls, drawn


def _class4_kind(ci, ci_star, field, rng):
    """Sub-type family of a class-4 source, drawn once so the shares hold."""
    if ci <= ci_star + 0.1:
        return "star"
    kind = rng.choice(["asterism", "galaxy", "artifact"], p=[25 / 65, 20 / 65, 20 / 65])
    if kind == "galaxy" and ci < field.ci_of(_sersic(0, 0, 0.1 / PIXEL_SCALE, 1.0)):
        kind = "asterism"  # a galaxy of r_e >= 0.1" cannot be this compact
    return str(kind)


def _source_models(cls, ci, field, rng, pc_px, kind=None):
    """Centred model (before PSF), split per band, and subtype of one source.

    Parameters
    ----------
    cls : int
        Class 1-4.
    ci : float
        Target V CI (the catalog row's).
    field : `_Field`
        PSFs and CI tables of the render.
    rng : numpy.random.Generator
        Random state.
    pc_px : float
        Pixels per parsec at the field's distance.
    kind : str, optional
        Class-4 family from `_class4_kind` ("star", "asterism", "galaxy",
        "artifact").

    Returns
    -------
    subtype : str
    parts : list
        ``(weights per band, unit-sum model stamp)`` pairs.
    artifact : tuple or None
        ``(band, unit-sum stamp)`` added unconvolved with weight 0.5 in that
        band (the parts' weights there sum to 0.5); None if no artifact.
    """
    ones = {b: 1.0 for b in BANDS}
    theta = rng.uniform(0, np.pi)
    if cls == 1:
        g, q = rng.choice([2.5, 3.0, 4.0]), rng.uniform(0.85, 1.0)
        a = field.scale_for_ci(("eff", g), lambda s: _eff(0, 0, s, g), ci)
        rt = a * rng.uniform(5, 50)
        return "cluster", [(ones, _eff(0, 0, a, g, q, theta, rt))], None
    if cls == 2:
        g = rng.choice([2.5, 3.0, 4.0])
        if rng.random() < 0.5:
            q = rng.uniform(0.4, 0.8)
            a = field.scale_for_ci(("eff", g, 0.6), lambda s: _eff(0, 0, s, g, 0.6), ci)
            return "cluster:elongated", [(ones, _eff(0, 0, a, g, q, theta))], None
        a = field.scale_for_ci(("eff", g), lambda s: _eff(0, 0, s, g), ci)
        frac = rng.uniform(0.15, 0.35)
        off = rng.uniform(0.5, 1.5) * a * 1.3  # ~r_h for these gammas
        ox, oy = off * np.cos(theta), off * np.sin(theta)
        main = {b: 1 - frac for b in BANDS}
        sec = {b: frac for b in BANDS}
        return "cluster:secondary", [(main, _eff(0, 0, a, g)),
                                     (sec, _eff(ox, oy, 0.6 * a, g))], None
    if cls == 3:
        npk = rng.integers(2, 7)
        diffuse = rng.uniform(0.3, 0.7)
        # the peaks lower the CI of the diffuse light: aim it higher by a
        # random amount and let the render loop keep the best draw
        a = field.scale_for_ci(("eff", 2.5), lambda s: _eff(0, 0, s, 2.5),
                               ci + rng.uniform(0, 0.5))
        w = rng.uniform(0.1, 1.0, npk)
        w[0] = 1.0
        w = (1 - diffuse) * w / w.sum()
        radius = min(rng.uniform(3, 15) * pc_px / 2, HALF - 4)
        pts = []
        while len(pts) < npk:  # peaks >= 1.5 FWHM (~3 px) apart
            p = rng.uniform(-radius, radius, 2) if pts else np.zeros(2)
            if all(np.hypot(*(p - o)) >= 3.0 for o in pts):
                pts.append(p)
            radius = min(radius * 1.05, HALF - 4)
        parts = [({b: diffuse for b in BANDS}, _eff(0, 0, a, 2.5))]
        parts += [({b: wi for b in BANDS}, _point(p[0], p[1]))
                  for wi, p in zip(w, pts)]
        return f"association:{npk}", parts, None
    if kind == "star":
        # a star with an unresolved blend (<= 30 % of the flux, 1-2.5 px off)
        # covers CIs just above the stellar locus
        frac = rng.uniform(0, 0.3)
        t = rng.uniform(0, 2 * np.pi)
        off = rng.uniform(1, 2.5) * np.array([np.cos(t), np.sin(t)])
        return "star", [({b: 1 - frac for b in BANDS}, _point(0, 0)),
                        ({b: frac for b in BANDS}, _point(*off))], None
    if kind == "asterism":
        n = rng.integers(2, 5)
        w = rng.uniform(0.2, 1.0, n)
        w /= w.sum()
        pos = [np.zeros(2)] + [rng.uniform(2, 8) * np.array([np.cos(t), np.sin(t)])
                               for t in rng.uniform(0, 2 * np.pi, n - 1)]
        return f"asterism:{n}", [({b: wi for b in BANDS}, _point(p[0], p[1]))
                                 for wi, p in zip(w, pos)], None
    if kind == "galaxy":
        n = rng.uniform(0.8, 4.0)
        nk = min([1.0, 2.0, 4.0], key=lambda k: abs(k - n))
        re = field.scale_for_ci(("sersic", nk), lambda s: _sersic(0, 0, s, nk), ci)
        re = float(np.clip(re, 0.1 / PIXEL_SCALE, 0.8 / PIXEL_SCALE))
        return "galaxy", [(ones, _sersic(0, 0, re, n, rng.uniform(0.4, 1.0), theta))], None
    # artifact: a cosmic-ray residual in one band on CI-matched smooth light
    a = field.scale_for_ci(("eff", 3.0), lambda s: _eff(0, 0, s, 3.0), ci)
    band = str(rng.choice(BANDS))
    track = np.zeros((2 * HALF + 1,) * 2)
    length = rng.integers(1, 4)
    track[HALF, HALF:HALF + length] = 1.0 / length
    weights = {b: (0.5 if b == band else 1.0) for b in BANDS}
    return "artifact:cosmic", [(weights, _eff(0, 0, a, 3.0))], (band, track)


def _add_source(image, field, band, parts, artifact, position, flux):
    """Add one source's PSF-convolved stamp of total ``flux`` [e⁻/s] to ``image``.

    Returns the stamp's noiseless total flux (also the part off the image).
    """
    x, y = position
    ix, iy = int(np.round(x)), int(np.round(y))
    model = sum(w[band] * m for w, m in parts)
    # the sub-pixel position as a Fourier shift of the centred model
    model = np.real(np.fft.ifft2(fourier_shift(np.fft.fft2(model), (y - iy, x - ix))))
    stamp = field.convolve(model, band)
    c = stamp.shape[0] // 2
    if artifact is not None and artifact[0] == band:
        stamp[c - HALF:c + HALF + 1, c - HALF:c + HALF + 1] += 0.5 * artifact[1]
    stamp *= flux / stamp.sum()
    ny, nx = image.shape
    lo_y, lo_x = max(0, iy - c), max(0, ix - c)
    hi_y, hi_x = min(ny, iy + c + 1), min(nx, ix + c + 1)
    if lo_y < hi_y and lo_x < hi_x:
        image[lo_y:hi_y, lo_x:hi_x] += stamp[lo_y - iy + c:hi_y - iy + c,
                                             lo_x - ix + c:hi_x - ix + c]
    return float(stamp.sum())


def _background(size, rng, flux_scale):
    """Unconvolved galaxy light [e⁻/s per px] in V: disk, spiral arms, dust lane."""
    y, x = np.mgrid[0:size, 0:size].astype(float)
    cx, cy = rng.uniform(-0.3, 1.3, 2) * size
    r = np.hypot(x - cx, y - cy) + 1.0
    phi = np.arctan2(y - cy, x - cx)
    h = rng.uniform(0.5, 1.5) * size
    pitch = np.tan(np.radians(rng.uniform(12, 25)))
    arm = np.cos(2 * (phi - np.log(r) / pitch))
    light = np.exp(-r / h) * (1 + 0.6 * np.clip(arm, 0, None) ** 2)
    dust = 1 - 0.4 * np.exp(-((arm - 0.6) / 0.15) ** 2)  # lane on the arms' inner edge
    return flux_scale * light * dust / light.max()


def _write_fits(path, image, band, wcs, exptime):
    hdr = wcs.to_header()
    hdr["FILTER"] = band
    hdr["EXPTIME"] = exptime
    hdr["BUNIT"] = "ELECTRONS/S"
    hdr["PHOTFLAM"] = PHOTFLAM[band]
    hdr["PHOTPLAM"] = PHOTPLAM[band]
    hdr["PHOTZPT"] = VEGA[band]
    fits.PrimaryHDU(image.astype(np.float32), header=hdr).writeto(path, overwrite=True)


def render_anchored_field(catalog_path, out_dir, region_size=3000, seed=0,
                          distance_mpc=None, prefix=None):
    """Render a LEGUS-anchored 5-band mock mosaic of one field region.

    Parameters
    ----------
    catalog_path : path-like
        LEGUS ``.tab`` catalog of the field.
    out_dir : path-like
        Output folder (created).
    region_size : int
        Side of the square region [px, 0.04"/px].
    seed : int
        Random seed; the render is deterministic given it.
    distance_mpc : float, optional
        Field distance; default `legus_distance_mpc` (which raises
        ValueError for fields without one).
    prefix : str, optional
        File-name prefix; default the field name.

    Returns
    -------
    dict
        ``images`` (band -> Path), ``truth``, ``catalog`` (Paths),
        ``truth_table``, ``region`` ((x0, y0, size), catalog 0-based px),
        ``distance_mpc``, ``stellar_ci``, ``psf_sigma_px``, ``field``,
        ``vega_zeropoint``.

    Raises
    ------
    FileNotFoundError
        If ``catalog_path`` does not exist.
    """
    catalog_path = Path(catalog_path)
    if not catalog_path.is_file():
        raise FileNotFoundError(f"LEGUS catalog not found: {catalog_path}")
    rng = np.random.default_rng(seed)
    tab = read_legus_tab(catalog_path)
    if distance_mpc is None:
        distance_mpc = legus_distance_mpc(catalog_path)
    field_name = str(tab.meta.get("field") or catalog_path.stem)
    prefix = prefix or field_name
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = int(region_size)

    ci_all = np.asarray(tab["ci"], float)
    star_locus = np.nanpercentile(ci_all[np.asarray(tab["class"]) == 4], 5) \
        if np.any(np.asarray(tab["class"]) == 4) else np.nanpercentile(ci_all, 2)
    sigma = _psf_sigma(star_locus)
    field = _Field(sigma)
    stellar_ci = field.ci_of(_point(0.0, 0.0))

    x0, y0 = _choose_region(tab, size)
    x, y = np.asarray(tab["x"], float) - x0, np.asarray(tab["y"], float) - y0
    rows = np.flatnonzero((x >= 0) & (x < size) & (y >= 0) & (y < size))
    sub = tab[rows]
    wcs = fit_wcs_from_points((np.asarray(tab["x"], float), np.asarray(tab["y"], float)),
                              SkyCoord(tab["ra"], tab["dec"], unit="deg"),
                              projection="TAN")
    wcs.wcs.crpix = wcs.wcs.crpix - np.array([x0, y0])

    cls, drawn = _assign_classes(sub["class"], np.asarray(sub["ci"], float), rng)
    mags = _fill_mags(tab, rows)
    pc_px = 1.0 / (distance_mpc * 1e6 * np.radians(PIXEL_SCALE / 3600))
    # registration offsets of the other bands relative to V (the catalog's frame)
    shifts = {b: rng.uniform(-0.1, 0.1, 2) * (b != V) for b in BANDS}
    exptime = {b: EXPTIME[b] * 2 ** rng.uniform(-1, 1) for b in BANDS}

    images = {b: np.zeros((size, size)) for b in BANDS}
    truth_mag = {b: np.full(len(rows), np.nan) for b in BANDS}
    ci_model = np.full(len(rows), np.nan)
    subtypes = []
    for k in range(len(rows)):
        sx, sy = x[rows[k]], y[rows[k]]
        target = sub["ci"][k] if np.isfinite(sub["ci"][k]) else stellar_ci + 0.2
        # the shape is drawn a few times (composites, q and gamma change the
        # CI) and the draw whose isolated V CI is closest to the row's kept
        kind = _class4_kind(target, stellar_ci, field, rng) if cls[k] == 4 else None
        best = None
        for _ in range(N_TRIES):
            draw = _source_models(cls[k], target, field, rng, pc_px, kind)
            ci = field.ci_of(sum(w[V] * m for w, m in draw[1]))
            if best is None or abs(ci - target) < abs(best[0] - target):
                best = (ci, draw)
        ci_model[k], (subtype, parts, artifact) = best
        subtypes.append(subtype)
        for b in BANDS:
            if not sub[f"outside_{b}"][k]:
                flux = _add_source(images[b], field, b, parts, artifact,
                                   (sx + shifts[b][0], sy + shifts[b][1]),
                                   _flux(mags[b][k], b))
                truth_mag[b][k] = VEGA[b] - 2.5 * np.log10(flux)

    # galaxy background and resolved field stars, convolved once per band
    v_sky = _flux(23.5, V) * PIXEL_SCALE ** 2 * rng.uniform(0.5, 2.0)
    # disk peak 20.5-22 V mag/arcsec²
    disk = _background(size, rng, _flux(rng.uniform(20.5, 22.0), V) * PIXEL_SCALE ** 2)
    n_stars = int(rng.uniform(2, 6) * size ** 2 / 1e4)
    star_xy = rng.integers(0, size, (n_stars, 2))
    star_v = 27.5 - 2.5 * np.log10(rng.pareto(1.5, n_stars) + 1)
    colours = {"F275W": 0.3, "F336W": 0.0, "F438W": 0.3, "F555W": 0.0, "F814W": -0.6}
    for b in BANDS:
        light = disk * 10 ** (-0.4 * (VEGA[V] - VEGA[b] + colours[b]))
        np.add.at(light, (star_xy[:, 1], star_xy[:, 0]),
                  _flux(star_v + colours[b] + rng.normal(0, 0.3, n_stars), b))
        light = oaconvolve(light, field.psf[b], mode="same")
        sky = v_sky * 10 ** (-0.4 * (VEGA[V] - VEGA[b]))
        noiseless = images[b] + light + sky
        counts = rng.poisson(np.clip(noiseless, 0, None) * exptime[b])
        counts = counts + rng.normal(0, READ_NOISE, counts.shape)
        images[b] = counts / exptime[b] - sky

    paths = {}
    for b in BANDS:
        paths[b] = out_dir / f"{prefix}_{b.lower()}_drc.fits"
        _write_fits(paths[b], images[b], b, wcs, exptime[b])

    apcor = {}
    for b in BANDS:
        psf = field.psf[b]
        c = psf.shape[0] // 2
        ann = CircularAnnulus((c, c), 7.0, 8.0)
        t = aperture_photometry(psf, [CircularAperture((c, c), 4.0), ann])
        f4 = t["aperture_sum_0"][0] - t["aperture_sum_1"][0] / ann.area * np.pi * 16
        apcor[f"apcor_{b}"] = float(-2.5 * np.log10(f4))

    truth = Table()
    truth["id"] = sub["id"]
    truth["x"], truth["y"] = x[rows], y[rows]
    truth["class"] = cls
    truth["drawn"] = drawn
    truth["catalog_class"] = sub["class"]
    truth["subtype"] = subtypes
    truth["ci_catalog"] = sub["ci"]
    truth["ci_model"] = ci_model
    for b in BANDS:
        truth[f"catalog_mag_{b}"] = np.asarray(sub[f"mag_{b}"], float)
        truth[f"mag_{b}"] = truth_mag[b]
        truth[f"outside_{b}"] = np.asarray(sub[f"outside_{b}"], bool)
    truth.meta.update(apcor)
    truth.meta.update(stellar_ci=stellar_ci, seed=seed, field=field_name)
    truth_path = out_dir / "truth.ecsv"
    truth.write(truth_path, overwrite=True)
    cat = Table([truth["id"], truth["x"], truth["y"]])
    cat_path = out_dir / "catalog.ecsv"
    cat.write(cat_path, overwrite=True)
    return {"images": paths, "truth": truth_path, "catalog": cat_path,
            "truth_table": truth, "region": (x0, y0, size),
            "distance_mpc": float(distance_mpc), "stellar_ci": stellar_ci,
            "psf_sigma_px": float(sigma), "field": field_name,
            "vega_zeropoint": dict(VEGA)}
