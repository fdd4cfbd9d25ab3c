"""`redteam anonymize`: write anonymized copies of a folder with a reference method, reproducibly.

The output mirrors the input tree (every file as lossless PNG, so no compression is added that the
spec does not name) and records the spec, every parameter, the seed, package versions and per-file
hashes in `redteam-anonymize.json` beside the images. `redteam audit --anonymized NAME=OUT` reads that
record, so the folder's method is *declared* and the method-aware tiers can run against it.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from redteam.anonymizers import FaceSet, build_method
from redteam.core.atomic import write_bytes_atomically, write_text_atomically
from redteam.core.config import DetectorSettings
from redteam.core.errors import InputError
from redteam.core.geometry import FaceGeometry
from redteam.datasets import check_out_dir, discover_images, output_targets
from redteam.faces import FaceDetector
from redteam.images import LoadedImage, load_image

RECORD_NAME = "redteam-anonymize.json"


def image_seed(seed: int, rel: str) -> int:
    """The seed for one image: the same in `redteam anonymize` and in an on-the-fly audit."""
    digest = hashlib.sha256(f"{seed}:anonymize:{rel}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass(frozen=True)
class AnonymizeSummary:
    written: int
    faces: int
    no_face: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    record: Path


def read_declared_spec(folder: Path) -> str | None:
    """The spec recorded by `redteam anonymize` in an anonymized folder, if any, once the record is shown
    to describe the folder: every file it lists is there with its recorded SHA-256, and every image of the
    folder is listed. A record that does not match (forged, or files changed after anonymizing) declares
    nothing the audit can rely on.

    Raises:
        InputError: the record is unreadable or does not match the folder's files (named).
    """
    record_path = folder / RECORD_NAME
    if not record_path.is_file():
        return None
    fix = "re-run `redteam anonymize`, or delete the record to audit the folder as observed (the operator is then identified from the pairs)"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        spec = str(record["spec"])
        listed = {str(entry["output"]): str(entry["output_sha256"]) for entry in record["files"]}
    except KeyError as error:
        raise InputError(f"{record_path} is not a record of `redteam anonymize`: it lacks the field {error}", fix=fix) from error
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"{record_path} is unreadable ({error})", fix=fix) from error
    present = {entry.rel for entry in discover_images(folder, role="anonymized").entries}
    for rel in sorted(present - set(listed))[:1]:
        raise InputError(f"{record_path} does not list {folder / rel}: the record does not describe this folder", fix=fix)
    for rel, digest in sorted(listed.items()):
        path = folder / rel
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise InputError(f"{path} is missing or differs from the file {record_path} recorded: the record does not describe this folder", fix=fix)
    return spec


def anonymize_folder(
    source: Path,
    out: Path,
    spec: str,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    detector: DetectorSettings = DetectorSettings(),
    log: Callable[[str], None] = lambda message: None,
    progress: Callable[[str, int, int], None] = lambda stage, done, total: None,
    detections: Callable[[LoadedImage], list[FaceGeometry]] | None = None,
) -> AnonymizeSummary:
    """Anonymize every image under `source` into `out` (which may not lie inside `source`).

    Args:
        detections: the faces of an image, found elsewhere with the same detector settings (a benchmark
            anonymizing one dataset with many techniques detects each photo once); default: detected here.
    """
    from redteam.core.provenance import environment

    method = build_method(spec)
    check_out_dir(out, [source], mirrors_inputs=True)
    dataset = discover_images(source, role="input")
    targets = output_targets([entry.rel for entry in dataset.entries], out)
    finder = FaceDetector(detector, device=device)
    loaded: list[tuple[str, LoadedImage, list[FaceGeometry]]] = []
    skipped = dataset.skipped()
    for done, entry in enumerate(dataset.entries, start=1):
        progress("detecting faces", done, len(dataset.entries))
        try:
            image = load_image(entry.path)
        except InputError as error:
            skipped.append((entry.rel, error.message))
            log(f"skipped {entry.rel}: {error}")
            continue
        loaded.append((entry.rel, image, detections(image) if detections is not None else finder.detect(image.pixels)))
    if method.needs_fit:
        with_faces = [(image.pixels, tuple(faces)) for _, image, faces in loaded if faces]
        method.fit(
            FaceSet(images=tuple(p for p, _ in with_faces), faces=tuple(f for _, f in with_faces)),
            torch.Generator().manual_seed(image_seed(seed, "fit")),
        )
    files = []
    faces_total = 0
    no_face = []
    for done, (rel, image, faces) in enumerate(loaded, start=1):
        progress("anonymizing", done, len(loaded))
        if not faces:
            no_face.append(rel)
            log(f"WARNING {rel}: no face detected, written unchanged")
        generator = torch.Generator().manual_seed(image_seed(seed, rel))
        pixels = method.apply(image.pixels, faces, generator) if faces else np.array(image.pixels)
        target = targets[rel]
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        write_bytes_atomically(target, buffer.getvalue())
        faces_total += len(faces)
        files.append(
            {
                "original": rel,
                "output": target.relative_to(out).as_posix(),
                "faces": len(faces),
                "original_sha256": image.sha256,
                "output_sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
                "conversions": list(image.conversions),
            }
        )
    record = {
        "schema": "redteam-anonymize/1",
        "spec": method.spec,
        "stages": method.parameters_json,
        "seed": seed,
        "detector": {"name": "mtcnn", "min_score": detector.min_score, "min_face_size": detector.min_face_size},
        "input": str(source.resolve()),
        "environment": environment(),
        "files": files,
        "no_face": no_face,
        "skipped": [{"file": rel, "reason": reason} for rel, reason in skipped],
    }
    path = write_text_atomically(out / RECORD_NAME, json.dumps(record, indent=2) + "\n")
    return AnonymizeSummary(len(files), faces_total, tuple(no_face), tuple(skipped), path)
