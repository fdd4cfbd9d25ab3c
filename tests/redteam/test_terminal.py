"""What the terminal shows (issue 22, "What a new user meets"): an ETA from the work done so far, the skipped
attacks grouped by reason with the fix command once, and no environment variable the user did not set."""

from __future__ import annotations

import pytest

from redteam.core.results import SkippedAttack
from redteam.terminal import AverageRemainingColumn, StageProgress, format_seconds, group_skipped, remaining_seconds


def test_the_eta_comes_from_the_average_pace_of_every_stage_so_far() -> None:
    # 2 of 10 images in 60 s: 30 s each, 8 left -> 240 s
    assert remaining_seconds([StageProgress(started=100.0, done=2, total=10)], now=160.0) == pytest.approx(240.0)
    # a finished stage adds nothing; two unfinished stages add up
    stages = [StageProgress(0.0, 5, 5), StageProgress(10.0, 1, 3), StageProgress(20.0, 4, 8)]
    assert remaining_seconds(stages, now=30.0) == pytest.approx(20.0 * 2 + 2.5 * 4)
    # nothing done yet in an unfinished stage: unknown, never a made-up number
    assert remaining_seconds([StageProgress(0.0, 0, 4)], now=50.0) is None
    assert remaining_seconds([], now=1.0) == 0.0
    # the current item taking long makes the estimate grow (the pace is measured up to now)
    assert remaining_seconds([StageProgress(0.0, 1, 2)], now=600.0) == pytest.approx(600.0)
    assert format_seconds(None) == "-:--:--" and format_seconds(3725.4) == "1:02:05"


def test_an_eta_is_shown_even_when_each_image_takes_longer_than_rich_s_30_second_window() -> None:
    """rich's TimeRemainingColumn extrapolates from the updates of the last 30 s: with one attacked image
    every 45 s it has one sample at most and shows -:--:-- (96% of the redraws of an 18-minute attack phase)."""
    from rich.progress import Progress, TimeRemainingColumn

    clock = [0.0]
    progress = Progress(TimeRemainingColumn(), AverageRemainingColumn(), get_time=lambda: clock[0], auto_refresh=False, disable=True)
    task_id = progress.add_task("attacking 4 method(s)", total=24)
    for done in range(1, 6):
        clock[0] += 45.0
        progress.update(task_id, completed=done)
    task = progress.tasks[0]
    assert task.time_remaining is None  # rich's own estimate: -:--:--
    rendered = str(AverageRemainingColumn().render(task))
    assert rendered == f"ETA {format_seconds(45.0 * 19)}"  # 19 images left at 45 s each: 0:14:15


DOWNLOAD = (
    "model {name} is not on this machine (hub cache /root/.cache/huggingface/hub); fix: `redteam models download {name}` where the network "
    "allows (an audit never downloads), then copy that hub cache folder here, or give model=/path/to/a/local/diffusers/folder"
)


def test_skipped_attacks_are_grouped_by_reason_with_the_fix_once() -> None:
    methods = ("blur", "px", "box")
    skipped = [SkippedAttack(m, a, f"'{m}' has no mosaic, pixelate or downsampling stage") for m in ("blur", "box") for a in ("bicubic", "lanczos")]
    skipped += [SkippedAttack(m, a, f"'{m}' has no blur stage") for m in ("px", "box") for a in ("wiener", "richardson_lucy", "tv_deconv")]
    skipped += [SkippedAttack(m, "sdedit", DOWNLOAD.format(name="sd15")) for m in methods]
    skipped += [SkippedAttack(m, "diffpir", DOWNLOAD.format(name="ddpm_celebahq")) for m in methods]
    skipped += [SkippedAttack("box", "inpaint", DOWNLOAD.format(name="sd15_inpainting"))]
    skipped += [
        SkippedAttack(m, "sr", f"model realesrgan_x4plus is not on this machine (expected at /x.pth); fix: `redteam models download realesrgan_x4plus` ({m})")
        for m in methods
    ]
    skipped += [
        SkippedAttack(m, "learned", f"no trained inversion for '{s}': run `redteam attack train --method \"{s}\" --faces DIR`")
        for m, s in (("blur", "gaussian_blur:sigma=4.0"), ("px", "mosaic:block=12"))
    ]
    skipped += [SkippedAttack(m, "sd_upscale", "needs `pip install 'face-anon-redteam[diffusion]'` (diffusers is not installed)") for m in methods]
    lines = group_skipped(skipped)
    assert len(skipped) == 25 and len(lines) == 5, lines
    text = "\n".join(f"{line} | {fix}" for line, fix in lines)
    assert "HF_HUB_OFFLINE" not in text and "HF_HOME" not in text
    assert "bicubic, lanczos for blur, box: the method has no mosaic, pixelate or downsampling stage" in text
    assert "wiener, richardson_lucy, tv_deconv for px, box: the method has no blur stage" in text
    models = next((line, fix) for line, fix in lines if "model not on this machine" in line)
    assert models[0] == "sdedit, diffpir, sr for blur, px, box; inpaint for box: model not on this machine"
    assert models[1] is not None and models[1].startswith("redteam models download sd15 ddpm_celebahq sd15_inpainting realesrgan_x4plus (")
    assert text.count("redteam models download") == 1
    learned = next((line, fix) for line, fix in lines if line.startswith("learned"))
    assert learned == (
        "learned for blur, px: no trained inversion",
        'redteam attack train --method SPEC --faces DIR (SPEC: "gaussian_blur:sigma=4.0", "mosaic:block=12")',
    )
    assert ("sd_upscale for blur, px, box: needs `pip install 'face-anon-redteam[diffusion]'` (diffusers is not installed)", None) in lines


def test_a_missing_hub_model_is_explained_without_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The skip line said "(audits never download; HF_HUB_OFFLINE=1)" and "copy HF_HOME here (with HF_HUB_OFFLINE=1)"
    to a user who had set neither."""
    from attacks.diffusion import SDEdit
    from redteam.core.hub import no_downloads

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with no_downloads():
        verdict = SDEdit(model="sd15").applicable(None)  # type: ignore[arg-type]  # sdedit does not look at the method
    assert not verdict.ok and verdict.model_missing
    assert "`redteam models download sd15`" in verdict.reason and str(tmp_path / "hf" / "hub") in verdict.reason
    assert "HF_HUB_OFFLINE" not in verdict.reason and "HF_HOME" not in verdict.reason
