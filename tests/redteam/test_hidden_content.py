"""An anonymized file that carries the face outside its audited pixels (EXIF thumbnail, a second page or
frame, pixels under full transparency) is reported, and its method cannot PASS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from redteam.anonymizers import build_method
from redteam.core.config import AuditConfig, MethodSource
from redteam.engine import AuditRun
from redteam.faces import FaceDetector
from redteam.images import hidden_content, load_image
from tests.conftest import exif_with_thumbnail, jpeg_bytes

POLICY = 'min_samples = 5\nrequired_tiers = ["naive"]\n[limits.naive]\nverify = 0.5\n'


def test_each_hiding_place_is_found(tmp_path: Path) -> None:
    face = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    black = np.zeros_like(face)
    Image.fromarray(black).save(tmp_path / "thumb.jpg", exif=exif_with_thumbnail(jpeg_bytes(face[::4, ::4])))
    Image.fromarray(np.dstack([face, np.zeros((64, 64), np.uint8)])).save(tmp_path / "alpha.png")
    Image.fromarray(black).save(tmp_path / "pages.tif", save_all=True, append_images=[Image.fromarray(face)])
    Image.fromarray(black).save(tmp_path / "frames.webp", save_all=True, append_images=[Image.fromarray(face)], lossless=True)
    Image.fromarray(black).save(tmp_path / "clean.png")
    Image.fromarray(np.dstack([black, np.zeros((64, 64), np.uint8)])).save(tmp_path / "flat_alpha.png")  # transparent over a flat fill
    assert "an EXIF thumbnail image" in hidden_content(tmp_path / "thumb.jpg")
    assert "under 4096 transparent or translucent pixels" in hidden_content(tmp_path / "alpha.png")[0]
    assert "2 frames or pages" in hidden_content(tmp_path / "pages.tif")[0]
    assert "2 frames or pages" in hidden_content(tmp_path / "frames.webp")[0]
    assert hidden_content(tmp_path / "clean.png") == () and hidden_content(tmp_path / "flat_alpha.png") == ()


def test_identifying_metadata_and_xmp_previews_are_found(tmp_path: Path) -> None:
    from PIL import ExifTags, PngImagePlugin

    black = np.zeros((32, 32, 3), np.uint8)
    exif = Image.Exif()
    exif[0x013B] = "Jane Doe"  # Artist
    exif[ExifTags.IFD.GPSInfo] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    exif[ExifTags.IFD.Exif] = {0xA431: "SN12345"}  # BodySerialNumber
    Image.fromarray(black).save(tmp_path / "gps.jpg", exif=exif)
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        'xmlns:xmpGImg="http://ns.adobe.com/xap/1.0/g/img/"><xmp:Thumbnails><rdf:Alt><rdf:li><xmpGImg:image>/9j/4AAQ</xmpGImg:image>'
        "</rdf:li></rdf:Alt></xmp:Thumbnails></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    Image.fromarray(black).save(tmp_path / "preview.png", pnginfo=info)
    Image.fromarray(black).save(tmp_path / "preview.jpg", xmp=xmp.encode())
    plain = Image.Exif()
    plain[0x0110] = "Model X"  # a camera model names no one
    Image.fromarray(black).save(tmp_path / "model_only.jpg", exif=plain)
    assert hidden_content(tmp_path / "gps.jpg") == ("EXIF GPS coordinates", "EXIF artist, camera serial number")
    assert hidden_content(tmp_path / "preview.png") == ("an XMP preview image",) == hidden_content(tmp_path / "preview.jpg")
    assert hidden_content(tmp_path / "model_only.jpg") == ()


@pytest.fixture
def boxed(sample_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The sample under a solid box, written twice: clean, and with the original in an EXIF thumbnail."""
    detector, box = FaceDetector(), build_method("box:margin=0.6")
    for path in sorted(sample_dir.rglob("*.jpg")):
        pixels = load_image(path).pixels
        covered = box.apply(pixels, detector.detect(pixels), torch.Generator().manual_seed(0))
        rel = path.relative_to(sample_dir).with_suffix(".jpg")
        for folder, extra in (("clean", {}), ("leaky", {"exif": exif_with_thumbnail(jpeg_bytes(pixels[::4, ::4]))})):
            (tmp_path / folder / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(covered).save(tmp_path / folder / rel, quality=95, **extra)
        png = rel.with_suffix(".png")
        (tmp_path / "alpha" / png).parent.mkdir(parents=True, exist_ok=True)
        alpha = np.where((covered != pixels).any(axis=2), 0, 255).astype(np.uint8)  # the box is transparent, the face under it
        Image.fromarray(np.dstack([pixels, alpha])).save(tmp_path / "alpha" / png)
        tif = rel.with_suffix(".tif")
        (tmp_path / "pages" / tif).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(covered).save(tmp_path / "pages" / tif, save_all=True, append_images=[Image.fromarray(pixels)])
    return tmp_path / "clean", tmp_path / "leaky"


def test_a_method_whose_files_keep_the_thumbnail_fails_on_the_thumbnail(sample_dir: Path, boxed: tuple[Path, Path], tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "p.toml").write_text(POLICY)
    clean, leaky = boxed
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(clean / "stray.png")  # mirrors no original
    config = AuditConfig(
        originals=sample_dir,
        out=tmp_path / "out",
        methods=(
            MethodSource("clean", "observed", folder=clean),
            MethodSource("leaky", "observed", folder=leaky),
            MethodSource("alpha", "observed", folder=leaky.parent / "alpha"),
            MethodSource("pages", "observed", folder=leaky.parent / "pages"),
        ),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        attacks=("none",),
        policy=tmp_path / "p.toml",
        identify=False,
    )
    result = AuditRun(config).run()
    verdicts = {v.method: v for v in result.method_verdicts}
    assert verdicts["clean"].verdict.value == "PASS", verdicts["clean"].reasons
    assert verdicts["leaky"].verdict.value == "FAIL", verdicts["leaky"].reasons  # the thumbnail is audited like a visible image
    assert any("beyond the pixels audited" in reason for reason in verdicts["leaky"].reasons)
    hidden = [row for row in result.rows if row.attack == "hidden_content"]
    assert {row.method for row in hidden} == {"leaky", "alpha", "pages"} and len(hidden) == 15 and all(row.tier == "naive" for row in hidden)
    assert sum(bool(row.verify) for row in hidden if row.method == "leaky") >= 4  # the camera's thumbnail of the face is the face
    assert not any(row.verify for row in result.rows if row.method == "leaky" and row.attack == "none")  # the visible pixels hide it
    for name in ("alpha", "pages"):  # the face under transparent pixels, the face on page 2
        assert verdicts[name].verdict.value == "FAIL", verdicts[name].reasons
    flagged = [issue for issue in result.issues if issue.kind == "hidden_content"]
    assert len(flagged) == 15 and {issue.method for issue in flagged} == {"leaky", "alpha", "pages"}
    assert [(issue.path, issue.action) for issue in result.issues if issue.kind == "extra_file"] == [("clean:stray.png", "audited")]  # for leaks


def test_an_orientation_tag_on_an_anonymized_file_does_not_misalign_it(sample_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    """A square anonymized file tagged 'rotate 90' whose stored pixels match the original is audited as
    stored (the tag is metadata an attacker drops), exactly like the same pixels untagged."""
    detector, blur = FaceDetector(), build_method("gaussian_blur:sigma=2")
    exif = Image.Exif()
    exif[0x0112] = 8
    for path in sorted(sample_dir.rglob("*.jpg")):
        pixels = load_image(path).pixels
        side = min(pixels.shape[:2])
        square = np.ascontiguousarray(pixels[:side, :side])
        rel = path.relative_to(sample_dir).with_suffix(".png")
        blurred = blur.apply(square, detector.detect(square), torch.Generator().manual_seed(0))
        for folder, extra in (("originals", None), ("plain", {}), ("tagged", {"exif": exif.tobytes()})):
            (tmp_path / folder / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(square if extra is None else blurred).save(tmp_path / folder / rel, **(extra or {}))
    config = AuditConfig(
        originals=tmp_path / "originals",
        out=tmp_path / "out",
        methods=(MethodSource("plain", "observed", folder=tmp_path / "plain"), MethodSource("tagged", "observed", folder=tmp_path / "tagged")),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        attacks=("none",),
        identify=False,
    )
    result = AuditRun(config).run()
    distance = {(row.method, row.face_id): row.distance for row in result.rows if row.attack == "none"}
    faces = {face for _, face in distance}
    assert faces and all(distance[("tagged", face)] == pytest.approx(distance[("plain", face)]) for face in faces)
    assert sum(issue.kind == "exif_orientation_ignored" for issue in result.issues) == len({face.split("#")[0] for face in faces})


# Issue 22 ------------------------------------------------------------------------------------------


def test_content_under_translucent_pixels_is_hidden_content(tmp_path: Path) -> None:
    """alpha = 1 shows (almost) nothing of the face, and publishes all of it: not only alpha = 0 hides."""
    from redteam.images import hidden_images

    face = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for alpha in (1, 128, 254):
        Image.fromarray(np.dstack([face, np.full((64, 64), alpha, np.uint8)])).save(tmp_path / f"a{alpha}.png")
        assert "under 4096 transparent or translucent pixels (alpha < 255)" in hidden_content(tmp_path / f"a{alpha}.png")[0]
        kind, pixels = hidden_images(tmp_path / f"a{alpha}.png")[0]
        assert kind == "under_transparency" and np.array_equal(pixels, face)  # the full colour, alpha ignored
    Image.fromarray(np.dstack([face, np.full((64, 64), 255, np.uint8)])).save(tmp_path / "opaque.png")
    assert hidden_content(tmp_path / "opaque.png") == ()


@pytest.mark.parametrize("how", ["tEXt", "zTXt", "iTXt", "data-uri", "raw-bytes", "jpeg-comment"])
def test_an_image_in_a_text_chunk_or_comment_is_found_and_decoded(tmp_path: Path, how: str) -> None:
    import base64
    import io

    from PIL import PngImagePlugin

    from redteam.images import hidden_images

    face = np.random.default_rng(2).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(face).save(buffer, "PNG")
    png = buffer.getvalue()
    encoded = base64.b64encode(png).decode()
    black = Image.fromarray(np.zeros((64, 64, 3), np.uint8))
    info = PngImagePlugin.PngInfo()
    path = tmp_path / "leak.png"
    if how == "tEXt":
        info.add_text("Comment", encoded)
    elif how == "zTXt":
        info.add_text("Comment", encoded, zip=True)
    elif how == "iTXt":
        info.add_itxt("Description", "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)))
    elif how == "data-uri":
        info.add_text("Source", f'{{"thumb": "data:image/png;base64,{encoded}"}}')
    elif how == "raw-bytes":
        info.add_text("Blob", png.decode("latin-1"))
    if how == "jpeg-comment":
        path = tmp_path / "leak.jpg"
        black.save(path, comment=encoded.encode())
    else:
        black.save(path, pnginfo=info)
    assert any(item.startswith("an image embedded in") for item in hidden_content(path)), hidden_content(path)
    found = dict(hidden_images(path))
    assert np.array_equal(found["embedded_in_text"], face)
    plain = PngImagePlugin.PngInfo()
    plain.add_text("Comment", "written by a redaction tool, version 1.2.3, with a long comment " * 4)
    black.save(tmp_path / "plain.png", pnginfo=plain)
    assert hidden_content(tmp_path / "plain.png") == ()


def test_a_file_that_cannot_be_inspected_is_reported_not_clean(tmp_path: Path) -> None:
    """Fail closed: a parse error in the EXIF block or a page is "could not inspect", never "nothing found"."""
    import io
    import struct

    black = np.zeros((64, 64, 3), np.uint8)
    face = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(black).save(tmp_path / "ifd_beyond_the_end.jpg", exif=b"Exif\x00\x00II*\x00" + struct.pack("<I", 99_999))
    Image.fromarray(black).save(tmp_path / "not_tiff.jpg", exif=b"Exif\x00\x00XX*\x00\x08\x00\x00\x00")
    buffer = io.BytesIO()
    Image.fromarray(black).save(buffer, "TIFF", save_all=True, append_images=[Image.fromarray(face)])
    data = buffer.getvalue()
    from tifffile import TiffFile

    with TiffFile(io.BytesIO(data)) as tiff:
        offset = tiff.pages[1].offset
    (tmp_path / "page2_cut.tif").write_bytes(data[: offset + 20])  # the second page's directory is cut short
    for name in ("ifd_beyond_the_end.jpg", "not_tiff.jpg", "page2_cut.tif"):
        load_image(tmp_path / name)  # the visible pixels read fine
        found = hidden_content(tmp_path / name)
        assert any(item.startswith("could not inspect") for item in found), (name, found)


def test_gifs_translucent_pixels_and_text_chunks_are_audited_like_other_hidden_images(sample_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    """The face in a GIF's second frame, under alpha = 1, or as base64 in a PNG text chunk FAILs its method;
    a GIF folder without hidden content is audited (not refused as holding no images) and can PASS."""
    import base64
    import io

    from PIL import PngImagePlugin

    (tmp_path / "p.toml").write_text(POLICY)
    detector, box = FaceDetector(), build_method("box:margin=0.6")
    for path in sorted(sample_dir.rglob("*.jpg")):
        pixels = load_image(path).pixels
        covered = box.apply(pixels, detector.detect(pixels), torch.Generator().manual_seed(0))
        rel = path.relative_to(sample_dir)
        for folder in ("gif_clean", "gif_frames", "alpha1", "text"):
            (tmp_path / folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(covered).save(tmp_path / "gif_clean" / rel.with_suffix(".gif"))
        Image.fromarray(covered).save(tmp_path / "gif_frames" / rel.with_suffix(".gif"), save_all=True, append_images=[Image.fromarray(pixels)], duration=100)
        alpha = np.where((covered != pixels).any(axis=2), 1, 255).astype(np.uint8)  # the box is alpha 1, the face under it
        Image.fromarray(np.dstack([pixels, alpha])).save(tmp_path / "alpha1" / rel.with_suffix(".png"))
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", base64.b64encode(buffer.getvalue()).decode(), zip=True)
        Image.fromarray(covered).save(tmp_path / "text" / rel.with_suffix(".png"), pnginfo=info)
    config = AuditConfig(
        originals=sample_dir,
        out=tmp_path / "out",
        methods=tuple(MethodSource(name, "observed", folder=tmp_path / name) for name in ("gif_clean", "gif_frames", "alpha1", "text")),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        attacks=("none",),
        policy=tmp_path / "p.toml",
        identify=False,
    )
    result = AuditRun(config).run()
    verdicts = {v.method: v for v in result.method_verdicts}
    assert verdicts["gif_clean"].verdict.value == "PASS", verdicts["gif_clean"].reasons
    for name in ("gif_frames", "alpha1", "text"):
        assert verdicts[name].verdict.value == "FAIL", (name, verdicts[name].reasons)
        hidden = [row for row in result.rows if row.method == name and row.attack == "hidden_content"]
        assert len(hidden) == 5 and sum(bool(row.verify) for row in hidden) >= 4, name
