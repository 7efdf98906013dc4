"""The names users choose from (clusterers, integration methods, image backbones), with no heavy imports.

The command line builds its parser from these, so ``tissuegraph --help`` and argument errors answer at once
instead of after loading torch, scanpy and scikit-learn; the functions that take these names check against the
same tuples.
"""

CLUSTER_METHODS = ("gmm", "leiden", "kmeans")
INTEGRATION_METHODS = ("staig", "staligner")
PRETRAINED_BACKBONES = ("efficientnet-lite0",)
IMAGE_BACKBONES = ("scratch", *PRETRAINED_BACKBONES)
