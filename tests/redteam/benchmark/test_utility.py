"""Utility columns on pairs whose answer is known: a change inside the face box leaves the outside intact."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from redteam.benchmark.utility import pair_utility, summarise
from redteam.core.geometry import FaceGeometry

FACE = FaceGeometry(box=(16.0, 16.0, 48.0, 48.0), landmarks=((24.0, 28.0), (40.0, 28.0), (32.0, 36.0), (26.0, 42.0), (38.0, 42.0)), score=0.99)


def lpips_stub(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A stand-in distance (mean absolute difference): LPIPS' own weights are tested elsewhere."""
    return (x - y).abs().mean().reshape(1)


def test_a_box_changes_the_face_region_and_nothing_else() -> None:
    original = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    boxed = original.copy()
    boxed[16:48, 16:48] = 0
    values = pair_utility(original, boxed, [FACE], lpips_stub)
    assert values["changed_fraction"] == pytest.approx(32 * 32 / 64**2, abs=0.01)
    assert values["psnr_outside"] == math.inf and values["psnr_face"] < 10
    assert values["ssim_face"] < values["ssim_image"] < values["ssim_outside"]
    assert values["lpips_outside"] == 0.0 and values["lpips_face"] > values["lpips_image"] > 0.0
    unchanged = pair_utility(original, original.copy(), [FACE], None)
    assert unchanged["ssim_image"] == pytest.approx(1.0) and unchanged["changed_fraction"] == 0.0 and math.isnan(unchanged["lpips_image"])


def test_the_summary_caps_an_infinite_psnr_and_skips_missing_values() -> None:
    pairs = [{"psnr_outside": math.inf, "lpips_image": math.nan}, {"psnr_outside": 40.0, "lpips_image": 0.2}]
    filled = [
        {**{c: 0.5 for c in ("ssim_image", "ssim_face", "ssim_outside", "psnr_image", "psnr_face", "lpips_face", "lpips_outside", "changed_fraction")}, **p}
        for p in pairs
    ]
    summary = summarise("t", filled)
    assert summary.pairs == 2 and summary.means["psnr_outside"] == 70.0 and summary.means["lpips_image"] == pytest.approx(0.2)
