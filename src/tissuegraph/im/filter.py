"""The STAIG patch filter: blur, keep a centred window of the spectrum, blur again, so the encoder sees tissue
structure rather than stain speckle and scanner noise.

The paper calls it band-pass, but the window is centred on the zero frequency, so it keeps the low frequencies.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from tissuegraph.errors import InputError

_CHUNK = 4096  # patches filtered at once, to bound memory


def _blur_matrix(size: int, sigmas: torch.Tensor) -> torch.Tensor:
    """(B, size, size) matrices applying a 1-D Gaussian (one sigma per image) with reflected borders."""
    radius = min(max(1, math.ceil(3 * float(sigmas.max()))), size - 1)
    taps = torch.arange(-radius, radius + 1, device=sigmas.device)
    weights = torch.exp(-0.5 * (taps / sigmas.clamp_min(1e-3)[:, None]) ** 2)
    weights = weights / weights.sum(dim=1, keepdim=True)
    source = (torch.arange(size, device=sigmas.device)[:, None] + taps).abs()
    source = torch.where(source > size - 1, 2 * (size - 1) - source, source)
    matrix = torch.zeros(len(sigmas), size, size, dtype=sigmas.dtype, device=sigmas.device)
    shape = (len(sigmas), size, len(taps))
    return matrix.scatter_add_(2, source.expand(shape), weights[:, None, :].expand(shape))


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) images, one sigma for all or one per image; reflected borders.

    Written as two batched matrix products, which on a CPU beat a grouped convolution with one kernel per image.
    """
    sigmas = torch.as_tensor(sigma, dtype=images.dtype, device=images.device).reshape(-1)
    rows = _blur_matrix(images.shape[-2], sigmas)[:, None]
    cols = _blur_matrix(images.shape[-1], sigmas)[:, None]
    return rows @ images @ cols.transpose(-1, -2)


def default_window(patch_px: int) -> int:
    """Half the patch side + 1 frequency bins: keeps structure down to a period of about 4 pixels."""
    return patch_px // 2 + 1


def stain_filter(
    patches: np.ndarray, *, window: int | None = None, enabled: bool = True, sigma: float = 1.0
) -> np.ndarray:
    """Filter (N, H, W, 3) patches channel by channel: Gaussian blur, FFT, keep a centred window, inverse FFT, blur.

    ``window`` is the side, in frequency bins, of the kept square centred on the zero frequency: frequencies up
    to (window - 1) // 2 cycles per patch survive along each axis (an even window loses one bin so the spectrum
    stays symmetric and the result real). The default is ``default_window`` (17 for 32 px patches).
    ``sigma`` is the blur's standard deviation in pixels. Output is clipped to [0, 1]; ``enabled=False``
    returns the patches untouched.
    """
    if not enabled:
        return patches
    if patches.ndim != 4 or patches.shape[-1] != 3:
        raise InputError(f"patches have shape {patches.shape}; stain_filter needs (N, H, W, 3) from spot_patches")
    height, width = patches.shape[1:3]
    window = default_window(min(height, width)) if window is None else window
    if window < 1 or sigma < 0:
        raise InputError(f"window ({window}) must be >= 1 and sigma ({sigma}) >= 0")
    half = (window - 1) // 2
    keep_rows = torch.fft.fftfreq(height).mul(height).abs() <= half
    keep_cols = torch.fft.fftfreq(width).mul(width).abs() <= half
    keep = (keep_rows[:, None] & keep_cols[None, :])[:, : width // 2 + 1]
    out = np.empty(patches.shape, dtype=np.float32)
    for start in range(0, len(patches), _CHUNK):
        images = torch.from_numpy(np.ascontiguousarray(patches[start : start + _CHUNK], dtype=np.float32))
        images = images.permute(0, 3, 1, 2)
        if sigma > 0:
            images = gaussian_blur(images, sigma)
        images = torch.fft.irfft2(torch.fft.rfft2(images) * keep, s=(height, width))
        if sigma > 0:
            images = gaussian_blur(images, sigma)
        out[start : start + _CHUNK] = images.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    return out
