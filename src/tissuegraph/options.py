"""The names users choose from (clusterers, integration methods, image backbones) and the seeds they may give,
with no heavy imports.

The command line builds its parser from these, so ``tissuegraph --help`` and argument errors answer at once
instead of after loading torch, scanpy and scikit-learn; the functions that take these names check against the
same tuples.
"""

import operator

from tissuegraph.errors import InputError

CLUSTER_METHODS = ("gmm", "leiden", "kmeans")
INTEGRATION_METHODS = ("staig", "staligner")
PRETRAINED_BACKBONES = ("efficientnet-lite0",)
IMAGE_BACKBONES = ("scratch", *PRETRAINED_BACKBONES)

#: numpy, scikit-learn and torch all take seeds from 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1


def _whole(value: object) -> int | None:
    """``value`` as an int when it is one (Python or numpy integers; not True, 1.0 or "1"), else None."""
    try:
        return None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        return None


def check_seed(seed: object) -> int:
    """Refuse, before any work, a seed that one of the libraries would reject halfway through a run."""
    value = _whole(seed)
    if value is None or not 0 <= value <= MAX_SEED:
        raise InputError(f"seed must be an integer from 0 to {MAX_SEED} (got {seed!r}); e.g. seed=0 (--seed 0)")
    return value


def check_whole(value: object, name: str, minimum: int) -> int:
    """Refuse, before any work, a count (epochs, batch size, dimensions) that is not a whole number >= ``minimum``:
    a negative one would otherwise run as if it were 0 or 1 and be recorded as given."""
    number = _whole(value)
    if number is None or number < minimum:
        raise InputError(f"{name} must be a whole number >= {minimum} (got {value!r})")
    return number
