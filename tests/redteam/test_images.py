"""Every input conversion is explicit and recorded; every bad file names itself and the fix."""

import numpy as np
import pytest
from PIL import Image

from redteam.core.errors import InputError
from redteam.core.tensors import to_tensor, to_uint8
from redteam.images import load_image


def gradient(height=40, width=30):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 8 % 256, y * 6 % 256, (x + y) * 3 % 256], axis=2).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif", ".jpg"])
def test_formats_decode_to_rgb_uint8(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    options = {"lossless": True} if suffix == ".webp" else {}
    Image.fromarray(gradient()).save(path, **options)
    image = load_image(path)
    assert image.pixels.shape == (40, 30, 3) and image.pixels.dtype == np.uint8
    if suffix != ".jpg":
        assert np.array_equal(image.pixels, gradient())
    assert image.conversions == ()


def test_exif_orientation_is_applied_and_recorded(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(gradient(40, 30)).save(path, exif=exif)
    image = load_image(path)
    assert image.pixels.shape == (30, 40, 3)
    assert "exif_orientation" in image.conversions


def test_rgba_palette_grayscale_and_16bit_are_converted_and_counted(tmp_path):
    rgba = np.dstack([gradient(), np.full((40, 30), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(gradient()).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(gradient()[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray((np.arange(1200).reshape(40, 30) * 50).astype(np.uint16)).save(tmp_path / "deep.png")
    assert load_image(tmp_path / "rgba.png").conversions == ("alpha_composited_on_white",)
    assert "palette_to_rgb" in load_image(tmp_path / "palette.png").conversions
    assert load_image(tmp_path / "gray.png").conversions == ("grayscale_to_rgb",)
    deep = load_image(tmp_path / "deep.png")
    assert "16bit_to_8bit" in deep.conversions and deep.pixels.shape == (40, 30, 3)
    assert deep.pixels.max() <= 255 and deep.pixels[-1, -1, 0] > 200


def test_16bit_rgb_tiff_is_converted(tmp_path):
    import tifffile

    data = gradient().astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "deep.tif", data)
    image = load_image(tmp_path / "deep.tif")
    assert np.array_equal(image.pixels, gradient())
    assert "16bit_to_8bit" in image.conversions


def test_truncated_file_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(gradient(200, 200)).save(path)
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(InputError) as error:
        load_image(path)
    assert str(path) in error.value.message and error.value.fix


def test_not_an_image_and_unsupported_type(tmp_path):
    (tmp_path / "fake.png").write_text("hello")
    with pytest.raises(InputError, match="fake.png"):
        load_image(tmp_path / "fake.png")
    with pytest.raises(InputError, match="unsupported file type"):
        load_image(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="cannot be read"):
        load_image(tmp_path / "missing.png")


def test_loaded_pixels_are_read_only_and_round_trip(tmp_path):
    Image.fromarray(gradient()).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    with pytest.raises(ValueError):
        image.pixels[0, 0, 0] = 1
    tensor = to_tensor(image.pixels)
    assert tensor.shape == (1, 3, 40, 30) and 0.0 <= tensor.min() and tensor.max() <= 1.0
    assert np.array_equal(to_uint8(tensor), image.pixels)


def test_16bit_rgb_png_is_converted_and_counted(tmp_path):
    import struct
    import zlib

    data = gradient(8, 6).astype(">u2") * 257
    raw = b"".join(b"\x00" + row.tobytes() for row in data)

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 6, 8, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    (tmp_path / "deep.png").write_bytes(png)
    image = load_image(tmp_path / "deep.png")
    assert np.array_equal(image.pixels, gradient(8, 6))
    assert "16bit_to_8bit" in image.conversions


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels, with no pixel data (what a bomb's header says)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_by_name(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(50_000, 50_000))
    with pytest.raises(InputError, match="bomb.png.*decompression bomb") as refused:
        load_image(path)
    assert "downscale" in (refused.value.fix or "")
    assert refused.value.issue_kind == "too_large"  # inside an audit: an explicit `too_large` input issue


def test_an_animated_gif_is_read_on_its_first_frame_and_listed_as_an_image(tmp_path):
    """Issue 22: a folder of GIFs was refused as holding no images, though GIF is an audited format."""
    from redteam.datasets import discover_images
    from redteam.images import SUPPORTED_SUFFIXES, hidden_content

    frames = [Image.fromarray(gradient()), Image.fromarray(255 - gradient())]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    assert ".gif" in SUPPORTED_SUFFIXES
    assert [entry.rel for entry in discover_images(tmp_path, role="anonymized").entries] == ["a.gif"]
    image = load_image(tmp_path / "a.gif")
    first = np.asarray(Image.open(tmp_path / "a.gif").convert("RGB"))
    assert image.pixels.shape == (40, 30, 3) and np.array_equal(image.pixels, first)
    assert hidden_content(tmp_path / "a.gif")[0].startswith("2 frames or pages")
