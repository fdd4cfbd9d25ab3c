"""Face detection on inputs too small or too elongated for the detector's image pyramid."""

import numpy as np
import pytest

from redteam.faces import FaceDetector


@pytest.mark.parametrize("shape", [(8, 8, 3), (19, 300, 3), (6000, 30, 3), (22, 3000, 3)])
def test_tiny_and_elongated_images_have_no_face_and_no_error(shape: tuple[int, int, int]) -> None:
    assert FaceDetector().detect(np.full(shape, 128, np.uint8)) == []
