"""The example plugin: its method changes only the face region and is reproducible, its attack keeps the
shape and sharpens, and, once installed, both are in the registries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from redteam_example_plugin.attack import UnsharpRestore
from redteam_example_plugin.method import PosterizedBlur

from attacks.base import MethodInfo
from redteam.core.geometry import FaceGeometry

FACE = FaceGeometry(box=(20.0, 20.0, 60.0, 70.0), landmarks=((32.0, 38.0), (48.0, 38.0), (40.0, 48.0), (34.0, 58.0), (46.0, 58.0)), score=0.99)


def picture() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)


def test_the_method_changes_the_face_region_only_and_is_reproducible() -> None:
    method = PosterizedBlur(levels=3)
    image = picture()
    first, second = method.apply(image, [FACE]), method.apply(image, [FACE])
    assert np.array_equal(first, second)
    changed = np.any(first != image, axis=2)
    assert changed[40, 40] and not changed[2, 2] and not changed[90, 90]
    assert len(np.unique(first[30:60, 30:50])) <= 3  # three levels per channel inside


def test_the_attack_keeps_the_shape_and_adds_detail() -> None:
    blurred = torch.full((1, 3, 40, 40), 0.5)
    blurred[..., 20:] = 0.6
    restored = UnsharpRestore().reconstruct(blurred, method=MethodInfo("m", None), generator=torch.Generator())
    assert restored.shape == blurred.shape
    assert float(restored.max() - restored.min()) > 0.1  # the edge is overshot: sharper than the input


def test_installed_the_plugin_is_in_the_registries() -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("redteam-example-plugin")
    except PackageNotFoundError:
        pytest.skip("not installed: pip install -e examples/redteam-example-plugin")
    from attacks import ATTACKS
    from redteam.anonymizers import METHODS

    assert METHODS["example_posterize"] is PosterizedBlur and ATTACKS["example_unsharp"] is UnsharpRestore
