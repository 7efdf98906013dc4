"""Errors and warnings for bad or doubtful input.

Every message names the problem and how to fix it, so a user never has to read a traceback.
"""

from __future__ import annotations

import inspect
import os
import warnings


class InputError(ValueError):
    """The data handed to tissuegraph cannot be used as it is (the message says why and what to do)."""


class TissuegraphWarning(UserWarning):
    """The run goes on, but something in the input or the request deserves a look (the message says what)."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str) -> None:
    """Warn as a ``TissuegraphWarning`` attributed to the caller's own line that called into tissuegraph (as pandas
    does), not to whichever module deep inside found the problem: the file and line shown are the user's."""
    inside = 0
    frame = inspect.currentframe()
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        inside += 1
        frame = frame.f_back
    warnings.warn(message, TissuegraphWarning, stacklevel=inside + 1)
