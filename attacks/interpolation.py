"""Interpolation upscaling of mosaic and downsampled faces: recover the cell grid, then resample it.

The grid (pitch and phase per axis) comes from the declared method when it is known, and is otherwise
estimated blindly, with sub-pixel pitch, from the steps a mosaic leaves (`attacks.grid`). A face where
no grid shows is not attacked: `reconstruct` raises AttackNotApplicable, so the face gets no result for
the attack (and the method cannot PASS) instead of an unchanged copy counted as a reconstruction.

References:
    McPherson, Shokri and Shmatikov, "Defeating Image Obfuscation with Deep Learning", 2016; Keys,
    "Cubic convolution interpolation for digital image processing", IEEE TASSP 1981 (bicubic);
    Duchon, "Lanczos filtering in one and two dimensions", J. Appl. Meteorology 1979.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from attacks.base import Applicability, Attack, AttackNotApplicable, MethodInfo
from attacks.grid import AxisGrid, estimate_grid, resample_grid
from redteam.core.tiers import ThreatTier


class _Interpolation(Attack):
    tier = ThreatTier.RECONSTRUCTION
    kernel: ClassVar[str]

    def applicable(self, method: MethodInfo) -> Applicability:
        if method.is_known and method.stage_of("cells") is None:
            return Applicability(False, f"'{method.name}' has no mosaic, pixelate or downsampling stage")
        return Applicability(True)

    def _grid(self, window: np.ndarray, method: MethodInfo) -> tuple[AxisGrid, AxisGrid, tuple[int, int, int, int]]:
        """The grid and the box it covers in the window: declared, or estimated blindly."""
        height, width = window.shape[:2]
        stage = method.stage_of("cells")
        region = method.region_of(stage) if stage is not None else None
        if stage is not None and region is not None:
            x0, y0, x1, y1 = region
            box = (max(0, x0), max(0, y0), min(width, x1), min(height, y1))
            pitch_x, pitch_y = stage.cell_pitch(region) or (0.0, 0.0)
            if pitch_x > 0 and pitch_y > 0:
                columns, rows = int((x1 - x0) / pitch_x + 1e-6) + 1, int((y1 - y0) / pitch_y + 1e-6) + 1
                return AxisGrid(pitch_x, float(x0), 1.0, columns), AxisGrid(pitch_y, float(y0), 1.0, rows), box
        estimate = estimate_grid(np.round(window * 255).astype(np.uint8))
        if estimate is None:
            raise AttackNotApplicable("no mosaic grid shows in this face's window (blind estimate)")
        return estimate.x, estimate.y, estimate.box

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        out = images.clone()
        for index, image in enumerate(images):
            window = image.permute(1, 2, 0).double().numpy()
            grid_x, grid_y, box = self._grid(window, method)
            restored = resample_grid(window, grid_x, grid_y, box, self.kernel)
            if restored is None:
                raise AttackNotApplicable(f"fewer than 2 x 2 whole mosaic cells in this face's window (pitch {grid_x.pitch:.1f} px)")
            out[index] = torch.from_numpy(restored).permute(2, 0, 1).float()
        return out


class BicubicUpscale(_Interpolation):
    """Resample the mosaic's cell grid bicubically (grid from the declared method, or estimated blindly).

    References:
        Keys, IEEE TASSP 1981; McPherson, Shokri and Shmatikov 2016 (interpolation beats pixelation).
    """

    name = "bicubic"
    kernel = "bicubic"


class LanczosUpscale(_Interpolation):
    """Resample the mosaic's cell grid with a Lanczos filter (grid declared or estimated blindly).

    References:
        Duchon, J. Appl. Meteorology 1979; McPherson, Shokri and Shmatikov 2016.
    """

    name = "lanczos"
    kernel = "lanczos"
