"""Identity metrics: similarity to the original, verification, closed-set identification.

References:
    Grother and Ngan, "Face Recognition Vendor Test (FRVT) Performance of Automated Face
    Identification Algorithms", NIST IR 8009, 2014 (rank-k identification); McPherson, Shokri and
    Shmatikov, "Defeating Image Obfuscation with Deep Learning", 2016 (rank-k re-identification of
    obfuscated faces, with the chance level beside it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from math import comb

import numpy as np
import torch
import torch.nn.functional as F


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of two N x D embedding batches -> Tensor[N]."""
    return F.cosine_similarity(a.double(), b.double(), dim=1).float()


#: Probes ranked at once by `rank_of_other_photo` (its N x G masks are built a block of rows at a time).
_ROWS = 256


def _tie_aware_rank(better: torch.Tensor, ties: torch.Tensor) -> torch.Tensor:
    # Mid-rank: ties count half, so a probe equidistant to everyone is not "identified".
    return 1.0 + better.double() + ties.double() / 2.0


def _same_photo_mask(shape: tuple[int, int], own_index: Sequence[int], same_photo: Sequence[Sequence[int]] | None) -> torch.Tensor:
    """N x G: True at each probe's own original and at its near-duplicates (the same photo)."""
    mask = torch.zeros(shape, dtype=torch.bool)
    for row, own in enumerate(own_index):
        mask[row, own] = True
        for column in same_photo[row] if same_photo is not None else ():
            mask[row, column] = True
    return mask


def _competing(columns: int, competitors: torch.Tensor | None) -> torch.Tensor:
    return torch.ones(columns, dtype=torch.bool) if competitors is None else competitors.to(torch.bool)


def rank_of_own_original(
    distances: torch.Tensor,
    own_index: Sequence[int],
    same_photo: Sequence[Sequence[int]] | None = None,
    competitors: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rank (1 = best) of each probe's own original in the gallery.

    Args:
        distances: N x G native distances, probe to gallery.
        own_index: for each probe, the gallery column of its own original face.
        same_photo: for each probe, gallery columns that hold the same photo (near-duplicates of its
            original): they count as the original, not as competitors, so a duplicated photo cannot
            push the original down the ranking.
        competitors: G booleans: the columns that may outrank another probe's match (None: all). A
            column that does not compete still counts as its own probe's original.

    Returns:
        Tensor[N] float64 mid-ranks.
    """
    own = _same_photo_mask(tuple(distances.shape), own_index, same_photo)  # type: ignore[arg-type]
    own_distance = torch.where(own, distances, torch.full_like(distances, math.inf)).min(dim=1, keepdim=True).values
    others = ~own & _competing(distances.shape[1], competitors)[None, :]
    better = ((distances < own_distance) & others).sum(dim=1)
    ties = ((distances == own_distance) & others).sum(dim=1)
    return _tie_aware_rank(better, ties)


def rank_of_other_photo(
    distances: torch.Tensor,
    own_index: Sequence[int],
    probe_identities: Sequence[str | None],
    gallery_identities: Sequence[str | None],
    same_photo: Sequence[Sequence[int]] | None = None,
    competitors: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rank of the best OTHER photo of the same person, with the probe's own original (and its
    near-duplicates, `same_photo`) removed; only `competitors` columns (None: all) can outrank it.

    Returns:
        Tensor[N] float64 mid-ranks; NaN where the identity is unknown or has no other photo.
    """
    ranks = torch.full((distances.shape[0],), float("nan"), dtype=torch.float64)
    if distances.shape[1] == 0:
        return ranks
    codes: dict[str, int] = {}
    gallery = torch.tensor([codes.setdefault(g, len(codes)) if g is not None else -1 for g in gallery_identities], dtype=torch.long)
    probes = torch.tensor([codes.get(i, -2) if i is not None else -1 for i in probe_identities], dtype=torch.long)  # -2: nobody in the gallery
    removed = _same_photo_mask(tuple(distances.shape), own_index, same_photo)  # type: ignore[arg-type]
    competing = _competing(distances.shape[1], competitors)
    for start in range(0, distances.shape[0], _ROWS):  # N x G masks a block of rows at a time: memory stays bounded
        rows = slice(start, start + _ROWS)
        block = distances[rows]
        same_person = (probes[rows, None] == gallery[None, :]) & (probes[rows, None] >= 0)
        kept = ~removed[rows]
        same = same_person & kept
        best = torch.where(same, block, torch.full_like(block, float("inf"))).min(dim=1).values
        others = kept & ~same_person & competing[None, :]
        found = _tie_aware_rank(((block < best[:, None]) & others).sum(dim=1), ((block == best[:, None]) & others).sum(dim=1))
        ranks[rows] = torch.where(same.any(dim=1), found, ranks[rows])
    return ranks


def chance_same_photo(k: int, gallery_size: int) -> float:
    """Probability that a random ranking puts one given entry in the top k of `gallery_size`."""
    return min(k, gallery_size) / gallery_size if gallery_size else float("nan")


def chance_other_photo(k: int, gallery_size: int, same_identity: int) -> float:
    """Probability that a random ranking of `gallery_size` entries puts at least one of
    `same_identity` matching entries in the top k (hypergeometric)."""
    if gallery_size <= 0 or same_identity <= 0:
        return float("nan")
    k = min(k, gallery_size)
    total = comb(gallery_size, k)
    return (total - comb(gallery_size - same_identity, k)) / total  # one rounding, so 3/30 is exactly 0.1


def near_duplicate_pairs(distances: torch.Tensor, tolerance: float) -> list[tuple[int, int, float]]:
    """Pairs (i, j, distance), i < j, of gallery faces closer than `tolerance`: the same photo saved
    twice (re-encoded, resized, cropped), which must not compete with itself in a ranking.

    Args:
        distances: G x G native distances between the gallery's own embeddings.
    """
    close = torch.triu(distances < tolerance, diagonal=1)
    return [(int(i), int(j), float(distances[i, j])) for i, j in close.nonzero().tolist()]


#: A probe chip whose pixels vary less than this (standard deviation, grey levels) shows no face.
BLANK_STD = 2.0
#: How `degenerate_probes` begins the reason of a blank chip.
BLANK_REASON = "blank chip"
#: Two probes of different people closer than this fraction of the verification threshold are
#: indistinguishable to the recognizer: their embeddings carry no identity.
COLLAPSE_FRACTION = 0.1


def degenerate_probes(
    chip_std: Sequence[float],
    probe_distances: torch.Tensor,
    probe_keys: Sequence[str],
    nearest_keys: Sequence[str],
    threshold: float,
    own_distances: Sequence[float] | None = None,
) -> list[str | None]:
    """Probes whose embedding carries no identity, with the reason (None: the probe is informative).

    A blank chip (a solid box), a probe the recognizer cannot tell from a probe of another person
    (distance below COLLAPSE_FRACTION x threshold), or every probe of a set landing on the same
    gallery identity although they show at least three people: such probes identify nobody, and
    whatever gallery entry they land on is the best constant guess, not evidence of identification.
    In the last case a probe verified against its own original (distance below the threshold) is
    exempt: an unredacted face among redacted ones lands on its own identity because it shows it.

    Args:
        chip_std: per probe, the standard deviation of its aligned chip's pixels (0-255 scale).
        probe_distances: N x N native distances between the probes' embeddings.
        probe_keys: per probe, who it shows (identity, or the face's own id when unknown).
        nearest_keys: per probe, the key of its nearest gallery entry.
        threshold: the recognizer's verification threshold (native distance).
        own_distances: per probe, its distance to its own original (None: no exemption).
    """
    count = len(probe_keys)
    reasons: list[str | None] = [None] * count
    for i in range(count):
        if chip_std[i] < BLANK_STD:
            reasons[i] = f"{BLANK_REASON} (pixel std {chip_std[i]:.2f} < {BLANK_STD})"
    tolerance = COLLAPSE_FRACTION * threshold
    if count:
        people = np.unique(np.asarray(probe_keys, dtype=str), return_inverse=True)[1]
        near_another = ((probe_distances.detach().cpu().numpy() < tolerance) & (people[:, None] != people[None, :])).any(axis=1)
        for i in map(int, np.flatnonzero(near_another)):
            reasons[i] = reasons[i] or f"embedding within {tolerance:.3f} of a probe of another person"
    if count >= 3 and len(set(probe_keys)) >= 3 and len(set(nearest_keys)) == 1:
        for i in range(count):
            if own_distances is not None and own_distances[i] < threshold:
                continue
            reasons[i] = reasons[i] or f"every probe lands on the same gallery identity ({nearest_keys[0]})"
    return reasons
