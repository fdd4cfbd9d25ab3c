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


def test_a_constant_fill_is_not_attacked_and_does_not_block_the_verdict(sample_dir: Path, tmp_path: Path) -> None:
    """A solid box leaves no pixel of the face: the reconstruction attacks are not run on it ("no
    information to restore", listed with the reason), the face counts as covered (the naive tier scores
    it), so neither a missing tier nor a coverage gap stands between the box and its verdict."""
    config = AuditConfig(
        originals=sample_dir,
        out=tmp_path / "report",
        methods=(MethodSource("box", "reference", spec="box:color=black,margin=0.3"), MethodSource("blur", "reference", spec="gaussian_blur:sigma=3")),
        cache_dir=tmp_path / "cache",
        recognizers=("dlib",),
        attacks=("none", "bicubic", "blind_deconv"),
        builtin_policy="demo_policy.toml",
    )
    result = AuditRun(config).run()
    box = next(v for v in result.method_verdicts if v.method == "box")
    assert not [r for r in box.reasons if "'reconstruction' did not run" in r or "has results for" in r], box.reasons
    assert {(row.attack, row.method) for row in result.rows if row.method == "box"} == {("none", "box")}
    blur_attacks = {row.attack for row in result.rows if row.method == "blur"}
    assert {"bicubic", "blind_deconv"} & blur_attacks  # a textured face is attacked as before


def test_the_runner_refuses_a_filled_face_and_attacks_a_textured_one(sample_dir: Path) -> None:
    import torch

    from attacks import MethodInfo, build_attack
    from redteam.attack_runner import NO_INFORMATION, AttackRunner
    from redteam.faces import FaceDetector

    pixels = load_image(next(iter(sorted(sample_dir.rglob("*.jpg"))))).pixels.copy()
    face = FaceDetector().detect(pixels)[0]
    filled = pixels.copy()
    x0, y0, x1, y1 = (int(v) for v in face.box)
    filled[y0:y1, x0:x1] = (40, 40, 40)
    runner, attack = AttackRunner(), build_attack("denoise")
    _, refused = runner.reconstruct(attack, MethodInfo("m", None), filled, [face], torch.Generator().manual_seed(0))
    assert refused[0].startswith(NO_INFORMATION) and "constant fill" in refused[0]
    out, refused = runner.reconstruct(attack, MethodInfo("m", None), pixels, [face], torch.Generator().manual_seed(0))
    assert refused == {} and out.shape == pixels.shape


def test_a_shrunk_window_comes_back_at_its_size_and_a_wrong_shape_is_refused(sample_dir: Path) -> None:
    """A face wider than the scale cap is attacked on a shrunk window, returned to the window's size (an
    attack that changes nothing gives the window back within the resampling's error, the pixels outside
    the window untouched); an attack that returns another shape than it was given costs that face, with
    the reason, and the image is then returned as it was."""
    import torch
    from PIL import Image

    from attacks import Attack, MethodInfo, ThreatTier
    from redteam.attack_runner import FAILED, SCALE_CAP, AttackRunner
    from redteam.core.geometry import attack_window
    from redteam.faces import FaceDetector

    photo = Image.fromarray(load_image(next(iter(sorted(sample_dir.rglob("*.jpg"))))).pixels)
    pixels = np.asarray(photo.resize((photo.width * 3, photo.height * 3), Image.Resampling.BICUBIC))
    face = FaceDetector().detect(pixels)[0]
    runner = AttackRunner(largest_chip=int(face.width / (4 * SCALE_CAP)))  # the face 4x the cap: shrunk
    given: list[tuple[int, ...]] = []

    class Identity(Attack):
        name = "identity"
        tier = ThreatTier.RECONSTRUCTION
        works_at_any_scale = True

        def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
            given.append(tuple(images.shape))
            return images

    class Cropping(Identity):
        def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
            return images[..., 1:, :]

    out, refused = runner.reconstruct(Identity(), MethodInfo("m", None), pixels, [face], torch.Generator().manual_seed(0))
    x0, y0, x1, y1 = attack_window(pixels.shape, face, None)
    assert refused == {} and out.shape == pixels.shape and out is not pixels
    assert given[0][-1] < (x1 - x0) / 3  # the attack saw the window shrunk
    inside = np.abs(out[y0:y1, x0:x1].astype(int) - pixels[y0:y1, x0:x1].astype(int))
    assert inside.mean() < 6.0  # down and back up: the window's detail above the shrunk size is lost, nothing else
    outside = out.copy()
    outside[y0:y1, x0:x1] = pixels[y0:y1, x0:x1]
    assert np.array_equal(outside, pixels)
    out, refused = runner.reconstruct(Cropping(), MethodInfo("m", None), pixels, [face], torch.Generator().manual_seed(0))
    assert refused[0].startswith(FAILED) and "returned shape" in refused[0]
    assert out is pixels
