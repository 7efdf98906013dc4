"""Names drawn as written: slice, domain and gene names are data, never matplotlib's math markup."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import matplotlib

P = ParamSpec("P")
R = TypeVar("R")


def literal_text(draw: Callable[P, R]) -> Callable[P, R]:
    """Run a figure function with math parsing off: a slice called 'a$b$c' lost its '$' signs and turned italic,
    and one called '$\\foo$' made saving the figure fail. Text keeps the setting it was created with."""

    @functools.wraps(draw)
    def drawn(*args: P.args, **kwargs: P.kwargs) -> R:
        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return drawn


#: Longest name drawn whole in a title or legend; a longer one (a 200-character slice name) pushed the panels
#: out of the figure.
MAX_LABEL_CHARS = 40


def shortened(name: str) -> str:
    """``name``, or its start and end around an ellipsis when longer than ``MAX_LABEL_CHARS``: names of one run
    often differ only at the end ('..._slice1', '..._slice2'), so the end is kept."""
    if len(name) <= MAX_LABEL_CHARS:
        return name
    head = (MAX_LABEL_CHARS - 1) // 2
    return f"{name[:head]}…{name[-(MAX_LABEL_CHARS - 1 - head) :]}"
