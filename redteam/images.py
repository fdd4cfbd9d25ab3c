"""Read image files into one convention (H x W x 3 uint8 RGB), recording every conversion made.

Inputs are never modified: files are opened read-only and hashed from their bytes.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from redteam.core.errors import ImageTooLargeError, InputError

if TYPE_CHECKING:
    pass

#: Suffixes read as images (a GIF, like an animated WebP or a multi-page TIFF, is audited on its first frame).
SUPPORTED_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".gif"})
#: Video file suffixes (what FFmpeg's common containers use): `redteam audit-video` reads them, `audit` points there.
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".ogv")


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
            fix="use JPEG, PNG, WebP, TIFF or GIF",
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


#: RGB spread (grey levels) under non-opaque pixels above this is content, not a flat fill.
_HIDDEN_SPREAD = 2.0
#: Alpha at or above this is opaque: the pixel shows its colour in full. Any lower alpha (even 254, or 1)
#: mixes the colour with the background, so the colour itself is published but not what the audit sees.
_OPAQUE = 255
#: Frames or pages decoded to check that each can be read (and handed to the hidden-content attack).
_SCANNED_FRAMES = 8


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
_XMP_PREVIEW = re.compile(r"<xmpGImg:image>([A-Za-z0-9+/=\s&#;x]+)</xmpGImg:image>")
#: Keys of `Image.info` / PNG text that hold EXIF or XMP (inspected as such, not as free text).
_METADATA_KEYS = frozenset({"exif", "xmp", "XML:com.adobe.xmp", "icc_profile", "Raw profile type exif", "Raw profile type APP1"})


#: The PNG chunk types that can carry EXIF, XMP or text (eXIf, and text chunks: "Raw profile type exif",
#: "XML:com.adobe.xmp", comments). A PNG whose bytes hold none of these names carries none of them.
_PNG_METADATA_CHUNKS = (b"eXIf", b"tEXt", b"zTXt", b"iTXt")

#: Text that may hold an image: a data: URI, a run of base64 (line breaks allowed), or a run of hex digits.
_DATA_URI = re.compile(r"data:[^,;\s]*(?:;[^,;\s]*)*;base64,([A-Za-z0-9+/=_\-\s]+)", re.IGNORECASE)
_BASE64_RUN = re.compile(r"(?:[A-Za-z0-9+/_\-]{4}\s*){16,}(?:[A-Za-z0-9+/_\-]{2}==|[A-Za-z0-9+/_\-]{3}=)?")
_HEX_RUN = re.compile(r"(?:[0-9A-Fa-f]{2}\s*){64,}")
#: Signatures of the image formats Pillow reads, searched for in raw bytes held by text.
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"RIFF", b"II*\x00", b"MM\x00*")
#: Embedded images smaller than this on a side are not faces to audit (and not counted as images).
_MIN_EMBEDDED_SIDE = 8


def _xmp_text(image: Image.Image) -> str:
    raw = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or b""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _checked_xmp(image: Image.Image) -> str:
    """The XMP packet as text, after checking that it is well-formed XML (a packet that does not parse
    cannot be searched reliably). Entity and DOCTYPE declarations are refused, never expanded.

    Raises:
        ValueError: the packet is not well-formed XML or declares a DOCTYPE or entities.
    """
    from xml.parsers import expat

    text = _xmp_text(image)
    if not text.strip(" \t\r\n\x00"):
        return text

    def refuse(*_: object) -> None:
        raise ValueError("the XMP packet declares a DOCTYPE or entities")

    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    try:
        parser.Parse(text.strip(" \t\r\n\x00"), True)
    except expat.ExpatError as error:
        raise ValueError(f"the XMP packet is not well-formed XML ({error})") from error
    return text


def _checked_exif(image: Image.Image) -> tuple[Image.Exif, dict[int, dict[int, Any]]]:
    """The EXIF block and its IFDs (IFD1: the thumbnail, Exif, GPS), read with every warning of Pillow's
    parser treated as a failure (Pillow skips a corrupt entry or IFD with a warning: what it skipped was
    not inspected).

    Raises:
        ValueError: the block is not a TIFF structure, or Pillow reported it corrupt.
    """
    raw = image.info.get("exif")
    if isinstance(raw, bytes) and raw:
        body = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
        if body and body[:4] not in (b"II*\x00", b"MM\x00*"):
            raise ValueError("the EXIF block does not start with a TIFF header")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exif = image.getexif()
        ifds: dict[int, dict[int, Any]] = {int(ifd): dict(exif.get_ifd(ifd).items()) for ifd in (ExifTags.IFD.IFD1, ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo)}
    problems = [str(item.message).strip() for item in caught if any(word in str(item.message).lower() for word in ("exif", "corrupt", "truncated"))]
    if problems:
        raise ValueError(f"the EXIF block is corrupt ({problems[0]})")
    return exif, ifds


def _identifying_metadata(exif: Image.Exif, ifds: dict[int, dict[int, Any]], xmp: str) -> list[str]:
    """Metadata that identifies the person or the place (GPS position, owner, serial numbers, XMP
    previews, names and places): each published with the file, whatever its pixels show."""
    found = []
    gps = ifds.get(ExifTags.IFD.GPSInfo, {})
    if gps.get(2) or gps.get(4):  # GPSLatitude / GPSLongitude
        found.append("EXIF GPS coordinates")
    tags = {**dict(exif.items()), **ifds.get(ExifTags.IFD.Exif, {})}
    named = [what for tag, what in _IDENTIFYING_TAGS.items() if str(tags.get(tag, "")).strip(" \x00")]
    if named:
        found.append("EXIF " + ", ".join(named))
    found += sorted({what for marker, what in _XMP_MARKERS.items() if marker in xmp})
    return found


def _decoded(data: bytes, where: str | None = None) -> np.ndarray | None:
    """An embedded image's pixels as RGB uint8, or None when `data` is not an image (or one too small to
    show a face).

    Args:
        where: for an image found in text, where: then an image Pillow recognises but cannot decode (damaged,
            too large) raises instead of counting as "no image".

    Raises:
        ValueError: with `where`, the bytes open as an image that cannot be decoded.
    """
    try:
        inner = Image.open(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - not an image at all
        return None
    try:
        with inner:
            pixels = np.asarray(inner.convert("RGB"), dtype=np.uint8)
    except Exception as error:  # noqa: BLE001 - an image that cannot be decoded
        if where is not None and min(inner.size) >= _MIN_EMBEDDED_SIDE:
            raise ValueError(f"the {inner.format} image in {where} cannot be decoded ({type(error).__name__})") from error
        return None
    return pixels if min(pixels.shape[:2]) >= _MIN_EMBEDDED_SIDE else None


def _candidates(text: str) -> list[bytes]:
    """Byte strings a text value may hold an image as: data: URIs, base64 and hex runs, and the raw bytes
    themselves (a text chunk read as Latin-1 holds any bytes) from each image signature on."""
    import base64
    import binascii

    found: list[bytes] = []
    for match in [*_DATA_URI.finditer(text), *_BASE64_RUN.finditer(text)]:
        encoded = re.sub(r"\s", "", match.group(1) if match.re is _DATA_URI else match.group(0))
        try:
            found.append(base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_" if re.search(r"[-_]", encoded) else None))
        except (binascii.Error, ValueError):
            continue
    for match in _HEX_RUN.finditer(text):
        try:
            found.append(bytes.fromhex(re.sub(r"\s", "", match.group(0))))
        except ValueError:
            continue
    raw = text.encode("latin-1", "replace")
    for signature in _IMAGE_SIGNATURES:
        start = raw.find(signature)
        if start >= 0:
            found.append(raw[start:])
    return found


def _text_values(image: Image.Image, xmp: str) -> list[tuple[str, str]]:
    """(where, text) of every free-text value the file carries: PNG text chunks (tEXt, zTXt, iTXt, read in
    full, including those after the pixel data), comments (JPEG COM, GIF), and the XMP packet outside its
    preview element (inspected as such)."""
    values: dict[object, object] = {key: value for key, value in image.info.items()}
    if image.format == "PNG":
        values.update(getattr(image, "text", {}))  # loads the image: text chunks after IDAT are read too
    found = []
    for key, value in values.items():
        if not isinstance(key, str) or key in _METADATA_KEYS or not isinstance(value, (str, bytes)):
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if len(text) >= 16:
            found.append((f"text '{key}'", text))
    rest = _XMP_PREVIEW.sub("", xmp)
    if len(rest) >= 16:
        found.append(("the XMP packet", rest))
    return found


def _embedded_images(image: Image.Image, xmp: str) -> list[tuple[str, np.ndarray]]:
    """Images a file carries as text (base64, hex or raw bytes in a PNG text chunk, a comment or the XMP
    packet, data: URIs included), each with where it was found."""
    found = []
    for where, text in _text_values(image, xmp):
        for candidate in _candidates(text):
            pixels = _decoded(candidate, where)
            if pixels is not None:
                found.append((where, pixels))
                break
    return found


def _non_opaque(image: Image.Image) -> tuple[int, np.ndarray] | None:
    """(how many pixels, the full RGB) when pixels that are not fully opaque (alpha < 255) hide content
    (their colour is not a flat fill): the composite the audit sees mixes that colour with the background,
    while the file publishes it whole; None otherwise."""
    if image.mode not in ("RGBA", "LA", "PA", "La", "RGBa") and "transparency" not in image.info:
        return None
    rgba = np.asarray(image.convert("RGBA"))
    hidden = rgba[..., 3] < _OPAQUE
    if not hidden.any() or float(rgba[..., :3][hidden].astype(np.float32).std(axis=0).max()) <= _HIDDEN_SPREAD:
        return None
    return int(hidden.sum()), np.ascontiguousarray(rgba[..., :3])


def _scan_frames(image: Image.Image, count: int) -> None:
    """Decode frames 2 to `_SCANNED_FRAMES` of a file of `count` frames (a page that cannot be decoded
    raises); the image is left on its first frame.

    Raises:
        Exception: whatever Pillow raises for a frame it cannot read.
    """
    try:
        for index in range(1, min(count, _SCANNED_FRAMES)):
            image.seek(index)
            image.load()
    finally:
        if count > 1:
            image.seek(0)


def _could_not(what: str, error: BaseException) -> str:
    detail = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    return f"could not inspect {what} ({detail}): it may carry content the audit did not see"


def _tiff_pages(data: bytes) -> tuple[str, ...]:
    """What a TIFF that Pillow cannot open carries besides its first page (tifffile reads it for the audit)."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            pages = len(tiff.pages)
            sub_ifds = any(getattr(page, "tags", {}).get(330) is not None for page in tiff.pages)  # SubIFDs: reduced-resolution images
    except Exception as error:  # noqa: BLE001 - any parser failure: not inspected
        return (_could_not("the TIFF's pages", error),)
    found = [f"{pages} frames or pages (only the first is audited)"] if pages > 1 else []
    return tuple(found + (["a TIFF sub-image (SubIFDs)"] if sub_ifds else []))


def hidden_content(path: Path, data: bytes | None = None) -> tuple[str, ...]:
    """What an image file carries besides the pixels the audit sees (its first frame, composited), and
    metadata that identifies the person or the place.

    A redaction tool that blurs the visible face but keeps the camera's EXIF thumbnail, a second TIFF page
    or animation frame, an image in a text chunk or comment, or the face under transparent or translucent
    pixels, publishes the face: each is reported. Fail closed: a part that cannot be parsed (its frames or
    pages, its EXIF block, its XMP packet, its text) is reported as "could not inspect ...", never taken for
    "nothing found". A file whose visible pixels do not decode returns () (the pass reports it unreadable,
    and its faces without a result block a PASS). `data`: the file's bytes when the caller has read them.
    """
    try:
        data = path.read_bytes() if data is None else data
        image = Image.open(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - not an image Pillow opens
        return _unreadable(path, data)
    found: list[str] = []
    with image:
        try:
            frames = int(getattr(image, "n_frames", 1) or 1)
            if frames > 1:
                found.append(f"{frames} frames or pages (only the first is audited)")
            _scan_frames(image, frames)
        except Exception as error:  # noqa: BLE001
            found.append(_could_not("its frames or pages", error))
        exif, xmp = Image.Exif(), ""
        ifds: dict[int, dict[int, Any]] = {}
        if image.format != "PNG" or any(chunk in data for chunk in _PNG_METADATA_CHUNKS):  # else Pillow would decode every pixel to look past IDAT
            try:
                exif, ifds = _checked_exif(image)
            except Exception as error:  # noqa: BLE001
                found.append(_could_not("its EXIF block", error))
            try:
                xmp = _checked_xmp(image)
            except Exception as error:  # noqa: BLE001
                found.append(_could_not("its XMP packet", error))
            thumbnail = ifds.get(ExifTags.IFD.IFD1, {})
            if thumbnail.get(0x0201) or thumbnail.get(0x0111):  # JPEGInterchangeFormat / StripOffsets of IFD1
                found.append("an EXIF thumbnail image")
            found += _identifying_metadata(exif, ifds, xmp)
            try:
                found += [f"an image embedded in {where}" for where, _ in _embedded_images(image, xmp)]
            except Exception as error:  # noqa: BLE001
                found.append(_could_not("its text chunks or comments", error))
        try:
            hidden = _non_opaque(image)
            if hidden is not None:
                found.append(f"image content under {hidden[0]} transparent or translucent pixels (alpha < {_OPAQUE})")
        except Exception as error:  # noqa: BLE001
            found.append(_could_not("its transparency", error))
        if any(item.startswith("could not inspect") for item in found):
            try:  # a part failed: is it only that part, or does the visible image itself not decode?
                image.seek(0)
                image.load()
            except Exception:  # noqa: BLE001
                return _unreadable(path, data)
    return tuple(found)


def _unreadable(path: Path, data: bytes | None) -> tuple[str, ...]:
    """`hidden_content` of a file whose visible pixels Pillow cannot decode: () (the pass reports it as
    unreadable, and its faces without a result block a PASS already), except a TIFF, which `load_image`
    reads with tifffile: its pages are inspected with that."""
    return _tiff_pages(data) if data is not None and path.suffix.lower() in (".tif", ".tiff") else ()


def hidden_images(path: Path) -> list[tuple[str, np.ndarray]]:
    """The images a file carries besides its visible first frame, as RGB uint8 (what an attacker who
    opens the file gets for free), in this order: the EXIF thumbnail, an XMP preview, images embedded in
    text (PNG text chunks, comments, data: URIs), the full colour under non-opaque pixels (alpha ignored),
    the other frames or pages. Unreadable parts are left out (never raised): `hidden_content` reports them
    as "could not inspect"."""
    import base64

    found: list[tuple[str, np.ndarray]] = []
    try:
        with Image.open(path) as image:
            raw = image.info.get("exif") or b""
            base = 6 if raw.startswith(b"Exif\x00\x00") else 0
            try:
                ifd1 = image.getexif().get_ifd(ExifTags.IFD.IFD1)
            except Exception:  # noqa: BLE001 - reported by hidden_content
                ifd1 = {}
            offset, length = ifd1.get(0x0201), ifd1.get(0x0202)
            if raw and offset and length and (thumb := _decoded(raw[base + int(offset) : base + int(offset) + int(length)])) is not None:
                found.append(("exif_thumbnail", thumb))
            xmp = _xmp_text(image)
            for encoded in _XMP_PREVIEW.findall(xmp):
                try:
                    preview = _decoded(base64.b64decode(re.sub(r"&#xA;|\s", "", encoded)))
                except ValueError:
                    preview = None
                if preview is not None:
                    found.append(("xmp_preview", preview))
                    break
            try:
                found += [("embedded_in_text", pixels) for _, pixels in _embedded_images(image, xmp)]
            except Exception:  # noqa: BLE001 - reported by hidden_content
                pass
            hidden = _non_opaque(image)
            if hidden is not None:
                found.append(("under_transparency", hidden[1]))
            for index in range(1, min(int(getattr(image, "n_frames", 1) or 1), _SCANNED_FRAMES)):
                image.seek(index)
                found.append((f"frame_{index + 1}", np.asarray(image.convert("RGB"), dtype=np.uint8)))
    except Exception:  # noqa: BLE001 - an unreadable file is reported by load_image, an unreadable part by hidden_content
        return found
    return found
