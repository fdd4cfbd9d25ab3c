"""Score a set of probes (anonymized or reconstructed faces) of one method x attack x recognizer against
the gallery: similarity, verification, rank-k identification, chance levels, and whether a probe
carries any identity at all.

References:
    Grother and Ngan, NIST IR 8009, 2014 (rank-k identification); McPherson, Shokri and Shmatikov 2016
    (re-identification of obfuscated faces against the chance level).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metrics.identity import (
    chance_other_photo,
    chance_same_photo,
    cosine_similarity,
    degenerate_probes,
    rank_of_other_photo,
    rank_of_own_original,
)
from metrics.recognizers import Recognizer
from redteam.core.results import Outcome, ResultRow
from redteam.engine.embedding import Gallery
from redteam.engine.gallery_entries import GalleryEntry
from redteam.engine.work import MethodWork


@dataclass(frozen=True)
class ProbeScores:
    """Per-probe scores, aligned with the probes given to `score_probes`.

    Attributes:
        rank, rank_other: mid-ranks of the own original / of the best other photo (NaN: none).
        pool: gallery entries ranked against the own original (the gallery minus near-duplicates of it).
        other_photos: other photos of the same person in the gallery (the hits of rank_other).
        degenerate: why the probe carries no identity, or None.
        nearest: the nearest gallery face other than the own photo (competing or not), for hubness.
    """

    similarity: list[float]
    distance: list[float]
    rank: list[float]
    rank_other: list[float]
    pool: list[int]
    other_photos: list[int]
    degenerate: list[str | None]
    nearest: list[str | None]

    def chance_rank(self, i: int, k: int) -> float:
        return chance_same_photo(k, self.pool[i])

    def chance_rank_other(self, i: int, k: int) -> float:
        return chance_other_photo(k, self.pool[i] - 1, self.other_photos[i])


#: At most this many distances between unrelated people are kept per recognizer (the report's baseline).
IMPOSTOR_SAMPLE = 4000
#: ... drawn from at most this many gallery faces, spread evenly (the distance matrix stays small).
IMPOSTOR_FACES = 1000


def impostor_distances(name: str, recognizer: Recognizer, gallery: Gallery, limit: int = IMPOSTOR_SAMPLE) -> tuple[float, ...]:
    """Distances between clean gallery faces of different known people: what the recognizer gives for
    unrelated people, the baseline an attacked face's distance to its own original is read against. At
    most `limit` pairs, spread evenly over all of them (deterministic)."""
    embeddings = gallery.embeddings.get(name)
    if embeddings is None or len(gallery.faces) < 2:
        return ()
    chosen = torch.linspace(0, len(gallery.faces) - 1, min(len(gallery.faces), IMPOSTOR_FACES)).round().long().unique()  # bounded memory
    identities = [gallery.faces[k].identity for k in chosen.tolist()]
    embeddings = embeddings[chosen]
    distances = recognizer.distances(embeddings, embeddings)
    upper = torch.triu_indices(len(identities), len(identities), offset=1)
    known = torch.tensor([identity is not None for identity in identities])
    labels = {identity: index for index, identity in enumerate(sorted({i for i in identities if i is not None}))}
    codes = torch.tensor([labels[identity] if identity is not None else -1 for identity in identities])
    i, j = upper[0], upper[1]
    unrelated = known[i] & known[j] & (codes[i] != codes[j])
    values = distances[i[unrelated], j[unrelated]]
    if len(values) > limit:
        values = values[torch.linspace(0, len(values) - 1, limit).round().long()]
    return tuple(round(float(v), 5) for v in values)


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
    competitors = torch.tensor([entry.competes for entry in entries], dtype=torch.bool)
    ranks = rank_of_own_original(distances, own, twins, competitors)
    ranks_other = rank_of_other_photo(distances, own, identities, gallery_identities, twins, competitors)
    own_distance = torch.stack([distances[i, [column, *twins[i]]].min() for i, column in enumerate(own)]) if len(own) else torch.zeros(0)
    similarity = cosine_similarity(probes, clean_gallery[own_tensor]) if len(own) else torch.zeros(0)
    competing = int(competitors.sum())
    pool = [competing - sum(bool(competitors[j]) for j in (column, *twins[i])) + 1 for i, column in enumerate(own)]
    other_photos = [
        sum(1 for j, entry in enumerate(entries) if entry.identity is not None and entry.identity == identities[i] and j != column and j not in twins[i])
        for i, column in enumerate(own)
    ]
    own_mask = torch.zeros_like(distances, dtype=torch.bool)
    for i, column in enumerate(own):
        own_mask[i, [column, *twins[i]]] = True
    inf = torch.full_like(distances, math.inf)
    nearest = torch.where(competitors[None, :] | own_mask, distances, inf).argmin(dim=1).tolist() if len(own) else []
    nearest_other = torch.where(own_mask, inf, distances).argmin(dim=1).tolist() if len(own) and len(entries) > 1 else [None] * len(own)
    probe_keys = [entries[column].key for column in own]
    degenerate = degenerate_probes(
        chip_std,
        recognizer.distances(probes, probes),
        probe_keys,
        [entries[j].key for j in nearest],
        recognizer.threshold.value,
        [float(v) for v in own_distance],
    )
    return ProbeScores(
        similarity=[float(v) for v in similarity],
        distance=[float(v) for v in own_distance],
        rank=[float(v) for v in ranks],
        rank_other=[float(v) for v in ranks_other],
        pool=pool,
        other_photos=other_photos,
        degenerate=degenerate,
        nearest=[entries[j].face_id if j is not None else None for j in nearest_other],
    )


def identified(rank: float, k: int, degenerate: str | None) -> bool | None:
    """A rank-k success; None when there is no rank; never for a probe that carries no identity."""
    if math.isnan(rank):
        return None
    return rank <= k and degenerate is None


def method_rows(work: MethodWork, recognizers: dict[str, Recognizer], gallery: Gallery, quality_columns: Sequence[str]) -> list[ResultRow]:
    """The results rows of one method: every probe scored against the gallery (the clean one, or its
    parrot version for the parrot tier), one row per face x attack x recognizer."""
    source, reference = work.method.source, work.method.reference
    columns = [i for i, face in enumerate(gallery.faces) if all(face.face_id in work.parrot.get(name, {}) for name in recognizers)]
    parrot_gallery = gallery.subset(columns) if work.needs_parrot else gallery
    rows: list[ResultRow] = []
    for attack in work.attacks:
        probes = work.probes.get(attack.name, [])
        if not probes:
            continue
        same_photo_applies = attack.gallery_domain == "clean"
        ranked = gallery if same_photo_applies else parrot_gallery
        index = ranked.index
        own = [index[probe.face.face_id] for probe in probes]
        for name, recognizer in recognizers.items():
            matched = gallery.embeddings[name] if same_photo_applies else torch.from_numpy(np.stack([work.parrot[name][face.face_id] for face in ranked.faces]))
            probed, clean = torch.from_numpy(np.stack([probe.embeddings[name] for probe in probes])), ranked.embeddings[name]
            space = attack.embedding_space(work.info, name, recognizer.fingerprint)
            if space is not None:  # an attack that learned its own space (the trained parrot): everything ranked in it
                probed, matched, clean = space(probed), space(matched), space(clean)
            scores = score_probes(
                recognizer,
                probed,
                [probe.spread[name] for probe in probes],
                matched,
                clean,
                own,
                ranked.entries,
                ranked.same_photo[name],
            )
            for i, probe in enumerate(probes):
                face, blank = probe.face, scores.degenerate[i]
                rank, rank_other = scores.rank[i], scores.rank_other[i]
                rows.append(
                    ResultRow(
                        image=face.image,
                        face_index=face.face_index,
                        face_id=face.face_id,
                        identity=face.identity,
                        method=source.name,
                        method_kind=source.kind,
                        method_spec=reference.spec if reference is not None else None,
                        tier=attack.tier.value,
                        attack=attack.name,
                        recognizer=name,
                        similarity=scores.similarity[i],
                        distance=scores.distance[i],
                        threshold=recognizer.threshold.value,
                        threshold_calibrated=recognizer.threshold.calibrated,
                        verify=(scores.distance[i] < recognizer.threshold.value and blank is None) if same_photo_applies else None,
                        rank=rank if same_photo_applies else None,
                        rank1=identified(rank, 1, blank) if same_photo_applies else None,
                        rank5=identified(rank, 5, blank) if same_photo_applies else None,
                        rank_other=None if math.isnan(rank_other) else rank_other,
                        rank1_other=identified(rank_other, 1, blank),
                        rank5_other=identified(rank_other, 5, blank),
                        chance_rank1=scores.chance_rank(i, 1),
                        chance_rank5=scores.chance_rank(i, 5),
                        chance_rank1_other=scores.chance_rank_other(i, 1),
                        chance_rank5_other=scores.chance_rank_other(i, 5),
                        gallery_size=len(ranked.entries),
                        gallery_pool=scores.pool[i],
                        other_photos=scores.other_photos[i],
                        probe_degenerate=blank,
                        nearest_other=scores.nearest[i],
                        anonymized_face_detected=probe.detected,
                        quality=tuple((column, probe.quality.get(column)) for column in quality_columns),
                        anonymized_sha256=probe.anonymized_sha256,
                        attack_seconds=probe.seconds,
                    )
                )
    return rows


def outcomes(rows: Sequence[ResultRow]) -> Iterator[Outcome]:
    """Per-row outcomes of each rate metric, with the random-guess model behind each chance level.
    Verification has no chance level without a calibrated FAR."""
    for row in rows:
        degenerate = row.probe_degenerate is not None
        yield Outcome(row.method, row.tier, row.attack, row.recognizer, "verify", row.verify, math.nan, face_id=row.face_id, degenerate=degenerate)
        for metric, k in (("rank1", 1), ("rank5", 5), ("rank1_other", 1), ("rank5_other", 5)):
            other = metric.endswith("_other")
            yield Outcome(
                row.method,
                row.tier,
                row.attack,
                row.recognizer,
                metric,
                getattr(row, metric),
                getattr(row, f"chance_{metric}"),
                pool=row.gallery_pool - 1 if other else row.gallery_pool,
                matches=row.other_photos if other else 1,
                k=k,
                face_id=row.face_id,
                degenerate=degenerate,
            )
