"""The training loop shared by every command: epochs, resume, NaN guard, DDP.

Run under ``torchrun --nproc_per_node=N -m training ...`` the loop joins the
process group (gloo on CPU, NCCL on GPU), shards the data with a
`DistributedSampler` and averages gradients with `DistributedDataParallel`;
only rank 0 writes. A state file is written after every epoch; ``--resume``
continues from it with the same optimizer state and random streams.
"""

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

__all__ = ["distributed_setup", "is_main", "seed_everything", "fit", "NonFiniteLoss",
           "positive_int", "fraction", "probability", "require_validation"]


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite."""


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


def _float_in(text, low_ok, what):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not ((0.0 <= value if low_ok else 0.0 < value) and value < 1.0):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def fraction(text):
    """argparse type for a split (``--val-fraction``): a number with 0 < x < 1.

    0 leaves nothing to validate on, 1 nothing to train on.
    """
    return _float_in(text, False, "a fraction between 0 and 1 (both excluded)")


def probability(text):
    """argparse type for a probability per sample (``--band-dropout``): 0 <= x < 1."""
    return _float_in(text, True, "a probability in [0, 1)")


def require_validation(val, fraction, what):
    """Refuse, before any training, a random split that picked nothing to validate on.

    ``val`` is the boolean validation mask over the ``what`` (e.g. "stamps").
    """
    if not np.any(val):
        raise ValueError(f"--val-fraction {fraction} of {len(val)} {what} picked none "
                         f"to validate on: use a larger fraction or bank")


def distributed_setup():
    """Join the torchrun process group when there is one; returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def is_main():
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


def fit(model, dataset, step, *, epochs, batch_size, lr, seed, state_path, resume=False,
        weights=None, minutes=None, weight_decay=1e-4, max_bad_batches=20, on_epoch=None,
        progress=True):
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
    max_bad_batches : int
        Non-finite losses are skipped; this many in a row abort the run.
    on_epoch : callable, optional
        ``on_epoch(epoch, mean_loss)`` after every epoch (rank 0).

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
    if resume and state_path.exists():
        state = torch.load(state_path, weights_only=True)
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
        start_epoch, elapsed = int(state["epoch"]), float(state["seconds"])
    t0 = time.perf_counter() - elapsed
    loss_mean = float("nan")
    done = start_epoch
    # Non-finite losses in a row, counted across epochs: a small data set has
    # fewer than ``max_bad_batches`` batches per epoch.
    bad = 0
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
                        "epoch": done, "seconds": time.perf_counter() - t0}, tmp)
            os.replace(tmp, state_path)
            if on_epoch is not None:
                on_epoch(done, loss_mean)
        if minutes is not None and time.perf_counter() - t0 > 60 * minutes:
            break
    return {"epochs": done, "seconds": time.perf_counter() - t0, "loss": loss_mean}
