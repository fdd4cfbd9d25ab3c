"""The video audit end to end on clips the test makes (a pan of the bundled public-domain faces): a blur
that misses five frames FAILs with the exact interval, a tracked mosaic falls to the multi-frame attack at
least as often as to any single-frame one, and a complete blur leaks nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from redteam.core.results import Verdict
from redteam.video.run import VideoAudit, VideoAuditRun, VideoConfig
from tests.redteam.video.clips import encode, pan_clip, redact

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    clip = pan_clip()  # 640 x 360, 10 fps, 2 s, three faces
    encode(clip.frames, folder / "original.mp4", clip.fps)
    encode(redact(clip, "blur", missed=range(7, 12), strength=8), folder / "missed.mp4", clip.fps)
    encode(redact(clip, "blur", strength=8), folder / "blur.mp4", clip.fps)
    encode(redact(clip, "mosaic", strength=12), folder / "mosaic.mp4", clip.fps)
    return folder


@pytest.fixture(scope="module")
def config(videos: Path, tmp_path_factory: pytest.TempPathFactory) -> VideoConfig:
    return VideoConfig(
        original=videos / "original.mp4",
        redacted=(("missed", videos / "missed.mp4"), ("blur", videos / "blur.mp4"), ("mosaic", videos / "mosaic.mp4")),
        out=tmp_path_factory.mktemp("out") / "report",
        recognizers=("dlib",),
        attacks=("bicubic", "lanczos"),
        cache_dir=tmp_path_factory.mktemp("cache"),
    )


@pytest.fixture(scope="module")
def audit(config: VideoConfig) -> VideoAudit:
    return VideoAuditRun(config).run()


def verdict(audit: VideoAudit, method: str) -> Verdict:
    return next(v.verdict for v in audit.result.method_verdicts if v.method == method)


def test_three_faces_make_three_tracks_over_the_whole_clip(audit: VideoAudit) -> None:
    assert [(t.track_id, len(t.sightings)) for t in audit.tracks] == [("track-1", 20), ("track-2", 20), ("track-3", 20)]
    assert audit.frame_checks == {"missed": 60, "blur": 60, "mosaic": 60}


def test_missed_frames_fail_with_the_exact_interval(audit: VideoAudit) -> None:
    assert verdict(audit, "missed") is Verdict.FAIL
    intervals = [i for i in audit.leaked if i.method == "missed"]
    assert sorted(i.track for i in intervals) == ["track-1", "track-2", "track-3"]
    for interval in intervals:
        assert interval.frames == (7, 11)
        assert (interval.start, interval.end) == pytest.approx((0.7, 1.1))
    leaks = [leak for leak in audit.result.leaks if leak.method == "missed"]
    assert len(leaks) == 3 and all("0.70-1.10 s (frames 7-11)" in leak.published for leak in leaks)
    assert "missed" in audit.filmstrip and len(audit.filmstrip["missed"]) == 5


def test_a_complete_redaction_leaks_nothing(audit: VideoAudit) -> None:
    assert [i for i in audit.leaked if i.method in ("blur", "mosaic")] == []
    assert verdict(audit, "blur") is not Verdict.FAIL or all(leak.method != "blur" for leak in audit.result.leaks)


def test_the_multi_frame_attack_beats_single_frames_on_the_tracked_mosaic(audit: VideoAudit) -> None:
    rows = [r for r in audit.result.rows if r.method == "mosaic"]
    rates = {}
    for attack in {r.attack for r in rows}:
        mine = [r for r in rows if r.attack == attack]
        rates[attack] = sum(bool(r.verify) for r in mine) / len(mine)
    single = max(rate for attack, rate in rates.items() if attack in ("none", "bicubic", "lanczos"))
    assert rates["multiframe_sr"] >= single
    assert rates["multiframe_sr"] == 1.0  # all three tracks verified from 20 frames at 10 grid phases
    distances = {a: sum(r.distance for r in rows if r.attack == a) / sum(r.attack == a for r in rows) for a in rates}
    assert distances["multiframe_sr"] < min(d for a, d in distances.items() if a != "multiframe_sr")
    notes = audit.probes["mosaic"]["track-1"]["multiframe_sr"]
    assert notes["frames"] == 20 and "block 12 px" in notes["note"]
    estimates = [v.estimate for v in audit.result.metric_verdicts if v.method == "mosaic" and v.attack == "multiframe_sr" and v.metric == "verify"]
    assert estimates and estimates[0].trials == 3 and estimates[0].low > 0.4


def test_rates_count_tracks_not_frames(audit: VideoAudit) -> None:
    assert max(v.estimate.trials for v in audit.result.metric_verdicts) == 3  # 3 tracks, 20 frames each
    naive = [v for v in audit.result.metric_verdicts if v.attack == "none"]
    assert len(naive) == 6 and all(v.estimate.trials == 3 for v in naive)
    assert {v.metric for v in audit.result.metric_verdicts} == {"verify", "rank1"}  # rank1_other: a track has no other photo


def test_a_strided_check_cannot_pass(config: VideoConfig, audit: VideoAudit) -> None:
    strided = VideoAuditRun(replace(config, redacted=config.redacted[1:2], stride=2, attacks=("none",))).run()
    (method,) = strided.result.method_verdicts
    assert method.verdict is not Verdict.PASS
    assert any("--stride 2" in reason for reason in method.reasons)
    assert strided.frame_checks == {"blur": 30}


@pytest.mark.slow
def test_the_command_writes_every_report_and_exits_1_on_a_leak(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    command = [sys.executable, "-m", "redteam", "audit-video", str(videos / "original.mp4"), "-a", f"missed={videos / 'missed.mp4'}"]
    command += ["--recognizer", "dlib", "--attack", "none", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1, done.stderr
    assert "LEAK missed: face track-1 is published by missed.mp4 at 0.70-1.10 s (frames 7-11)" in done.stdout + done.stderr
    names = {p.name for p in out.iterdir()}
    assert {"summary.json", "report.md", "report.html", "report.junit.xml", "report.sarif", "results.parquet", "video.json"} <= names
    assert any(name.startswith("filmstrip-missed-") for name in names)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"] == "FAIL"
    video = json.loads((out / "video.json").read_text())
    assert [(i["track"], i["first_frame"], i["last_frame"]) for i in video["leaked_intervals"]] == [(f"track-{n}", 7, 11) for n in (1, 2, 3)]
    junit = (out / "report.junit.xml").read_text()
    assert "0.70-1.10 s" in junit and "0.70-1.10 s" in (out / "report.sarif").read_text()


def test_gallery_faces_join_the_tracks_as_distractors(config: VideoConfig, sample_dir: Path) -> None:
    with_gallery = VideoAuditRun(replace(config, redacted=config.redacted[1:2], attacks=("none",), gallery=sample_dir)).run()
    rows = with_gallery.result.rows
    assert rows and all(row.gallery_pool == 3 + 5 for row in rows)  # three tracks and the sample's five faces
    assert all(row.chance_rank1 == pytest.approx(1 / 8) for row in rows)
    assert with_gallery.result.gallery_size == 8


def test_a_re_run_reuses_the_cached_attacks_and_gives_the_same_rows(config: VideoConfig, audit: VideoAudit) -> None:
    stored = sorted(p.name for p in Path(str(config.cache_dir)).rglob("*") if p.is_file() and "video_attacks" in p.as_posix())
    assert stored  # the per-frame attacks' windows
    again = VideoAuditRun(config).run()

    def key(rows: tuple) -> list[tuple]:
        return [(r.method, r.face_id, r.attack, r.recognizer, r.distance, r.verify, r.rank) for r in rows]  # LPIPS: see conftest's TORCH_HOME per test

    assert key(again.result.rows) == key(audit.result.rows)
    assert sorted(p.name for p in Path(str(config.cache_dir)).rglob("*") if p.is_file() and "video_attacks" in p.as_posix()) == stored


def test_a_policy_required_attack_that_did_not_run_blocks_pass(config: VideoConfig, audit: VideoAudit, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('min_samples = 1\nrequired_tiers = ["naive"]\nrequired_attacks = ["sr"]\n[limits.default]\nverify = 0.99\nrank1 = 0.99\n')
    run = VideoAuditRun(replace(config, redacted=config.redacted[1:2], attacks=("none",), policy=policy)).run()
    (method,) = run.result.method_verdicts
    assert method.verdict is not Verdict.PASS
    assert any("policy requires attack 'sr', which ran on 0 of 3 track(s)" in reason for reason in method.reasons)


def test_a_requested_attack_without_its_model_is_a_blocker(config: VideoConfig, audit: VideoAudit) -> None:
    run = VideoAuditRun(replace(config, redacted=config.redacted[1:2], attacks=("none", "sdedit"))).run()
    if not any(s.attack == "sdedit" for s in run.result.skipped_attacks):
        pytest.skip("the diffusion weights are on this machine: sdedit ran")
    assert run.result.blockers and "sdedit" in run.result.blockers[0]
    assert int(run.result.exit_code) == 4
