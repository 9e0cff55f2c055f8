"""``train-physical``: one member of the physical-parameter ensemble (004).

The story: a physical bank from ``make-bank`` -> random validation split ->
PhysicalNet of `glue_starclf.core.networks`, new or a trained member's
(``--init``) (stamp, band mask, galaxy distance and, with ``--stellar-ci``,
the field's stellar CI in; flips and right-angle turns) -> soft-target
cross entropies on the joint age x A_V x mass grid, r_h, cluster/background
and visibility, with the parameter losses zeroed for background stamps ->
validation errors and AUC -> safetensors + model card.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch

from glue_starclf.io.bands import BANDS
from glue_starclf.learn.banks import bank_stellar_ci
from glue_starclf.learn.loop import (add_stellar_ci_arguments, channel_counts, check_model_out,
                                     fit, fraction, init_record, is_main,
                                     positive_int, probability, require_validation,
                                     seed_everything, start_network)
from glue_starclf.learn.speed import machine

__all__ = ["add_arguments", "run", "physical_metrics"]

#: Band patterns that must work: all five, and B&N's F336W/F438W/F814W.
THREE_BANDS = np.array([0, 1, 1, 0, 1], np.float32)


def add_arguments(p):
    p.add_argument("--bank", action="append", required=True, help="physical bank folder")
    p.add_argument("--val-fraction", type=fraction, default=0.1)
    p.add_argument("--out", required=True, help="weights path, ending in .safetensors")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=positive_int, default=20)
    p.add_argument("--minutes", type=float, help="stop after this much training time")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--band-dropout", type=probability, default=0.15)
    p.add_argument("--three-band-fraction", type=probability, default=0.2,
                   help="fraction of the training stamps that see only F336W, F438W and "
                        "F814W (004's bands)")
    p.add_argument("--width", type=channel_counts(4), default=None, metavar="C1,C2,C3,C4",
                   help="channels of the four convolutions (default PhysicalNet's)")
    p.add_argument("--hidden", type=positive_int, default=None,
                   help="units of the shared hidden layer (default PhysicalNet's)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing model at --out (also needed to write into the "
                        "bundled models folder)")
    p.add_argument("--resume", action="store_true")
    add_stellar_ci_arguments(p)
    p.add_argument("--init", metavar="CARD",
                   help="start from this physical member's weights (a model card or its "
                        ".safetensors) instead of random ones: more epochs on new banks; the "
                        "network sizes are the card's")


def _targets(t):
    """Soft targets of every head and the cluster mask, from a truth table."""
    from glue_starclf.core import networks as N
    cl = np.asarray(t["p_cb"]) > 0.5
    n = len(t)
    grid = np.zeros((n, int(np.prod(N.GRID_SHAPE))), np.float32)
    rh = np.zeros((n, len(N.LOG_RH_BINS)), np.float32)
    if cl.any():
        grid[cl] = N.gaussian_targets_3d(np.asarray(t["log_age"])[cl], np.asarray(t["av"])[cl],
                                         np.asarray(t["log_mass"])[cl])
        rh[cl] = N.gaussian_targets_1d(np.log10(np.asarray(t["r_h"])[cl]), N.LOG_RH_BINS)
    vis = np.log10(np.clip(np.asarray(t["visibility"], float), 10 ** N.VISIBILITY_BINS[0], None))
    vis_t = N.gaussian_targets_1d(vis, N.VISIBILITY_BINS)
    return grid, rh, cl.astype(np.int64), vis_t.astype(np.float32)


class _Bank(torch.utils.data.Dataset):
    def __init__(self, x, dist, ci, targets):
        self.x, self.dist, self.ci, self.targets = x, dist, ci, targets

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        # A copy: rows of a read-only memory map cannot back a torch tensor.
        return (np.array(self.x[i]), self.dist[i], self.ci[i]) + tuple(t[i] for t in self.targets)


def _soft_ce(logits, target):
    return -(target * torch.log_softmax(logits, dim=1)).sum(dim=1)


def _masks(n, p, gen, three_fraction=0.2):
    """Band dropout; a fraction of the stamps sees only F336W, F438W and F814W."""
    keep = (torch.rand((n, 5), generator=gen) >= p).float()
    three = torch.rand(n, generator=gen) < three_fraction
    keep[three] = torch.from_numpy(THREE_BANDS)
    empty = keep.sum(dim=1) == 0
    keep[empty] = 1.0
    return keep


def _inputs(x, mask):
    from glue_starclf.core.networks import normalise_physical
    return torch.from_numpy(normalise_physical(np.asarray(x), np.asarray(mask)))


@torch.inference_mode()
def predict(model, x, dist, mask=None, batch=512, stellar_ci=None):
    """Softmax outputs of every head for raw stamps (``stellar_ci`` per stamp, for a
    network that takes it)."""
    model.eval()
    mask = np.ones((len(x), 5), np.float32) if mask is None else mask
    ci = (None if not getattr(model, "stellar_ci", False)
          else np.broadcast_to(np.asarray(stellar_ci, np.float32), (len(x),)))
    out = {}
    for i in range(0, len(x), batch):
        m = np.asarray(mask[i:i + batch], np.float32)
        o = model(_inputs(x[i:i + batch], m), torch.from_numpy(m),
                  torch.log10(torch.as_tensor(dist[i:i + batch], dtype=torch.float32))[:, None],
                  None if ci is None else ci[i:i + batch])
        for k, v in o.items():
            out.setdefault(k, []).append(torch.softmax(v.float(), dim=1))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def _auc(score, label):
    order = np.argsort(score)
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    pos = label == 1
    n1, n0 = pos.sum(), (~pos).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def physical_metrics(probs, truth):
    """95th percentiles of |error| on clusters and the cluster/background AUC."""
    from glue_starclf.core.networks import LOG_RH_BINS, decode_1d, decode_grid, estimator_for
    cl = np.asarray(truth["p_cb"]) > 0.5
    est = decode_grid(probs["grid"][cl])
    rh = decode_1d(probs["r_h"][cl], LOG_RH_BINS, estimator=estimator_for("log_r_h"))
    t = truth[cl]
    err = {"log_age": est["log_age"] - np.asarray(t["log_age"]),
           "log_mass": est["log_mass"] - np.asarray(t["log_mass"]),
           "av": est["av"] - np.asarray(t["av"]),
           "log_r_h": rh[0] - np.log10(np.asarray(t["r_h"]))}
    out = {f"p95_abs_err_{k}": float(np.percentile(np.abs(v), 95)) for k, v in err.items()}
    out["cb_auc"] = _auc(probs["cb"][:, 1], cl.astype(int))
    out["n_clusters"], out["n_background"] = int(cl.sum()), int((~cl).sum())
    return out


def run(args):
    from glue_starclf.core.checkpoints import save_checkpoint
    from glue_starclf.core.networks import PhysicalNet, augment

    from glue_starclf.learn.banks import open_bank
    check_model_out(args.out, args.overwrite, resume=args.resume)
    # data
    rng = seed_everything(args.seed)
    xs, ts = [], []
    for folder in args.bank:
        s, t, meta = open_bank(folder)
        if meta["kind"] != "physical":
            raise ValueError(f"{folder}: a {meta['kind']} bank, train-physical needs a physical one")
        xs.append(s)
        ts.append(t)
    from astropy.table import vstack
    truth = vstack(ts) if len(ts) > 1 else ts[0]
    val = rng.random(len(truth)) < args.val_fraction
    require_validation(val, args.val_fraction, "stamps")
    targets = _targets(truth)
    dist = np.asarray(truth["distance_mpc"], np.float32)
    if not args.stellar_ci_jitter >= 0:
        raise ValueError(f"--stellar-ci-jitter {args.stellar_ci_jitter}: must be >= 0")
    ci = bank_stellar_ci(args.bank) if args.stellar_ci else np.full(len(truth), np.nan,
                                                                      np.float32)
    tr = np.flatnonzero(~val)
    train = _Bank(_Rows(xs, tr), dist[tr], ci[tr], tuple(t[tr] for t in targets))
    # model
    kwargs = {k: getattr(args, k) for k in ("width", "hidden") if getattr(args, k) is not None}
    if args.stellar_ci:
        kwargs["stellar_ci"] = True
    model, kwargs, init = start_network(args.init, "physical", "PhysicalNet", PhysicalNet,
                                        kwargs)
    gen = torch.Generator().manual_seed(args.seed)
    aug_rng = np.random.default_rng(args.seed)

    def step(net, batch):
        xb, db, cib, grid, rh, cb, vis = batch
        m = _masks(len(xb), args.band_dropout, gen, args.three_band_fraction)
        # Flips and right-angle turns only: a zoom would change the flux, i.e. the mass.
        inp = augment(_inputs(xb.numpy(), m.numpy()), aug_rng, p_scale=0.0)
        if args.stellar_ci:
            cib = cib + torch.from_numpy(aug_rng.normal(0.0, args.stellar_ci_jitter, len(cib))
                                         .astype(np.float32))
        out = net(inp, m, torch.log10(db.float())[:, None], cib if args.stellar_ci else None)
        w = cb.float()
        loss_param = ((_soft_ce(out["grid"], grid) + _soft_ce(out["r_h"], rh)) * w).sum() \
            / w.sum().clamp(min=1)
        loss = loss_param + torch.nn.functional.cross_entropy(out["cb"], cb) \
            + _soft_ce(out["visibility"], vis).mean()
        return loss
    # loop
    out = Path(args.out)
    result = fit(model, train, step, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                 seed=args.seed, state_path=out.with_suffix(".state.pt"), resume=args.resume,
                 minutes=args.minutes,
                 on_epoch=lambda e, l: print(f"epoch {e}: loss {l:.4f}", flush=True),
                 rngs={"band_dropout": gen, "augment": aug_rng},
                 signature={"architecture": "PhysicalNet", "kwargs": kwargs, "seed": args.seed,
                            "batch_size": args.batch_size, "band_dropout": args.band_dropout,
                            "three_band_fraction": args.three_band_fraction,
                            "stellar_ci_jitter": args.stellar_ci_jitter if args.stellar_ci
                            else None,
                            "lr": args.lr, "banks": [str(b) for b in args.bank],
                            "init": init and init["sha256"]})
    if not is_main():
        return 0
    # eval: all five bands, and the three bands of 004
    vi = np.flatnonzero(val)
    val_rows = _Rows(xs, vi)
    xv = np.stack([val_rows[i] for i in range(len(vi))])
    metrics = {"five_bands": physical_metrics(predict(model, xv, dist[vi], stellar_ci=ci[vi]),
                                              truth[vi]),
               "three_bands": physical_metrics(
                   predict(model, xv, dist[vi], np.tile(THREE_BANDS, (len(vi), 1)),
                           stellar_ci=ci[vi]), truth[vi])}
    inputs = ["stamp", "band_mask", "log10_distance_mpc"] + (["stellar_ci"] if args.stellar_ci
                                                              else [])
    card = {"family": "physical", "architecture": "PhysicalNet", "kwargs": kwargs,
            "bands": list(BANDS), "stamp_size": 64, "normalisation": "physical-asinh-v1",
            "inputs": inputs, "seed": args.seed,
            "training": {"command": "python -m training " + " ".join(
                             getattr(args, "argv", sys.argv[1:])),
                         "banks": [str(b) for b in args.bank], "n_train": int(len(tr)),
                         "n_val": int(val.sum()), "epochs": result["epochs"],
                         **({"init": init_record(init)} if init else {}),
                         "wall_time_s": round(result["seconds"], 1),
                         "date": time.strftime("%Y-%m-%d"), "machine": machine()},
            "metrics": {"validation": metrics}}
    path = save_checkpoint(model, out, card)
    m = metrics["five_bands"]
    print(f"p95 |err|: log age {m['p95_abs_err_log_age']:.2f}, log mass "
          f"{m['p95_abs_err_log_mass']:.2f}, A_V {m['p95_abs_err_av']:.2f}, log r_h "
          f"{m['p95_abs_err_log_r_h']:.2f}; AUC {m['cb_auc']:.3f}; card {path}")
    return 0


class _Rows:
    """Rows of memory-mapped banks taken as one stack, read on access.

    The banks stay on disk: a copy of several 40,000-stamp physical banks
    would hold 3.3 GB each in every training process.
    """

    def __init__(self, arrays, rows):
        self.arrays, self.rows = arrays, rows
        self.starts = np.cumsum([0] + [len(a) for a in arrays])

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        k = int(np.searchsorted(self.starts, row, side="right")) - 1
        return self.arrays[k][row - self.starts[k]]
