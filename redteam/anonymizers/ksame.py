"""k-Same: replace every face by the average of a cluster of at least k faces of the set.

Faces are aligned to a canonical 5-point template by a similarity transform, grouped k-Same-Pixel
style (a seed face and its k-1 nearest remaining faces in aligned pixel space; the last group takes
the remaining < 2k faces), averaged, and the average is warped back into each face's geometry. Since
k faces of the set share one replacement, recognition against that set can do no better than 1/k.

References:
    Newton, Sweeney and Malin, "Preserving Privacy by De-identifying Face Images", IEEE TKDE 17(2),
    2005 (k-Same, k-Same-Pixel).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from redteam.anonymizers.base import Anonymizer, Box, FaceSet, Parameter, image_key
from redteam.core.errors import ConfigError
from redteam.core.geometry import FaceGeometry

if TYPE_CHECKING:
    from skimage.transform import SimilarityTransform

#: The common 112 x 112 five-point template (eyes, nose, mouth corners), as used for ArcFace crops.
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]])


def face_key(pixels: np.ndarray, face: FaceGeometry) -> tuple[str, tuple[int, ...]]:
    return image_key(pixels), tuple(int(round(v)) for v in face.box)


class KSame(Anonymizer):
    """k-Same-Pixel: each face becomes the aligned average of its cluster of >= k faces of the set."""

    name = "k_same"
    operator_kind = "replace"
    reference = "k-Same-Pixel (Newton, Sweeney and Malin, IEEE TKDE 2005)"
    needs_fit = True
    operator_note = "set-level replacement: no forward operator of the face"
    region_defaults = {"margin": 0.05, "shape": "ellipse", "feather": 3.0}
    parameters = (
        Parameter("k", int, 4, "minimum cluster size (recognition bound 1/k)", 2, 1000),
        Parameter("size", int, 112, "side of the aligned face used for clustering and averaging", 32, 512),
    )

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        self._replacements: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}
        self.clusters: list[list[int]] = []

    def _canvas(self) -> int:
        """The aligned canvas: the template's square plus a quarter of it on every side (forehead, chin)."""
        return int(round(int(self.values["size"]) * 1.5))

    def _template(self) -> np.ndarray:
        size = int(self.values["size"])
        return TEMPLATE_112 * (size / 112.0) + size * 0.25

    def _to_template(self, face: FaceGeometry) -> SimilarityTransform:
        from skimage.transform import SimilarityTransform  # imported by k-Same when it runs, not by every command

        source, target = np.array(face.landmarks), self._template()
        if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
            transform = SimilarityTransform.from_estimate(source, target)
            ok = bool(transform)
        else:
            transform = SimilarityTransform()
            ok = transform.estimate(source, target)
        if not ok or not isinstance(transform, SimilarityTransform):
            raise ConfigError("k-Same could not align a face from its landmarks", fix="check the detector output")
        return transform

    def _aligned(self, pixels: np.ndarray, face: FaceGeometry) -> np.ndarray:
        from skimage.transform import warp

        canvas = self._canvas()
        to_template = self._to_template(face)
        return warp(pixels.astype(np.float64) / 255.0, to_template.inverse, output_shape=(canvas, canvas), mode="edge")

    def fit(self, faces: FaceSet, generator: torch.Generator | None = None) -> None:
        """Cluster and average the set's faces; every face of the set gets its cluster's average."""
        k = int(self.values["k"])
        members = [(pixels, face) for pixels, image_faces in zip(faces.images, faces.faces, strict=True) for face in image_faces]
        if len(members) < k:
            raise ConfigError(
                f"k-Same with k={k} needs at least {k} faces in the set, got {len(members)}",
                fix=f"audit at least {k} faces or lower k",
            )
        aligned = np.stack([self._aligned(pixels, face) for pixels, face in members])
        vectors = aligned.reshape(len(members), -1)
        generator = generator or torch.Generator().manual_seed(0)
        remaining = list(range(len(members)))
        self.clusters = []
        while remaining:
            if len(remaining) < 2 * k:
                cluster = list(remaining)
            else:
                seed = remaining[int(torch.randint(len(remaining), (1,), generator=generator))]
                distances = np.linalg.norm(vectors[remaining] - vectors[seed], axis=1)
                cluster = [remaining[i] for i in np.argsort(distances, kind="stable")[:k]]
            self.clusters.append(cluster)
            average = aligned[cluster].mean(axis=0)
            for index in cluster:
                pixels, face = members[index]
                self._replacements[face_key(pixels, face)] = average
            remaining = [i for i in remaining if i not in set(cluster)]

    def transform(self, window, region: Box, face: FaceGeometry | None, image, generator) -> np.ndarray:
        if face is None:
            raise ConfigError("k-Same replaces faces: region=image is not supported", fix="use region=face")
        key = face_key(image, face)
        if key not in self._replacements:
            raise ConfigError("k-Same was not fitted on this face", fix="k-Same must be fitted on the set it anonymizes (the audit does this)")
        ((ix0, iy0, _, _),) = self.regions(image.shape, [face])
        origin = (ix0 - region[0], iy0 - region[1])
        to_template = self._to_template(face)
        from skimage.transform import SimilarityTransform, warp

        window_to_template = SimilarityTransform(translation=origin) + to_template  # window -> image -> template
        average = self._replacements[key]
        warped = warp(average, window_to_template, output_shape=window.shape[:2], mode="edge")
        coverage = warp(np.ones(average.shape[:2]), window_to_template, output_shape=window.shape[:2], mode="constant", cval=0.0)
        covered = coverage[..., None]
        return covered * warped + (1.0 - covered) * window
