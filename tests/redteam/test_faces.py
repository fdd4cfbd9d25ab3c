"""Face detection on inputs too small or too elongated for the detector's image pyramid."""

import numpy as np
import pytest

from redteam.faces import FaceDetector


@pytest.mark.parametrize("shape", [(8, 8, 3), (19, 300, 3), (6000, 30, 3), (22, 3000, 3)])
def test_tiny_and_elongated_images_have_no_face_and_no_error(shape: tuple[int, int, int]) -> None:
    assert FaceDetector().detect(np.full(shape, 128, np.uint8)) == []


def test_a_batch_finds_what_each_image_finds_alone(sample_dir) -> None:
    """`detect_batch` (one network call per stage for images of one size) gives each image's own result,
    and a search restricted to large faces still finds the face of a known size."""
    from pathlib import Path

    from redteam.faces import box_iou
    from redteam.images import load_image

    detector = FaceDetector()
    paths = sorted(Path(sample_dir).rglob("*.jpg"))[:3]
    pixels = [load_image(path).pixels for path in paths]
    height, width = min(p.shape[0] for p in pixels), min(p.shape[1] for p in pixels)
    crops = [np.ascontiguousarray(p[:height, :width]) for p in pixels]
    crops.append(np.zeros_like(crops[0]))  # no face
    alone = [detector.detect(crop) for crop in crops]
    together = detector.detect_batch(crops)
    assert [len(faces) for faces in together] == [len(faces) for faces in alone] and len(together[-1]) == 0
    for one, many in zip(alone, together, strict=True):
        for a, b in zip(one, many, strict=True):
            assert np.allclose(a.box, b.box, atol=0.05) and abs(a.score - b.score) < 1e-4
    face = alone[0][0]
    large_only = detector.detect(crops[0], int(min(face.width, face.height) / 2))
    assert any(box_iou(f.box, face.box) > 0.85 for f in large_only)  # the same face, from other pyramid levels
    with pytest.raises(ValueError):
        detector.detect_batch([crops[0], crops[0][:-1]])


def test_the_detector_finds_facenet_pytorchs_faces_exactly(sample_dir) -> None:
    """`FaceDetector` (its own cascade and channels-last pools) gives facenet-pytorch 2.5.3's `MTCNN.detect`
    boxes, scores and landmarks, to the last bit, for every face above the score threshold."""
    from pathlib import Path

    from facenet_pytorch import MTCNN

    from redteam.core.config import DetectorSettings
    from redteam.images import load_image

    reference = MTCNN(keep_all=True, min_face_size=20, post_process=False)
    detector = FaceDetector(DetectorSettings(min_score=0.0, min_face_size=20))
    for path in sorted(Path(sample_dir).rglob("*.jpg"))[:2]:
        pixels = load_image(path).pixels
        boxes, scores, marks = reference.detect(pixels, landmarks=True)
        expected = sorted(
            (tuple(float(v) for v in box), float(score), tuple((float(x), float(y)) for x, y in mark))
            for box, score, mark in zip(boxes, scores, marks, strict=True)
        )
        got = sorted((face.box, face.score, face.landmarks) for face in detector.detect(pixels))
        assert got and got == expected
