"""Scoring tracks: one results row per track x attack x recognizer, in the still audit's results table.

The gallery holds one clean template per track (the mean embedding of the original's frames of that
track) plus the faces of `--gallery`. A probe is verified when it lies closer to its own track's template
than the recognizer's threshold, and identified at rank 1 when its own template is the nearest of the
gallery. Rates are counted per track: the frames of one track are one person, not independent samples.
Rank-1 against *other* photos of the person (`rank1_other`) is not measured: a track has no other photo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metrics.columns import QualityColumn
from metrics.recognizers import Recognizer
from redteam.core.results import ResultRow
from redteam.video.probes import Probe


@dataclass(frozen=True)
class GalleryTemplates:
    """Per recognizer: the gallery's embeddings (G x D) and who each row is."""

    labels: tuple[str, ...]
    embeddings: dict[str, np.ndarray]


def score_probe(
    probe: Probe,
    track: str,
    gallery: GalleryTemplates,
    recognizers: dict[str, Recognizer],
    quality: dict[str, tuple[QualityColumn | None, np.ndarray | None]],
    context: dict[str, str],
    detected: bool,
) -> list[ResultRow]:
    """The rows of one track's probe (none when the attack did not apply). `quality`: column -> (column,
    the original's face crop of the probe's reference frame); `context`: video, method, sha256; `detected`: MTCNN
    still finds the face in the track's best redacted frame."""
    if probe.embeddings is None:
        return []
    own = gallery.labels.index(track)
    pool = len(gallery.labels)
    values = tuple(
        (name, None if column is None or reference is None or probe.crop is None else float(column(probe.crop[None], reference[None])[0]))
        for name, (column, reference) in quality.items()
    )
    rows = []
    for name, recognizer in recognizers.items():
        distances = recognizer.distances(torch.from_numpy(probe.embeddings[name][None]).float(), torch.from_numpy(gallery.embeddings[name]).float())[0].numpy()
        distance = float(distances[own])
        rank = 1 + int(np.sum(np.delete(distances, own) < distance))
        others = [i for i in np.argsort(distances) if i != own]
        threshold = recognizer.threshold
        rows.append(
            ResultRow(
                image=f"{context['video']}#{track}",
                face_index=0,
                face_id=track,
                identity=track,
                method=context["method"],
                method_kind="observed",
                method_spec=None,
                tier=probe.tier,
                attack=probe.attack,
                recognizer=name,
                similarity=-distance,
                distance=distance,
                threshold=threshold.value,
                threshold_calibrated=threshold.calibrated,
                verify=distance < threshold.value,
                rank=float(rank),
                rank1=rank == 1,
                rank5=rank <= 5,
                rank_other=None,
                rank1_other=None,
                rank5_other=None,
                chance_rank1=1.0 / pool,
                chance_rank5=min(5, pool) / pool,
                chance_rank1_other=math.nan,
                chance_rank5_other=math.nan,
                gallery_size=pool,
                gallery_pool=pool,
                other_photos=0,
                probe_degenerate=None,
                nearest_other=gallery.labels[others[0]] if others else None,
                anonymized_face_detected=detected,
                quality=values,
                anonymized_sha256=context["sha256"],
                attack_seconds=0.0,
            )
        )
    return rows


def templates(
    tracks: Sequence[str], track_embeddings: dict[str, dict[str, np.ndarray]], distractors: dict[str, list[tuple[str, np.ndarray]]]
) -> GalleryTemplates:
    """The gallery: each track's clean template, then every distractor face (label, embedding)."""
    names = list(next(iter(track_embeddings.values())).keys()) if track_embeddings else []
    labels = list(tracks) + [label for label, _ in next(iter(distractors.values()), [])]
    embeddings = {
        name: np.stack([track_embeddings[t][name] for t in tracks] + [value for _, value in distractors.get(name, [])]).astype(np.float32) for name in names
    }
    return GalleryTemplates(tuple(labels), embeddings)
