"""Device choice and seeded training: bad devices are refused up front, and seeding leaves no trace behind."""

from __future__ import annotations

import contextlib
import os

import pytest
import torch

from tissuegraph.errors import InputError
from tissuegraph.nn.runtime import pick_device, seeded


def test_a_device_that_cannot_be_used_is_refused_up_front() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device 'gpu'; use 'cpu' or 'cuda'"):
        pick_device("gpu")
    with pytest.raises(InputError, match="not supported"):
        pick_device("meta")
    if torch.cuda.is_available():
        with pytest.raises(InputError, match="does not exist"):
            pick_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(InputError, match="sees no CUDA GPU; leave the device out"):
            pick_device("cuda")


def test_seeded_training_restores_the_callers_random_stream_and_settings() -> None:
    enabled, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.manual_seed(999)
        expected = torch.rand(3)
        torch.manual_seed(999)
        with seeded(0):
            inside = torch.rand(3)
            assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.equal(torch.rand(3), expected)  # the caller's stream goes on as if nothing happened
        assert (
            torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
        )
        torch.manual_seed(5)
        with seeded(0):
            assert torch.equal(torch.rand(3), inside)  # the seed alone fixes what happens inside
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@pytest.mark.parametrize("preset", [None, ":16:8"])
def test_seeded_training_fixes_the_cublas_workspace_when_a_gpu_trains(monkeypatch, preset) -> None:
    """cuBLAS is deterministic only with a fixed workspace; a value the caller chose is kept."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.random, "fork_rng", lambda devices: contextlib.nullcontext())  # no real GPU to fork
    monkeypatch.setattr(torch, "manual_seed", lambda seed: None)
    if preset is None:
        monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    else:
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", preset)
    enabled = torch.are_deterministic_algorithms_enabled()
    with seeded(0):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == (preset or ":4096:8")
    assert torch.are_deterministic_algorithms_enabled() == enabled
