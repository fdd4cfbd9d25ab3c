"""Operator identification for observed folders: the family and its parameters are recovered from
(original, anonymized) pairs, and an audit of an observed folder then runs the parrot and adaptive tiers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from redteam.anonymizers import build_method
from redteam.core.config import AuditConfig, MethodSource
from redteam.engine import AuditRun
from redteam.engine.identify import MAX_RESIDUAL, Pair, identify
from redteam.faces import FaceDetector
from redteam.images import load_image


@pytest.fixture(scope="module")
def faces(sample_dir: Path) -> list[tuple[str, np.ndarray, tuple]]:
    detector = FaceDetector()
    return [(p.name, load_image(p).pixels, tuple(detector.detect(load_image(p).pixels))) for p in sorted(sample_dir.rglob("*.jpg"))]


def pairs_for(spec: str, faces) -> list[Pair]:
    method = build_method(spec)
    return [Pair(name, pixels, method.apply(pixels, list(found), torch.Generator().manual_seed(3)), found) for name, pixels, found in faces]


def parameter(spec: str, name: str) -> float:
    return float(re.search(rf"{name}=([0-9.]+)", spec).group(1))  # type: ignore[union-attr]


@pytest.mark.parametrize("sigma", [1.7, 7.5])
def test_gaussian_sigma_within_ten_percent(faces, sigma: float) -> None:
    found = identify(pairs_for(f"gaussian_blur:sigma={sigma}", faces))
    assert found.identified and found.spec.startswith("gaussian_blur")
    assert parameter(found.spec, "sigma") == pytest.approx(sigma, rel=0.10)
    assert len(found.faces) == 5 and max(f.residual for f in found.faces) <= MAX_RESIDUAL


@pytest.mark.parametrize("spec, pitch", [("mosaic:block=11", 11.0), ("pixelate:pitch=13.3", 13.3)])
def test_mosaic_pitch_within_two_percent(faces, spec: str, pitch: float) -> None:
    found = identify(pairs_for(spec, faces))
    assert found.identified and found.spec.split(":")[0] == spec.split(":")[0]
    fitted = parameter(found.spec, "block" if spec.startswith("mosaic") else "pitch")
    assert fitted == pytest.approx(pitch, rel=0.02)


@pytest.mark.parametrize("quality", [25, 70])
def test_jpeg_quality_within_ten(faces, quality: int) -> None:
    found = identify(pairs_for(f"jpeg:quality={quality}", faces))
    assert found.identified and found.spec.startswith("jpeg")
    fitted = parameter(found.spec, "quality") if "quality=" in found.spec else 30.0  # 30 is the default
    assert abs(fitted - quality) <= 10


@pytest.mark.slow
def test_fill_noise_region_and_a_pipeline(faces) -> None:
    fill = identify(pairs_for("box:color=white,margin=0.3", faces))
    assert fill.identified and fill.spec == "box:color=white,margin=0.3"
    noise = identify(pairs_for("noise:sigma=0.06", faces))
    assert noise.identified and parameter(noise.spec, "sigma") == pytest.approx(0.06, rel=0.1)
    ellipse = identify(pairs_for("gaussian_blur:sigma=3,margin=0.4,shape=ellipse", faces))
    assert "shape=ellipse" in ellipse.spec and parameter(ellipse.spec, "margin") == pytest.approx(0.4, abs=0.06)
    piped = identify(pairs_for("mosaic:block=10 | jpeg:quality=70", faces))
    assert piped.identified and piped.spec.startswith("mosaic:block=10 | jpeg")


@pytest.mark.slow
def test_an_unknown_operator_is_not_identified(faces) -> None:
    inverted = [Pair(name, pixels, 255 - pixels, found) for name, pixels, found in faces]  # a negative: no family
    found = identify(inverted)
    assert not found.identified and found.residual > MAX_RESIDUAL and "not identified" in found.reason
    blur, box = build_method("gaussian_blur:sigma=4"), build_method("box")
    mixed = [Pair(name, pixels, (blur if i < 2 else box).apply(pixels, list(f)), f) for i, (name, pixels, f) in enumerate(faces)]
    found = identify(mixed)  # a tool that boxes some faces and blurs others is not one operator
    assert not found.identified and max(f.residual for f in found.faces) > 2 * MAX_RESIDUAL


def write_folder(sample_dir: Path, target: Path, transform) -> Path:
    detector = FaceDetector()
    for path in sorted(sample_dir.rglob("*.jpg")):
        image = load_image(path)
        out = target / path.relative_to(sample_dir).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(transform(image.pixels, detector.detect(image.pixels))).save(out)
    return target


@pytest.mark.slow
def test_an_observed_folder_gets_the_parrot_and_adaptive_tiers(sample_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    blur = build_method("gaussian_blur:sigma=3,margin=0.3")
    folder = write_folder(sample_dir, tmp_path / "tool", lambda pixels, found: blur.apply(pixels, found))
    negative = write_folder(sample_dir, tmp_path / "negative", lambda pixels, found: 255 - pixels)
    config = AuditConfig(
        originals=sample_dir,
        out=tmp_path / "report",
        methods=(MethodSource("tool", "observed", folder=folder), MethodSource("negative", "observed", folder=negative)),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        attacks=("none", "parrot", "wiener"),
        builtin_policy="demo_policy.toml",
    )
    result = AuditRun(config).run()
    tool, other = result.methods
    assert tool.spec_origin == "identified" and tool.spec.startswith("gaussian_blur")
    fitted_sigma = float(tool.spec.split("sigma=")[1].split(",")[0])
    assert fitted_sigma == pytest.approx(3.0, rel=0.05)  # the true sigma, within the fit's 5%
    assert result.identifications["tool"].identified and not result.identifications["negative"].identified
    tiers = {(row.method, row.tier) for row in result.rows}
    assert {("tool", "naive"), ("tool", "parrot"), ("tool", "adaptive")} <= tiers
    assert ("negative", "parrot") in tiers and ("negative", "adaptive") not in tiers  # parrot on its own files
    parrot = [row for row in result.rows if row.method == "negative" and row.attack == "parrot"]
    assert {row.gallery_size for row in parrot} == {5} and sum(row.rank1_other is not None for row in parrot) == 3
    import json

    from reports.json_summary import write_summary

    summary = json.loads(write_summary(result, tmp_path / "report").read_text())
    assert summary["method_specs"]["tool"]["spec_origin"] == "identified"
    assert summary["method_specs"]["tool"]["identification"]["residual"] <= MAX_RESIDUAL


def test_a_fit_is_cached_by_its_pairs_and_code(sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-run reuses the fit made on the same pairs by the same code, exactly (every float as it was);
    a damaged entry is fitted again (with a log line), and so is a folder whose files changed. (The fit
    itself is replaced by a fixed one here: the tests above check what it finds.)"""
    import json

    import redteam.engine.methods
    from redteam.core.results import FaceFit, Identification

    blur = build_method("gaussian_blur:sigma=3,margin=0.3")
    folder = write_folder(sample_dir, tmp_path / "tool", lambda pixels, found: blur.apply(pixels, found))
    fits: list[list[Pair]] = []
    fitted = Identification(
        "gaussian_blur:sigma=3.0,margin=0.3", 0.1 + 0.2, True, (FaceFit("a.jpg", 0, 1 / 3),), (("gaussian_blur:sigma=3.0,margin=0.3", 0.1 + 0.2),), "fitted"
    )
    monkeypatch.setattr(redteam.engine.methods, "identify", lambda pairs: fits.append(list(pairs)) or fitted)
    cache = tmp_path / "cache"

    def run() -> tuple[Identification, list[str]]:
        lines: list[str] = []
        config = AuditConfig(
            originals=sample_dir,
            out=tmp_path / "report",
            methods=(MethodSource("tool", "observed", folder=folder),),
            cache_dir=cache,
            recognizers=("dlib",),
            attacks=("none",),
            builtin_policy="demo_policy.toml",
        )
        return AuditRun(config, log=lines.append).run().identifications["tool"], lines

    first, _ = run()
    second, _ = run()
    assert len(fits) == 1 and fits[0] and all(p.original.shape == p.anonymized.shape for p in fits[0])  # decoded pairs, fitted once
    assert first == second == fitted  # reused exactly
    entries = sorted((cache / "identifications").rglob("*.json"))
    assert len(entries) == 1
    entries[0].write_text(json.dumps({"spec": 3, "faces": "x"}))
    third, lines = run()
    assert third == fitted and len(fits) == 2 and any("cached identification" in line and "malformed" in line for line in lines)
    changed = next(iter(sorted(folder.rglob("*.png"))))
    Image.fromarray(255 - load_image(changed).pixels).save(changed)
    run()
    assert len(fits) == 3  # other pixels: fitted again


@pytest.mark.parametrize("module", ["redteam/core/geometry.py", "redteam/anonymizers/blur.py", "redteam/engine/identify.py"])
def test_the_fit_cache_key_changes_with_the_code_a_fit_replays(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A change in the geometry, an anonymizer or the fitting code makes cached identifications stale."""
    from redteam.engine.identify import code_fingerprint

    code_fingerprint.cache_clear()
    before = code_fingerprint()
    read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda path: read_bytes(path) + (b"# changed" if path.as_posix().endswith(module) else b""))
    code_fingerprint.cache_clear()
    try:
        assert code_fingerprint() != before
    finally:
        monkeypatch.undo()
        code_fingerprint.cache_clear()
    assert code_fingerprint() == before


def test_a_fit_that_breaks_leaves_the_folder_unknown_and_the_audit_running(sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception inside the operator fit (a bug, an odd image) costs the folder its identification, not
    the run: the folder stays unknown (no adaptive tier on a guess), the reason names the error, and the
    broken fit is not cached."""
    import redteam.engine.methods

    def broken(pairs: list[Pair]) -> None:
        raise ValueError("Size of label 'x' for operand 1 (359) does not match previous terms (360).")

    blur = build_method("gaussian_blur:sigma=3,margin=0.3")
    folder = write_folder(sample_dir, tmp_path / "tool", lambda pixels, found: blur.apply(pixels, found))
    monkeypatch.setattr(redteam.engine.methods, "identify", broken)
    config = AuditConfig(
        originals=sample_dir,
        out=tmp_path / "report",
        methods=(MethodSource("tool", "observed", folder=folder),),
        cache_dir=tmp_path / "cache",
        recognizers=("dlib",),
        attacks=("none", "wiener"),
        builtin_policy="demo_policy.toml",
    )
    result = AuditRun(config).run()
    found = result.identifications["tool"]
    assert not found.identified and "the operator fit failed (ValueError" in found.reason
    assert result.methods[0].spec is None and not (tmp_path / "cache" / "identifications").exists()
    assert {row.attack for row in result.rows} == {"none"}  # wiener needs the operator: not run on a guess


@pytest.mark.slow
def test_a_plugin_method_that_declares_its_fit_space_is_identified(faces, monkeypatch: pytest.MonkeyPatch) -> None:
    """Identification asks the registry: a method it has never heard of (a plugin's posterization, with no
    line of identification code for it) is identified from its output, parameters included, because it
    declares its fit space; it is not once it declares none."""
    from redteam.anonymizers import METHODS
    from redteam.anonymizers.base import Anonymizer, FitAxis, FitSpace, FitVariant
    from redteam.core.params import Parameter

    class Posterize(Anonymizer):
        """A plugin's posterization: each channel of the region quantized to `levels` values.

        References:
            A newsroom plugin (test only).
        """

        name = "posterize_plugin"
        reference = "test plugin"
        parameters = (Parameter("levels", int, 4, "grey levels per channel", 2, 64),)
        fit_space = FitSpace((FitVariant({}, (FitAxis("levels", 2, 32, "int"),)),), evidence=frozenset({"any"}))

        def transform(self, window, region, face, image, generator):
            levels = int(self.values["levels"])
            return np.round(window * (levels - 1)) / (levels - 1)

    monkeypatch.setitem(METHODS, Posterize.name, Posterize)
    found = identify(pairs_for("posterize_plugin:levels=5,margin=0.25", faces))
    assert found.identified and found.spec is not None and found.spec.startswith("posterize_plugin:"), found.reason
    assert "levels=5" in found.spec
    monkeypatch.setattr(Posterize, "fit_space", None)
    assert not (identify(pairs_for("posterize_plugin:levels=5,margin=0.25", faces)).spec or "").startswith("posterize_plugin")
