"""Input images as handles: hashed at once, decoded only when their pixels are needed.

A re-run of an audit whose results are all in the cache needs, per file, only the hash of its bytes and
the digest of its decoded pixels (the key of every cached result). The digest, shape and conversions of
each decoded file are kept in the cache under the hash of its bytes (and the decoder's version), so a
warm re-run reads and hashes every input but decodes only what it must show (example faces) or compute.
A changed file has a new hash, so it is decoded again: the cache never stands in for a file's content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import PIL

from redteam.cache import Cache, content_key
from redteam.core.errors import InputError

CropT = TypeVar("CropT")

#: Bump when `redteam.images.load_image` changes what it returns for the same bytes.
DECODER_VERSION = f"load_image-v1-pillow-{PIL.__version__}"


def pixel_digest(pixels: np.ndarray) -> str:
    """The content key of decoded pixels (shape and bytes): what cached results are keyed by."""
    return content_key(str(pixels.shape), pixels.tobytes())


@dataclass
class ImageHandle:
    """An image whose digest and shape are known; `pixels` decodes it on first use (then kept)."""

    digest: str
    shape: tuple[int, ...]
    conversions: tuple[str, ...] = ()
    sha256: str = ""  # the file's bytes ("" for an image made in memory)
    _decode: Callable[[], np.ndarray] | None = field(default=None, repr=False)
    _pixels: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def of(cls, pixels: np.ndarray) -> ImageHandle:
        """An image already in memory (a method applied on the fly, a resized file)."""
        return cls(pixel_digest(pixels), tuple(pixels.shape), _pixels=pixels)

    @property
    def decoded(self) -> bool:
        return self._pixels is not None

    @property
    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            assert self._decode is not None
            self._pixels = self._decode()
        return self._pixels


def open_image(path: Path, cache: Cache, sha256: str | None = None) -> ImageHandle:
    """A handle on an input file: its bytes are read and hashed now (unless the caller hashed them in
    this run: `sha256`); its pixels are decoded now only if the cache holds no record of this exact file
    (then the record is written). Decoding checks the bytes against the hash.

    Raises:
        InputError: the file cannot be read or decoded (as `redteam.images.load_image`), or it changed
            between being hashed and being decoded.
    """
    from redteam.images import LoadedImage, load_image

    if sha256 is None:
        try:
            sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as error:
            raise InputError(f"{path}: cannot be read ({error.strerror})", fix="check the path and its permissions") from error
    key = content_key(sha256, DECODER_VERSION)

    def load() -> LoadedImage:
        image = load_image(path)
        if image.sha256 != sha256:
            raise InputError(f"{path}: changed while the audit was reading it", fix="do not modify inputs during an audit; run it again")
        return image

    def decode() -> np.ndarray:
        return load().pixels

    record = cache.get_json("decoded", key)
    if isinstance(record, dict) and _valid(record):
        return ImageHandle(record["digest"], tuple(record["shape"]), tuple(record["conversions"]), sha256, decode)
    image = load()
    digest = pixel_digest(image.pixels)
    cache.put_json("decoded", key, {"digest": digest, "shape": list(image.pixels.shape), "conversions": list(image.conversions)})
    return ImageHandle(digest, tuple(image.pixels.shape), image.conversions, sha256, decode, image.pixels)


def _valid(record: object) -> bool:
    """A decode record as written by `open_image` (anything else is ignored and rewritten)."""
    if not isinstance(record, dict):
        return False
    shape, conversions, digest = record.get("shape"), record.get("conversions"), record.get("digest")
    return (
        isinstance(digest, str)
        and len(digest) == 64
        and isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(v, int) and v > 0 for v in shape)
        and shape[2] == 3
        and isinstance(conversions, list)
        and all(isinstance(c, str) for c in conversions)
    )


class LazyCrops(Mapping[str, CropT]):
    """Face id -> crop (pixels, or a reference to them), each made on first access by `make(face_id)`
    (then kept): membership and iteration never make a crop."""

    def __init__(self, face_ids: Iterable[str], make: Callable[[str], CropT]) -> None:
        self._ids = list(face_ids)
        self._make = make
        self._made: dict[str, CropT] = {}

    def __getitem__(self, face_id: str) -> CropT:
        if face_id not in self._ids:
            raise KeyError(face_id)
        if face_id not in self._made:
            self._made[face_id] = self._make(face_id)
        return self._made[face_id]

    def __contains__(self, face_id: object) -> bool:
        return face_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)
