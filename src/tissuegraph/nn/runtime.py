"""Where and how training runs: the torch device, and seeded deterministic kernels that restore the caller's random
state and settings after (with a GPU, cuBLAS's fixed workspace stays set for the process: cuBLAS reads it once)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from tissuegraph.errors import InputError


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when present, otherwise the CPU; a device that was asked for but cannot be used is refused up front."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(
            f"unknown device {device!r}; use 'cpu' or 'cuda' (or leave it out: CUDA when present)"
        ) from err
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device {device!r} was asked for but this torch build sees no CUDA GPU; leave the device out (the CPU "
            "is used) or install a CUDA build of torch"
        )
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        last = torch.cuda.device_count() - 1
        raise InputError(
            f"device {device!r} does not exist: torch sees GPUs cuda:0..cuda:{last}; pick one or leave it out"
        )
    if chosen.type not in ("cpu", "cuda"):
        raise InputError(f"device {device!r} is not supported; use 'cpu' or 'cuda'")
    return chosen


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Deterministic kernels (e.g. ordered scatter-add) and torch's global generator seeded for the duration, so a
    seed fixes the result; the caller's random stream and deterministic-algorithm settings are restored after.

    With a GPU, cuBLAS is deterministic only with a fixed workspace (CUBLAS_WORKSPACE_CONFIG, read when its first
    handle is made): it is set to ':4096:8', PyTorch's documented value, unless the caller set it.
    """
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    # manual_seed reseeds every GPU's generator, whichever device trains: fork them all
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    if cuda_devices:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    with torch.random.fork_rng(devices=cuda_devices):
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def require_finite(embedding: torch.Tensor, epochs_done: int, lr: float) -> None:
    """Refuse an embedding that training blew up to NaN or infinity: clustering it would fail in a library's own
    words, far from the cause (a learning rate too large for the data)."""
    if not bool(torch.isfinite(embedding).all()):
        raise InputError(
            f"training diverged: after {epochs_done} epochs at learning rate {lr:g} the embedding holds NaN or "
            "infinite values; use a smaller learning rate (lr=, e.g. the default)"
        )
