"""The files a video audit publishes beside its reports."""

from __future__ import annotations

import numpy as np

from redteam.video.files import file_slug, filmstrip


def test_the_filmstrip_leaves_the_originals_out_when_asked() -> None:
    frames = [(np.full((160, 160, 3), 200, np.uint8), np.full((160, 160, 3), 30, np.uint8), f"{t / 10:.2f} s") for t in range(4)]
    both, published = filmstrip(frames), filmstrip(frames, originals=False)
    assert both.size == (640, 2 * 160 + 14) and published.size == (640, 160 + 14)
    assert np.asarray(both)[10, 10].tolist() == [200, 200, 200] and np.asarray(published)[10, 10].tolist() == [30, 30, 30]


def test_method_names_become_harmless_distinct_file_names() -> None:
    hostile = ["../../etc/passwd", "<script>", "a/b", "a_b"]
    slugs = [file_slug(name) for name in hostile]
    assert all("/" not in slug and "<" not in slug and ".." not in slug for slug in slugs)
    assert len(set(slugs)) == len(slugs)
