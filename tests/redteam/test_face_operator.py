"""Each face of an identified folder gets the operator that anonymized it: its region from the difference
and its strength fitted on it, where a tool set the strength per face (one spec cannot say it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from redteam.anonymizers import build_method
from redteam.core.config import AuditConfig, MethodSource
from redteam.core.geometry import FaceGeometry
from redteam.engine import AuditRun
from redteam.engine.face_operator import FaceOperator, fit_face_operators, read_operators
from redteam.engine.identify import Pair, identify
from redteam.faces import FaceDetector
from redteam.images import load_image

#: The tool below: PIL's GaussianBlur on the face box grown by GROW per side, with a radius an editor chose
#: per face (RADII in turn, in pixels): one spec cannot say both.
RADII, GROW = (2.5, 6.0), 0.22


def tool_region(face: FaceGeometry, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = face.box
    gx, gy = GROW * (x1 - x0), GROW * (y1 - y0)
    height, width = shape[:2]
    return max(0, int(x0 - gx)), max(0, int(y0 - gy)), min(width, int(x1 + gx)), min(height, int(y1 + gy))


def pil_tool(pixels: np.ndarray, faces: list[FaceGeometry]) -> tuple[np.ndarray, list[tuple[tuple[int, int, int, int], float]]]:
    """A newsroom's 10-line script: every face's region blurred in place with its own radius."""
    out = pixels.copy()
    truth = []
    for face in faces:
        x0, y0, x1, y1 = tool_region(face, pixels.shape)
        radius = RADII[(x0 + y0) % 2]
        crop = Image.fromarray(np.ascontiguousarray(out[y0:y1, x0:x1]))
        out[y0:y1, x0:x1] = np.asarray(crop.filter(ImageFilter.GaussianBlur(radius)))
        truth.append(((x0, y0, x1, y1), radius))
    return out, truth


@pytest.fixture(scope="module")
def originals(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample photos, every other one at 55% (faces of two sizes)."""
    folder = tmp_path_factory.mktemp("originals")
    for index, path in enumerate(sorted(sample_dir.rglob("*.jpg"))):
        image = Image.open(path).convert("RGB")
        if index % 2:
            image = image.resize((round(image.width * 0.55), round(image.height * 0.55)), Image.Resampling.LANCZOS)
        target = folder / path.relative_to(sample_dir).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target)
    return folder


@pytest.fixture(scope="module")
def published(originals: Path) -> list[tuple[str, np.ndarray, np.ndarray, tuple[FaceGeometry, ...], list]]:
    detector = FaceDetector()
    found = []
    for path in sorted(originals.rglob("*.png")):
        pixels = load_image(path).pixels
        faces = tuple(detector.detect(pixels))
        anonymized, truth = pil_tool(pixels, list(faces))
        found.append((str(path.relative_to(originals)), pixels, anonymized, faces, truth))
    return found


def test_each_face_gets_its_own_strength_and_the_region_the_tool_drew(published) -> None:
    spec = identify([Pair(name, o, a, f) for name, o, a, f, _ in published]).spec
    assert spec is not None and spec.startswith("pil_gaussian_blur")
    method = build_method(spec)
    radii = []
    for _, original, anonymized, faces, truth in published:
        for operator, (region, radius) in zip(fit_face_operators(method, original, anonymized, faces), truth, strict=True):
            assert operator is not None
            stage = operator.method.stages[0]
            fraction = float(stage.values["fraction"])  # a strength relative to the region's width, or 0: radius in pixels
            fitted = fraction * (operator.region[2] - operator.region[0]) if fraction else stage.values["radius"]
            assert fitted == pytest.approx(radius, rel=0.10), (operator.method.spec, radius)
            ix0, iy0 = max(region[0], operator.region[0]), max(region[1], operator.region[1])
            ix1, iy1 = min(region[2], operator.region[2]), min(region[3], operator.region[3])
            inter = max(0, ix1 - ix0) * max(0, iy1 - iy0)
            ox0, oy0, ox1, oy1 = operator.region
            union = (region[2] - region[0]) * (region[3] - region[1]) + (ox1 - ox0) * (oy1 - oy0) - inter
            assert inter / union >= 0.8  # the region the tool drew, not the spec's margin around our detector's box
            radii.append(radius)
    assert max(radii) / min(radii) > 1.5  # the faces really had different strengths


def test_a_folder_spec_that_explains_the_face_is_kept(published) -> None:
    """A tool with one strength for every face (our own gaussian_blur) leaves the folder's spec in place
    wherever it explains the face at least as well as the face's own fit."""
    method = build_method("gaussian_blur:sigma=4,margin=0.3")
    _, original, _, faces, _ = published[0]
    import torch

    anonymized = method.apply(original, list(faces), torch.Generator().manual_seed(0))
    operators = fit_face_operators(method, original, anonymized, faces)
    for operator in operators:
        assert operator is not None and operator.residual <= 1.0
        sigma = operator.method.stages[0].values["sigma"]
        assert sigma == pytest.approx(4.0, rel=0.05)


def test_a_whole_image_operator_and_a_foreign_pipeline_keep_the_spec(published) -> None:
    _, original, anonymized, faces, _ = published[0]
    for spec in ("gaussian_blur:sigma=3,region=image", "gaussian_blur:sigma=3 | noise:sigma=0.02"):
        assert fit_face_operators(build_method(spec), original, anonymized, faces) == [None] * len(faces)


def test_cached_operators_round_trip_and_damaged_entries_are_refitted(published) -> None:
    _, original, anonymized, faces, _ = published[0]
    operators = fit_face_operators(build_method("pil_gaussian_blur:context=0,fraction=0.05,margin=0.2"), original, anonymized, faces)
    entry = json.loads(json.dumps([op.to_json() if op is not None else None for op in operators]))
    again = read_operators(entry, len(faces))
    assert again is not None and [op.to_json() for op in again if op] == [op.to_json() for op in operators if op]
    assert read_operators(entry, len(faces) + 1) is None
    assert read_operators([{"spec": "no_such_method:x=1", "region": [0, 0, 1, 1], "residual": 0, "source": "face"}] * len(faces), len(faces)) is None
    assert FaceOperator.from_json({"spec": "box", "region": [1, 2], "residual": 0, "source": "face"}) is None


@pytest.mark.slow
def test_the_audit_attacks_each_face_with_its_own_operator(originals: Path, published, tmp_path: Path) -> None:
    """End to end: an observed folder of the per-face tool is identified, every audited face gets its own
    operator (listed in summary.json), and Richardson-Lucy with those operators restores the faces closer to
    the originals (PSNR of the face crop) than with the folder's one spec."""
    folder = tmp_path / "tool"
    for rel, _, anonymized, _, _ in published:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(anonymized).save(folder / rel)
    from reports.json_summary import write_summary

    psnr: dict[bool, float] = {}
    for per_face in (True, False):
        config = AuditConfig(
            originals=originals,
            out=tmp_path / f"report-{per_face}",
            methods=(MethodSource("tool", "observed", folder=folder),),
            cache_dir=tmp_path / f"cache-{per_face}",
            recognizers=("dlib",),
            attacks=("none", "richardson_lucy"),
            builtin_policy="demo_policy.toml",
        )
        if per_face:
            result = AuditRun(config).run()
            summary = json.loads(write_summary(result, tmp_path / "report").read_text())
            operators = summary["method_specs"]["tool"]["face_operators"]
            assert summary["method_specs"]["tool"]["spec_origin"] == "identified"
            assert set(operators) == {f.face_id for f in result.faces}
            assert all(op["spec"].startswith("pil_gaussian_blur") for op in operators.values())
        else:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("redteam.engine.face_operator.fit_face_operators", lambda method, o, a, faces: [None] * len(faces))
                result = AuditRun(config).run()
            assert not result.face_operators
        psnr[per_face] = float(np.mean([dict(row.quality)["psnr"] for row in result.rows if row.attack == "richardson_lucy" and row.recognizer == "dlib"]))
    assert psnr[True] > psnr[False] + 0.5, psnr
