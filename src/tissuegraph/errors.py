"""Errors raised for bad input.

Every message names the problem and how to fix it, so a user never has to read a traceback.
"""


class InputError(ValueError):
    """The data handed to tissuegraph cannot be used as it is (the message says why and what to do)."""
