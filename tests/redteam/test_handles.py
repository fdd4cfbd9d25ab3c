"""Input handles: hashed at once, decoded once per file content, never trusted over the file's bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import redteam.images
from redteam.cache import Cache
from redteam.core.errors import InputError
from redteam.engine.handles import ImageHandle, LazyCrops, open_image, pixel_digest
from tests.conftest import save_rgb


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file `redteam.images.load_image` decodes, in order."""
    seen: list[Path] = []
    real = redteam.images.load_image

    def counting(path: Path, **kwargs: object):  # type: ignore[no-untyped-def]
        seen.append(path)
        return real(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(redteam.images, "load_image", counting)
    return seen


def test_a_known_file_is_hashed_not_decoded(tmp_path: Path, decodes: list[Path]) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    path = save_rgb(tmp_path / "a.png", pixels)
    cache = Cache(tmp_path / "cache")
    first = open_image(path, cache)
    second = open_image(path, cache)
    assert decodes == [path]  # the first open decodes; the second reads its record
    assert first.digest == second.digest == pixel_digest(pixels) and second.shape == (40, 30, 3)
    assert not second.decoded
    assert np.array_equal(second.pixels, pixels) and decodes == [path, path]  # decoded on first use


def test_a_changed_file_is_decoded_again(tmp_path: Path, decodes: list[Path]) -> None:
    cache = Cache(tmp_path / "cache")
    path = save_rgb(tmp_path / "a.png", np.zeros((20, 20, 3), np.uint8))
    before = open_image(path, cache).digest
    save_rgb(path, np.full((20, 20, 3), 7, np.uint8))
    after = open_image(path, cache)
    assert after.digest != before and after.decoded and len(decodes) == 2


def test_a_forged_or_damaged_record_is_ignored(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    pixels = np.full((20, 24, 3), 9, np.uint8)
    path = save_rgb(tmp_path / "a.png", pixels)
    open_image(path, cache)
    for record in (cache.root / "decoded").rglob("*.json"):  # type: ignore[union-attr]
        record.write_text('{"digest": "x", "shape": [1, 1], "conversions": []}')
    again = open_image(path, cache)
    assert again.digest == pixel_digest(pixels) and again.decoded


def test_an_unreadable_file_is_an_input_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="broken.png"):
        open_image(path, Cache(tmp_path / "cache"))


def test_an_image_made_in_memory_has_its_digest() -> None:
    pixels = np.ones((5, 6, 3), np.uint8)
    handle = ImageHandle.of(pixels)
    assert handle.digest == pixel_digest(pixels) and handle.decoded and handle.shape == (5, 6, 3)


def test_lazy_crops_are_made_once_and_only_when_read() -> None:
    made: list[str] = []

    def make(face_id: str) -> np.ndarray:
        made.append(face_id)
        return np.zeros((2, 2, 3), np.uint8)

    crops = LazyCrops(["a", "b"], make)
    assert "a" in crops and "c" not in crops and list(crops) == ["a", "b"] and len(crops) == 2 and made == []
    crops["a"], crops["a"]
    assert made == ["a"]
    with pytest.raises(KeyError):
        crops["c"]
