"""004's own setting (Bialopetravičius & Narbutis 2020) as a physical test bank.

One galaxy at 4.5 Mpc; log M 3.5-5.5; r_h 0.04-0.4 arcsec; A_V 0-3; all
ages; F336W, F438W and F814W given, the other bands missing. The stamps come
from `glue_starclf.sim.bank.physical_bank` with its existing range options
(`setting004_ranges`; ``python -m training like-for-like`` renders them);
the missing bands are masked at inference (`setting004_mask`), as for a
user's 3-band mosaic.
"""

import numpy as np

__all__ = ["SETTING_004", "P95_004", "r_h_range_pc", "setting004_ranges", "setting004_mask",
           "setting004_errors"]

#: 004's setting.
SETTING_004 = {"distance_mpc": 4.5, "log_mass": (3.5, 5.5), "r_h_arcsec": (0.04, 0.4),
               "av": (0.0, 3.0), "bands": ("F336W", "F438W", "F814W")}

#: 004's 95% bounds of the absolute error on its own mocks in that setting.
P95_004 = {"log_age": 0.9, "log_mass": 0.4, "av": 1.4, "log_r_h": 0.2}

_PC_PER_ARCSEC_PER_MPC = 1e6 * np.pi / 648000.0


def r_h_range_pc(distance_mpc=SETTING_004["distance_mpc"], arcsec=SETTING_004["r_h_arcsec"]):
    """The r_h range [pc] of an angular range [arcsec] at a distance [Mpc]."""
    return tuple(float(a) * distance_mpc * _PC_PER_ARCSEC_PER_MPC for a in arcsec)


def setting004_ranges():
    """Keyword arguments of `glue_starclf.sim.bank.physical_bank` for 004's setting."""
    s = SETTING_004
    return {"ranges": {"log_mass": s["log_mass"], "av": s["av"], "r_h": r_h_range_pc()},
            "distance_mpc": s["distance_mpc"]}


def setting004_mask(n):
    """Band mask (n, 5): True for F336W, F438W, F814W."""
    from ..io.bands import BANDS
    return np.tile(np.isin(BANDS, SETTING_004["bands"]), (int(n), 1))


def setting004_errors(members, stamps, truth, mask, tilt=None):
    """p95 |error| and median error of each estimator, and interval coverage, in the setting.

    Parameters
    ----------
    members : list of (model, card)
        `glue_starclf.core.predict.Ensemble.members` of the physical family.
    stamps : ndarray, shape (n, 5, 64, 64)
        A bank's raw stamps (`setting004_ranges`).
    truth : astropy.table.Table
        The bank's truth table.
    mask : ndarray of bool, shape (n, 5)
        Band availability (`setting004_mask`).
    tilt : dict, optional
        The ensemble's posterior tilt
        (`glue_starclf.core.predict.Ensemble.posterior_tilt`), applied as
        `glue_starclf.core.predict.predict` does; None for none.

    Returns
    -------
    dict
        ``estimators``: `glue_starclf.learn.intervals.estimator_errors`;
        ``coverage``: name -> coverage of the 16th-84th percentiles with the
        cards' ``interval_temperature`` (1 where absent) and without;
        ``by_true``: for each of log age, log mass, A_V, log r_h and the
        visibility, the shipped estimators' errors per quarter of its true
        value (`glue_starclf.learn.intervals.errors_by_quantile`);
        ``mass_age_same_sign``: of the clusters whose log-mass error exceeds
        004's log-mass bound, how many there are and the fraction whose
        log-age error has the same sign (the age-mass degeneracy).
    """
    from .intervals import (PARAMETERS, bank_posteriors, cluster_marginals, errors_by_quantile,
                            estimator_errors, interval_coverage, shipped_errors)
    from .banks import stamp_stellar_ci
    post = bank_posteriors(members, stamps, truth["distance_mpc"], mask, tilt=tilt,
                           stellar_ci=stamp_stellar_ci(truth, "004's setting"))
    marg = cluster_marginals(post, truth)
    temps = members[0][1].get("interval_temperature", {})
    coverage = {name: {"raw": interval_coverage(m, PARAMETERS[name], t),
                       "calibrated": interval_coverage(m, PARAMETERS[name], t,
                                                       temps.get(name, 1.0))}
                for name, (m, t, _) in marg.items()}
    err = shipped_errors(marg)
    cl = np.asarray(truth["p_cb"]) > 0.5
    quantities = {name: true for name, (_, true, _) in marg.items()}
    quantities["visibility"] = np.asarray(truth["visibility"], float)[cl]
    big = np.abs(err["log_mass"]) > P95_004["log_mass"]
    same = np.sign(err["log_mass"][big]) == np.sign(err["log_age"][big])
    return {"estimators": estimator_errors(marg), "coverage": coverage,
            "by_true": {q: errors_by_quantile(err, v) for q, v in quantities.items()},
            "mass_age_same_sign": {"threshold": P95_004["log_mass"], "n": int(big.sum()),
                                   "fraction": float(same.mean()) if big.any() else None},
            "n_clusters": int(len(marg["log_age"][1]))}
