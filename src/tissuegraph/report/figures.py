"""Figures as inline PNG data URIs, so the report needs no file beside it."""

from __future__ import annotations

import base64
import io

from matplotlib.figure import Figure

#: Sharp enough on screen while keeping a report of several slices well under 10 MB.
DPI = 100


def png_uri(fig: Figure, dpi: int = DPI) -> str:
    """``data:image/png;base64,...`` of ``fig``; the figure is cleared afterwards to free its arrays (H&E images)."""
    buffer = io.BytesIO()
    fig.savefig(
        buffer,
        format="png",
        dpi=dpi,
        facecolor="white",
        bbox_inches="tight",
        pad_inches=0.1,
        metadata={"Software": None},
    )
    fig.clear()
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
