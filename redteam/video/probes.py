"""What an attacker makes of one track of a redacted video: one probe per attack.

- `none` (naive): every sampled redacted frame of the track, embedded, the embeddings averaged (a track is
  one identity: its frames are not independent samples).
- `frame_average` (reconstruction, `redteam.video.temporal.average_chips`): the aligned chips averaged,
  then embedded once.
- `multiframe_sr` (adaptive, `redteam.video.temporal.multiframe_mosaic`): the face reconstructed from every
  frame's block means with the identified grid; not applicable where no grid is found.
- every per-frame attack of the run (`attacks`, through the same `AttackRunner` as `redteam audit`) on the
  `best` frames of the track (largest, most confident faces), the embeddings averaged.

Each probe records how many frames it used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from attacks import Attack, MethodInfo
from metrics.columns import METRIC_CROP
from redteam.attack_runner import AttackRunner, attack_generator
from redteam.cache import Cache, content_key
from redteam.core.geometry import FaceGeometry, box_crop, enlarged_box
from redteam.core.tiers import ThreatTier
from redteam.video.observe import FaceView
from redteam.video.temporal import Observation, average_chips, estimate_grid, multiframe_mosaic
from redteam.video.tracks import Sighting, Track

EmbedFn = Callable[[str, list[np.ndarray]], np.ndarray]
Crop = Callable[[str, np.ndarray, tuple], np.ndarray]  # (recognizer, full-size pixels, sighting key) -> chip


@dataclass(frozen=True)
class Probe:
    """One attack's probe of one track.

    Attributes:
        embeddings: recognizer -> the probe's embedding (None when the attack did not apply).
        crop: the attacked face crop of the reference frame, for the quality columns.
        frames: frames the attack used.
        note: why it did not apply, or what it found (the grid).
    """

    attack: str
    tier: str
    embeddings: dict[str, np.ndarray] | None
    crop: np.ndarray | None
    frames: int
    note: str = ""


@dataclass(frozen=True)
class TrackFrames:
    """A track's views in the original and the redacted video, and the frame shape."""

    track: Track
    originals: dict[tuple, FaceView]
    redacted: dict[tuple, FaceView]
    shape: tuple[int, ...]

    def keys(self, sightings: Sequence[Sighting] | None = None) -> list[tuple]:
        return [(s.frame, s.face.box) for s in (sightings if sightings is not None else self.track.sightings)]

    def full_frame(self, key: tuple) -> np.ndarray:
        """A frame-sized array holding the redacted window of `key` (zero elsewhere: never looked at)."""
        window = self.redacted[key]
        pixels = np.zeros(self.shape, dtype=np.uint8)
        x0, y0 = window.origin
        pixels[y0 : y0 + window.window.shape[0], x0 : x0 + window.window.shape[1]] = window.window
        return pixels


def naive(frames: TrackFrames, recognizers: Sequence[str], embed: EmbedFn) -> Probe:
    keys = frames.keys()
    embeddings = {name: embed(name, [frames.redacted[k].chips[name] for k in keys]).mean(axis=0) for name in recognizers}
    best = frames.keys(frames.track.best(1))[0]
    return Probe("none", ThreatTier.NAIVE.value, embeddings, frames.redacted[best].crop, len(keys))


def frame_average(frames: TrackFrames, recognizers: Sequence[str], embed: EmbedFn) -> Probe:
    keys = frames.keys()
    embeddings = {name: embed(name, [average_chips([frames.redacted[k].chips[name] for k in keys])])[0] for name in recognizers}
    crop = average_chips([frames.redacted[k].crop for k in keys])
    return Probe("frame_average", ThreatTier.RECONSTRUCTION.value, embeddings, crop, len(keys))


def _centre(face: FaceGeometry) -> np.ndarray:
    return np.asarray(face.landmarks, dtype=np.float64).mean(axis=0)


def multiframe_sr(frames: TrackFrames, recognizers: Sequence[str], embed: EmbedFn, crop_chip: Crop, cache: Cache) -> Probe:
    """The multi-frame reconstruction of a moving mosaic, registered on the original's landmarks (the
    reconstruction cached by its observations, canvas and grid)."""
    name, tier = "multiframe_sr", ThreatTier.ADAPTIVE.value
    reference = frames.track.best(1)[0]
    ref_key = (reference.frame, reference.face.box)
    window = frames.redacted[ref_key]
    grid = estimate_grid(window.window, window.origin)
    if grid is None:
        return Probe(name, tier, None, None, 0, "not applicable: no mosaic grid found in the redacted face (a blur or fill is not block-sampled)")
    x0, y0, x1, y1 = enlarged_box(reference.face.box, 0.15)
    height, width = frames.shape[:2]
    canvas = (max(0, int(x0)), max(0, int(y0)), min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1))))
    centre = _centre(reference.face)
    observations = []
    for sighting in frames.track.sightings:
        view = frames.redacted[(sighting.frame, sighting.face.box)]
        if not view.window.size:
            continue  # its window was not kept (`redteam.video.observe.window_keys`)
        dx, dy = np.rint(_centre(sighting.face) - centre).astype(int)
        observations.append(Observation(view.window, (int(dx), int(dy)), view.origin))
    digest = content_key("multiframe-mosaic-2", str(canvas), repr(grid), *(f"{o.shift}{o.origin}".encode() + o.frame.tobytes() for o in observations))
    stored = cache.get_json("video_multiframe", digest)
    restored = cache.get_array("video_multiframe", digest) if isinstance(stored, dict) else None
    if isinstance(stored, dict) and restored is not None and restored.shape == (canvas[3] - canvas[1], canvas[2] - canvas[0], 3):
        phases, used = int(stored["phases"]), int(stored["used"])
    else:
        restored, phases, used = multiframe_mosaic(observations, canvas, grid)
        cache.put_array("video_multiframe", digest, restored)
        cache.put_json("video_multiframe", digest, {"phases": phases, "used": used})
    pixels = frames.full_frame(ref_key)
    pixels[canvas[1] : canvas[3], canvas[0] : canvas[2]] = restored
    embeddings = {r: embed(r, [crop_chip(r, pixels, ref_key)])[0] for r in recognizers}
    note = f"{grid.describe()}; {len(observations)} frames at {phases} distinct grid phase(s), {used} used (at most 3 per phase)"
    return Probe(name, tier, embeddings, box_crop(pixels, reference.face.box, METRIC_CROP), used, note)


@dataclass(frozen=True)
class AttackSettings:
    """How the per-frame attacks run: on the `best` frames of a track, seeded from `seed` and the method's
    name, their results cached in `cache` (keyed by the attack, the seed and the frame's redacted window)."""

    best: int
    seed: int
    method: str
    cache: Cache


def _attacked(attack: Attack, frames: TrackFrames, sighting: Sighting, settings: AttackSettings) -> tuple[np.ndarray, str | None]:
    """One frame attacked (frame-sized pixels) and why it was refused (None: it ran); cached."""
    key = (sighting.frame, sighting.face.box)
    window = frames.redacted[key]
    cache_key = content_key(
        "video-attack", attack.name, attack.version, str(settings.seed), settings.method, frames.track.track_id, str(sighting.frame),
        json.dumps(sighting.face.to_json()), str(window.origin), window.window.tobytes(),
    )  # fmt: skip
    pixels = frames.full_frame(key)
    x0, y0 = window.origin
    height, width = window.window.shape[:2]
    stored = settings.cache.get_array("video_attacks", cache_key)
    if stored is not None and stored.shape == window.window.shape:
        pixels[y0 : y0 + height, x0 : x0 + width] = stored
        return pixels, None
    generator = attack_generator(settings.seed, settings.method, attack.name, f"{frames.track.track_id}@{sighting.frame}")
    pixels, reasons = AttackRunner().reconstruct(attack, MethodInfo(settings.method, None), pixels, [sighting.face], generator)
    if reasons:
        return pixels, reasons[0]
    settings.cache.put_array("video_attacks", cache_key, np.ascontiguousarray(pixels[y0 : y0 + height, x0 : x0 + width]))
    return pixels, None


def per_frame(attack: Attack, frames: TrackFrames, recognizers: Sequence[str], embed: EmbedFn, crop_chip: Crop, settings: AttackSettings) -> Probe:
    """A still-image attack on the track's best frames; the probe is the mean of their embeddings."""
    chips: dict[str, list[np.ndarray]] = {name: [] for name in recognizers}
    crop, refused = None, []
    for sighting in frames.track.best(settings.best):
        key = (sighting.frame, sighting.face.box)
        pixels, reason = _attacked(attack, frames, sighting, settings)
        if reason is not None:
            refused.append(reason)
            continue
        for name in recognizers:
            chips[name].append(crop_chip(name, pixels, key))
        crop = crop if crop is not None else box_crop(pixels, sighting.face.box, METRIC_CROP)
    used = len(chips[recognizers[0]]) if recognizers else 0
    if not used:
        return Probe(attack.name, attack.tier.value, None, None, 0, f"not applicable: {refused[0] if refused else 'no frame'}")
    embeddings = {name: embed(name, chips[name]).mean(axis=0) for name in recognizers}
    note = f"{len(refused)} frame(s) refused: {refused[0]}" if refused else ""
    return Probe(attack.name, attack.tier.value, embeddings, crop, used, note)
