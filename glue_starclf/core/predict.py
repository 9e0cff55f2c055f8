"""From a mosaic and sources to the results table of ``results-schema.md``.

`predict` cuts every source's stamps out of the memory-mapped mosaic in
batches, runs the classifier and physical-parameter ensembles on them and
returns an astropy Table with every schema column. Ensembles are averaged
as the schema says: class probabilities are averaged over members,
``class_agreement`` is the fraction of members voting for the chosen class,
and the physical posteriors are averaged before they are decoded.
"""

import logging
import math
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..version import __version__

__all__ = ["Ensemble", "load_ensemble", "takes_stellar_ci", "predict", "field_stellar_ci",
           "bf16_supported", "RESULT_COLUMNS", "DISTANCE_RANGE_MPC", "distance_warning", "BATCH"]

log = logging.getLogger("glue_starclf")

#: Result columns in schema order.
RESULT_COLUMNS = (
    "id", "x", "y", "ra", "dec", "p_class1", "p_class2", "p_class3", "p_class4", "class",
    "p_cluster", "class_entropy", "class_agreement",
    "log_age", "log_age_lo", "log_age_hi", "log_mass", "log_mass_lo", "log_mass_hi",
    "av", "av_lo", "av_hi", "r_h", "r_h_lo", "r_h_hi", "p_cb", "visibility", "flags",
    "ood_score")

#: Sources per batch: bounds memory (a 64 px, 5-band stamp is 80 kB); at 256 the
#: networks' activations stay nearer the cache than at 1024 (about 8% faster end to end).
BATCH = 256

#: Sources cut between two releases of the mosaic's pages (`Mosaic.release_pages`):
#: bounds resident memory; releasing after every batch of 256 made the stamp cutting
#: 1.7x slower, re-reading pages that neighbouring batches share.
RELEASE_SOURCES = 1024

#: Galaxy distances [Mpc] the models were trained for; outside, every result
#: is flagged ``distance``.
DISTANCE_RANGE_MPC = (3.0, 20.0)


class Ensemble:
    """Members of one model family, loaded from their cards (no pickle), for inference.

    BatchNorm layers are folded into the convolutions (`fuse_for_inference`).
    A classifier ensemble also takes the folder's out-of-distribution
    statistics (`glue_starclf.core.ood`) and class prior
    (`glue_starclf.core.class_prior`) when they were made for its members.

    Parameters
    ----------
    cards : sequence of str or Path
        The members' model cards (or weights), all of one family and stamp
        size; the folder of the first holds the statistics and class prior.
    class_prior : bool
        False leaves out the classifier's class prior (class-balanced
        probabilities; its file is then not read).
    """

    def __init__(self, cards, class_prior=True):
        from .checkpoints import load_checkpoint
        from .networks import fuse_for_inference
        if not cards:
            raise ValueError("an ensemble needs at least one model card")
        self.members = [(fuse_for_inference(model), card)
                        for model, card in (load_checkpoint(c) for c in cards)]
        families = {card.get("family") for _, card in self.members}
        if len(families) != 1:
            raise ValueError(f"models of different families in one ensemble: {families}")
        self.family = families.pop()
        sizes = {card["stamp_size"] for _, card in self.members}
        if len(sizes) != 1:
            raise ValueError(f"ensemble members take different stamp sizes: {sorted(sizes)}")
        self.stamp_size = sizes.pop()
        self.ood = None
        self.class_prior = None
        self.posterior_tilt = None
        if self.family == "physical":
            self.posterior_tilt = _card_tilt(self.members)
        if self.family == "classifier":
            from .ood import feature_dimension, load_statistics
            folder = Path(self.members[0][1]["_path"]).parent
            stats = load_statistics(folder)
            dims = {feature_dimension(model) for model, _ in self.members}
            if stats is not None and not stats.matches(self.hashes):
                log.info("%s: made for other classifier members; no 'ood' flags", stats.path)
            elif stats is not None and dims != {stats.mean.shape[1]}:
                log.info("%s: statistics of %d features, the members give %s (made by an "
                         "older version: run python -m training ood-stats); no 'ood' flags",
                         stats.path, stats.mean.shape[1], sorted(dims))
            else:
                self.ood = stats
            if class_prior:
                self.reload_class_prior()

    def reload_class_prior(self):
        """Read the folder's class prior again (classifier); None unless made for these members."""
        from .class_prior import load_class_prior
        prior = load_class_prior(Path(self.members[0][1]["_path"]).parent)
        if prior is not None and not prior.matches(self.hashes):
            log.info("%s: fitted for other classifier members; class-balanced "
                     "probabilities", prior.path)
            prior = None
        self.class_prior = prior
        return prior

    @property
    def names(self):
        """The members' names (their cards' file names without ``.json``)."""
        return [Path(card["_path"]).stem for _, card in self.members]

    @property
    def needs_stellar_ci(self):
        """True if a member takes the field's stellar CI (`glue_starclf.core.stellar_ci`)."""
        return any(getattr(model, "stellar_ci", False) for model, _ in self.members)

    @property
    def hashes(self):
        """The sha256 of the members' weights, in member order."""
        return [card["sha256"] for _, card in self.members]


def _card_tilt(members):
    """The physical cards' ``posterior_tilt`` (`glue_starclf.core.posterior_tilt`), checked.

    Every card must carry the same one (``calibrate-intervals --write`` writes
    it into all); None where none does.
    """
    from .posterior_tilt import check_tilt
    tilts = [card.get("posterior_tilt") for _, card in members]
    if all(t is None for t in tilts):
        return None
    if any(t != tilts[0] for t in tilts):
        raise ValueError(f"{Path(members[0][1]['_path']).parent}: the physical cards carry "
                         "different posterior_tilt values (run python -m training "
                         "calibrate-intervals --write on these members)")
    return check_tilt(tilts[0], members[0][1]["_path"])


def _family_cards(family, folder=None, cards=None):
    """The model cards of a family in a folder (default: the bundled one), weights unread;
    ``cards``: the folder's cards, already read."""
    from .checkpoints import bundled_models_dir, list_models
    folder = Path(folder) if folder is not None else bundled_models_dir()
    cards = [c for c in (list_models(folder) if cards is None else cards)
             if c.get("family") == family]
    if not cards:
        raise FileNotFoundError(f"no {family} models in {folder} (train them with "
                                "python -m training, see the README, or pass --models DIR)")
    return cards


def load_ensemble(family, folder=None, class_prior=True):
    """The bundled (or a folder's) ensemble of ``"classifier"`` or ``"physical"``.

    Parameters
    ----------
    family : {"classifier", "physical"}
    folder : str or Path, optional
        Models folder; default the bundled one.
    class_prior : bool
        False leaves out the classifier's class prior (class-balanced
        probabilities; its file is then not read).

    Returns
    -------
    Ensemble
        Every model of ``family`` in the folder.

    Raises
    ------
    FileNotFoundError
        If the folder holds no model of ``family``.
    """
    return Ensemble([c["_path"] for c in _family_cards(family, folder)], class_prior)


def takes_stellar_ci(folder=None):
    """True if a classifier or physical member of a models folder takes the field's
    stellar CI.

    Read from the model cards (``"stellar_ci": true`` in their ``kwargs``), without
    loading any weights, so a GUI can ask it whenever the models chosen change.

    Parameters
    ----------
    folder : str or pathlib.Path, optional
        The models folder; default the bundled models.

    Returns
    -------
    bool

    Raises
    ------
    FileNotFoundError
        If the folder holds no classifier models.
    ValueError
        If one of its model cards is unreadable or invalid.
    """
    from .checkpoints import bundled_models_dir, list_models
    cards = list_models(Path(folder) if folder is not None else bundled_models_dir())
    # the classifier is required; physical members are optional
    members = _family_cards("classifier", folder, cards) + [
        c for c in cards if c.get("family") == "physical"]
    return any(bool(c["kwargs"].get("stellar_ci", False)) for c in members)


def _shared_inputs(members, x):
    """``prepare(x)`` of the first member, reused by all when their settings agree."""
    first = members[0][0]
    same = all(type(m) is type(first) and getattr(m, "view_side", None) ==
               getattr(first, "view_side", None) for m, _ in members)
    return first.prepare(x) if same else None


def bf16_supported():
    """True if this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX)."""
    import torch
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def _autocast(bf16):
    import torch
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(bf16))


def _classify(ens, stamps, mask, bf16=False, stellar_ci=None):
    """Mean class probabilities (through the class prior where the ensemble has one), the
    classes 1-4 and the members' vote fractions; ``stellar_ci`` (one value, or one per
    stamp) for members that take it."""
    import torch

    from .networks import normalise_classifier
    if ens.needs_stellar_ci and stellar_ci is None:
        raise ValueError("these classifier members need the field's stellar CI")
    x = torch.from_numpy(normalise_classifier(stamps, mask))
    m = torch.from_numpy(mask)
    import contextlib

    from .ood import FeatureTap, scores
    probs, features = [], []
    with torch.inference_mode(), _autocast(bf16):
        shared = _shared_inputs(ens.members, x)
        for model, card in ens.members:
            tap = FeatureTap(model) if ens.ood is not None else contextlib.nullcontext()
            with tap:
                logits = (model.forward_prepared(shared, m, stellar_ci) if shared is not None
                          else model(x, m, stellar_ci))
            if ens.ood is not None:
                features.append(np.concatenate(tap.features))
            logits = logits.float() / float(card.get("temperature", 1.0))
            probs.append(torch.softmax(logits, dim=1).numpy())
    probs = np.stack(probs)                      # (members, n, 4)
    mean = probs.mean(axis=0)
    if ens.class_prior is not None:
        mean, probs = ens.class_prior.apply(mean), ens.class_prior.apply(probs)
    cls = mean.argmax(axis=1)
    votes = (probs.argmax(axis=2) == cls[None, :]).mean(axis=0)
    ood = scores(features, ens.ood.mean, ens.ood.precision) if features else None
    return mean, cls + 1, votes, ood


def _physical(ens, stamps, mask, distance_mpc, bf16=False, stellar_ci=None):
    """Softmax outputs of every head, averaged over the members, through the ensemble's
    posterior tilt where its cards have one; ``stellar_ci`` (one value, or one per stamp)
    for members that take it."""
    import torch

    from .networks import normalise_physical
    if ens.needs_stellar_ci and stellar_ci is None:
        raise ValueError("these physical members need the field's stellar CI")
    x = torch.from_numpy(normalise_physical(stamps, mask))
    m = torch.from_numpy(mask)
    d = torch.full((len(stamps), 1), math.log10(distance_mpc))
    acc = {}
    with torch.inference_mode(), _autocast(bf16):
        shared = _shared_inputs(ens.members, x)
        for model, _ in ens.members:
            ci = stellar_ci if getattr(model, "stellar_ci", False) else None
            out = (model.forward_prepared(shared, m, d, ci) if shared is not None
                   else model(x, m, d, ci))
            for k, v in out.items():
                acc[k] = acc.get(k, 0.0) + torch.softmax(v.float(), dim=1).numpy() / len(
                    ens.members)
    from .posterior_tilt import tilt_posteriors
    return tilt_posteriors(acc, distance_mpc, ens.posterior_tilt)


def distance_warning(distance_mpc):
    """The warning for a distance outside `DISTANCE_RANGE_MPC`, or None."""
    lo, hi = DISTANCE_RANGE_MPC
    if lo <= distance_mpc <= hi:
        return None
    return (f"distance {distance_mpc:g} Mpc is outside the {lo:g}-{hi:g} Mpc the models were "
            f"trained for: ages, masses and classes may be biased (every result is flagged "
            f"'distance')")


def _add_flag(flags, name):
    return np.array([f"{f},{name}" if f else name for f in flags], dtype=object)


def _centre_crop(stamps, size):
    s = stamps.shape[-1]
    if s == size:
        return stamps
    o = (s - size) // 2
    return stamps[..., o:o + size, o:o + size]


def field_stellar_ci(ensembles, mosaic, x, y, stellar_ci=None, stellar_ci_source=None):
    """The stellar CI ``predict`` gives the networks, and where it came from.

    Parameters
    ----------
    ensembles : Ensemble or sequence of Ensemble
        The ensembles to run; the CI is measured only if one of them takes it.
    mosaic : glue_starclf.io.mosaic.Mosaic
    x, y : array_like
        The sources; the measurement box is centred on their median position.
    stellar_ci : float, optional
        Given by the user, or measured before (for detection's CI cut,
        `glue_starclf.core.detection.detected_stellar_ci`): used as it is
        (after a range check).
    stellar_ci_source : str, optional
        Where a ``stellar_ci`` passed came from, returned as ``source``
        (default ``"given"``).

    Returns
    -------
    value : float or None
        None when no member of ``ensembles`` takes it.
    source : str or None
        ``"given"``, ``"measured in region (x0, y0, x1, y1) from the N brightest
        isolated detections"``, or ``"default (not measured: <reason>)"`` where
        the mosaic does not allow a measurement (`stellar_ci_or_default`; a
        warning is logged).
    """
    from .stellar_ci import checked_stellar_ci, sources_centre, stellar_ci_or_default
    if stellar_ci is not None:
        v = checked_stellar_ci(stellar_ci)
    if isinstance(ensembles, Ensemble):
        ensembles = [ensembles]
    if not any(e.needs_stellar_ci for e in ensembles):
        if stellar_ci is not None and stellar_ci_source is None:
            log.info("stellar CI given, but no member takes it")
        return None, None
    if stellar_ci is not None:
        return v, stellar_ci_source or "given"
    value, where, measured = stellar_ci_or_default(mosaic, sources_centre(x, y))
    if measured:
        log.info("stellar CI %.3f mag, %s", value, where)
    else:
        log.warning("stellar CI %.2f mag, the %s; every result is flagged 'stellar_ci' "
                    "(give the field's value with --stellar-ci, or in the Classify dialog)",
                    value, where)
    return value, where


def predict(mosaic, sources, distance_mpc, classifier=None, physical=None, batch=BATCH,
            progress=False, callback=None, bf16=False, stellar_ci=None, stellar_ci_source=None):
    """Classify sources of a mosaic and estimate their physical parameters.

    Parameters
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic or sequence of ``BAND=path``
        The image (see `glue_starclf.io.mosaic.open_mosaic`).
    sources : astropy.table.Table
        With ``x``, ``y`` (0-based) and optionally ``id``, ``ra``, ``dec``.
    distance_mpc : float
        Galaxy distance, an input of the physical network.
    classifier, physical : Ensemble, optional
        Default: the bundled ensembles.
    batch : int
        Sources per batch.
    progress : bool
        Show a progress bar.
    callback : callable, optional
        Called as ``callback(done, total)`` before the first batch and after
        each one; an exception it raises (e.g. to cancel) stops the work and
        propagates, and nothing is returned.
    bf16 : bool
        Run the networks under bfloat16 autocast (only where `bf16_supported`
        says the CPU has native bfloat16; ignored elsewhere).
    stellar_ci : float, optional
        The field's stellar CI (V band, 1 px vs 3 px) for classifier and
        physical members that take it; default measured on the mosaic around
        the sources (`field_stellar_ci`). Ignored by members that do not.
    stellar_ci_source : str, optional
        Where a ``stellar_ci`` passed came from, recorded as the results'
        ``stellar_ci_source`` (default ``"given"``); one that starts with
        ``"default"`` flags every result ``stellar_ci``, as a measurement
        that fails does.

    Returns
    -------
    astropy.table.Table
        One row per source, in input order, with `RESULT_COLUMNS`; metadata
        names the models, their hashes, the bands and the distance.
    """
    from tqdm import tqdm

    from .cutouts import extract_stamps
    from ..io.mosaic import Mosaic, open_mosaic
    from .networks import (DEFAULT_ESTIMATOR, LOG_RH_BINS, VISIBILITY_BINS, decode_1d,
                           decode_grid, estimator_for)
    if not isinstance(mosaic, Mosaic):
        mosaic = open_mosaic(mosaic)
    d = float(distance_mpc)
    if not np.isfinite(d) or d <= 0:
        raise ValueError(f"distance {distance_mpc!r} Mpc must be positive")
    bf16 = bool(bf16) and bf16_supported()
    classifier = classifier or load_ensemble("classifier")
    physical = physical or load_ensemble("physical")
    n = len(sources)
    x = np.asarray(sources["x"], float)
    y = np.asarray(sources["y"], float)
    out = {c: np.full(n, np.nan) for c in RESULT_COLUMNS if c not in ("id", "class", "flags")}
    out["class"] = np.zeros(n, int)
    flags = np.empty(n, dtype=object)
    size = max(classifier.stamp_size, physical.stamp_size)
    # The interval calibration of the ensemble (the same in every member's card).
    temps = physical.members[0][1].get("interval_temperature", {})
    far = distance_warning(d)
    if far:
        log.warning(far)
    stellar_ci, stellar_ci_source = (field_stellar_ci((classifier, physical), mosaic, x, y,
                                                      stellar_ci, stellar_ci_source)
                                     if n else (stellar_ci, None))
    default_ci = bool(stellar_ci_source) and stellar_ci_source.startswith("default")
    from .cutouts import native_stamp_size, needs_resampling
    scale = getattr(mosaic, "pixel_scale", None)
    if needs_resampling(scale) and n:
        log.info("pixel scale %.4g\"/px: stamps of %d px are resampled (flux-conserving, "
                 "reproject) to %d px of 0.04\"", scale, native_stamp_size(size, scale), size)
    starts = range(0, n, batch)
    since_release = 0
    if callback is not None:
        callback(0, n)
    for start in tqdm(starts, desc="classifying", unit="batch", disable=not progress):
        sl = slice(start, min(start + batch, n))
        cut = extract_stamps(mosaic, x[sl], y[sl], size=size)
        # Peak memory stays a few batches, not the whole mosaic read so far.
        since_release += sl.stop - sl.start
        if since_release >= RELEASE_SOURCES:
            mosaic.release_pages()
            since_release = 0
        flags[sl] = _add_flag(cut.flags, "distance") if far else cut.flags
        if default_ci:
            flags[sl] = _add_flag(flags[sl], "stellar_ci")
        ok = ~np.all(np.isnan(cut.stamps), axis=(1, 2, 3))
        if not ok.any():
            if callback is not None:
                callback(sl.stop, n)
            continue
        idx = np.arange(sl.start, sl.stop)[ok]
        stamps = cut.stamps[ok]
        mask = np.tile(mosaic.band_mask.astype(np.float32), (len(stamps), 1))
        probs, cls, votes, ood = _classify(classifier,
                                           _centre_crop(stamps, classifier.stamp_size), mask, bf16,
                                           stellar_ci)
        if ood is not None:
            out["ood_score"][idx] = ood
            high = idx[ood > classifier.ood.threshold]
            flags[high] = _add_flag(flags[high], "ood")
        for k in range(4):
            out[f"p_class{k + 1}"][idx] = probs[:, k]
        out["class"][idx] = cls
        out["p_cluster"][idx] = probs[:, 0] + probs[:, 1]
        out["class_entropy"][idx] = -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(axis=1)
        out["class_agreement"][idx] = votes
        post = _physical(physical, _centre_crop(stamps, physical.stamp_size), mask, d, bf16,
                         stellar_ci)
        est = decode_grid(post["grid"], temperature=temps)
        for name in ("log_age", "av", "log_mass"):
            out[name][idx] = est[name]
            out[f"{name}_lo"][idx], out[f"{name}_hi"][idx] = est[f"{name}_p16"], est[f"{name}_p84"]
        out["r_h"][idx], out["r_h_lo"][idx], out["r_h_hi"][idx] = decode_1d(
            post["r_h"], LOG_RH_BINS, exp10=True, estimator=estimator_for("log_r_h"),
            temperature=temps.get("log_r_h", 1.0))
        out["p_cb"][idx] = post["cb"][:, 1]
        out["visibility"][idx] = decode_1d(post["visibility"], VISIBILITY_BINS, exp10=True)[0]
        if callback is not None:
            callback(sl.stop, n)
    out["x"], out["y"] = x, y
    if "ra" in sources.colnames and "dec" in sources.colnames:
        out["ra"], out["dec"] = np.asarray(sources["ra"], float), np.asarray(sources["dec"], float)
    elif mosaic.wcs is not None and n:
        out["ra"], out["dec"] = mosaic.wcs.all_pix2world(x, y, 0)
    table = Table()
    table["id"] = np.asarray(sources["id"]) if "id" in sources.colnames else np.arange(1, n + 1)
    for c in RESULT_COLUMNS[1:]:
        if c == "flags":
            table[c] = np.array([f or "" for f in flags], dtype=str) if n else np.array([], str)
        else:
            table[c] = out[c]
    units = {"x": "pix", "y": "pix", "ra": "deg", "dec": "deg", "class_entropy": "nat",
             "r_h": "pc", "r_h_lo": "pc", "r_h_hi": "pc", "av": "mag", "av_lo": "mag",
             "av_hi": "mag"}
    for c, u in units.items():
        table[c].unit = u
    table.meta.update({
        "generator": f"glue-starclf {__version__}", "distance_mpc": d,
        "classifier_models": classifier.names, "classifier_sha256": classifier.hashes,
        "physical_models": physical.names, "physical_sha256": physical.hashes,
        "precision": "bfloat16 autocast" if bf16 else "float32",
        "point_estimator": dict(DEFAULT_ESTIMATOR),
        "posterior_tilt": (None if physical.posterior_tilt is None else
                           {k: v.tolist() for k, v in physical.posterior_tilt.items()}),
        "interval_temperature": dict(temps) or None,
        "stellar_ci": None if stellar_ci_source is None else round(stellar_ci, 4),
        "stellar_ci_source": stellar_ci_source,
        "ood_threshold": None if classifier.ood is None else classifier.ood.threshold,
        "ood_statistics": None if classifier.ood is None else classifier.ood.path.name,
        "class_prior": (None if classifier.class_prior is None else
                        {"file": classifier.class_prior.path.name,
                         "temperature": classifier.class_prior.temperature,
                         "log_prior": classifier.class_prior.log_prior.tolist()}),
        "bands": {b: str(p) for b, p in mosaic.paths.items()},
        "calibration": {b: c.as_meta() for b, c in getattr(mosaic, "calibration", {}).items()},
        "pixel_scale_arcsec": (None if scale is None else round(scale, 5)),
        "resampled_to_arcsec": 0.04 if needs_resampling(scale) else None,
        "pixel_convention": "x, y are 0-based (numpy/glue)"})
    return table
