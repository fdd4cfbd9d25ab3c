"""The one tensor convention: float32, N x 3 x H x W, RGB, values in [0, 1]."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 1 x 3 x H x W float32 in [0, 1]."""
    import torch

    # A float32 copy: the input may be a read-only view (decoded images are), which torch warns about.
    return torch.from_numpy(np.array(pixels, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0) / 255.0


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """1 x 3 x H x W float in [0, 1] -> H x W x 3 uint8, rounding to nearest (8-bit quantization)."""
    import torch

    array = tensor.detach().clamp(0.0, 1.0).mul(255.0).round().to(dtype=torch.uint8)
    return np.asarray(array[0].permute(1, 2, 0).cpu().numpy())
