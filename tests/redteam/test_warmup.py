"""The run's worker pool and its warm-up jobs: a cold run with `--workers 2` reads the originals and fits
the observed folders' operators in the workers and gives what one process gives; a warm re-run starts no
worker; a job that fails is reported and left to the caller."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from redteam.anonymizers import build_method
from redteam.core.config import AuditConfig, MethodSource
from redteam.engine import AuditRun
from redteam.engine.context import RunContext
from redteam.engine.warmup import run_pool
from redteam.engine.worker_pool import Job, WorkerPool, WorkerRun, run_jobs
from redteam.faces import FaceDetector
from redteam.images import load_image
from reports.table import reproducible_columns, results_frame


def blurred_folder(sample_dir: Path, target: Path) -> Path:
    """The sample as a user's tool writes it: every detected face blurred, PNGs mirroring the tree, no record."""
    detector, blur = FaceDetector(), build_method("gaussian_blur:sigma=4,margin=0.2")
    for path in sorted(sample_dir.rglob("*.jpg")):
        pixels = load_image(path).pixels
        out = target / path.relative_to(sample_dir).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(blur.apply(pixels, detector.detect(pixels))).save(out)
    return target


def audit(sample_dir: Path, folder: Path, cache: Path, out: Path, workers: int) -> AuditConfig:
    return AuditConfig(
        originals=sample_dir, out=out, methods=(MethodSource("tool", "observed", folder=folder),), cache_dir=cache,
        recognizers=("dlib",), attacks=("none", "parrot"), builtin_policy="demo_policy.toml", workers=workers,
    )  # fmt: skip


@pytest.mark.slow
def test_a_cold_run_on_two_workers_fits_and_reads_there_and_gives_the_one_process_result(sample_dir: Path, tmp_path: Path) -> None:
    folder = blurred_folder(sample_dir, tmp_path / "tool")
    local = AuditRun(audit(sample_dir, folder, tmp_path / "cache1", tmp_path / "out1", workers=1)).run()
    lines: list[str] = []
    split = AuditRun(audit(sample_dir, folder, tmp_path / "cache2", tmp_path / "out2", workers=2), log=lines.append).run()
    assert split.identifications["tool"] == local.identifications["tool"]  # fitted in a worker, read back here
    assert split.identifications["tool"].identified
    pd.testing.assert_frame_equal(reproducible_columns(results_frame(local)), reproducible_columns(results_frame(split)))
    assert [i.__dict__ for i in split.issues] == [i.__dict__ for i in local.issues]  # recorded once, by this process
    assert split.timings["identify"] > 0 and split.timings["inference"] > 0  # the workers' seconds are counted
    assert not any("a worker could not finish" in line for line in lines)

    config = audit(sample_dir, folder, tmp_path / "cache2", tmp_path / "out3", workers=2)
    warm_lines: list[str] = []
    warm = AuditRun(config, log=warm_lines.append).run()
    assert "every image's results were in the cache: no worker started" in warm_lines
    assert warm.identifications["tool"] == local.identifications["tool"]
    assert not run_pool(AuditRun(config).ctx, injected=False).started  # nothing to compute: no process started


def _fails(run: WorkerRun) -> dict[str, float]:
    raise RuntimeError("a broken job")


def _seconds(run: WorkerRun) -> dict[str, float]:
    return {"inference": 1.5}


def test_a_job_that_fails_is_reported_and_the_pool_goes_on(sample_dir: Path, tmp_path: Path) -> None:
    ctx: RunContext = AuditRun(AuditConfig(originals=sample_dir, out=tmp_path / "o", methods=(), cache_dir=tmp_path / "c")).ctx
    run = WorkerRun(ctx.config, ctx.policy, {}, 1)
    lines: list[str] = []
    with WorkerPool(2) as pool:
        if pool.start_method != "fork":
            pytest.skip("the test's own job functions reach only forked workers")
        seconds = run_jobs(pool, run, [Job(_fails, ()), Job(_seconds, ()), Job(_seconds, ())], lines.append)
        assert seconds == {"inference": 3.0}  # the others' seconds still count
        assert any("a worker could not finish its part (RuntimeError: a broken job): computed here instead" in line for line in lines)
        assert run_jobs(pool, run, [Job(_seconds, ())], lines.append) == {"inference": 1.5}


def test_the_first_originals_lead_split_over_the_workers_and_the_gallery_never_leads(tmp_path: Path) -> None:
    from redteam.datasets import discover_images
    from redteam.engine.warmup import input_jobs

    for folder, count in (("originals", 20), ("gallery", 5)):
        for index in range(count):
            (tmp_path / folder).mkdir(exist_ok=True)
            Image.new("RGB", (8, 8)).save(tmp_path / folder / f"{index:02d}.png")
    originals, gallery = discover_images(tmp_path / "originals", role="originals"), discover_images(tmp_path / "gallery", role="gallery")
    cached = {originals.entries[0].path}  # already in the cache: no job reads it
    datasets = [(originals, "originals", {}), (gallery, "gallery", {})]
    leading, rest = input_jobs(datasets, lambda path: path not in cached, workers=2, lead=6)

    def names(jobs: list[Job]) -> list[list[str]]:
        return [[entry.rel for entry in job.args[0].entries] for job in jobs]

    assert names(leading) == [["01.png", "02.png", "03.png"], ["04.png", "05.png", "06.png"]]
    assert [rel for chunk in names(rest) for rel in chunk] == [f"{i:02d}.png" for i in range(7, 20)] + [f"{i:02d}.png" for i in range(5)]
    assert input_jobs(datasets, lambda path: True, workers=2)[0] == []  # without fits to run, nothing leads
