"""The gallery's entries and its near-duplicate photos: what the embedding stage and the inputs need of
the scoring vocabulary, kept apart so that scoring can build on them without a cycle."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metrics.identity import near_duplicate_pairs
from metrics.recognizers import Recognizer

#: Two gallery faces closer than this fraction of the verification threshold are the same photo
#: (re-encoded, resized or cropped): measured with dlib on the dev faces, JPEG re-encodings lie at
#: 0.03-0.11 and other photos of the same person at 0.33 and above (threshold 0.6).
NEAR_DUPLICATE_FRACTION = 0.25


@dataclass(frozen=True)
class GalleryEntry:
    """One gallery face: who it shows (None: unknown, e.g. a face of a group photo), its key for telling
    people apart (the identity, or the face's own id when unknown), and whether it competes in other
    probes' rankings (`redteam.engine.inputs.competes`: small unlabelled faces do not)."""

    face_id: str
    identity: str | None
    competes: bool = True

    @property
    def key(self) -> str:
        return self.identity if self.identity is not None else f"face:{self.face_id}"


def same_photo_columns(recognizer: Recognizer, embeddings: torch.Tensor) -> tuple[dict[int, tuple[int, ...]], list[tuple[int, int, float]]]:
    """Near-duplicate gallery faces for one recognizer: column -> its twins, and the pairs found."""
    distances = recognizer.distances(embeddings, embeddings)
    pairs = near_duplicate_pairs(distances, NEAR_DUPLICATE_FRACTION * recognizer.threshold.value)
    twins: dict[int, list[int]] = {}
    for i, j, _ in pairs:
        twins.setdefault(i, []).append(j)
        twins.setdefault(j, []).append(i)
    return {column: tuple(sorted(others)) for column, others in twins.items()}, pairs
