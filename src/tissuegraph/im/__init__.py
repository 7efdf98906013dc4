"""Image features for STAIG image mode: spot patches, the stain filter, a BYOL-trained patch encoder."""

from tissuegraph.im.byol import (
    DEFAULT_EPOCHS,
    ByolResult,
    PatchEncoder,
    embed_patches,
    load_encoder,
    save_encoder,
    train_byol,
)
from tissuegraph.im.features import has_image, image_features
from tissuegraph.im.filter import stain_filter
from tissuegraph.im.patches import spot_patches
from tissuegraph.im.pretrained import PretrainedEncoder

__all__ = [
    "spot_patches",
    "stain_filter",
    "train_byol",
    "embed_patches",
    "save_encoder",
    "load_encoder",
    "image_features",
    "has_image",
    "ByolResult",
    "PatchEncoder",
    "PretrainedEncoder",
    "DEFAULT_EPOCHS",
]
