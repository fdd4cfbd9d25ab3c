"""Contract tests over every registered reference method, and the spec grammar."""

import numpy as np
import pytest
import torch

from redteam.anonymizers import METHODS, FaceSet, build_method
from redteam.core.errors import ConfigError
from redteam.core.geometry import FaceGeometry

FACE = FaceGeometry(box=(20.0, 15.0, 60.0, 65.0), landmarks=((30, 30), (50, 30), (40, 40), (32, 55), (48, 55)), score=0.99)


def image():
    generator = np.random.default_rng(0)
    return generator.integers(0, 256, size=(100, 90, 3), dtype=np.uint8)


#: Small settings where a method's defaults would be slow on a 100 x 90 test image.
CONTRACT_SPECS = {"synthetic": "synthetic:size=32,steps=2"}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_contract(name, tiny_inpainting):
    method = build_method(CONTRACT_SPECS.get(name, name))
    pixels = image()
    if method.needs_fit:
        others = [np.random.default_rng(seed).integers(0, 256, size=pixels.shape, dtype=np.uint8) for seed in (1, 2, 3)]
        method.fit(FaceSet(images=(pixels, *others), faces=((FACE,),) * 4), torch.Generator().manual_seed(0))
    before = pixels.copy()
    out = method.apply(pixels, [FACE], torch.Generator().manual_seed(0))
    assert np.array_equal(pixels, before), "input must not be modified"
    assert out.shape == pixels.shape and out.dtype == np.uint8
    ((x0, y0, x1, y1),) = method.regions(pixels.shape, [FACE])
    outside = np.ones(pixels.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], pixels[outside]), "pixels outside the region must be bit-identical"
    assert not np.array_equal(out[y0:y1, x0:x1], pixels[y0:y1, x0:x1])
    again = method.apply(pixels, [FACE], torch.Generator().manual_seed(0))
    assert np.array_equal(out, again)
    assert method.spec.split(":")[0] == name
    assert build_method(method.spec).spec == method.spec


def test_mosaic_cells_hold_their_mean():
    pixels = image()
    out = build_method("mosaic:block=8,margin=0").apply(pixels, [FACE])
    cell = pixels[15:23, 20:28].reshape(-1, 3).mean(axis=0)
    assert np.array_equal(out[15, 20], np.round(cell).astype(np.uint8))
    assert (out[15:23, 20:28] == out[15, 20]).all()


def test_box_is_solid_and_blur_smooths():
    pixels = image()
    boxed = build_method("box:color=white,margin=0").apply(pixels, [FACE])
    assert (boxed[15:65, 20:60] == 255).all()
    blurred = build_method("gaussian_blur:sigma=3,margin=0").apply(pixels, [FACE])
    assert blurred[15:65, 20:60].astype(float).std() < pixels[15:65, 20:60].astype(float).std() / 3


@pytest.mark.parametrize(
    "spec, message",
    [
        ("sharpen", "unknown method 'sharpen'"),
        ("gaussian_blur:sigma", "malformed token 'sigma'"),
        ("gaussian_blur:sigma=abc", "must be a float"),
        ("gaussian_blur:sigma=0", "outside"),
        ("mosaic:block=4,block=5", "given twice"),
        ("mosaic:size=4", "has no parameter 'size'"),
        ("box:color=pink", "must be one of"),
        ("Bad Name", "bad method name"),
    ],
)
def test_malformed_specs_name_the_bad_token_and_the_choices(spec, message):
    with pytest.raises(ConfigError, match=message) as error:
        build_method(spec)
    assert error.value.fix
