"""`example_posterize`: a Gaussian blur of the face region followed by a reduction to a few grey levels
per channel, the kind of "stylised" redaction some editors offer.

What a plugin method declares: a `name` (its spec's family), `parameters` (typed, with ranges: the spec
grammar checks them), a `reference`, and `transform` on the region's window (floats in [0, 1]). The base
class handles the regions (face box, margin, shape), seeding and 8-bit output.
"""

from __future__ import annotations

import numpy as np

from redteam.anonymizers.base import Anonymizer, Box, Parameter
from redteam.core.geometry import FaceGeometry


class PosterizedBlur(Anonymizer):
    """Blur the face region (sigma as a fraction of the face width), then keep `levels` levels per channel.

    References:
        Posterisation as redaction: Newton, Sweeney and Malin, "Preserving privacy by de-identifying face
        images", IEEE TKDE 2005 (ad-hoc distortions are weak against recognisers).
    """

    name = "example_posterize"
    reference = "Blur then posterise (example plugin)"
    parameters = (
        Parameter("fraction", float, 0.06, "blur sigma as a fraction of the face width", 0.0, 1.0),
        Parameter("levels", int, 4, "grey levels kept per channel", 2, 64),
    )

    def context(self, region: Box) -> int:
        return 0

    def transform(self, window: np.ndarray, region: Box, face: FaceGeometry | None, image: np.ndarray, generator: object) -> np.ndarray:
        x0, y0, x1, y1 = region
        out = window.copy()
        sigma = float(self.values["fraction"]) * max(1, x1 - x0)
        from scipy.ndimage import gaussian_filter  # imported when used: a plugin's module is imported by every run

        inner = gaussian_filter(window[y0:y1, x0:x1], sigma=(sigma, sigma, 0)) if sigma > 0 else window[y0:y1, x0:x1]
        levels = int(self.values["levels"])
        out[y0:y1, x0:x1] = np.round(inner * (levels - 1)) / (levels - 1)
        return out
