"""The passes over the frames: faces detected and tracked on the original (cached per frame hash), then,
for each redacted video, what an attacker sees where each tracked face is.

Only the sampled frames are decoded to pixels (every `stride`-th frame; 1 = every frame). What is kept per
sighting is small: the recognizers' aligned chips, the face crop for the leak rule, and the redacted
window around the face for the attacks (the face box grown by `WINDOW_MARGIN`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metrics.columns import METRIC_CROP
from metrics.recognizers import Recognizer
from redteam.cache import Cache
from redteam.core.geometry import FaceGeometry, box_crop, enlarged_box
from redteam.core.results import ProgressFn
from redteam.faces import FaceDetector
from redteam.video.reader import read_frames
from redteam.video.tracks import Track, link_tracks

#: The redacted window kept around a face for the attacks: its box grown by this fraction on each side.
WINDOW_MARGIN = 0.5
#: Frames detected at once (MTCNN runs each stage on the batch).
DETECT_BATCH = 8
#: Redacted attack windows kept per track (its best frames, and frames evenly spread over the rest): the
#: windows are most of the memory a track takes, and the multi-frame attack uses at most 96 of them.
WINDOW_FRAMES = 128


@dataclass(frozen=True)
class FaceView:
    """One face in one frame, as one video shows it.

    Attributes:
        chips: recognizer -> aligned chip (cropped with the alignment found on the original).
        crop: the face box crop (METRIC_CROP square), for the leak rule's PSNR.
        window, origin: the pixels around the face and their top-left corner in the frame.
    """

    chips: dict[str, np.ndarray]
    crop: np.ndarray
    window: np.ndarray
    origin: tuple[int, int]


@dataclass
class OriginalPass:
    """What the original shows: the tracks, and per (frame, face box) the alignment and clean view."""

    tracks: list[Track]
    dropped: int
    sampled: int
    shape: tuple[int, int]  # frame height, width
    alignments: dict[tuple[int, tuple[float, ...]], dict[str, Hashable]] = field(default_factory=dict)
    views: dict[tuple[int, tuple[float, ...]], FaceView] = field(default_factory=dict)


def window_of(face: FaceGeometry, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The attack window of a face (its box grown by WINDOW_MARGIN), clipped to the frame."""
    x0, y0, x1, y1 = enlarged_box(face.box, WINDOW_MARGIN)
    return max(0, int(x0)), max(0, int(y0)), min(shape[1], int(np.ceil(x1))), min(shape[0], int(np.ceil(y1)))


def view(pixels: np.ndarray, face: FaceGeometry, alignments: dict[str, Hashable], recognizers: dict[str, Recognizer], window: bool = True) -> FaceView:
    """The face of `pixels` at the original's geometry (`window`: keep the attack window too; the original's
    is never attacked, so it is not kept)."""
    x0, y0, x1, y1 = window_of(face, pixels.shape) if window else (0, 0, 0, 0)
    return FaceView(
        chips={name: recognizer.crop(pixels, alignments[name]) for name, recognizer in recognizers.items()},
        crop=box_crop(pixels, face.box, METRIC_CROP),
        window=np.array(pixels[y0:y1, x0:x1], copy=True),
        origin=(x0, y0),
    )


def _detections(cache: Cache, detector: FaceDetector, batch: list[tuple[int, float, np.ndarray]]) -> list[list[FaceGeometry]]:
    """Faces of each frame of `batch`, from the cache (by frame content and detector) or MTCNN."""
    keys = [hashlib.sha256(detector.cache_key.encode() + pixels.tobytes()).hexdigest() for _, _, pixels in batch]
    found: list[list[FaceGeometry] | None] = []
    for key in keys:
        stored = cache.get_json("video_detections", key)
        found.append([FaceGeometry.from_json(face) for face in stored] if isinstance(stored, list) else None)
    todo = [i for i, faces in enumerate(found) if faces is None]
    if todo:
        fresh = detector.detect_batch([batch[i][2] for i in todo])
        for i, faces in zip(todo, fresh, strict=True):
            found[i] = faces
            cache.put_json("video_detections", keys[i], [face.to_json() for face in faces])
    return [faces or [] for faces in found]


def track_original(
    path: Path, frames: int, stride: int, detector: FaceDetector, recognizers: dict[str, Recognizer], cache: Cache, progress: ProgressFn
) -> OriginalPass:
    """Detect faces on every sampled frame of the original, link them into tracks, and keep each
    sighting's alignment and clean view."""
    wanted = set(range(0, frames, stride))
    detections: list[tuple[int, float, list[FaceGeometry]]] = []
    alignments: dict[tuple[int, tuple[float, ...]], dict[str, Hashable]] = {}
    views: dict[tuple[int, tuple[float, ...]], FaceView] = {}
    batch: list[tuple[int, float, np.ndarray]] = []
    shape = (0, 0)

    def flush() -> None:
        """Detect the batch's faces and keep every face's alignment and clean view now (no frame is kept)."""
        for (index, time, pixels), faces in zip(batch, _detections(cache, detector, batch), strict=True):
            detections.append((index, time, faces))
            for face in faces:
                key = (index, face.box)
                alignments[key] = {name: recognizer.locate(pixels, face) for name, recognizer in recognizers.items()}
                views[key] = view(pixels, face, alignments[key], recognizers, window=False)
        batch.clear()

    for index, time, pixels in read_frames(path, wanted):
        shape = (pixels.shape[0], pixels.shape[1])
        if batch and pixels.shape != batch[0][2].shape:
            flush()
        batch.append((index, time, pixels))
        if len(batch) == DETECT_BATCH:
            flush()
        progress("original: detecting faces (frames)", index + 1, frames)
    flush()
    max_gap = max(2 * stride, 3)
    tracks, dropped = link_tracks(detections, max_gap=max_gap)
    tracked = {(s.frame, s.face.box) for track in tracks for s in track.sightings}
    return OriginalPass(
        tracks,
        dropped,
        len(wanted),
        shape,
        alignments={key: value for key, value in alignments.items() if key in tracked},
        views={key: value for key, value in views.items() if key in tracked},
    )


def window_keys(tracks: Sequence[Track], best: int) -> set[tuple[int, tuple[float, ...]]]:
    """The sightings whose redacted attack window is kept: each track's `best` frames and up to WINDOW_FRAMES
    in all, evenly spread over the track."""
    keys: set[tuple[int, tuple[float, ...]]] = set()
    for track in tracks:
        chosen = track.best(best)
        spread = np.linspace(0, len(track.sightings) - 1, num=min(len(track.sightings), WINDOW_FRAMES - len(chosen))).round().astype(int)
        chosen += [track.sightings[i] for i in spread]
        keys |= {(s.frame, s.face.box) for s in chosen}
    return keys


def redacted_views(
    path: Path, pairs: Sequence[tuple[int, int]], original: OriginalPass, recognizers: dict[str, Recognizer], progress: ProgressFn, label: str, best: int
) -> dict[tuple[int, tuple[float, ...]], FaceView]:
    """Every tracked face as the redacted video shows it, at the original's geometry (frames paired by time);
    the attack window only where `window_keys` keeps it."""
    keep = window_keys(original.tracks, best)
    by_frame: dict[int, list[FaceGeometry]] = {}
    for track in original.tracks:
        for sighting in track.sightings:
            by_frame.setdefault(sighting.frame, []).append(sighting.face)
    redacted_of = dict(pairs)
    wanted = {redacted_of[frame]: frame for frame in by_frame}
    views: dict[tuple[int, tuple[float, ...]], FaceView] = {}
    total = max(wanted, default=0) + 1
    for index, _, pixels in read_frames(path, set(wanted)) if wanted else ():
        frame = wanted[index]
        for face in by_frame[frame]:
            key = (frame, face.box)
            views[key] = view(pixels, face, original.alignments[key], recognizers, window=key in keep)
        progress(f"{label}: reading redacted frames", index + 1, total)
    return views
