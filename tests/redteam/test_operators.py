"""Each linear method's deepinv operator agrees with its pixel implementation (up to 8-bit rounding);
pipelines compose in order; regions leave every other pixel bit-identical."""

import numpy as np
import pytest
import torch
from skimage.filters import gaussian as smooth

from redteam.anonymizers import build_method
from redteam.anonymizers.mosaic import cell_means
from redteam.core.errors import ConfigError
from redteam.core.geometry import FaceGeometry

QUANTIZATION = 0.5 / 255 + 1e-6  # the only difference allowed: rounding to 8 bits
FACE = FaceGeometry(box=(16.0, 12.0, 48.0, 52.0), landmarks=((26, 28), (40, 28), (33, 36), (27, 45), (39, 45)), score=0.99)


def picture(height=64, width=64, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(np.round(smooth(rng.random((height, width, 3)), sigma=1.5, channel_axis=2) * 255), 0, 255).astype(np.uint8)


def as_tensor(pixels):
    return torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


@pytest.mark.parametrize(
    "spec",
    ["gaussian_blur:sigma=2.5", "gaussian_blur:sigma=0.8", "motion_blur:length=9,angle=30", "motion_blur:length=6,angle=0", "box_blur:size=7"],
)
def test_blur_operator_matches_pixels(spec):
    method = build_method(spec + ",region=image")
    pixels = picture()
    out = as_tensor(method.apply(pixels, [FACE]))
    expected = method.physics(pixels.shape[:2]).A(as_tensor(pixels))
    assert (out - expected).abs().max().item() <= QUANTIZATION


def test_deface_box_blur_operator_matches_pixels():
    method = build_method("box_blur:fraction=0.25,context=0,region=image")
    pixels = picture(48, 48)
    out = as_tensor(method.apply(pixels, [FACE]))
    expected = method.physics(pixels.shape[:2]).A(as_tensor(pixels))
    assert (out - expected).abs().max().item() <= QUANTIZATION


@pytest.mark.parametrize("spec", ["mosaic:block=8", "mosaic:block=4"])
def test_mosaic_shows_the_box_downsampling_operator(spec):
    method = build_method(spec + ",region=image")
    block = int(method.values["block"])
    pixels = picture()
    out = as_tensor(method.apply(pixels, [FACE]))
    expected = method.physics(pixels.shape[:2]).A(as_tensor(pixels))
    assert expected.shape[-1] == 64 // block
    assert (out[..., ::block, ::block] - expected).abs().max().item() <= QUANTIZATION
    upsampled = torch.nn.functional.interpolate(expected, scale_factor=block, mode="nearest")
    assert (out - upsampled).abs().max().item() <= QUANTIZATION


def test_downsample_cells_are_the_operator_and_display_is_bicubic():
    method = build_method("downsample:factor=4,region=image")
    pixels = picture()
    expected = method.physics(pixels.shape[:2]).A(as_tensor(pixels))
    cells = torch.from_numpy(cell_means(pixels.astype(np.float64) / 255.0, 4)).permute(2, 0, 1)[None].float()
    assert (cells - expected).abs().max().item() <= 1e-5
    out = as_tensor(method.apply(pixels, [FACE]))
    # bicubic display of the cells, box-averaged again, returns close to the cells
    assert (torch.nn.functional.avg_pool2d(out, 4) - expected).abs().mean().item() < 0.02


@pytest.mark.parametrize("spec", ["box:margin=0", "box:margin=0,shape=ellipse", "eye_bar"])
def test_masking_operator_keeps_exactly_what_the_method_keeps(spec):
    method = build_method(spec)
    pixels = picture()
    out = method.apply(pixels, [FACE])
    ((x0, y0, x1, y1),) = method.regions(pixels.shape, [FACE])
    window, result = as_tensor(pixels[y0:y1, x0:x1]), as_tensor(out[y0:y1, x0:x1])
    operator = method.physics((y1 - y0, x1 - x0))
    if spec == "eye_bar":  # the bar's mask depends on the face's landmarks: compare with its own mask
        keep = 1.0 - torch.from_numpy(method.region_mask((x0, y0, x1, y1), FACE)).float()
        kept = window * keep
    else:
        keep = operator.mask
        kept = operator.A(window)
    assert torch.allclose(result * keep, kept, atol=1e-6)
    hidden = keep.reshape(-1, y1 - y0, x1 - x0)[0] == 0
    assert hidden.any() and (result[0][:, hidden] == 0).all()  # black fill where nothing is kept


def test_noise_operator_is_identity_plus_gaussian_noise_of_that_sigma():
    method = build_method("noise:sigma=0.05,region=image")
    pixels = np.full((128, 128, 3), 128, np.uint8)
    out = method.apply(pixels, [FACE], torch.Generator().manual_seed(3)).astype(np.float64) / 255.0
    residual = out - 128 / 255.0
    assert abs(residual.std() - 0.05) < 0.005 and abs(residual.mean()) < 0.005
    operator = method.physics((128, 128))
    x = as_tensor(pixels)
    assert torch.equal(operator.A(x), x)
    assert float(operator.noise_model.sigma) == pytest.approx(0.05)
    again = method.apply(pixels, [FACE], torch.Generator().manual_seed(3))
    assert np.array_equal(again, np.round(out * 255).astype(np.uint8))


def test_jpeg_has_a_differentiable_approximation_close_to_libjpeg():
    method = build_method("jpeg:quality=30,region=image")
    pixels = picture(64, 64)
    out = as_tensor(method.apply(pixels, [FACE]))
    approx = method.physics((64, 64)).A(as_tensor(pixels))
    assert (out - approx).abs().mean().item() < 0.02
    assert (out - as_tensor(pixels)).abs().mean().item() > 0.002  # it did compress


def test_pipeline_applies_in_order_and_composes_its_operators():
    first, second = "gaussian_blur:sigma=2,region=image", "mosaic:block=8,region=image"
    pipeline = build_method(f"{first} | {second}")
    pixels = picture()
    staged = build_method(second).apply(build_method(first).apply(pixels, [FACE]), [FACE])
    assert np.array_equal(pipeline.apply(pixels, [FACE]), staged)
    assert not np.array_equal(build_method(f"{second} | {first}").apply(pixels, [FACE]), staged)
    composed = pipeline.physics((64, 64)).A(as_tensor(pixels))
    assert (as_tensor(staged)[..., ::8, ::8] - composed).abs().max().item() <= 2 * QUANTIZATION
    assert pipeline.spec.count("|") == 1 and build_method(pipeline.spec).spec == pipeline.spec


def test_layered_pipeline_is_deterministic_for_a_seed():
    pipeline = build_method("downsample:factor=4 | jpeg:quality=15 | noise:sigma=0.05")
    pixels = picture()
    a = pipeline.apply(pixels, [FACE], torch.Generator().manual_seed(7))
    b = pipeline.apply(pixels, [FACE], torch.Generator().manual_seed(7))
    c = pipeline.apply(pixels, [FACE], torch.Generator().manual_seed(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("spec", ["gaussian_blur:sigma=4,shape=ellipse,feather=4", "mosaic:block=6,margin=0.5", "box:shape=ellipse"])
def test_pixels_outside_the_region_are_bit_identical(spec):
    method = build_method(spec)
    pixels = picture(80, 90)
    second = FaceGeometry(box=(60.0, 50.0, 85.0, 78.0), landmarks=FACE.landmarks, score=0.99)
    out = method.apply(pixels, [FACE, second])
    changed = np.any(out != pixels, axis=2)
    allowed = np.zeros(changed.shape, bool)
    for x0, y0, x1, y1 in method.regions(pixels.shape, [FACE, second]):
        allowed[y0:y1, x0:x1] = True
    assert changed.any() and not (changed & ~allowed).any()
    if method.values["shape"] == "ellipse":
        x0, y0, x1, y1 = method.regions(pixels.shape, [FACE])[0]
        assert np.array_equal(out[y0, x0], pixels[y0, x0])  # the ellipse leaves the box's corner alone


def test_deface_blur_is_reproduced(shared_faces):
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is needed for the deface reference")
    from skimage.draw import ellipse

    from redteam.faces import FaceDetector
    from redteam.images import load_image

    pixels = load_image(shared_faces / "public-domain" / "barack_obama" / "obama2.jpg").pixels
    face = FaceDetector().detect(pixels)[0]
    ours = build_method("box_blur:fraction=0.5,context=0,margin=0.3,shape=ellipse").apply(pixels, [face])
    # deface's default: mask-scale 1.3, cv2.blur with half the box as kernel, inside the box's ellipse
    ((x0, y0, x1, y1),) = build_method("box_blur:margin=0.3").regions(pixels.shape, [face])
    reference = pixels.copy()
    blurred = cv2.blur(np.ascontiguousarray(reference[y0:y1, x0:x1]), ((x1 - x0) // 2, (y1 - y0) // 2))
    rows, cols = ellipse((y1 - y0) // 2, (x1 - x0) // 2, (y1 - y0) // 2, (x1 - x0) // 2, shape=blurred.shape[:2])
    reference[y0 + rows, x0 + cols] = blurred[rows, cols]
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1


@pytest.mark.parametrize(
    "spec, message",
    [("mosaic |", "empty stage"), ("| jpeg", "empty stage"), ("mosaic || jpeg", "empty stage"), ("jpeg | k_same", "first stage"), ("", "empty method spec")],
)
def test_malformed_pipelines_are_rejected(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_method(spec)
