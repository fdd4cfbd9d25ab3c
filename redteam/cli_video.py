"""`redteam audit-video`: the video audit's command (Typer wiring only; the run is `redteam.video`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from redteam.command_guard import guarded
from redteam.core.config import DetectorSettings
from redteam.core.errors import UsageError
from redteam.core.results import AuditResult, LogFn, ProgressFn


@guarded
def audit_video(
    original: Annotated[Path, typer.Argument(help="The original video (MP4, MOV, MKV, WebM, AVI, ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the reports (outside the inputs).")],
    anonymized: Annotated[list[str], typer.Option("--anonymized", "-a", help="NAME=FILE: a redacted version of the original (repeatable).")] = [],
    gallery: Annotated[Path | None, typer.Option(help="Folder of distractor face images added to the identification gallery.")] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy TOML (default: the built-in policy).")] = None,
    recognizer: Annotated[list[str], typer.Option("--recognizer", "-r", help="Recognizer to use (repeatable; default: every available one).")] = [],
    attack: Annotated[
        list[str], typer.Option("--attack", help="Per-frame attack run on each track's best frames (repeatable; default auto; none: no per-frame attack).")
    ] = [],
    stride: Annotated[int, typer.Option(help="Check every Nth frame (1: every frame; more is faster but can miss a short leak, so no PASS).")] = 1,
    best_frames: Annotated[int, typer.Option(help="Frames per track the per-frame attacks run on.")] = 3,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 0,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder (default: $REDTEAM_CACHE or ~/.cache/redteam).")] = None,
    min_face_score: Annotated[float, typer.Option(help="MTCNN probability below which a detection is ignored.")] = 0.95,
    no_originals_in_report: Annotated[
        bool, typer.Option("--no-originals-in-report", help="Leave the original faces out of the filmstrips and the HTML report.")
    ] = False,
    store: Annotated[Path | None, typer.Option(help="Run store (SQLite) the audit is recorded in (default: runs.sqlite in the cache).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print summary.json to stdout and nothing else there.")] = False,
) -> None:
    """Audit redacted videos against the original: leaked frames, per-track rates, multi-frame attacks."""
    from redteam.audit_run import run_and_report
    from redteam.video.reader import check_video_argument

    if not anonymized:
        raise UsageError("no redacted video given", fix="add --anonymized NAME=FILE (repeatable)")
    if stride < 1 or best_frames < 1:
        raise UsageError("--stride and --best-frames must be at least 1", fix="e.g. --stride 1 --best-frames 3")
    if not 0.0 < min_face_score <= 1.0:
        raise UsageError(f"--min-face-score must be in (0, 1], got {min_face_score}", fix="e.g. --min-face-score 0.95")
    redacted: list[tuple[str, Path]] = []
    for item in anonymized:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise UsageError(f"--anonymized '{item}' is not NAME=FILE", fix="e.g. --anonymized blur=published/interview.mp4")
        if name in {n for n, _ in redacted}:
            raise UsageError(f"method name '{name}' is given twice", fix="give each redacted video its own NAME")
        redacted.append((name, check_video_argument(Path(path), f"--anonymized {name}")))
    from redteam.video.files import video_files
    from redteam.video.run import VideoAuditRun, VideoConfig

    config = VideoConfig(
        original=check_video_argument(original, "ORIGINAL"),
        redacted=tuple(redacted),
        out=out,
        gallery=gallery,
        policy=policy,
        recognizers=tuple(recognizer),
        attacks=tuple(attack) if attack else ("auto",),
        stride=stride,
        best_frames=best_frames,
        device=device,
        seed=seed,
        cache_dir=cache_dir,
        detector=DetectorSettings(min_score=min_face_score),
        include_originals_in_report=not no_originals_in_report,
    )

    def runner(log: LogFn, progress: ProgressFn) -> tuple[AuditResult, dict[str, Callable[[Path], Path]]]:
        audit = VideoAuditRun(config, log=log, progress=progress).run()
        return audit.result, video_files(audit, config)

    result = run_and_report(config.audit_config(), store, json_output=json_output, runner=runner)
    raise typer.Exit(int(result.exit_code))
