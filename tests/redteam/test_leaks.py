"""The leak rule (issue 22): a published face the redaction left unchanged, or that a recognizer verifies as
published far below its threshold, FAILs its method at any sample size; and every file an observed folder
publishes is audited for leaks, not only the counterpart of each original."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from redteam.engine.leaks import LEAK_DISTANCE_FRACTION, UNCHANGED_PSNR_DB, leak_evidence
from tests.redteam.test_fail_closed import anonymize_folder, audit, only_method, policy, summary

#: Would PASS a clean box on the 5 sample faces (min_samples 1), and is INCONCLUSIVE below 30 faces otherwise.
LENIENT = "min_samples = 1\nrequired_tiers = ['naive']\n[limits.naive]\nverify = 0.5\n"
STRICT_SAMPLES = "min_samples = 30\nrequired_tiers = ['naive']\n[limits.naive]\nverify = 0.5\n"


def test_the_rule_names_what_it_found() -> None:
    assert leak_evidence(None, [("dlib", 0.29, 0.6)]) and not leak_evidence(None, [("dlib", 0.31, 0.6)])
    assert LEAK_DISTANCE_FRACTION == 0.5
    assert "unchanged" in leak_evidence(UNCHANGED_PSNR_DB, [])[0] and not leak_evidence(UNCHANGED_PSNR_DB - 0.1, [])
    assert leak_evidence(float("inf"), [])  # identical pixels
    assert not leak_evidence(None, [("dlib", 0.01, 0.6)], blank=True)  # a blank chip proves nothing by distance


def test_an_unredacted_face_fails_the_method_at_any_sample_size(sample_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    """The user's detector boxed a wrestler's chest: one face is published unchanged among boxed ones. Five
    faces are too few to judge the rates (min_samples 30), but a published face is a published face."""
    originals = tmp_path / "originals"
    shutil.copytree(sample_dir, originals)
    leaked = "barack_obama/obama2.jpg"
    folder = anonymize_folder(originals, tmp_path / "tool", {}, "box:margin=0.5")
    Image.open(originals / leaked).convert("RGB").save(folder / Path(leaked).with_suffix(".png"))  # not redacted at all
    done = audit(originals, tmp_path / "out", cache_dir, "--anonymized", f"tool={folder}", "--attack", "none", "--policy", policy(tmp_path, STRICT_SAMPLES))
    assert done.returncode == 1, done.stderr
    report = summary(tmp_path / "out")
    assert only_method(tmp_path / "out")["verdict"] == "FAIL"
    (leak,) = report["leaks"]
    assert leak["image"] == leaked and leak["published"] == "tool:barack_obama/obama2.png"
    assert any(e.startswith("unchanged") for e in leak["evidence"]) and any("verified by dlib" in e for e in leak["evidence"])
    assert report["decision"]["deciding"][0].startswith(f"LEAK tool: face {leaked}#0")
    assert only_method(tmp_path / "out")["reasons"][0].startswith("leak: ")
    assert "LEAK" in done.stdout


def test_unredacted_files_beside_redacted_ones_are_leaks(sample_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    """(a) x.jpg is boxed and x.png beside it is the unredacted photo; (b) an original and its byte-identical
    copy, whose counterpart is unredacted. Both once PASSed a lenient policy (exit 0)."""
    originals = tmp_path / "originals"
    shutil.copytree(sample_dir, originals)
    shutil.copy(originals / "joe_biden" / "biden.jpg", originals / "joe_biden" / "biden_copy.jpg")
    folder = tmp_path / "tool"
    anonymize_folder(originals, folder, {}, "box:margin=0.5")
    for boxed in sorted(folder.rglob("*.png")):
        if boxed.stem != "biden_copy":
            Image.open(boxed).save(boxed.with_suffix(".jpg"), quality=95)  # the audited counterpart: x.jpg, boxed
            boxed.unlink()
    beside = "barack_obama/obama.png"
    shutil.copy(originals / "barack_obama" / "obama.jpg", folder / "barack_obama" / "obama.png")
    Image.open(originals / "joe_biden" / "biden.jpg").convert("RGB").save(folder / "joe_biden" / "biden_copy.png")  # the copy's counterpart: unredacted
    done = audit(originals, tmp_path / "out", cache_dir, "--anonymized", f"tool={folder}", "--attack", "none", "--policy", policy(tmp_path, LENIENT))
    assert done.returncode == 1, done.stderr
    report = summary(tmp_path / "out")
    assert only_method(tmp_path / "out")["verdict"] == "FAIL"
    published = {leak["published"]: leak for leak in report["leaks"]}
    assert set(published) == {f"tool:{beside}", "tool:joe_biden/biden_copy.png"}
    assert published[f"tool:{beside}"]["face_id"] == "barack_obama/obama.jpg#0"
    assert published["tool:joe_biden/biden_copy.png"]["face_id"] == "joe_biden/biden.jpg#0"
    extra = [i for i in report["input_issues"]["items"] if i["kind"] == "extra_file"]
    assert {i["path"] for i in extra} == {f"tool:{beside}", "tool:joe_biden/biden_copy.png"}
    assert not [i for i in report["input_issues"]["items"] if i["kind"] == "no_original"]


def test_a_redacted_extra_file_is_audited_and_is_no_leak(sample_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    originals = tmp_path / "originals"
    shutil.copytree(sample_dir, originals)
    folder = anonymize_folder(originals, tmp_path / "tool", {}, "box:margin=0.5")
    shutil.copy(folder / "barack_obama" / "obama.png", folder / "barack_obama" / "obama_small.png")  # another boxed version
    done = audit(originals, tmp_path / "out", cache_dir, "--anonymized", f"tool={folder}", "--attack", "none", "--policy", policy(tmp_path, LENIENT))
    report = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert report["leaks"] == []
    (extra,) = [i for i in report["input_issues"]["items"] if i["kind"] == "extra_file"]
    assert extra["path"] == "tool:barack_obama/obama_small.png" and "none found" in extra["detail"]
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("fraction", [LEAK_DISTANCE_FRACTION])
def test_the_readme_states_the_rule(fraction: float) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "### The leak rule" in readme
    assert f"{fraction} x" in readme.split("### The leak rule")[1][:2000] and f"{UNCHANGED_PSNR_DB:.0f} dB" in readme.split("### The leak rule")[1][:2000]
