"""The training loss per epoch, to see whether a run converged."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from matplotlib.figure import Figure

from tissuegraph.errors import InputError
from tissuegraph.pl.text import literal_text


@literal_text
def loss_curve(adata: AnnData) -> Figure:
    """Loss per epoch from ``uns['tissuegraph']['loss']``; for STAligner a line marks where triplets start."""
    run = adata.uns.get("tissuegraph")
    if not isinstance(run, dict) or "loss" not in run:
        raise InputError("uns['tissuegraph']['loss'] not found; run tl.domains or tl.integrate first")
    loss = np.asarray(run["loss"], dtype=np.float64).ravel()
    if loss.size == 0:
        raise InputError("uns['tissuegraph']['loss'] is empty; the run trained for 0 epochs")
    fig = Figure(figsize=(5.0, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(np.arange(1, loss.size + 1), loss, color="tab:blue", linewidth=1.2, label="loss")
    settings = run.get("settings", {})
    pretrain = settings.get("pretrain_epochs") if isinstance(settings, dict) else None
    if str(run.get("method")) == "staligner" and pretrain is not None and 0 < int(pretrain) < loss.size:
        ax.axvline(int(pretrain) + 0.5, color="0.5", linestyle="--", linewidth=1, label="triplets start")
        ax.legend(frameon=False)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(f"training loss ({run.get('method', 'tissuegraph')}, {loss.size} epochs)")
    return fig
