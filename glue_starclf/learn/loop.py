"""The training loop shared by every command: epochs, resume, NaN guard, DDP.

Run under ``torchrun --nproc_per_node=N -m training ...`` the loop joins the
process group (gloo on CPU, NCCL on GPU), shards the data with a
`DistributedSampler` and averages gradients with `DistributedDataParallel`;
only rank 0 writes. A state file is written after every epoch; ``--resume``
continues from it with the same optimizer state and random streams.
"""

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

__all__ = ["distributed_setup", "is_main", "seed_everything", "fit", "NonFiniteLoss",
           "positive_int", "positive_float", "channel_counts", "fraction", "probability",
           "require_validation",
           "check_model_out", "add_stellar_ci_arguments", "start_network", "init_record"]


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite."""


def channel_counts(n):
    """argparse type for a network's channels: ``n`` comma-separated integers >= 1."""
    def parse(text):
        try:
            width = [int(c) for c in text.split(",")]
        except ValueError:
            width = []
        if len(width) != n or min(width) < 1:
            raise argparse.ArgumentTypeError(f"{text!r} is not {n} positive channel counts")
        return width
    parse.__name__ = f"{n} channel counts"
    return parse


def positive_int(text):
    """argparse type for counts (epochs, batch size, units): an integer >= 1.

    Zero epochs would write an untrained checkpoint with exit status 0.
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _float_in(text, low_ok, high, what):
    """``text`` as a float from 0 (included if ``low_ok``) to ``high`` (excluded)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not ((0.0 <= value if low_ok else 0.0 < value) and value < high):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def positive_float(text):
    """argparse type for a finite number > 0 (e.g. a weight)."""
    return _float_in(text, False, math.inf, "a positive number")


def fraction(text):
    """argparse type for a split (``--val-fraction``): a number with 0 < x < 1.

    0 leaves nothing to validate on, 1 nothing to train on.
    """
    return _float_in(text, False, 1.0, "a fraction between 0 and 1 (both excluded)")


def probability(text):
    """argparse type for a probability per sample (``--band-dropout``): 0 <= x < 1."""
    return _float_in(text, True, 1.0, "a probability in [0, 1)")


def add_stellar_ci_arguments(p):
    """``--stellar-ci`` and ``--stellar-ci-jitter`` of the train commands."""
    p.add_argument("--stellar-ci", action="store_true",
                   help="condition the network on the field's stellar CI, the width of its "
                        "PSF (the banks' stellar_ci column, else psf_stellar_ci)")
    p.add_argument("--stellar-ci-jitter", type=float, default=0.03, metavar="MAG",
                   help="Gaussian sigma added to the stellar CI in training, as the error of "
                        "measuring it on an image (default 0.03)")


def start_network(init, family, architecture, build, kwargs):
    """The network a training run starts from: a new one, or a trained member's (``--init``).

    Parameters
    ----------
    init : str or Path or None
        Model card (``.json``) or weights (``.safetensors``) of the member to start from;
        None for a new network.
    family, architecture : str
        What the run trains (e.g. ``"physical"``, ``"PhysicalNet"``).
    build : callable
        The network class, called as ``build(**kwargs)`` for a new network.
    kwargs : dict
        The network arguments of the command line. With ``init`` the member's are used:
        each size given (``width``, ``hidden``) must equal the member's, and ``stellar_ci``
        must be given exactly when the member's network takes it.

    Returns
    -------
    model : torch.nn.Module
        In training mode.
    kwargs : dict
        The network arguments of ``model`` (for its card).
    card : dict or None
        The member's card (``init_record`` keeps it in the new card), None without ``init``.

    Raises
    ------
    ValueError
        One line naming ``--init`` and what differs.
    """
    if init is None:
        return build(**kwargs), dict(kwargs), None
    from ..core.checkpoints import load_checkpoint
    model, card = load_checkpoint(init)
    if card.get("family") != family or card.get("architecture") != architecture:
        raise ValueError(f"--init {init}: a {card.get('family')} {card.get('architecture')} "
                         f"model, train-{family} needs a {family} {architecture}")
    for k, v in kwargs.items():
        have = card["kwargs"].get(k)
        if k != "stellar_ci" and have != v:
            show = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v
            raise ValueError(f"--{k} {show} differs from --init {init}'s {have}")
    if bool(card["kwargs"].get("stellar_ci")) != bool(kwargs.get("stellar_ci")):
        takes = "takes" if card["kwargs"].get("stellar_ci") else "does not take"
        raise ValueError(f"--init {init}: its network {takes} the stellar CI; give "
                         "--stellar-ci exactly when it does")
    return model.train(), dict(card["kwargs"]), card


def init_record(card):
    """What a new card keeps (``training.init``) of the member its run started from: the
    card's file name, the weights' sha256 and its training record (with its own ``init``)."""
    return {"card": Path(card["_path"]).name, "sha256": card["sha256"],
            "training": card.get("training", {})}


def require_validation(val, fraction, what):
    """Refuse, before any training, a random split that picked nothing to validate on.

    Parameters
    ----------
    val : array_like of bool
        The validation mask over the training items.
    fraction : float
        The ``--val-fraction`` that drew it (for the message).
    what : str
        What the items are, plural (e.g. ``"stamps"``).

    Raises
    ------
    ValueError
        If ``val`` selects nothing.
    """
    if not np.any(val):
        raise ValueError(f"--val-fraction {fraction} of {len(val)} {what} picked none "
                         f"to validate on: use a larger fraction or bank")


def check_model_out(out, overwrite, extra=(), resume=False):
    """Refuse, before any training, an ``--out`` that would replace a model or land in models/.

    Parameters
    ----------
    out : path-like
        Weights path; must end in ``.safetensors``. Its card is the ``.json`` beside it.
    overwrite : bool
        ``--overwrite`` was given: existing files and the bundled folder are allowed.
    extra : sequence of path-like
        Other files the command writes (e.g. reports).
    resume : bool
        ``--resume`` was given: a model beside its own state file is that
        run's output, continued and replaced.

    Returns
    -------
    pathlib.Path
    """
    from ..core.checkpoints import bundled_models_dir
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out}: must end in .safetensors")
    if overwrite:
        return out
    own = resume and out.with_suffix(".state.pt").exists()
    for path in () if own else (out, out.with_suffix(".json"), *map(Path, extra)):
        if path.exists():
            raise FileExistsError(f"{path} exists (use --overwrite to replace it)")
    bundled = bundled_models_dir().resolve()
    if out.absolute().parent.resolve() == bundled:
        raise ValueError(f"--out {out} is in the bundled models folder {bundled}: write "
                         f"elsewhere, or pass --overwrite to add to or change the shipped models")
    return out


def distributed_setup():
    """Join the torchrun process group when there is one; returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def is_main():
    """True in the process of rank 0, or when torch.distributed is not initialised."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def seed_everything(seed):
    """Seed torch and numpy; returns a numpy Generator for the data pipeline."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    return np.random.default_rng(seed)


def _loader(dataset, batch_size, seed, weights, world):
    if world > 1:
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed)
    elif weights is not None:
        g = torch.Generator().manual_seed(seed)
        sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double),
                                        num_samples=len(dataset), replacement=True, generator=g)
    else:
        sampler = None
    g = torch.Generator().manual_seed(seed)
    # Drop a ragged last batch only when a full one is left: each rank sees
    # ceil(n / world) samples, and dropping its only batch would train nothing.
    per_rank = math.ceil(len(dataset) / world)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=sampler is None,
                      generator=g, drop_last=per_rank > batch_size, num_workers=0)


def _rng_state(rng):
    if isinstance(rng, torch.Generator):
        return rng.get_state()
    return json.dumps(rng.bit_generator.state)  # numpy: 128-bit integers, kept as text


def _set_rng_state(rng, state):
    if isinstance(rng, torch.Generator):
        rng.set_state(state)
    else:
        rng.bit_generator.state = json.loads(state)


def _load_state(state_path, model, signature, rngs):
    """The saved training state, checked against this run; one-line errors."""
    import pickle
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pickle-protocol notes on odd files
            state = torch.load(state_path, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{state_path}: not a readable training state (truncated or not "
                         f"written by this command: {first[:200]})") from None
    need = ("model", "optimizer", "scheduler", "torch_rng", "epoch", "seconds")
    missing = [k for k in need if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{state_path}: not a training state of this command (lacks "
                         f"{', '.join(missing)})")
    saved = state.get("signature")
    if signature is not None and saved is not None and saved != json.dumps(signature,
                                                                          sort_keys=True):
        old, new = json.loads(saved), signature
        diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        k = diff[0]
        raise ValueError(f"{state_path}: made with {k} = {old.get(k)!r}, this run has "
                         f"{new.get(k)!r}; resume with the same arguments or start afresh")
    ours = model.state_dict()
    theirs = state["model"]
    if set(ours) != set(theirs):
        extra, lacking = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
        what = f"unexpected {extra[0]}" if extra else f"missing {lacking[0]}"
        raise ValueError(f"{state_path}: made for a different network ({what}); resume with "
                         f"the same network arguments")
    for k, v in ours.items():
        if tuple(theirs[k].shape) != tuple(v.shape):
            raise ValueError(f"{state_path}: made for a different network ({k} is "
                             f"{tuple(theirs[k].shape)}, this network's "
                             f"{tuple(v.shape)}); resume with the same network arguments")
    lacking = [n for n in rngs if n not in state.get("rngs", {})]
    if lacking:
        raise ValueError(f"{state_path}: has no {lacking[0]} random state (written by an "
                         f"older version); start afresh")
    return state


def fit(model, dataset, step, *, epochs, batch_size, lr, seed, state_path, resume=False,
        weights=None, minutes=None, weight_decay=1e-4, max_bad_batches=20, on_epoch=None,
        progress=True, rngs=None, signature=None):
    """Train ``model`` on ``dataset``.

    Parameters
    ----------
    model : torch.nn.Module
    dataset : torch.utils.data.Dataset
        Yields tuples that ``step`` understands.
    step : callable
        ``step(model, batch) -> loss`` (a scalar tensor).
    epochs, batch_size, lr, seed
        The usual; AdamW with a cosine schedule over all steps.
    state_path : Path
        Where the per-epoch training state is written (rank 0).
    resume : bool
        Continue from ``state_path`` if it exists.
    weights : array, optional
        Per-sample weights for class balancing (single process).
    minutes : float, optional
        Stop after the epoch that passes this wall time.
    weight_decay : float
        AdamW's weight decay.
    max_bad_batches : int
        Non-finite losses are skipped; this many in a row abort the run.
    on_epoch : callable, optional
        ``on_epoch(epoch, mean_loss)`` after every epoch (rank 0).
    progress : bool
        Show a tqdm progress bar (rank 0).
    rngs : dict, optional
        ``{name: torch.Generator or numpy Generator}`` the step draws from
        (augmentation, band dropout): saved with the state and restored on
        resume, so that an interrupted and resumed run gives bit-identical
        weights (with the same threads).
    signature : dict, optional
        What must not change between a run and its resume (network
        arguments, batch size, ...); a mismatch is a one-line error.

    Returns
    -------
    dict
        ``epochs`` done, ``seconds`` of training, final ``loss``.
    """
    from tqdm import tqdm
    if len(dataset) == 0:
        raise ValueError("no training samples: the validation split took them all")
    rank, world = distributed_setup()
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    loader = _loader(dataset, batch_size, seed, weights, world)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    total = max(1, epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    start_epoch, elapsed = 0, 0.0
    state_path = Path(state_path)
    rngs = dict(rngs or {})
    # The shuffling (or weighted sampling) streams: restored like the step's.
    rngs["loader"] = loader.generator
    if isinstance(loader.sampler, WeightedRandomSampler):
        rngs["sampler"] = loader.sampler.generator
    if resume and state_path.exists():
        state = _load_state(state_path, model, signature, rngs)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        # The schedule spans this run's --epochs: a run extended on resume
        # (--epochs 1, then --epochs 2 --resume) would otherwise go on at the
        # learning rate the shorter schedule ended with, zero.
        for group, base, fn in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas):
            group["lr"] = base * fn(sched.last_epoch)
        sched._last_lr = [group["lr"] for group in opt.param_groups]
        torch.set_rng_state(state["torch_rng"])
        for name, rng in rngs.items():
            _set_rng_state(rng, state["rngs"][name])
        start_epoch, elapsed = int(state["epoch"]), float(state["seconds"])
        bad_saved = int(state.get("bad_batches", 0))
    else:
        bad_saved = 0
    t0 = time.perf_counter() - elapsed
    loss_mean = float("nan")
    done = start_epoch
    # Non-finite losses in a row, counted across epochs: a small data set has
    # fewer than ``max_bad_batches`` batches per epoch.
    bad = bad_saved
    limit = max(1, min(max_bad_batches, len(loader)))
    for epoch in range(start_epoch, epochs):
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        net.train()
        losses = []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                   disable=not (progress and rank == 0))
        for batch in bar:
            loss = step(net, batch)
            if not torch.isfinite(loss):
                bad += 1
                if bad >= limit:
                    raise NonFiniteLoss(f"loss was not finite for {bad} batches in a row "
                                        f"(epoch {epoch + 1}); lower --lr")
                opt.zero_grad(set_to_none=True)
                continue
            bad = 0
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        if not losses and len(loader):
            raise NonFiniteLoss(f"loss was not finite in any batch of epoch {epoch + 1}; "
                                "lower --lr")
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise NonFiniteLoss(f"weights became non-finite in epoch {epoch + 1}; lower --lr")
        loss_mean = float(np.mean(losses)) if losses else float("nan")
        done = epoch + 1
        if rank == 0:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = state_path.with_name(state_path.name + ".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                        "rngs": {n: _rng_state(r) for n, r in rngs.items()},
                        "bad_batches": bad,
                        "signature": json.dumps(signature or {}, sort_keys=True),
                        "epoch": done, "seconds": time.perf_counter() - t0}, tmp)
            os.replace(tmp, state_path)
            if on_epoch is not None:
                on_epoch(done, loss_mean)
        if minutes is not None and time.perf_counter() - t0 > 60 * minutes:
            break
    return {"epochs": done, "seconds": time.perf_counter() - t0, "loss": loss_mean}
