"""Read image files into one convention (H x W x 3 uint8 RGB), recording every conversion made.

Inputs are never modified: files are opened read-only and hashed from their bytes.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from redteam.core.errors import ImageTooLargeError, InputError

SUPPORTED_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class LoadedImage:
    """One decoded image.

    Attributes:
        path: where it was read from.
        pixels: H x W x 3 uint8 RGB array (read-only view).
        sha256: hash of the file's bytes (the input's identity in caches and reports).
        conversions: what was done to reach RGB uint8, e.g. ``("exif_orientation", "rgba_to_rgb")``.
    """

    path: Path
    pixels: np.ndarray
    sha256: str
    conversions: tuple[str, ...]

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def is_image_file(path: Path) -> bool:
    """True for a regular file whose suffix is one of the supported image formats."""
    return path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES


def _to_rgb8(image: Image.Image, conversions: list[str]) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        conversions.append("16bit_to_8bit" if peak > 255 else "int_to_8bit")
        gray = np.clip(np.round(array / peak * 255.0), 0, 255).astype(np.uint8)
        conversions.append("grayscale_to_rgb")
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        peak = 1.0 if array.max() <= 1.0 else 255.0
        conversions.append("float_to_8bit")
        gray = np.clip(np.round(array / peak * 255.0), 0, 255).astype(np.uint8)
        conversions.append("grayscale_to_rgb")
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P" or mode == "PA":
        conversions.append("palette_to_rgb")
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La"):
        conversions.append("alpha_composited_on_white")
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    elif mode in ("L", "1"):
        conversions.append("grayscale_to_rgb")
        image = image.convert("RGB")
    elif mode != "RGB":
        conversions.append(f"{mode.lower()}_to_rgb")
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def _source_bits(opened: Image.Image, data: bytes) -> int:
    """Bits per sample stored in the file (Pillow silently loads 16-bit RGB PNG/TIFF as 8-bit RGB)."""
    if opened.format == "PNG" and len(data) > 24:
        return int(data[24])  # IHDR bit depth
    if opened.format == "TIFF":
        bits = getattr(opened, "tag_v2", {}).get(258, 8)
        return int(max(bits)) if isinstance(bits, tuple) else int(bits)
    return 8


def _decode_tiff_with_tifffile(data: bytes, path: Path, conversions: list[str]) -> np.ndarray:
    import tifffile

    array = tifffile.imread(io.BytesIO(data))
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
        conversions.append("grayscale_to_rgb")
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InputError(
            f"{path}: unsupported TIFF layout {array.shape}",
            fix="save it as an RGB or grayscale PNG/JPEG/TIFF",
        )
    if array.shape[2] == 4:
        conversions.append("alpha_dropped")
        array = array[..., :3]
    if array.dtype == np.uint16:
        conversions.append("16bit_to_8bit")
        array = np.round(array.astype(np.float64) / 65535.0 * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise InputError(
            f"{path}: unsupported TIFF sample type {array.dtype}",
            fix="save it with 8- or 16-bit integer samples",
        )
    return np.ascontiguousarray(array)


def load_image(path: Path, *, orient: bool = True) -> LoadedImage:
    """Decode an image file, apply its EXIF orientation (unless `orient` is False: the stored pixel grid)
    and convert it to RGB uint8.

    Raises:
        InputError: the file is missing, not an image, truncated, or of an unsupported layout;
            the message names the file and the fix.
    """
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise InputError(
            f"{path}: unsupported file type '{path.suffix}'",
            fix="use JPEG, PNG, WebP or TIFF",
        )
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})", fix="check the path and its permissions") from error
    conversions: list[str] = []
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            oriented = ImageOps.exif_transpose(opened) if orient else opened
            if oriented is not opened:
                exif_orientation = opened.getexif().get(0x0112, 1)
                if exif_orientation not in (None, 1):
                    conversions.append("exif_orientation")
            pixels = _to_rgb8(oriented, conversions)
            if _source_bits(opened, data) > 8 and "16bit_to_8bit" not in conversions:
                conversions.append("16bit_to_8bit")  # Pillow reduced a 16-bit RGB file to 8 bits on load
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(
            f"{path}: declares more pixels than Pillow's safety limit ({2 * (Image.MAX_IMAGE_PIXELS or 0):,}): refused as a possible decompression bomb",
            fix="downscale the image (faces are audited at a few hundred pixels) or remove it",
        ) from error
    except UnidentifiedImageError as error:
        raise InputError(f"{path}: not a readable image", fix="re-export the file or remove it") from error
    except OSError as error:
        if path.suffix.lower() in (".tif", ".tiff"):
            try:
                pixels = _decode_tiff_with_tifffile(data, path, conversions)
            except InputError:
                raise
            except Exception as tiff_error:  # noqa: BLE001 - any decoder failure is a bad input
                raise InputError(f"{path}: unreadable TIFF ({tiff_error})", fix="re-export the file") from error
        else:
            raise InputError(
                f"{path}: truncated or corrupt image ({error})",
                fix="re-export or re-download the file, or remove it",
            ) from error
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise InputError(f"{path}: decoded to an unexpected shape {pixels.shape}", fix="re-export the file as RGB")
    pixels = np.ascontiguousarray(pixels)
    pixels.setflags(write=False)
    return LoadedImage(
        path=path,
        pixels=pixels,
        sha256=hashlib.sha256(data).hexdigest(),
        conversions=tuple(conversions),
    )


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 1 x 3 x H x W float32 in [0, 1] (the project's tensor convention)."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """1 x 3 x H x W float in [0, 1] -> H x W x 3 uint8, rounding to nearest (8-bit quantization)."""
    array = tensor.detach().clamp(0.0, 1.0).mul(255.0).round().to(dtype=torch.uint8)
    return array[0].permute(1, 2, 0).cpu().numpy()


#: Alpha below this hides what is under it; RGB spread (grey levels) under fully transparent pixels above
#: this is content, not a flat fill.
_HIDDEN_SPREAD = 2.0


#: EXIF tags that name a person or a device (IFD0 and the Exif IFD): tag -> what it is.
_IDENTIFYING_TAGS = {0x013B: "artist", 0x8298: "copyright holder", 0xA430: "camera owner", 0xA431: "camera serial number", 0xA435: "lens serial number"}
#: XMP properties that carry a preview image or name a person or place.
_XMP_MARKERS = {
    "xmpGImg:image": "an XMP preview image",
    "xap:Thumbnails": "an XMP preview image",
    "xmp:Thumbnails": "an XMP preview image",
    "photoshop:City": "an XMP place",
    "Iptc4xmpCore:Location": "an XMP place",
    "exif:GPSLatitude": "XMP GPS coordinates",
    "Iptc4xmpExt:PersonInImage": "an XMP person name",
    "mwg-rs:Name": "an XMP face region name",
}


#: The PNG chunk types that can carry EXIF or XMP (eXIf, and text chunks: "Raw profile type exif",
#: "XML:com.adobe.xmp"). A PNG whose bytes hold none of these names carries neither.
_PNG_METADATA_CHUNKS = (b"eXIf", b"tEXt", b"zTXt", b"iTXt")


def _xmp_text(image: Image.Image) -> str:
    raw = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or b""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _identifying_metadata(exif: Image.Exif, xmp: str) -> list[str]:
    """Metadata that identifies the person or the place (GPS position, owner, serial numbers, XMP
    previews, names and places): each published with the file, whatever its pixels show."""
    found = []
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    if gps.get(2) or gps.get(4):  # GPSLatitude / GPSLongitude
        found.append("EXIF GPS coordinates")
    tags = {**dict(exif.items()), **dict(exif.get_ifd(ExifTags.IFD.Exif).items())}
    named = [what for tag, what in _IDENTIFYING_TAGS.items() if str(tags.get(tag, "")).strip(" \x00")]
    if named:
        found.append("EXIF " + ", ".join(named))
    found += sorted({what for marker, what in _XMP_MARKERS.items() if marker in xmp})
    return found


def hidden_content(path: Path, data: bytes | None = None) -> tuple[str, ...]:
    """What an image file carries besides the pixels the audit sees (its first frame, composited), and
    metadata that identifies the person or the place.

    A redaction tool that blurs the visible face but keeps the camera's EXIF thumbnail, a second TIFF page
    or animation frame, or the face under fully transparent pixels, publishes the face: each is reported.
    Unreadable files return () (they are reported as unreadable by `load_image`). `data`: the file's
    bytes when the caller has read them already.
    """
    found: list[str] = []
    try:
        data = path.read_bytes() if data is None else data
        with Image.open(io.BytesIO(data)) as image:
            frames = int(getattr(image, "n_frames", 1) or 1)
            if frames > 1:
                found.append(f"{frames} frames or pages (only the first is audited)")
            if image.format == "PNG" and not any(chunk in data for chunk in _PNG_METADATA_CHUNKS):
                exif, xmp = Image.Exif(), ""  # nothing to find, and Pillow would decode every pixel to look past IDAT
            else:
                exif = image.getexif()
                xmp = _xmp_text(image)
            thumbnail = exif.get_ifd(ExifTags.IFD.IFD1)
            if thumbnail.get(0x0201) or thumbnail.get(0x0111):  # JPEGInterchangeFormat / StripOffsets of IFD1
                found.append("an EXIF thumbnail image")
            found += _identifying_metadata(exif, xmp)
            if image.mode in ("RGBA", "LA", "PA", "La") or "transparency" in image.info:
                rgba = np.asarray(image.convert("RGBA"))
                transparent = rgba[..., 3] == 0
                if transparent.any() and float(rgba[..., :3][transparent].astype(np.float32).std(axis=0).max()) > _HIDDEN_SPREAD:
                    found.append(f"image content under {int(transparent.sum())} fully transparent pixels")
    except Exception:  # noqa: BLE001 - an unreadable file is reported by load_image
        return ()
    return tuple(found)


def hidden_images(path: Path) -> list[tuple[str, np.ndarray]]:
    """The images a file carries besides its visible first frame, as RGB uint8 (what an attacker who
    opens the file gets for free), in this order: the EXIF thumbnail, an XMP preview, the colour under
    fully transparent pixels, the other frames or pages. Unreadable parts are left out (never raised):
    `hidden_content` reports them all the same."""
    import base64
    import re

    found: list[tuple[str, np.ndarray]] = []

    def decoded(data: bytes) -> np.ndarray | None:
        try:
            with Image.open(io.BytesIO(data)) as inner:
                return np.asarray(inner.convert("RGB"), dtype=np.uint8)
        except Exception:  # noqa: BLE001 - a damaged embedded image is not an image to audit
            return None

    try:
        with Image.open(path) as image:
            raw = image.info.get("exif") or b""
            base = 6 if raw.startswith(b"Exif\x00\x00") else 0
            ifd1 = image.getexif().get_ifd(ExifTags.IFD.IFD1)
            offset, length = ifd1.get(0x0201), ifd1.get(0x0202)
            if raw and offset and length and (thumb := decoded(raw[base + int(offset) : base + int(offset) + int(length)])) is not None:
                found.append(("exif_thumbnail", thumb))
            for encoded in re.findall(r"<xmpGImg:image>([A-Za-z0-9+/=\s&#;x]+)</xmpGImg:image>", _xmp_text(image)):
                try:
                    preview = decoded(base64.b64decode(re.sub(r"&#xA;|\s", "", encoded)))
                except ValueError:
                    preview = None
                if preview is not None:
                    found.append(("xmp_preview", preview))
                    break
            if image.mode in ("RGBA", "LA", "PA", "La") or "transparency" in image.info:
                rgba = np.asarray(image.convert("RGBA"))
                transparent = rgba[..., 3] == 0
                if transparent.any() and float(rgba[..., :3][transparent].astype(np.float32).std(axis=0).max()) > _HIDDEN_SPREAD:
                    found.append(("under_transparency", np.ascontiguousarray(rgba[..., :3])))
            for index in range(1, min(int(getattr(image, "n_frames", 1) or 1), 8)):
                image.seek(index)
                found.append((f"frame_{index + 1}", np.asarray(image.convert("RGB"), dtype=np.uint8)))
    except Exception:  # noqa: BLE001 - an unreadable file is reported by load_image
        return found
    return found
