"""`redteam attack` and the audit share one reconstruction loop (`redteam.attack_runner`): the same attack
on the same folder gives the same pixels, byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metrics.columns import METRIC_CROP
from redteam.anonymize import anonymize_folder
from redteam.core.config import AuditConfig, MethodSource
from redteam.core.geometry import box_crop
from redteam.engine import AuditRun
from redteam.images import load_image
from redteam.standalone import attack_folder


@pytest.mark.parametrize("attack", ["wiener", "lanczos"])
def test_redteam_attack_reproduces_the_audits_reconstruction_byte_for_byte(sample_dir: Path, tmp_path: Path, attack: str) -> None:
    spec = "gaussian_blur:sigma=3" if attack == "wiener" else "pixelate:pitch=10"
    folder = tmp_path / "tool"  # the folder's name is the audit's method name: both derive the seed from it
    anonymize_folder(sample_dir, folder, spec)
    config = AuditConfig(
        originals=sample_dir,
        out=tmp_path / "report",
        methods=(MethodSource("tool", "observed", folder=folder),),
        cache_dir=tmp_path / "cache",
        recognizers=("dlib",),
        attacks=("none", attack),
        examples_per_method=10,
        seed=7,
        builtin_policy="demo_policy.toml",
    )
    result = AuditRun(config).run()
    assert result.methods[0].spec_origin == "declared"
    attack_folder(folder, tmp_path / "attacked", attack, originals=sample_dir, seed=7)
    boxes = {face.face_id: face.geometry.box for face in result.faces}
    compared = 0
    for example in result.examples:
        audit_crop = dict(example.reconstructions)[attack]
        image, _ = example.face_id.split("#")
        written = load_image((tmp_path / "attacked" / image).with_suffix(".png")).pixels
        assert np.array_equal(box_crop(written, boxes[example.face_id], METRIC_CROP), audit_crop), example.face_id
        compared += 1
    assert compared == len(result.faces) == 5
