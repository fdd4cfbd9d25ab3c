"""Detections on the originals that are not faces (issue 22: a bare shoulder was audited as a face, became the
top "riskiest" example and a leak)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from redteam.core.geometry import FaceGeometry
from redteam.faces import FaceDetector
from redteam.images import load_image
from redteam.plausibility import MIN_EYE_SPAN, SURE_SCORE, landmark_problems, plausibility

FRONTAL = ((40.0, 50.0), (60.0, 50.0), (50.0, 60.0), (42.0, 72.0), (58.0, 72.0))  # a 40 px box from (30, 30)


def geometry(landmarks=FRONTAL, score: float = 0.97, box=(30.0, 30.0, 70.0, 80.0)) -> FaceGeometry:
    return FaceGeometry(box=box, landmarks=landmarks, score=score)


def test_landmarks_of_a_face_pass_and_others_are_named() -> None:
    assert landmark_problems(geometry()) == []
    close = ((45.0, 50.0), (55.0, 50.0), (50.0, 60.0), (46.0, 72.0), (54.0, 72.0))  # eyes 0.25 of the box width apart
    assert any("eyes 0.25" in p for p in landmark_problems(geometry(close)))
    nose_out = ((40.0, 50.0), (60.0, 50.0), (66.0, 60.0), (42.0, 72.0), (58.0, 72.0))
    assert "nose outside the span of the eyes" in landmark_problems(geometry(nose_out))
    mouth_up = ((40.0, 50.0), (60.0, 50.0), (50.0, 45.0), (42.0, 35.0), (58.0, 35.0))
    assert "mouth not below the eyes" in landmark_problems(geometry(mouth_up))
    rotated = ((50.0, 40.0), (50.0, 60.0), (40.0, 50.0), (28.0, 42.0), (28.0, 58.0))  # a face lying on its side
    assert landmark_problems(geometry(rotated, box=(20.0, 30.0, 60.0, 70.0))) == []
    assert MIN_EYE_SPAN == 0.35


def test_a_sure_detection_is_taken_without_a_second_look() -> None:
    flat = np.full((100, 100, 3), 128, np.uint8)
    close = ((45.0, 50.0), (55.0, 50.0), (50.0, 60.0), (46.0, 72.0), (54.0, 72.0))
    assert plausibility(flat, geometry(close, score=SURE_SCORE)).plausible


def test_rejected_only_when_all_three_signals_agree(sample_dir: Path) -> None:
    close = ((45.0, 50.0), (55.0, 50.0), (50.0, 60.0), (46.0, 72.0), (54.0, 72.0))
    skin = np.zeros((120, 120, 3), np.uint8) + np.array([205, 160, 135], np.uint8)  # a bare patch of skin: no face for the CNN detector
    verdict = plausibility(skin, geometry(close))
    assert not verdict.plausible and len(verdict.reasons) >= 3
    assert "dlib's CNN face detector finds no face there" in verdict.reasons
    assert plausibility(skin, geometry()).plausible  # landmarks of a face: kept
    # A real face with unsure score and odd landmarks is kept when the second detector finds it.
    pixels = load_image(sample_dir / "barack_obama" / "obama.jpg").pixels
    (face,) = FaceDetector().detect(pixels)
    x0, y0, x1, y1 = face.box
    cx = (x0 + x1) / 2
    squeezed = tuple((cx + (x - cx) * 0.3, y) for x, y in face.landmarks)
    assert plausibility(pixels, FaceGeometry(face.box, squeezed, 0.96)).plausible


@pytest.mark.slow
def test_the_celeba_shoulder_is_rejected_and_kept_by_the_policy(shared_faces: Path, tmp_path: Path, cache_dir: Path) -> None:
    import json
    import shutil

    from tests.redteam.test_fail_closed import audit, policy

    photo = shared_faces / "research" / "celeba" / "7207" / "014220.jpg"
    if not photo.is_file():
        pytest.skip(f"the CelebA research set is not at {photo.parent.parent}")
    originals = tmp_path / "originals" / "7207"
    originals.mkdir(parents=True)
    shutil.copy(photo, originals / photo.name)  # a temporary working copy (never in the project)
    lenient = "min_samples = 1\nrequired_tiers = ['naive']\n[limits.naive]\nverify = 0.5\n"
    done = audit(originals.parent, tmp_path / "out", cache_dir, "--method", "box=box:margin=0.5", "--attack", "none", "--policy", policy(tmp_path, lenient))
    report = json.loads((tmp_path / "out" / "summary.json").read_text())
    (rejected,) = [i for i in report["input_issues"]["items"] if i["kind"] == "implausible_face"]
    assert rejected["path"] == "7207/014220.jpg#0" and "not taken as a face" in rejected["detail"] and done.returncode in (0, 1)
    assert report["sample"]["faces"] == 1 and report["sample"]["identities"] == 1  # the real face, labelled 7207
    kept = policy(tmp_path, "keep_implausible_faces = true\n" + lenient, "keep.toml")
    audit(originals.parent, tmp_path / "kept", cache_dir, "--method", "box=box:margin=0.5", "--attack", "none", "--policy", kept)
    report = json.loads((tmp_path / "kept" / "summary.json").read_text())
    assert report["sample"]["faces"] == 2
    assert [i["action"] for i in report["input_issues"]["items"] if i["kind"] == "implausible_face"] == ["audited (the policy keeps implausible faces)"]
