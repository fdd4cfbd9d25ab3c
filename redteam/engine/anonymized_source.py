"""The anonymized-image source of the probes stage: each method's output for an image, applied on the fly
(a reference method) or read from the user's folder (an observed one: its counterpart, at the original's
size and orientation), and the hidden image an anonymized file may carry besides its visible pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attacks.hidden import HiddenContentAttack
from redteam.core.results import FaceRecord
from redteam.core.seeds import image_seed
from redteam.datasets import LINK_OUTSIDE
from redteam.engine.context import RunContext
from redteam.engine.handles import ImageHandle
from redteam.engine.methods import UNREADABLE_FOLDER_FIX, anonymized_path
from redteam.engine.work import MethodWork
from redteam.images import hidden_images, load_image


class AnonymizedSource:
    """Where a method's anonymized images come from (see the module docstring)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def hidden(self, work: MethodWork, label: str, shape: tuple[int, ...]) -> ImageHandle | None:
        """The first image the anonymized file carries besides its visible pixels (EXIF thumbnail, XMP
        preview, colour under transparency, another frame), at the original's size; None if it has none."""
        path = anonymized_path(self.ctx, work.method.source, label) if label in work.hidden else None
        found = hidden_images(path) if path is not None else []
        if not found:
            return None
        kind, pixels = found[0]
        if pixels.shape[:2] != shape[:2]:
            pixels = _resized(pixels, shape)
        self.ctx.log(f"{work.method.name}: {label} carries a hidden image ({kind}): audited as attack '{HiddenContentAttack.name}'")
        return ImageHandle.of(pixels)

    def image(self, work: MethodWork, label: str, faces: list[FaceRecord], audited: list[FaceRecord], original: ImageHandle) -> ImageHandle | None:
        """The method's output for this image, or None (a gap for its audited faces, with the issue)."""
        source, reference = work.method.source, work.method.reference
        if source.kind == "observed" and faces[0].in_run:
            handle, gap = self._observed(work, label, original)
            if handle is not None or not audited:
                return handle
            work.gaps.setdefault(gap, []).extend(face.face_id for face in audited)
            return None
        if reference is None:
            return None  # a distractor of an observed method with no known operator: not in its parrot gallery
        generator = torch.Generator().manual_seed(image_seed(self.ctx.config.seed, label))
        with self.ctx.clock.measure("anonymize"):
            return ImageHandle.of(reference.apply(original.pixels, [f.geometry for f in faces], generator))

    def _observed(self, work: MethodWork, rel: str, original: ImageHandle) -> tuple[ImageHandle | None, str]:
        """The user's anonymized image for `rel` at the original's size, or None and why."""
        source, ctx = work.method.source, self.ctx
        path = anonymized_path(ctx, source, rel)
        if path is None and source.folder is not None and rel in ctx.counterparts[source.folder].outside:
            ctx.issue("link_outside", rel, source.name, LINK_OUTSIDE, "skipped")
            return None, "link_outside"
        if path is None and source.folder is not None and rel in ctx.counterparts[source.folder].unreadable:
            ctx.issue("unreadable", rel, source.name, ctx.counterparts[source.folder].unreadable[rel], "skipped", UNREADABLE_FOLDER_FIX)
            return None, "unreadable anonymized file"
        if path is None or not path.exists():
            ctx.issue("missing_counterpart", rel, source.name, "no anonymized file", "skipped")
            return None, "missing_counterpart"
        image = ctx.open(path, f"{source.name}:{rel}", source.name)
        if image is None:
            return None, "unreadable anonymized file"
        ctx.input_hashes[f"{source.name}:{rel}"] = image.sha256
        if "exif_orientation" in image.conversions:
            image = self._best_orientation(work, rel, path, image, original)
        if image.shape == original.shape:
            return image, ""
        height, width = original.shape[:2]
        size = f"{image.shape[1]}x{image.shape[0]} vs original {width}x{height}"
        if abs((image.shape[1] / image.shape[0]) / (width / height) - 1.0) > ctx.config.size_tolerance:
            ctx.issue("size_mismatch", rel, source.name, f"aspect ratio differs ({size})", "skipped")
            return None, "size_mismatch"
        ctx.issue("resized", rel, source.name, f"resized to the original's size ({size})", "audited")
        return ImageHandle.of(_resized(image.pixels, original.shape)), ""

    def _best_orientation(self, work: MethodWork, rel: str, path: Path, oriented: ImageHandle, original: ImageHandle) -> ImageHandle:
        """An anonymized file with an EXIF orientation tag, as displayed or as stored: whichever has the
        original's geometry and, when both do (a square), matches the original's pixels more closely. The
        tag is metadata an attacker can drop, so the audit compares like with like (recorded as an issue)."""
        stored = load_image(path, orient=False).pixels
        fits = [p for p in (oriented.pixels, stored) if p.shape == original.shape]
        if not fits:
            return oriented
        best = min(fits, key=lambda p: float(np.abs(p.astype(np.int16) - original.pixels.astype(np.int16)).mean()))
        if best is stored:
            self.ctx.issue(
                "exif_orientation_ignored", rel, work.method.source.name, "its stored pixels, not the EXIF-rotated ones, match the original", "audited"
            )
            return ImageHandle.of(stored)
        return oriented


def _resized(pixels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`pixels` resampled (bicubic) to the height and width of `shape`."""
    return np.asarray(Image.fromarray(pixels).resize((shape[1], shape[0]), Image.Resampling.BICUBIC), dtype=np.uint8)
