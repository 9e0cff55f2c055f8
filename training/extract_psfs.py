"""Extract the TinyTim PSFs that the package ships from the ``drizzlepac`` wheel.

``drizzlepac`` (STScI, BSD-3-Clause) carries TinyTim model PSFs for the HST
imagers in ``drizzlepac/pars/psfs/``. This command takes the five WFC3/UVIS
PSFs of the model bands and the two ACS/WFC PSFs that LEGUS used instead of
F438W and F555W in some fields, normalises each to unit sum, writes them as
float32 FITS to ``glue_starclf/data/psf/`` and puts the drizzlepac licence
beside them.
"""

import io
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = ["DRIZZLEPAC_REQUIREMENT", "PSF_MEMBERS", "add_arguments", "run",
           "extract_psfs"]

#: The pinned source distribution; 3.11 is the series the shipped files come from.
DRIZZLEPAC_REQUIREMENT = "drizzlepac==3.11.*"

_PSF_DIR = "drizzlepac/pars/psfs/"

#: Output file name -> member of the wheel.
PSF_MEMBERS = {
    f"wfc3_uvis_{f}.fits": f"{_PSF_DIR}wfc3/uvis/wfc3_uvis_{f}.fits"
    for f in ("f275w", "f336w", "f438w", "f555w", "f814w")
}
PSF_MEMBERS.update({
    f"acs_wfc_{f}.fits": f"{_PSF_DIR}acs/wfc/acs_wfc_{f}.fits"
    for f in ("f435w", "f606w")
})

#: Header cards worth keeping: they describe the TinyTim model (the rest are
#: structural and astropy rewrites them).
_KEEP_CARDS = ("CREATED", "INSTRUME", "FILTER", "PIXSCALE", "SPECTRUM",
               "X_PSF", "Y_PSF", "FOCUS", "X_COMA", "Y_COMA", "X_ASTIG",
               "Y_ASTIG", "X_CLOVER", "Y_CLOVER", "SPHERICL")

_DEFAULT_OUT = Path(__file__).resolve().parents[1] / "glue_starclf" / "data" / "psf"

_LICENSE_NAME = "LICENSE-drizzlepac.txt"


def add_arguments(parser):
    """Add the command's options to an `argparse.ArgumentParser`."""
    parser.add_argument(
        "--wheel", type=Path, default=None,
        help=f"a downloaded drizzlepac wheel (default: pip download "
             f"{DRIZZLEPAC_REQUIREMENT!r} --no-deps into a temporary folder)")
    parser.add_argument(
        "--out", type=Path, default=_DEFAULT_OUT,
        help="output folder (default: glue_starclf/data/psf in this checkout)")


def run(args):
    """Run the command for parsed arguments ``args``; returns the exit code."""
    if args.wheel is not None:
        written = extract_psfs(args.wheel, args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="drizzlepac-") as tmp:
            written = extract_psfs(_download_wheel(Path(tmp)), args.out)
    for path in written:
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


def _download_wheel(dest):
    """pip-download the drizzlepac wheel (no dependencies) into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
           "--only-binary=:all:", "--dest", str(dest), DRIZZLEPAC_REQUIREMENT]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("drizzlepac-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(
            f"pip download {DRIZZLEPAC_REQUIREMENT} failed: {tail[0]} "
            f"(download a wheel yourself and pass --wheel PATH)")
    return wheels[-1]


def extract_psfs(wheel, out):
    """Write the shipped PSFs and the licence from a drizzlepac wheel.

    Parameters
    ----------
    wheel : path-like
        A ``drizzlepac-*.whl`` file.
    out : path-like
        Output folder; created if needed.

    Returns
    -------
    list of pathlib.Path
        The files written (PSFs, then the licence).

    Raises
    ------
    FileNotFoundError
        If ``wheel`` does not exist.
    ValueError
        If the wheel lacks a PSF, its licence, or a PSF is not a positive 2-D image.
    """
    wheel = Path(wheel)
    out = Path(out)
    if not wheel.is_file():
        raise FileNotFoundError(f"{wheel}: no such wheel")
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        raise ValueError(f"{wheel}: not a wheel (zip) file") from None
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with zf:
        names = set(zf.namelist())
        for fname, member in PSF_MEMBERS.items():
            if member not in names:
                raise ValueError(f"{wheel}: has no {member}")
            path = out / fname
            _write_psf(zf.read(member), path, source=f"{wheel.name}:{member}")
            written.append(path)
        lic_member = _find_license(names, wheel)
        path = out / _LICENSE_NAME
        path.write_text(_license_text(zf.read(lic_member).decode("utf-8"),
                                      wheel.name, lic_member))
        written.append(path)
    return written


def _write_psf(raw, path, source):
    with fits.open(io.BytesIO(raw)) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float64)
        header = hdul[0].header
        if data.ndim != 2 or not np.all(np.isfinite(data)) or data.sum() <= 0:
            raise ValueError(f"{source}: not a finite 2-D PSF image with positive sum")
        new = fits.Header()
        for key in _KEEP_CARDS:
            if key in header:
                new[key] = (header[key], header.comments[key])
        # TinyTim's note on the charge-diffusion kernel stays with the data.
        for text in header.get("COMMENT", []):
            new.add_comment(str(text))
    # Normalise in float64, then store float32 (the precision TinyTim wrote).
    psf = (data / data.sum()).astype(np.float32)
    new["HISTORY"] = f"Extracted from {source}"
    new["HISTORY"] = "by glue-starclf 'python -m training extract-psfs';"
    new["HISTORY"] = "normalised to unit sum. drizzlepac licence: BSD-3-Clause,"
    new["HISTORY"] = f"see {_LICENSE_NAME} next to this file."
    fits.PrimaryHDU(psf, header=new).writeto(path, overwrite=True)


def _find_license(names, wheel):
    # Newer wheels put it under dist-info/licenses/, older ones at dist-info/.
    cands = sorted(n for n in names
                   if ".dist-info/" in n and not n.endswith("/")
                   and Path(n).name.upper().startswith(("LICENSE", "COPYING")))
    if not cands:
        raise ValueError(f"{wheel}: has no LICENSE file in its .dist-info")
    return cands[0]


def _license_text(licence, wheel_name, member):
    files = ", ".join(sorted(PSF_MEMBERS))
    preamble = (
        f"The PSF files in this folder ({files}) are TinyTim model PSFs taken "
        f"from the drizzlepac package (Space Telescope Science Institute), "
        f"folder drizzlepac/pars/psfs/ of the wheel {wheel_name}; glue-starclf "
        f"only renormalised them to unit sum and stored them as float32 "
        f"(python -m training extract-psfs). They are redistributed under "
        f"drizzlepac's BSD 3-Clause licence, reproduced below from {member}.")
    return textwrap.fill(preamble, 78, break_on_hyphens=False) + "\n\n" + "-" * 78 + "\n\n" + licence.strip() + "\n"
