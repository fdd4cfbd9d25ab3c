"""End-to-end audits through the library API on the bundled sample (dlib, offline)."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attacks import Attack, AttackNotApplicable, ThreatTier
from redteam.anonymizers import build_method
from redteam.core.config import AuditConfig, MethodSource
from redteam.core.errors import ConfigError, InputError, UsageError
from redteam.engine import AuditRun
from redteam.faces import FaceDetector
from redteam.images import load_image
from reports.table import reproducible_columns, results_frame


def make_observed(originals, target, spec="gaussian_blur:sigma=2"):
    """Anonymize every original the way a user's redaction tool would, into a mirrored folder."""
    method, detector = build_method(spec), FaceDetector()
    for path in sorted(originals.rglob("*.jpg")):
        image = load_image(path)
        out = target / path.relative_to(originals).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(method.apply(image.pixels, detector.detect(image.pixels))).save(out)
    return target


def config(originals, tmp_path, cache_dir, **overrides):
    values = dict(
        originals=originals,
        out=tmp_path / "report",
        methods=(MethodSource("blur", "reference", spec="gaussian_blur:sigma=2"),),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        attacks=("none", "parrot"),  # the quick tiers; the default (auto) is tested on its own
    )
    values.update(overrides)
    return AuditConfig(**values)


def test_every_input_problem_is_counted_not_dropped(originals, tmp_path, cache_dir):
    observed = make_observed(originals, tmp_path / "observed")
    # Originals: a truncated file, a faceless image, a stray text file, a group photo of two people.
    cut = originals / "barack_obama" / "cut.jpg"
    cut.write_bytes((originals / "barack_obama" / "obama.jpg").read_bytes()[:2000])
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(originals / "wall.png")
    (originals / "notes.txt").write_text("not an image")
    (originals / "interview.MP4").write_bytes(b"\x00\x00\x00\x18ftypmp42")  # a video among the photos
    left = Image.open(originals / "barack_obama" / "obama2.jpg").convert("RGB")
    right = Image.open(originals / "joe_biden" / "biden.jpg").convert("RGB").resize((left.width, left.height))
    group = Image.new("RGB", (left.width * 2, left.height))
    group.paste(left, (0, 0))
    group.paste(right, (left.width, 0))
    group.save(originals / "group.jpg")
    # Anonymized: one missing, one unreadable, one of another aspect ratio, one at half size.
    (observed / "barack_obama" / "obama3.png").unlink()
    (observed / "joe_biden" / "biden.png").write_text("garbage")
    Image.open(observed / "barack_obama" / "obama.png").crop((0, 0, 300, 300)).save(observed / "barack_obama" / "obama.png")
    half = Image.open(observed / "barack_obama" / "obama2.png")
    half.resize((half.width // 2, half.height // 2)).save(observed / "barack_obama" / "obama2.png")
    Image.fromarray(build_method("gaussian_blur:sigma=2").apply(np.asarray(group), FaceDetector().detect(np.asarray(group)))).save(observed / "group.png")

    result = AuditRun(config(originals, tmp_path, cache_dir, methods=(MethodSource("observed", "observed", folder=observed),))).run()
    kinds = Counter(issue.kind for issue in result.issues)
    assert kinds == Counter(
        {
            "unreadable": 2,
            "no_face": 1,
            "unsupported_file": 2,
            "multi_face": 1,
            "unlabelled_face": 1,
            "missing_counterpart": 1,
            "size_mismatch": 1,
            "resized": 1,
            "near_duplicate": 1,
        }
    )
    by_path = {(i.kind, i.path) for i in result.issues}
    assert ("unreadable", "barack_obama/cut.jpg") in by_path and ("no_face", "wall.png") in by_path
    (video,) = [i for i in result.issues if i.path == "interview.MP4"]
    assert video.kind == "unsupported_file" and "redteam audit-video" in video.fix
    (twins,) = [i for i in result.issues if i.kind == "near_duplicate"]  # the group photo's left face is obama2.jpg
    assert "group.jpg#0" in twins.detail and "obama2.jpg#0" in twins.detail
    group_faces = [f for f in result.faces if f.image == "group.jpg"]
    # The left face's box has more than twice the area of the right one's: it is the photo's named person
    # (here the file's own name, a flat file); the other face is nobody, listed as unlabelled.
    assert len(group_faces) == 2 and [f.identity for f in group_faces] == ["group", None]
    audited = {row.image for row in result.rows}
    assert audited == {"group.jpg", "barack_obama/obama2.jpg", "eileen_collins/astronaut.jpg"}
    assert {row.attack for row in result.rows} == {"none", "parrot"}  # parrot: the folder's own anonymized files
    assert result.skipped_attacks == ()


def test_same_audit_twice_gives_identical_tables_and_reuses_original_embeddings(originals, tmp_path, cache_dir):
    cache = tmp_path / "fresh_cache"
    methods = (
        MethodSource("blur", "reference", spec="gaussian_blur:sigma=2"),
        MethodSource("mosaic", "reference", spec="mosaic:block=12"),
    )
    first = AuditRun(config(originals, tmp_path, cache, methods=methods)).run()
    logs = []
    second = AuditRun(config(originals, tmp_path, cache, methods=methods), log=logs.append).run()
    pd.testing.assert_frame_equal(reproducible_columns(results_frame(first)), reproducible_columns(results_frame(second)))
    assert (results_frame(first)["attack_seconds"] >= 0).all()  # the compute cost of every reconstruction is in the table
    assert first.cache_stats["dlib_original_embeddings_computed"] == 5
    assert second.cache_stats["dlib_original_embeddings_reused"] == 5
    assert second.cache_stats["dlib_original_embeddings_computed"] == 0
    assert any("reused from cache 5, computed 0" in line for line in logs)
    people = [face.identity for face in first.faces]
    unrelated = sum(a != b for i, a in enumerate(people) for b in people[i + 1 :])
    assert len(first.impostor_distances["dlib"]) == unrelated > 0  # the report's baseline: every pair of different people
    assert min(first.impostor_distances["dlib"]) > 0.0
    uncached = AuditRun(config(originals, tmp_path, tmp_path / "other_cache", methods=methods)).run()
    pd.testing.assert_frame_equal(reproducible_columns(results_frame(first)), reproducible_columns(results_frame(uncached)))


def test_results_table_has_one_row_per_face_method_attack_recognizer(originals, tmp_path, cache_dir):
    result = AuditRun(config(originals, tmp_path, cache_dir)).run()
    frame = results_frame(result)
    assert len(frame) == 5 * 1 * 2 * 1  # faces x methods x attacks (none, parrot) x recognizers
    naive = frame[frame["attack"] == "none"]
    assert naive["rank1"].all() and naive["verify"].all()  # sigma 2 on 160 px faces leaks identity
    parrot = frame[frame["attack"] == "parrot"]
    assert parrot["rank1"].isna().all() and parrot["verify"].isna().all()  # same photo is trivial there
    assert parrot["rank1_other"].notna().sum() == 3  # the three Obama photos have other photos
    assert naive["chance_rank1"].tolist() == pytest.approx([0.2] * 5)
    assert naive["ssim"].between(0, 1).all() and naive["anonymized_face_detected"].all()
    verdict = {v.method: v.verdict.value for v in result.method_verdicts}
    assert verdict == {"blur": "FAIL"}  # default policy: 5 faces < min_samples 30, but verify 5/5 is a clear FAIL


def test_fail_closed_when_no_recognizer_or_bad_requests(originals, tmp_path, cache_dir):
    nothing = AuditRun(config(originals, tmp_path, cache_dir, recognizers=("facenet",))).run()
    assert not nothing.rows and nothing.model_unavailable  # the CLI writes the reports and exits 4
    assert any("no face recognizer is available" in b for b in nothing.blockers)
    assert nothing.method_verdicts[0].verdict.value == "INCONCLUSIVE"
    with pytest.raises(ConfigError, match="unknown attack"):
        AuditRun(config(originals, tmp_path, cache_dir, attacks=("telepathy",))).run()
    with pytest.raises(UsageError, match="used twice"):
        AuditRun(config(originals, tmp_path, cache_dir, methods=(MethodSource("a", "reference", spec="box"),) * 2)).run()
    with pytest.raises(InputError, match="does not exist"):
        AuditRun(config(originals, tmp_path, cache_dir, methods=(MethodSource("a", "observed", folder=tmp_path / "x"),))).run()
    with pytest.raises(UsageError, match="no CUDA"):
        AuditRun(config(originals, tmp_path, cache_dir, device="cuda"))


def test_gallery_distractors_enlarge_the_gallery(originals, tmp_path, cache_dir, sample_dir, shared_faces):
    result = AuditRun(config(originals, tmp_path, cache_dir, gallery=shared_faces / "dev" / "identities" / "paul_rudd")).run()
    assert result.gallery_size == 6
    assert {row.gallery_size for row in result.rows} == {6}
    same_file = AuditRun(config(originals, tmp_path, cache_dir, gallery=sample_dir / "joe_biden")).run()
    assert same_file.gallery_size == 5  # a gallery file identical to an original is counted once
    assert [i.path for i in same_file.issues if i.kind == "duplicate"] == ["gallery:biden.jpg"]


def test_calibrated_threshold_is_used_and_reported(originals, tmp_path, cache_dir):
    import json

    from metrics.recognizers.dlib_resnet import DlibRecognizer

    calibration = tmp_path / "thresholds.json"
    calibration.write_text(
        json.dumps(
            {
                "recognizers": {
                    "dlib": {
                        "fingerprint": DlibRecognizer().fingerprint,
                        "distance": "euclidean",
                        "n_impostor": 5000,
                        "thresholds": {"0.001": {"threshold": 0.45, "reliable": True}},
                    }
                }
            }
        )
    )
    result = AuditRun(config(originals, tmp_path, cache_dir, calibration=calibration, attacks=("none",))).run()
    assert {row.threshold for row in result.rows} == {0.45}
    assert all(row.threshold_calibrated for row in result.rows)
    assert result.recognizers["dlib"]["threshold_far"] == 1e-3


@pytest.mark.slow
def test_attacks_auto_runs_what_applies_and_says_why_it_skipped_the_rest(originals, tmp_path, cache_dir):
    methods = (
        MethodSource("blur", "reference", spec="gaussian_blur:sigma=3"),
        MethodSource("mosaic", "reference", spec="mosaic:block=12"),
    )
    result = AuditRun(config(originals, tmp_path, cache_dir, methods=methods, attacks=("auto", "wiener|denoise"))).run()
    ran = {(row.method, row.attack, row.tier) for row in result.rows}
    assert ("mosaic", "bicubic", "reconstruction") in ran and ("mosaic", "lanczos", "reconstruction") in ran
    assert ("blur", "wiener", "adaptive") in ran and ("blur", "wiener|denoise", "adaptive") in ran
    skipped = {(s.method, s.attack): s.reason for s in result.skipped_attacks}
    assert "no blur stage" in skipped[("mosaic", "wiener")]
    assert "no mosaic, pixelate or downsampling stage" in skipped[("blur", "bicubic")]
    assert set(result.attack_seconds["blur"]) >= {"none", "wiener", "tv_deconv"}
    verdict_tiers = {(v.method, v.tier) for v in result.metric_verdicts}
    assert ("blur", "adaptive") in verdict_tiers and ("mosaic", "reconstruction") in verdict_tiers
    # interpolation undoes part of the mosaic: it re-identifies at least as well as the naive tier
    frame = results_frame(result)
    mosaic = frame[frame["method"] == "mosaic"].groupby("attack")["distance"].mean()
    assert mosaic["lanczos"] < mosaic["none"]


def test_attack_models_and_compute_cost_are_recorded(sample_dir, tmp_path, cache_dir):
    """summary.json names the exact checkpoint (SHA-256) behind each model-backed attack, and every row
    carries the seconds its reconstruction took."""
    import json

    import torch
    from spandrel.architectures.ESRGAN import ESRGAN

    from redteam.core.provenance import sha256_file
    from reports.json_summary import write_summary

    checkpoint = tmp_path / "x2.pth"
    torch.manual_seed(0)
    torch.save(ESRGAN(num_filters=8, num_blocks=1, scale=2).state_dict(), checkpoint)
    sr = f"sr:checkpoint={checkpoint}"
    methods = (MethodSource("mosaic", "reference", spec="mosaic:block=12"),)
    result = AuditRun(config(sample_dir, tmp_path, cache_dir, methods=methods, attacks=("none", f"bicubic|{sr}"))).run()
    assert result.attack_models == {"mosaic": {f"bicubic|{sr}": {f"{sr}.checkpoint": str(checkpoint), f"{sr}.sha256": sha256_file(checkpoint)}}}
    summary = json.loads(write_summary(result, tmp_path / "report").read_text())
    from reports.markdown import write_markdown

    assert sha256_file(checkpoint) in write_markdown(result, tmp_path / "report").read_text()
    assert summary["attack_models"]["mosaic"][f"bicubic|{sr}"][f"{sr}.sha256"] == sha256_file(checkpoint)
    table = results_frame(result)
    chained = table[table["attack"] == f"bicubic|{sr}"]
    assert len(chained) == 5 and (chained["attack_seconds"] > 0).all()


class _Picky(Attack):
    """Refuses the faces of one image (as the blind grid estimate does when no grid shows)."""

    name = "picky"
    tier = ThreatTier.RECONSTRUCTION

    def reconstruct(self, images, *, method, generator):
        if method.face is not None and method.image_shape is not None and method.image_shape[:2] == (558, 558):
            raise AttackNotApplicable("no grid shows on this face")
        return images


def test_faces_an_attack_cannot_handle_have_no_result_and_block_pass(originals, tmp_path, cache_dir, monkeypatch):
    from attacks import ATTACKS

    monkeypatch.setitem(ATTACKS, "picky", _Picky)
    policy = tmp_path / "policy.toml"
    policy.write_text("min_samples = 1\nrequired_tiers = []\n[limits.default]\nverify = 0.9\n")
    methods = (MethodSource("box", "reference", spec="mosaic:block=48,margin=0.5"),)  # coarse cells: something to attack
    result = AuditRun(config(originals, tmp_path, cache_dir, methods=methods, attacks=("none", "picky"), policy=policy)).run()
    picky = [row for row in result.rows if row.attack == "picky"]
    assert len(picky) == 4 and "eileen_collins/astronaut.jpg" not in {row.image for row in picky}
    (verdict,) = result.method_verdicts
    assert verdict.verdict.value == "INCONCLUSIVE"
    assert any("'picky' with dlib has results for 4 of 5" in reason for reason in verdict.reasons)
    assert any("no grid shows on this face" in reason for reason in verdict.reasons)
    quick = AuditRun(config(originals, tmp_path, cache_dir, methods=methods, attacks=("none",), policy=policy)).run()
    assert quick.method_verdicts[0].verdict.value == "PASS"  # the same audit without the picky attack


class _Broken(Attack):
    """Crashes on the faces of one image (a bug in an attack, or a model failing on odd input)."""

    name = "broken"
    tier = ThreatTier.RECONSTRUCTION
    calls = 0

    def reconstruct(self, images, *, method, generator):
        if method.image_shape is not None and method.image_shape[:2] == (558, 558):
            type(self).calls += 1
            raise RuntimeError("kernel larger than the window")
        return images


def test_an_attack_that_crashes_on_a_face_costs_that_face_not_the_audit(originals, tmp_path, cache_dir, monkeypatch):
    from attacks import ATTACKS

    monkeypatch.setitem(ATTACKS, "broken", _Broken)
    policy = tmp_path / "policy.toml"
    policy.write_text("min_samples = 1\nrequired_tiers = []\n[limits.default]\nverify = 0.9\n")
    methods = (MethodSource("box", "reference", spec="mosaic:block=48,margin=0.5"),)  # coarse cells: something to attack
    result = AuditRun(config(originals, tmp_path, cache_dir, methods=methods, attacks=("none", "broken"), policy=policy)).run()
    (verdict,) = result.method_verdicts
    assert verdict.verdict.value == "INCONCLUSIVE" and len([row for row in result.rows if row.attack == "broken"]) == 4
    assert any("the attack failed: RuntimeError: kernel larger than the window" in reason for reason in verdict.reasons)
    calls = _Broken.calls
    AuditRun(config(originals, tmp_path, cache_dir, methods=methods, attacks=("none", "broken"), policy=policy)).run()
    assert _Broken.calls == 2 * calls  # a failure is not cached: the next run tries again


def test_a_required_attack_that_does_not_apply_blocks_pass(originals, tmp_path, cache_dir):
    policy = tmp_path / "policy.toml"
    policy.write_text("min_samples = 1\nrequired_tiers = []\nrequired_attacks = ['wiener']\n[limits.default]\nverify = 0.9\n")
    methods = (MethodSource("box", "reference", spec="box:margin=0.5"),)
    result = AuditRun(config(originals, tmp_path, cache_dir, methods=methods, attacks=("none", "wiener"), policy=policy)).run()
    (verdict,) = result.method_verdicts
    assert verdict.verdict.value == "INCONCLUSIVE" and not result.blockers
    assert any("policy requires attack 'wiener', which does not apply" in reason for reason in verdict.reasons)
    unselected = AuditRun(config(originals, tmp_path, cache_dir, methods=methods, attacks=("none",), policy=policy)).run()
    assert any("did not select: add --attack wiener" in reason for reason in unselected.method_verdicts[0].reasons)
