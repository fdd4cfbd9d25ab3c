"""Which redacted attack windows a video audit keeps: bounded per track, always the best frames."""

from __future__ import annotations

from redteam.video.observe import WINDOW_FRAMES, window_keys
from redteam.video.tracks import link_tracks
from tests.redteam.video.test_tracks import face


def test_windows_are_kept_for_the_best_frames_and_at_most_window_frames_per_track() -> None:
    detections = [(t, t / 25, [face(10 + (t % 7), size=60 + (t == 250) * 5)]) for t in range(400)]
    (track,), _ = link_tracks(detections, max_gap=2)
    keys = window_keys([track], best=3)
    assert len(keys) <= WINDOW_FRAMES
    assert {(s.frame, s.face.box) for s in track.best(3)} <= keys
    frames = sorted(frame for frame, _ in keys)
    assert frames[0] == 0 and frames[-1] == 399 and max(b - a for a, b in zip(frames, frames[1:], strict=False)) <= 4


def test_a_short_track_keeps_every_window() -> None:
    (track,), _ = link_tracks([(t, t / 25, [face(10)]) for t in range(20)], max_gap=2)
    assert len(window_keys([track], best=3)) == 20
