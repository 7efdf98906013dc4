"""The data-derived default settings (one rule for every platform)."""

from __future__ import annotations

import numpy as np
import pytest

from tissuegraph.errors import InputError
from tissuegraph.tl import StaigSettings, StalignerSettings


def test_sequencing_platform_gets_soft_contrast_and_gene_masking() -> None:
    visium = StaigSettings.from_data(8513)
    assert visium.tau == 30.0
    assert visium.feature_mask_rates == (0.1, 0.2)


def test_imaging_platforms_get_small_tau_and_light_masking() -> None:
    osmfish = StaigSettings.from_data(33)
    starmap = StaigSettings.from_data(166)
    assert osmfish.tau == 1.0
    assert starmap.tau == pytest.approx(1.66)
    assert osmfish.feature_mask_rates == (0.01, 0.02)


def test_overrides_win_and_unknown_settings_are_rejected() -> None:
    assert StaigSettings.from_data(3000, tau=5.0).tau == 5.0
    with pytest.raises(InputError, match="unknown STAIG setting"):
        StaigSettings.from_data(3000, temperature=5.0)
    with pytest.raises(InputError, match="unknown STAIG setting 'to_dict'"):  # a method, not a setting
        StaigSettings.from_data(3000, to_dict=1)
    for counts in ("model_genes", "n_genes"):  # the data's counts, not settings: model_genes=5000 gave tau 30
        with pytest.raises(InputError, match=f"unknown STAIG setting '{counts}'"):
            StaigSettings.from_data(33, **{counts: 5000})
    fewer = StaigSettings.from_data(8513, n_top_genes=500)  # the rule follows the genes the model reads
    assert fewer.n_top_genes == 500 and fewer.tau == 5.0 and fewer.feature_mask_rates == (0.01, 0.02)


def test_denominator_follows_the_temperature_unless_asked() -> None:
    assert StaigSettings.from_data(8513).denominator == "moments"
    assert StaigSettings.from_data(33).denominator == "sampled"
    assert StaigSettings.from_data(8513, tau=2.0).denominator == "sampled"
    assert StaigSettings.from_data(8513, denominator="exact").denominator == "exact"


def test_settings_serialise_to_plain_values() -> None:
    stored = StaigSettings.from_data(3000).to_dict()
    assert stored["feature_mask_rates"] == [0.1, 0.2]
    assert all(isinstance(value, (int, float, str, list)) for value in stored.values())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tau": -1.0}, "tau = -1.0 cannot work; it must be a positive temperature"),
        ({"tau": 0.01}, r"tau = 0.01 cannot work; it must be a positive temperature of at least 0.025 \(float32"),
        ({"epochs": 0}, "epochs = 0 cannot work"),
        ({"feature_mask_rates": (0.1, 1.0)}, r"feature_mask_rates = .* two shares in \[0, 1\)"),
        ({"n_neighbors": 0}, "n_neighbors = 0"),
        ({"denominator": "approximate"}, "denominator = 'approximate'"),
        ({"tau": float("inf")}, "tau = inf cannot work; it must be a finite number"),  # inf > 0: no learning at all
        ({"tau": np.float32("inf")}, r"tau = np.float32\(inf\) cannot work; it must be a finite number"),
        ({"feature_mask_rates": (0.1, float("nan"))}, r"feature_mask_rates = \(0.1, nan\) .* finite number"),
        ({"denominator": "moments", "tau": 2.0}, r"denominator='moments' needs tau >= 10 \(tau is 2"),
        ({"epochs": "300"}, "epochs = '300' cannot work; it must be a whole number"),  # a value read from text
        ({"epochs": 300.5}, "epochs = 300.5 cannot work; it must be a whole number"),
        ({"n_neighbors": True}, "n_neighbors = True cannot work; it must be a whole number"),
        ({"feature_mask_rates": (0.1,)}, r"feature_mask_rates = \(0.1,\) cannot work; it must be a tuple of 2 numbers"),
        ({"hidden_dims": (64.5,)}, r"hidden_dims = \(64.5,\) cannot work; it must be a tuple of whole numbers"),
        ({"n_top_genes": "10"}, "n_top_genes = '10' cannot work; it must be a whole number"),  # was a bare TypeError
        ({"n_top_genes": True}, "n_top_genes = True cannot work"),  # ran with 1 gene
        ({"n_top_genes": 10.5}, "n_top_genes = 10.5 cannot work"),  # ran with 10, recorded 10.5
        ({"n_top_genes": 0}, "n_top_genes = 0 cannot work; it must be at least 1"),
        ({"n_negatives": 1}, "n_negatives = 1 cannot work; it must be at least 2"),  # gave a NaN loss
    ],
)
def test_staig_settings_that_cannot_work_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(InputError, match=f"STAIG setting {message}"):
        StaigSettings.from_data(8513, **overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": 0}, "epochs = 0 cannot work"),
        ({"pair_mode": "ring"}, "pair_mode = 'ring'"),
        ({"mnn_k": 0}, "mnn_k = 0"),
        ({"lr": 0.0}, "lr = 0.0"),
        ({"lr": float("inf")}, "lr = inf cannot work; it must be a finite number"),
        ({"mnn_k": 50.5}, "mnn_k = 50.5 cannot work; it must be a whole number"),  # would fail after pre-training
        ({"epochs": "1000"}, "epochs = '1000' cannot work; it must be a whole number"),
        ({"reference": 1.0}, r"reference = 1.0 cannot work; it must be a whole number or a string"),
        ({"grad_clip": "5"}, "grad_clip = '5' cannot work; it must be a number or None"),
    ],
)
def test_staligner_settings_that_cannot_work_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(InputError, match=f"STAligner setting {message}"):
        StalignerSettings.from_data(**overrides)


def test_settings_take_any_number_type_that_fits() -> None:
    """Integers (numpy's too) are numbers, a list fits a tuple setting and is stored as one."""
    staig = StaigSettings.from_data(8513, tau=30, epochs=np.int64(5), feature_mask_rates=[0.2, 0.2], hidden_dims=[64])
    assert (staig.tau, staig.epochs, staig.feature_mask_rates, staig.hidden_dims) == (30, 5, (0.2, 0.2), (64,))
    staligner = StalignerSettings.from_data(epochs=7, reference="151675", grad_clip=None, margin=np.float32(0.5))
    assert (staligner.pretrain_epochs, staligner.triplet_epochs, staligner.reference) == (3, 4, "151675")


def test_staligner_epochs_and_clipping_are_refused_in_the_users_own_terms() -> None:
    with pytest.raises(InputError, match=r"epochs = -3 cannot work; it must be a whole number of at least 1"):
        StalignerSettings.from_data(epochs=-3)  # not 'pretrain_epochs = -2', a value nobody gave
    with pytest.raises(InputError, match="epochs and pretrain_epochs were both given"):
        StalignerSettings.from_data(epochs=10, pretrain_epochs=2)  # once trained 2 + 5 epochs without a word
    with pytest.raises(InputError, match=r"grad_clip = 0 cannot work; it must be None \(no clipping\) or positive"):
        StalignerSettings.from_data(grad_clip=0)
    with pytest.raises(InputError, match=r"the settings are: .*, epochs$"):
        StalignerSettings.from_data(epoch=10)
    assert StalignerSettings.from_data(epochs=7).pretrain_epochs == 3
