"""Score a set of probes (anonymized or reconstructed faces) of one method x attack x recognizer against
the gallery: similarity, verification, rank-k identification, chance levels, and whether a probe
carries any identity at all.

References:
    Grother and Ngan, NIST IR 8009, 2014 (rank-k identification); McPherson, Shokri and Shmatikov 2016
    (re-identification of obfuscated faces against the chance level).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metrics.identity import (
    chance_other_photo,
    chance_same_photo,
    cosine_similarity,
    degenerate_probes,
    near_duplicate_pairs,
    rank_of_other_photo,
    rank_of_own_original,
)
from metrics.recognizers import Recognizer

#: Two gallery faces closer than this fraction of the verification threshold are the same photo
#: (re-encoded, resized or cropped): measured with dlib on the dev faces, JPEG re-encodings lie at
#: 0.03-0.11 and other photos of the same person at 0.33 and above (threshold 0.6).
NEAR_DUPLICATE_FRACTION = 0.25


@dataclass(frozen=True)
class GalleryEntry:
    """One gallery face: who it shows (None: unknown, e.g. a face of a group photo) and its key for
    telling people apart (the identity, or the face's own id when unknown)."""

    face_id: str
    identity: str | None

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


@dataclass(frozen=True)
class ProbeScores:
    """Per-probe scores, aligned with the probes given to `score_probes`.

    Attributes:
        rank, rank_other: mid-ranks of the own original / of the best other photo (NaN: none).
        pool: gallery entries ranked against the own original (the gallery minus near-duplicates of it).
        other_photos: other photos of the same person in the gallery (the hits of rank_other).
        degenerate: why the probe carries no identity, or None.
    """

    similarity: list[float]
    distance: list[float]
    rank: list[float]
    rank_other: list[float]
    pool: list[int]
    other_photos: list[int]
    degenerate: list[str | None]

    def chance_rank(self, i: int, k: int) -> float:
        return chance_same_photo(k, self.pool[i])

    def chance_rank_other(self, i: int, k: int) -> float:
        return chance_other_photo(k, self.pool[i] - 1, self.other_photos[i])


def chip_spread(chips: Sequence[np.ndarray]) -> list[float]:
    """Standard deviation of each chip's pixels (0-255): near 0 for a blank (solid) face."""
    return [float(np.asarray(chip, dtype=np.float64).std()) for chip in chips]


def score_probes(
    recognizer: Recognizer,
    probes: torch.Tensor,
    chip_std: Sequence[float],
    gallery: torch.Tensor,
    clean_gallery: torch.Tensor,
    own: Sequence[int],
    entries: Sequence[GalleryEntry],
    same_photo: dict[int, tuple[int, ...]],
) -> ProbeScores:
    """Score N probes against a gallery of G faces.

    Args:
        probes: N x D embeddings of the attacked faces.
        chip_std: per probe, the pixel spread of its chip (blank detection).
        gallery: G x D embeddings to rank against (clean originals, or the anonymized gallery for parrot).
        clean_gallery: G x D embeddings of the clean originals (similarity to the own original).
        own: per probe, its own original's gallery column.
        entries: the G gallery faces' identities.
        same_photo: column -> near-duplicate columns (they count as the own photo, never as others).
    """
    distances = recognizer.distances(probes, gallery)
    own_tensor = torch.as_tensor(list(own), dtype=torch.long)
    twins = [same_photo.get(column, ()) for column in own]
    identities = [entries[column].identity for column in own]
    gallery_identities = [entry.identity for entry in entries]
    ranks = rank_of_own_original(distances, own, twins)
    ranks_other = rank_of_other_photo(distances, own, identities, gallery_identities, twins)
    own_distance = torch.stack([distances[i, [column, *twins[i]]].min() for i, column in enumerate(own)]) if len(own) else torch.zeros(0)
    similarity = cosine_similarity(probes, clean_gallery[own_tensor]) if len(own) else torch.zeros(0)
    pool = [len(entries) - len(twins[i]) for i in range(len(own))]
    other_photos = [
        sum(1 for j, entry in enumerate(entries) if entry.identity is not None and entry.identity == identities[i] and j != column and j not in twins[i])
        for i, column in enumerate(own)
    ]
    nearest = distances.argmin(dim=1).tolist() if len(own) else []
    probe_keys = [entries[column].key for column in own]
    degenerate = degenerate_probes(chip_std, recognizer.distances(probes, probes), probe_keys, [entries[j].key for j in nearest], recognizer.threshold.value)
    return ProbeScores(
        similarity=[float(v) for v in similarity],
        distance=[float(v) for v in own_distance],
        rank=[float(v) for v in ranks],
        rank_other=[float(v) for v in ranks_other],
        pool=pool,
        other_photos=other_photos,
        degenerate=degenerate,
    )


def identified(rank: float, k: int, degenerate: str | None) -> bool | None:
    """A rank-k success; None when there is no rank; never for a probe that carries no identity."""
    if math.isnan(rank):
        return None
    return rank <= k and degenerate is None
