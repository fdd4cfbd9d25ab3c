"""Linking per-frame detections into one track per person."""

from __future__ import annotations

from redteam.core.geometry import FaceGeometry
from redteam.video.tracks import link_tracks, merge_same_person


def face(x: float, y: float = 50.0, size: float = 60.0, score: float = 0.99) -> FaceGeometry:
    marks = ((x + 20, y + 25), (x + 40, y + 25), (x + 30, y + 35), (x + 22, y + 48), (x + 38, y + 48))
    return FaceGeometry(box=(x, y, x + size, y + size), landmarks=marks, score=score)


def test_two_moving_faces_make_two_tracks_in_order_of_appearance() -> None:
    detections = [(t, t / 10, [face(10 + 4 * t), face(300 - 4 * t)]) for t in range(10)]
    tracks, dropped = link_tracks(detections, max_gap=2)
    assert dropped == 0
    assert [t.track_id for t in tracks] == ["track-1", "track-2"]
    assert [len(t.sightings) for t in tracks] == [10, 10]
    assert all(s.face.box[0] == 10 + 4 * s.frame for s in tracks[0].sightings)


def test_a_gap_longer_than_max_gap_starts_a_new_track_and_single_detections_are_dropped() -> None:
    detections = [(t, t / 10, [face(10)] if t < 3 or t > 8 else []) for t in range(12)]
    detections.append((12, 1.2, [face(10), face(400)]))  # a one-frame false detection
    tracks, dropped = link_tracks(detections, max_gap=2)
    assert [(t.sightings[0].frame, t.sightings[-1].frame) for t in tracks] == [(0, 2), (9, 12)]
    assert dropped == 1


def test_best_sightings_are_the_largest_most_confident_faces_in_frame_order() -> None:
    detections = [(t, t / 10, [face(10, size=50 + t, score=0.99)]) for t in range(6)]
    (track,), _ = link_tracks(detections, max_gap=2)
    assert [s.frame for s in track.best(2)] == [4, 5]


def test_tracks_of_one_person_are_joined_but_never_two_faces_on_screen_together() -> None:
    detections = [(t, t / 10, [face(10)] if t < 3 or t > 8 else []) for t in range(12)]  # one person, broken at 3-8
    detections += [(t, t / 10, [face(400)]) for t in range(12, 15)]
    tracks, _ = link_tracks(detections, max_gap=2)
    assert len(tracks) == 3
    joined = merge_same_person(tracks, lambda a, b: True)  # a recognizer that sees one person everywhere
    assert [(t.track_id, [s.frame for s in t.sightings]) for t in joined] == [("track-1", [0, 1, 2, 9, 10, 11, 12, 13, 14])]
    together = [(t, t / 10, [face(10), face(400)]) for t in range(5)]
    tracks, _ = link_tracks(together, max_gap=2)
    assert len(merge_same_person(tracks, lambda a, b: True)) == 2
    assert len(merge_same_person(link_tracks(detections, max_gap=2)[0], lambda a, b: False)) == 3
