"""The identified operator fitted again on each audited face, from that face's own difference.

Identification (`redteam.engine.identify`) names one spec per folder: a family, its strength and a region
model (a margin around the auditor's face box). Real tools set the strength per face (a blur radius or a
mosaic cell of "face width / 16" measured on *their* detector's box, clipped by the image edge) and draw
their region around *their* detector's box, so one spec is within 10% of the truth on about three faces
in four (benchmarks/results/identify-2026-12-06.md), while each face fitted alone is within 10% on 92%.
The adaptive attacks need the operator that anonymized *this* face, and the auditor holds both images: so
for every audited face of an identified folder, the region is taken from the difference and the family's
strength is fitted inside it (Kerckhoffs' principle: the adversary knows the tool, and may measure it).

The face keeps the folder's spec (on the region found) where that explains it at least as well as its own
fit, and the whole image keeps the spec where the tool changed the whole image.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from redteam.anonymizers import build_method
from redteam.anonymizers.base import Anonymizer, FitVariant
from redteam.core.geometry import Box, FaceGeometry
from redteam.engine.identification.evidence import Pair
from redteam.engine.identification.record import code_fingerprint as identification_fingerprint
from redteam.engine.identification.regions import _evidence
from redteam.engine.identification.search import _build, _refine_face, _residual, _search_face

#: Bump when the fit or its record changes: cached per-face operators of older code are not reused.
VERSION = "face-operator/1"


@dataclass(frozen=True)
class FaceOperator:
    """The operator one face was anonymized with, as the adaptive attacks use it.

    Attributes:
        method: the method with its first stage's strength for this face (in pixels when fitted on the face
            alone) and the folder's later stages (a re-encoding) unchanged.
        region: where the first stage acted on this face, in image coordinates (x0, y0, x1, y1), taken from
            the difference between the original and the anonymized image.
        residual: mean |method(original) - anonymized| over the region, in grey levels.
        source: "face" (fitted on this face alone) or "folder" (the folder's spec explains it as well).
    """

    method: Anonymizer
    region: Box
    residual: float
    source: str

    def to_json(self) -> dict[str, object]:
        return {"spec": self.method.spec, "region": [int(v) for v in self.region], "residual": round(self.residual, 3), "source": self.source}

    @classmethod
    def from_json(cls, record: object) -> FaceOperator | None:
        """An operator written by `to_json`, or None if `record` is not one (a damaged cache entry)."""
        if not isinstance(record, dict):
            return None
        try:
            region = tuple(int(v) for v in record["region"])
            if len(region) != 4:
                return None
            return cls(build_method(str(record["spec"])), region, float(record["residual"]), str(record["source"]))  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - any malformed entry is refitted
            return None


def read_operators(entry: object, count: int) -> list[FaceOperator | None] | None:
    """The cached operators of an image's `count` faces (as `to_json` wrote them, None where the spec
    stands), or None when `entry` is not such a list: absent, or damaged (then they are fitted again)."""
    if not isinstance(entry, list) or len(entry) != count:
        return None
    found = [FaceOperator.from_json(item) if item is not None else None for item in entry]
    if any(operator is None and item is not None for operator, item in zip(found, entry, strict=True)):
        return None
    return found


def _variant(stage: Anonymizer) -> FitVariant | None:
    """The fit variant of `stage`'s family whose fixed values `stage` has (None: not a fitted family)."""
    space = type(stage).fit_space
    if space is None:
        return None
    for variant in space.variants:
        if all(stage.values.get(name) == value for name, value in variant.fixed.items()):
            return variant
    return None


def _codec_quality(method: Anonymizer) -> tuple[int | None, bool]:
    """The whole-image JPEG quality after the first stage (None: none), and whether the rest of the
    method is something a per-face fit can keep (nothing, or that one re-encoding)."""
    rest = method.stages[1:]
    if not rest:
        return None, True
    if len(rest) == 1 and rest[0].name == "jpeg" and rest[0].values.get("region") == "image":
        return int(rest[0].values["quality"]), True
    return None, False


def _with_stage(method: Anonymizer, stage_spec: str) -> Anonymizer:
    rest = [stage.spec for stage in method.stages[1:]]
    return build_method(" | ".join([stage_spec, *rest]))


def fit_face_operators(method: Anonymizer, original: np.ndarray, anonymized: np.ndarray, faces: Sequence[FaceGeometry]) -> list[FaceOperator | None]:
    """Per face of one image (in `faces`' order), the operator that anonymized it, or None where the
    folder's spec stands as it is: the tool changed the whole image, the face's region is not found in
    the difference, or the method's first stage is not a family identification fits.

    Args:
        method: the folder's identified method (its spec's first stage is the family fitted).
        original, anonymized: the image before and after the tool (same shape).
        faces: every face found on the original (the region search leaves the others out).
    """
    stage = method.stages[0]
    variant = _variant(stage)
    quality, keepable = _codec_quality(method)
    if variant is None or not keepable or stage.values.get("region") == "image" or original.shape != anonymized.shape:
        return [None] * len(faces)
    works, _ = _evidence([Pair("", original, anonymized, tuple(faces))], quality, whole_image=False)
    by_index = {work.index: work for work in works}
    cls = type(stage)
    folder = _build(cls, stage.values)
    found: list[FaceOperator | None] = []
    for index in range(len(faces)):
        work = by_index.get(index)
        if work is None or folder is None:
            found.append(None)
            continue
        region = (work.box[0] + work.origin[0], work.box[1] + work.origin[1], work.box[2] + work.origin[0], work.box[3] + work.origin[1])
        folder_residual = _residual(folder, work, quality, work.band())
        params, _ = _search_face(cls, variant, work, quality)
        if work.small is not None and cls.fit_proposals(variant, work.evidence) is None:
            params = _refine_face(cls, variant, work, quality, params)[0]
        absolute: dict[str, Any] = {"fraction": 0.0} if "fraction" in stage.values else {}
        own = _build(cls, {**stage.values, **absolute, **params})
        own_residual = _residual(own, work, quality, work.band()) if own is not None else math.inf
        if own is not None and own_residual < folder_residual:
            found.append(FaceOperator(_with_stage(method, own.spec), region, own_residual, "face"))
        else:
            found.append(FaceOperator(method, region, folder_residual, "folder"))
    return found


def code_fingerprint() -> str:
    """What a cached per-face operator depends on besides its inputs: this module and identification."""
    import hashlib
    from pathlib import Path

    return json.dumps([VERSION, identification_fingerprint(), hashlib.sha256(Path(__file__).read_bytes()).hexdigest()])
