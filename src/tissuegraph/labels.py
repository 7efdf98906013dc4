"""One order for domain labels everywhere (tables, legends, palettes): digit runs compare by value."""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd


def natural_key(label: object) -> tuple:
    """Sort key that orders digit runs by value: '2' < '10', 'L2' < 'L10', '3.1' < '3.10'.

    Labels equal by value ('2' and '02') are ordered by their text, so the order never depends on the input's.
    """
    parts = re.split(r"(\d+)", str(label))
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), str(label)


def sorted_labels(labels: Iterable) -> list[str]:
    """Distinct non-missing labels as strings, naturally sorted."""
    unique = {str(label) for label in pd.Series(list(labels), dtype=object).dropna()}
    return sorted(unique, key=natural_key)


def labels_as_text(labels: pd.Series, missing: str) -> np.ndarray:
    """Each spot's label as a string, ``missing`` for NaN/None/pd.NA (which ``astype(str)`` would turn into 'nan')."""
    return np.where(labels.notna().to_numpy(), labels.astype(object).astype(str).to_numpy(), missing)
