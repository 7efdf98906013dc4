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


def check_seed(seed: object) -> int:
    """Refuse, before any work, a seed that one of the libraries would reject halfway through a run."""
    try:
        value = None if isinstance(seed, bool) else operator.index(seed)  # int and numpy integers, not 1.0 or "1"
    except TypeError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        raise InputError(f"seed must be an integer from 0 to {MAX_SEED} (got {seed!r}); e.g. seed=0 (--seed 0)")
    return value
