"""The leak rule: a published face that the redaction did not protect FAILs its method at any sample size.

A face is *leaked* by what a method published when either holds (README, "The leak rule"):
- **unchanged**: its face crop (the original's MTCNN box, 160 x 160) is within `UNCHANGED_PSNR_DB` of the
  original's. Measured on 43 CelebA faces: JPEG re-encodings at quality 75 or more lie at 36.2 dB and
  above, a Gaussian blur of 2 px or more at 32.9 dB and below;
- **verified far below the threshold**: at the naive tier (the published pixels as they are), a recognizer
  puts it closer to its own original than `LEAK_DISTANCE_FRACTION` of its verification threshold (dlib:
  0.30, where other photos of the same person lie at 0.33 and above), and the probe is not degenerate.

The rule is applied to the naive tier's rows (the anonymized face, and any image hidden in its file) and
to every other file an observed folder publishes: a file beside the audited counterpart (`x.png` beside
`x.jpg`), the counterpart of an original that is a byte-identical copy of another, or a file that mirrors
no original at all. Such *extra files* are matched to the originals they could reveal by name (the same
relative path without its suffix, or a duplicate's) and by content (every face detected in the file,
against every original face), and audited like the counterpart.

References:
    Newton, Sweeney and Malin, "Preserving Privacy by De-identifying Face Images", IEEE TKDE 2005 (the
    naive recognition experiment); Hao et al., FG 2020 (the naive attacker's 0.9% against blurred faces).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from metrics.columns import METRIC_CROP
from metrics.identity import BLANK_REASON
from metrics.perceptual import psnr
from metrics.recognizers import Recognizer
from redteam.core.geometry import box_crop
from redteam.core.results import FaceRecord, Leak, ResultRow
from redteam.core.tiers import ThreatTier
from redteam.engine.context import RunContext
from redteam.engine.embedding import Embedder, Gallery
from redteam.engine.methods import Method, anonymized_path

#: A face crop at least this close to the original's (PSNR, dB) was left unchanged by the redaction.
UNCHANGED_PSNR_DB = 36.0
#: A published face verified closer to its original than this fraction of the threshold is leaked.
LEAK_DISTANCE_FRACTION = 0.5


def leak_evidence(psnr_db: float | None, distances: Iterable[tuple[str, float, float]], blank: bool = False) -> list[str]:
    """The findings that make one published face a leak (empty: not a leak).

    Args:
        psnr_db: PSNR of the published face crop against the original's (None: not measured).
        distances: (recognizer, distance to the own original, the recognizer's threshold).
        blank: the probe's chip is blank (a solid fill): its distances prove nothing. Other degenerate probes
            (collapsed onto one identity) are still leaks when this close to their own original: landing
            on one's own identity is what an unredacted face does.
    """
    found = []
    if psnr_db is not None and psnr_db >= UNCHANGED_PSNR_DB:
        found.append(f"unchanged (face crop PSNR {psnr_db:.1f} dB >= {UNCHANGED_PSNR_DB:.0f} dB against the original)")
    if not blank:
        for name, distance, threshold in distances:
            if distance < LEAK_DISTANCE_FRACTION * threshold:
                found.append(
                    f"verified by {name} as published, at distance {distance:.3f} < {LEAK_DISTANCE_FRACTION} x threshold {threshold:g} "
                    f"(= {LEAK_DISTANCE_FRACTION * threshold:.3f})"
                )
    return found


def row_leaks(rows: Sequence[ResultRow], published: Callable[[str, str, str], str]) -> list[Leak]:
    """The leaks among the naive tier's rows, one per method x face x attack (the anonymized face as it is,
    or an image hidden in its file).

    Args:
        published: (method, image, attack) -> what published the face, for the finding's text.
    """
    groups: dict[tuple[str, str, str], list[ResultRow]] = {}
    for row in rows:
        if row.tier == ThreatTier.NAIVE.value:
            groups.setdefault((row.method, row.face_id, row.attack), []).append(row)
    leaks = []
    for (method, face_id, attack), group in groups.items():
        quality = dict(group[0].quality)
        value = quality.get("psnr")
        evidence = leak_evidence(
            float(value) if value is not None else None,
            [(row.recognizer, row.distance, row.threshold) for row in group],
            blank=any((row.probe_degenerate or "").startswith(BLANK_REASON) for row in group),
        )
        if not evidence:
            continue
        if any(row.anonymized_face_detected for row in group):
            evidence.append("the face is still detected by MTCNN")
        distances = tuple((r.recognizer, r.distance) for r in group)
        leaks.append(Leak(method, face_id, group[0].image, published(method, group[0].image, attack), tuple(evidence), distances))
    return leaks


@dataclass(frozen=True)
class ExtraFile:
    """A file an observed folder publishes besides the audited counterparts.

    Attributes:
        path: the file.
        label: `method:relative/path`, for issues and findings.
        named: the original it mirrors by name (its path without the suffix, or a duplicate's), or None.
    """

    path: Path
    label: str
    named: str | None


def extra_files(ctx: RunContext, method: Method, originals: Sequence[str], duplicates: dict[str, str]) -> list[ExtraFile]:
    """Every image in an observed folder that is not the audited counterpart of an original in the run.

    Args:
        originals: relative paths of the originals whose faces are audited.
        duplicates: relative path of an original counted once -> the original it is a byte-identical copy of.
    """
    folder = method.source.folder
    if folder is None:
        return []
    audited = {path.resolve() for rel in originals if (path := anonymized_path(ctx, method.source, rel)) is not None}
    by_stem = {PurePosixPath(rel).with_suffix("").as_posix(): rel for rel in originals}
    by_stem.update({PurePosixPath(copy).with_suffix("").as_posix(): first for copy, first in duplicates.items() if first in originals})
    found = []
    for entry in ctx.listing(folder, "anonymized", []).entries:  # unreadable sub-folders: reported by `unmatched_files`
        if entry.path.resolve() in audited:
            continue
        found.append(ExtraFile(entry.path, f"{method.name}:{entry.rel}", by_stem.get(PurePosixPath(entry.rel).with_suffix("").as_posix())))
    return found


def _same_aspect(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return abs(a[1] / a[0] - b[1] / b[0]) <= 0.01 * (b[1] / b[0])


class ExtraFileAudit:
    """Audits extra files for leaks: by the original they mirror by name (its faces' geometry), and by every
    face detected in them (against every original face of the run)."""

    def __init__(self, ctx: RunContext, recognizers: dict[str, Recognizer], gallery: Gallery, originals: Sequence[FaceRecord], paths: dict[str, Path]) -> None:
        self.ctx, self.recognizers, self.gallery, self.paths = ctx, recognizers, gallery, paths
        self.embedders = {name: Embedder(r, ctx.cache, ctx.clock, ctx.config.batch_size) for name, r in recognizers.items()}
        self.faces_of: dict[str, list[FaceRecord]] = {}
        for face in originals:
            self.faces_of.setdefault(face.image, []).append(face)
        index = gallery.index
        self.columns = [index[face.face_id] for face in originals]  # the originals' faces in the gallery (distractors are not protected)
        self.originals = list(originals)

    def __call__(self, method: str, extra: ExtraFile) -> tuple[list[Leak], bool]:
        """The leaks in one extra file, and whether it could be inspected (an unreadable one cannot: the
        method must not PASS on a file that may show a face)."""
        handle = self.ctx.open(extra.path, extra.label, method)
        if handle is None:
            return [], False
        pixels = handle.pixels
        leaks: dict[str, Leak] = {}
        for leak in self._by_name(method, extra, pixels) + self._by_content(method, extra, pixels, handle.sha256):
            leaks.setdefault(leak.face_id, leak)
        found = sorted(leaks.values(), key=lambda leak: leak.face_id)
        named = f"mirrors {extra.named} by name; " if extra.named else ""
        detail = f"{named}published beside the audited files: " + (
            f"leaks {', '.join(leak.face_id for leak in found)}" if found else "audited for leaks by name and by every face detected in it: none found"
        )
        self.ctx.issue("extra_file", extra.label, method, detail, "audited: leak, method FAILs" if found else "audited")
        return found, True

    def _embed(self, name: str, chips: list[np.ndarray]) -> np.ndarray:
        return self.embedders[name](chips).numpy() if chips else np.zeros((0, self.recognizers[name].embedding_dim), dtype=np.float32)

    def _by_name(self, method: str, extra: ExtraFile, pixels: np.ndarray) -> list[Leak]:
        """The named original's faces, cropped from the extra file with the original's geometry."""
        if extra.named is None or extra.named not in self.faces_of:
            return []
        original = self.ctx.open(self.paths[extra.named], extra.named, None)
        if original is None or not _same_aspect(pixels.shape, original.shape):
            return []
        if pixels.shape[:2] != original.shape[:2]:
            from PIL import Image

            pixels = np.asarray(Image.fromarray(pixels).resize((original.shape[1], original.shape[0]), Image.Resampling.BICUBIC))
        faces = self.faces_of[extra.named]
        distances: dict[str, list[float]] = {}
        for name, recognizer in self.recognizers.items():
            chips = [recognizer.crop(pixels, self.gallery.alignments[name][face.face_id]) for face in faces]
            embedded = self._embed(name, chips)
            own = self.gallery.embeddings[name][[self.gallery.index[face.face_id] for face in faces]]
            distances[name] = [float(v) for v in recognizer.distances(torch.from_numpy(embedded), own).diagonal()]
        leaks = []
        for i, face in enumerate(faces):
            box = face.geometry.box
            value = float(psnr(box_crop(pixels, box, METRIC_CROP)[None], box_crop(original.pixels, box, METRIC_CROP)[None])[0])
            evidence = leak_evidence(value, [(name, distances[name][i], r.threshold.value) for name, r in self.recognizers.items()])
            if evidence:
                leaks.append(Leak(method, face.face_id, face.image, extra.label, tuple(evidence), tuple((n, d[i]) for n, d in distances.items())))
        return leaks

    def _by_content(self, method: str, extra: ExtraFile, pixels: np.ndarray, sha256: str) -> list[Leak]:
        """Every face detected in the extra file, against every original face of the run."""
        detected = self.ctx.detect(pixels, sha256 or extra.label)
        if not detected or not self.columns:
            return []
        leaks: dict[str, Leak] = {}
        for name, recognizer in self.recognizers.items():
            chips = [recognizer.crop(pixels, recognizer.locate(pixels, geometry)) for geometry in detected]
            embedded = torch.from_numpy(self._embed(name, chips))
            distances = recognizer.distances(embedded, self.gallery.embeddings[name][self.columns])
            threshold = recognizer.threshold.value
            for row in range(len(detected)):
                column = int(distances[row].argmin())
                distance = float(distances[row, column])
                evidence = leak_evidence(None, [(name, distance, threshold)])
                if evidence:
                    face = self.originals[column]
                    text = f"a face detected in the file is {face.face_id}: " + evidence[0]
                    leaks.setdefault(face.face_id, Leak(method, face.face_id, face.image, extra.label, (text,), ((name, distance),)))
        return list(leaks.values())
