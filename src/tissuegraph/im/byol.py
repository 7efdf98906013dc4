"""BYOL on spot patches: a small CNN learns, from the slide's own patches, features that survive stain, orientation
and focus changes, with no labels and no pretrained weights.

The online network (encoder, projector, predictor) predicts the EMA target network's projection of another
augmented view of the same patch; the loss is 2 - 2 cos, summed over both view orders. The target's momentum
rises from ``momentum`` to 1 along a cosine schedule. The encoder's pooled output is the patch embedding.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tissuegraph.errors import InputError
from tissuegraph.im.filter import gaussian_blur
from tissuegraph.im.pretrained import PretrainedEncoder
from tissuegraph.io.write import write_atomically
from tissuegraph.nn.runtime import pick_device, seeded
from tissuegraph.options import check_whole

_GREY = (0.299, 0.587, 0.114)  # luma weights of R, G, B
_LAYOUT = torch.channels_last  # NHWC: about twice as fast for these small convolutions on a CPU
DEFAULT_EPOCHS = 15  # 22-43 s of BYOL for a 3,600-spot Visium slice on 2 CPU cores
#: Patches one epoch trains on at most (a fresh random draw each epoch): 4.5 Visium slices' worth. The encoder learns
#: the slide's textures, which a few thousand patches already show, so a 150k-bin Visium HD slide trains about as long
#: as five Visium slices instead of forty; every patch is still embedded.
PATCHES_PER_EPOCH = 16_384


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class PatchEncoder(nn.Module):
    """Small CNN: a full-resolution 3x3 stem, then one stride-2 3x3 conv per width, global average pool.

    ``input_px`` records the patch size it was trained on, so a saved encoder embeds new slices consistently.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), input_px: int = 32) -> None:
        super().__init__()
        self.widths, self.input_px = tuple(widths), input_px
        layers = [_conv(3, widths[0], 1)]
        layers += [_conv(c_in, c_out, 2) for c_in, c_out in zip((widths[0], *widths[:-1]), widths, strict=True)]
        self.features = nn.Sequential(*layers)
        self.dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))

    @property
    def config(self) -> dict[str, object]:
        return {"widths": list(self.widths), "input_px": self.input_px}


def _mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim_out)
    )


Encoder = PatchEncoder | PretrainedEncoder


@dataclass
class ByolResult:
    """The trained (online) encoder and the mean loss of every epoch."""

    encoder: Encoder
    losses: list[float]


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (hi - lo) + lo


def _chance(n: int, p: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) < p


def _geometry(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop (40-100 % of the area, aspect 3/4-4/3), flips, a quarter turn plus up to 20 degrees of
    free rotation: one affine map per patch, one grid_sample for the batch (reflected borders)."""
    n, dev = x.shape[0], x.device
    area = _uniform(n, 0.4, 1.0, generator, dev)
    aspect = torch.exp(_uniform(n, math.log(3 / 4), math.log(4 / 3), generator, dev))
    half_w, half_h = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
    shift_x = _uniform(n, -1, 1, generator, dev) * (1 - half_w)
    shift_y = _uniform(n, -1, 1, generator, dev) * (1 - half_h)
    quarter = torch.randint(0, 4, (n,), generator=generator, device=dev)
    angle = quarter * (math.pi / 2) + _uniform(n, -1, 1, generator, dev) * math.radians(20)
    flip_x = torch.where(_chance(n, 0.5, generator, dev), -1.0, 1.0)
    flip_y = torch.where(_chance(n, 0.5, generator, dev), -1.0, 1.0)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [
            torch.stack([half_w * cos * flip_x, -half_w * sin * flip_y, shift_x], dim=1),
            torch.stack([half_h * sin * flip_x, half_h * cos * flip_y, shift_y], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _hue_rotation(angle: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) rotations of RGB about the grey axis: a hue shift without converting to HSV."""
    axis = torch.full((3,), 3**-0.5, device=angle.device)
    cross = torch.tensor([[0.0, -1, 1], [1, 0, -1], [-1, 1, 0]], device=angle.device) * 3**-0.5
    outer = axis[:, None] * axis[None, :]
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    return cos * torch.eye(3, device=angle.device) + sin * cross + (1 - cos) * outer


def _colour(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Colour jitter with p 0.8 (brightness, contrast 0.6-1.4, saturation 0.8-1.2, hue +-0.1 turn, in that
    fixed order; hue is a rotation about the grey axis), then greyscale with p 0.2."""
    n, dev = x.shape[0], x.device
    jitter = _chance(n, 0.8, generator, dev)

    def factor(lo: float, hi: float) -> torch.Tensor:
        return torch.where(jitter, _uniform(n, lo, hi, generator, dev), 1.0)[:, None, None, None]

    grey_w = torch.tensor(_GREY, device=dev)[None, :, None, None]
    x = x * factor(0.6, 1.4)
    mean = (x * grey_w).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    x = (x - mean) * factor(0.6, 1.4) + mean
    grey = (x * grey_w).sum(dim=1, keepdim=True)
    x = (x - grey) * factor(0.8, 1.2) + grey
    turn = torch.where(jitter, _uniform(n, -0.1, 0.1, generator, dev), 0.0) * (2 * math.pi)
    x = torch.einsum("nij,njhw->nihw", _hue_rotation(turn), x).clamp(0, 1)
    to_grey = _chance(n, 0.2, generator, dev)[:, None, None, None]
    return torch.where(to_grey, (x * grey_w).sum(dim=1, keepdim=True).expand_as(x), x)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random view of a batch of (B, 3, H, W) patches in [0, 1]: geometry, colour, then a Gaussian blur
    (p 0.5, sigma 0.1-1.5 px)."""
    x = _colour(_geometry(x, generator), generator)
    n, dev = x.shape[0], x.device
    sigma = torch.where(_chance(n, 0.5, generator, dev), _uniform(n, 0.1, 1.5, generator, dev), 0.0)
    return gaussian_blur(x, sigma)


def _byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=1).mean()


def train_byol(
    patches: np.ndarray,
    *,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = 256,
    lr: float = 2e-3,
    momentum: float = 0.99,
    widths: tuple[int, ...] = (16, 32, 64, 128),
    encoder: Encoder | None = None,
    patches_per_epoch: int = PATCHES_PER_EPOCH,
    seed: int = 0,
    device: str | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> ByolResult:
    """Train a patch encoder with BYOL on (N, H, W, 3) patches in [0, 1] (Adam, mini-batches of about
    ``batch_size``); a seed fixes the result on a given device. Each epoch trains on at most ``patches_per_epoch``
    patches, drawn afresh (all of them, reshuffled, when there are fewer).

    The encoder is a new ``PatchEncoder(widths)`` trained from scratch, or ``encoder`` (e.g. a
    ``PretrainedEncoder``) fine-tuned in place from its current weights."""
    epochs = check_whole(epochs, "epochs", 0)
    batch_size = check_whole(batch_size, "batch_size", 2)  # batch normalisation needs two patches per batch
    patches_per_epoch = check_whole(patches_per_epoch, "patches_per_epoch", 2)
    if patches.ndim != 4 or patches.shape[-1] != 3 or len(patches) < 2:
        raise InputError(
            f"patches have shape {patches.shape}; BYOL needs at least 2 patches as (N, H, W, 3) from spot_patches"
        )
    dev = pick_device(device)
    with seeded(seed):
        generator = torch.Generator(device=dev).manual_seed(seed)
        images = torch.as_tensor(patches, dtype=torch.float32).permute(0, 3, 1, 2).to(dev, memory_format=_LAYOUT)
        if encoder is None:
            encoder = PatchEncoder(widths, input_px=patches.shape[1])
        online = nn.ModuleDict(
            {"encoder": encoder, "projector": _mlp(encoder.dim, 256, 64), "predictor": _mlp(64, 256, 64)}
        ).to(dev, memory_format=_LAYOUT)
        target = nn.Sequential(copy.deepcopy(encoder), copy.deepcopy(online["projector"])).requires_grad_(False)
        online_params = list(online["encoder"].parameters()) + list(online["projector"].parameters())
        optimiser = torch.optim.Adam(online.parameters(), lr=lr, weight_decay=1e-6)
        used = min(len(images), patches_per_epoch)
        n_batches = max(1, used // batch_size)
        total_steps, step = epochs * n_batches, 0
        losses: list[float] = []
        online.train()
        target.train()
        for epoch in range(epochs):
            epoch_loss = 0.0
            order = torch.randperm(len(images), generator=generator, device=dev)[:used]
            for rows in torch.tensor_split(order, n_batches):
                batch = images[rows]
                with torch.no_grad():
                    view1, view2 = augment(batch, generator), augment(batch, generator)
                    target1, target2 = target(view1), target(view2)
                p1 = online["predictor"](online["projector"](online["encoder"](view1)))
                p2 = online["predictor"](online["projector"](online["encoder"](view2)))
                loss = _byol_loss(p1, target2) + _byol_loss(p2, target1)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                tau = 1 - (1 - momentum) * (math.cos(math.pi * step / total_steps) + 1) / 2
                with torch.no_grad():
                    for t, o in zip(target.parameters(), online_params, strict=True):
                        t.lerp_(o, 1 - tau)
                step += 1
                epoch_loss += float(loss.detach())
            losses.append(epoch_loss / n_batches)
            if on_epoch is not None:
                on_epoch(epoch, losses[-1])
        return ByolResult(encoder.to("cpu", memory_format=torch.contiguous_format).eval(), losses)


def embed_patches(
    encoder: Encoder, patches: np.ndarray, *, batch_size: int = 512, device: str | None = None
) -> np.ndarray:
    """(N, dim) pooled encoder features of (N, H, W, 3) patches in [0, 1] (the encoder runs in eval mode)."""
    if patches.ndim != 4 or patches.shape[-1] != 3 or patches.shape[1:3] != (encoder.input_px, encoder.input_px):
        raise InputError(
            f"patches have shape {patches.shape} but the encoder was trained on {encoder.input_px} px patches; "
            f"cut them with spot_patches(..., out_px={encoder.input_px})"
        )
    batch_size = check_whole(batch_size, "batch_size", 1)
    dev = pick_device(device)
    model = encoder.to(dev).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(patches), batch_size):
            batch = torch.as_tensor(patches[start : start + batch_size], dtype=torch.float32, device=dev)
            out.append(model(batch.permute(0, 3, 1, 2)).cpu())
    encoder.cpu()
    return torch.cat(out).numpy() if out else np.empty((0, encoder.dim), dtype=np.float32)


def save_encoder(encoder: Encoder, path: str | Path) -> None:
    """Weights and architecture in one file (written atomically), so ``load_encoder`` rebuilds it to embed other
    slices."""
    write_atomically(path, lambda tmp: torch.save({"config": encoder.config, "state_dict": encoder.state_dict()}, tmp))


def load_encoder(path: str | Path) -> Encoder:
    """The encoder written by ``save_encoder`` (read with weights_only=True: no code runs from the file)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"encoder file {path} does not exist; write one with save_encoder(result.encoder, path)")
    not_an_encoder = (
        f"{path} is not an image encoder written by save_encoder; give the file that save_encoder(result.encoder, "
        "path) wrote"
    )
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        config = saved["config"]
        if "backbone" in config:
            encoder: Encoder = PretrainedEncoder(str(config["backbone"]), input_px=int(config["input_px"]))
        else:
            encoder = PatchEncoder(tuple(config["widths"]), input_px=int(config["input_px"]))
        encoder.load_state_dict(saved["state_dict"])
    except InputError:
        raise  # e.g. the pretrained extra is not installed: its own advice
    except Exception as err:  # not a torch file, another torch file, or weights of another shape
        raise InputError(f"{not_an_encoder} ({type(err).__name__}: {str(err)[:200]})") from err
    return encoder.eval()
