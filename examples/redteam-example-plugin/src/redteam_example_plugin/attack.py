"""`example_unsharp`: a blind restoration that sharpens the anonymized face (an unsharp mask), the
simplest thing an adversary tries on a blur.

What a plugin attack declares: a `name`, its threat `tier`, `parameters`, and `reconstruct` on a batch
of face windows (N x 3 x H x W floats in [0, 1]) returning the same shape. `applicable` may refuse a
method it cannot attack, with the reason.
"""

from __future__ import annotations

import numpy as np
import torch

from attacks.base import Applicability, Attack, MethodInfo
from redteam.core.params import Parameter
from redteam.core.tiers import ThreatTier


class UnsharpRestore(Attack):
    """Sharpen each window with an unsharp mask of the given radius and amount.

    References:
        Gonzalez and Woods, Digital Image Processing, 4th ed., section 3.6 (unsharp masking).
    """

    name = "example_unsharp"
    tier = ThreatTier.RECONSTRUCTION
    parameters = (
        Parameter("radius", float, 3.0, "Gaussian radius of the mask in pixels", 0.5, 50.0),
        Parameter("amount", float, 1.5, "how much of the detail is added back", 0.0, 10.0),
    )

    def applicable(self, method: MethodInfo) -> Applicability:
        return Applicability(True)

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        from skimage.filters import unsharp_mask  # imported when used: a plugin's module is imported by every run

        out = []
        for image in images:
            pixels = image.permute(1, 2, 0).double().numpy()
            sharp = unsharp_mask(pixels, radius=float(self.values["radius"]), amount=float(self.values["amount"]), channel_axis=2)
            out.append(torch.from_numpy(np.clip(sharp, 0.0, 1.0)).permute(2, 0, 1).to(images.dtype))
        return torch.stack(out)
