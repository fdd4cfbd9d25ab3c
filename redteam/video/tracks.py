"""Face tracks on the original video: one track per person on screen, by box overlap between frames.

Detections (MTCNN on the original's frames, `redteam.faces`) are linked frame to frame greedily by the
intersection over union of their boxes, highest overlap first, as in the IoU tracker of Bochinski, Eiselein
and Sikora ("High-Speed Tracking-by-Detection Without Using Image Information", AVSS 2017). A track ends
when no detection continues it for `max_gap` frames. A track seen in fewer than `min_detections` frames is
dropped as a likely false detection (and counted). Tracks of one person (broken when the face left the
frame, or by a cut) are joined by `merge_same_person`, so that a track is a person.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from redteam.core.geometry import FaceGeometry, box_iou

#: Two boxes in consecutive sampled frames belong to one track when they overlap at least this much.
MIN_IOU = 0.3


@dataclass(frozen=True)
class Sighting:
    """One face of a track in one frame of the original."""

    frame: int
    time: float
    face: FaceGeometry


@dataclass
class Track:
    """One person's face through the original video."""

    track_id: str
    sightings: list[Sighting] = field(default_factory=list)

    @property
    def start(self) -> float:
        return self.sightings[0].time

    @property
    def end(self) -> float:
        return self.sightings[-1].time

    def best(self, count: int) -> list[Sighting]:
        """The `count` sightings an attacker would pick: the largest, most confidently detected faces."""
        ranked = sorted(self.sightings, key=lambda s: (-(s.face.score * s.face.width * s.face.height), s.frame))
        return sorted(ranked[:count], key=lambda s: s.frame)


def link_tracks(detections: Sequence[tuple[int, float, Sequence[FaceGeometry]]], max_gap: int, min_detections: int = 2) -> tuple[list[Track], int]:
    """Tracks from per-frame detections ((frame index, time, faces) in frame order).

    Returns:
        The tracks, numbered by first appearance (track-1, track-2, ...), and how many short ones were dropped.
    """
    active: list[Track] = []
    finished: list[Track] = []
    for frame, time, faces in detections:
        still: list[Track] = []
        for track in active:
            (still if frame - track.sightings[-1].frame <= max_gap else finished).append(track)
        active = still
        pairs = sorted(
            ((box_iou(track.sightings[-1].face.box, face.box), t, f) for t, track in enumerate(active) for f, face in enumerate(faces)),
            reverse=True,
        )
        used_tracks: set[int] = set()
        used_faces: set[int] = set()
        for overlap, t, f in pairs:
            if overlap < MIN_IOU:
                break
            if t in used_tracks or f in used_faces:
                continue
            active[t].sightings.append(Sighting(frame, time, faces[f]))
            used_tracks.add(t)
            used_faces.add(f)
        for f, face in enumerate(faces):
            if f not in used_faces:
                active.append(Track("", [Sighting(frame, time, face)]))
    finished += active
    kept = [track for track in finished if len(track.sightings) >= min_detections]
    kept.sort(key=lambda track: (track.sightings[0].frame, track.sightings[0].face.box[0]))
    for number, track in enumerate(kept, start=1):
        track.track_id = f"track-{number}"
    return kept, len(finished) - len(kept)


def merge_same_person(tracks: Sequence[Track], same_person: Callable[[Track, Track], bool]) -> list[Track]:
    """Tracks of one person joined into one (a face that leaves the frame, or a cut, breaks a track): two
    tracks are joined when they never share a frame (two faces on screen at once are two people) and
    `same_person` says so (their clean faces verify as one person). Numbered again by first appearance."""
    merged: list[Track] = []
    for track in sorted(tracks, key=lambda t: t.sightings[0].frame):
        frames = {s.frame for s in track.sightings}
        for person in merged:
            if frames.isdisjoint(s.frame for s in person.sightings) and same_person(person, track):
                person.sightings = sorted(person.sightings + track.sightings, key=lambda s: s.frame)
                break
        else:
            merged.append(Track("", list(track.sightings)))
    for number, person in enumerate(merged, start=1):
        person.track_id = f"track-{number}"
    return merged
