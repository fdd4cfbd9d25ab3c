"""`redteam attack`: run one attack (or chain) on a folder of anonymized images and save the results.

Face geometry comes from the originals when given (`--originals`, mirrored paths: the attacker knows
where the face is), otherwise from MTCNN on the anonymized image itself. The method is known when the
folder was written by `redteam anonymize` (its record) or declared with `--method`.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from attacks import MethodInfo, build_attack
from redteam.anonymize import read_declared_spec
from redteam.anonymizers import build_method
from redteam.attack_runner import AttackRunner, attack_generator
from redteam.core.atomic import write_bytes_atomically, write_text_atomically
from redteam.core.errors import InputError
from redteam.core.provenance import environment
from redteam.datasets import LINK_OUTSIDE, Counterparts, check_out_dir, discover_images, output_targets
from redteam.faces import FaceDetector
from redteam.images import load_image

RECORD_NAME = "redteam-attack.json"


@dataclass(frozen=True)
class AttackSummary:
    written: int
    faces: int
    skipped: tuple[tuple[str, str], ...]
    record: Path


def attack_folder(
    anonymized: Path,
    out: Path,
    attack_spec: str,
    *,
    originals: Path | None = None,
    method_spec: str | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = lambda message: None,
    progress: Callable[[str, int, int], None] = lambda stage, done, total: None,
) -> AttackSummary:
    """Reconstruct every anonymized image under `anonymized` into `out` (never inside an input)."""
    attack = build_attack(attack_spec).use_device(torch.device(device))
    spec = method_spec or read_declared_spec(anonymized)
    reference = build_method(spec) if spec else None
    info = MethodInfo(anonymized.name, reference)
    ok, reason = attack.applicable(info)
    if not ok:
        raise InputError(f"attack '{attack.name}' does not apply to {anonymized}: {reason}", fix="choose another attack, or declare the method with --method")
    check_out_dir(out, [anonymized] + ([originals] if originals else []), mirrors_inputs=True)
    dataset = discover_images(anonymized, role="anonymized")
    targets = output_targets([entry.rel for entry in dataset.entries], out)
    detector = FaceDetector(device=device)
    runner = AttackRunner()  # the audit's reconstruction loop: the same output byte for byte
    files, skipped = [], dataset.skipped(own_prefix="redteam-")
    faces_total = 0
    counterparts = Counterparts(originals) if originals is not None else None
    for done, entry in enumerate(dataset.entries, start=1):
        progress(f"attack {attack.name}", done, len(dataset.entries))
        try:
            image = load_image(entry.path)
            geometry_source = image
            if counterparts is not None:
                original_path = counterparts.find(entry.rel)
                if original_path is None:
                    skipped.append((entry.rel, LINK_OUTSIDE if entry.rel in counterparts.outside else "no original with the same relative path"))
                    continue
                geometry_source = load_image(original_path)
                if geometry_source.pixels.shape != image.pixels.shape:
                    skipped.append((entry.rel, "original and anonymized sizes differ"))
                    continue
        except InputError as error:
            skipped.append((entry.rel, error.message))
            log(f"skipped {entry.rel}: {error}")
            continue
        faces = detector.detect(geometry_source.pixels)
        if not faces:
            skipped.append((entry.rel, "no face found"))
            continue
        generator = attack_generator(seed, info.name, attack.name, entry.rel)  # as the audit seeds method `info.name`
        restored, refused_at = runner.reconstruct(attack, info, image.pixels, faces, generator)
        refused = [{"face": index, "reason": reason} for index, reason in sorted(refused_at.items())]
        for index, reason in sorted(refused_at.items()):
            log(f"{entry.rel}: face {index} left as it is: {reason}")
        buffer = io.BytesIO()
        Image.fromarray(restored).save(buffer, format="PNG")
        target = targets[entry.rel]
        write_bytes_atomically(target, buffer.getvalue())
        faces_total += len(faces)
        files.append(
            {
                "input": entry.rel,
                "output": target.relative_to(out).as_posix(),
                "faces": len(faces),
                "faces_not_attacked": refused,
                "input_sha256": image.sha256,
                "output_sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
            }
        )
    record = {
        "schema": "redteam-attack/1",
        "attack": attack.name,
        "tier": attack.tier.value,
        "method": spec,
        "seed": seed,
        "models": attack.provenance(info),
        "geometry": "originals" if originals else "detected on the anonymized images",
        "environment": environment(),
        "files": files,
        "skipped": [{"file": f, "reason": r} for f, r in skipped],
    }
    path = write_text_atomically(out / RECORD_NAME, json.dumps(record, indent=2) + "\n")
    return AttackSummary(len(files), faces_total, tuple(skipped), path)
