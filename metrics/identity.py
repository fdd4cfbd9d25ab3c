"""Identity metrics: similarity to the original, verification, closed-set identification.

References:
    Grother and Ngan, "Face Recognition Vendor Test (FRVT) Performance of Automated Face
    Identification Algorithms", NIST IR 8009, 2014 (rank-k identification); McPherson, Shokri and
    Shmatikov, "Defeating Image Obfuscation with Deep Learning", 2016 (rank-k re-identification of
    obfuscated faces, with the chance level beside it).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

import torch
import torch.nn.functional as F


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of two N x D embedding batches -> Tensor[N]."""
    return F.cosine_similarity(a.double(), b.double(), dim=1).float()


def _tie_aware_rank(better: torch.Tensor, ties: torch.Tensor) -> torch.Tensor:
    # Mid-rank: ties count half, so a probe equidistant to everyone is not "identified".
    return 1.0 + better.double() + ties.double() / 2.0


def rank_of_own_original(distances: torch.Tensor, own_index: Sequence[int]) -> torch.Tensor:
    """Rank (1 = best) of each probe's own original in the gallery.

    Args:
        distances: N x G native distances, probe to gallery.
        own_index: for each probe, the gallery column of its own original face.

    Returns:
        Tensor[N] float64 mid-ranks.
    """
    own = torch.as_tensor(list(own_index), dtype=torch.long)
    own_distance = distances.gather(1, own[:, None])
    others = torch.ones_like(distances, dtype=torch.bool)
    others[torch.arange(len(own)), own] = False
    better = ((distances < own_distance) & others).sum(dim=1)
    ties = ((distances == own_distance) & others).sum(dim=1)
    return _tie_aware_rank(better, ties)


def rank_of_other_photo(
    distances: torch.Tensor,
    own_index: Sequence[int],
    probe_identities: Sequence[str | None],
    gallery_identities: Sequence[str | None],
) -> torch.Tensor:
    """Rank of the best OTHER photo of the same person, with the probe's own original removed.

    Returns:
        Tensor[N] float64 mid-ranks; NaN where the identity is unknown or has no other photo.
    """
    ranks = torch.full((distances.shape[0],), float("nan"), dtype=torch.float64)
    for row, (own, identity) in enumerate(zip(own_index, probe_identities, strict=True)):
        if identity is None:
            continue
        same = [j for j, g in enumerate(gallery_identities) if g == identity and j != own]
        if not same:
            continue
        different = [j for j, g in enumerate(gallery_identities) if j != own and (g is None or g != identity)]
        best = distances[row, same].min()
        others = distances[row, different]
        ranks[row] = float(_tie_aware_rank((others < best).sum(), (others == best).sum()))
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
    return 1.0 - comb(gallery_size - same_identity, k) / comb(gallery_size, k)
