"""The engine: the same results however the pass is executed, a warm re-run that attacks nothing, and
cache entries that are checked before they are trusted."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from attacks import ATTACKS, Attack, MethodInfo
from attacks.interpolation import BicubicUpscale, LanczosUpscale
from redteam.anonymizers.base import Parameter
from redteam.core.config import AuditConfig, MethodSource
from redteam.engine import AuditRun
from reports.table import reproducible_columns, results_frame

METHODS = (
    MethodSource("blur", "reference", spec="gaussian_blur:sigma=3"),
    MethodSource("mosaic", "reference", spec="mosaic:block=12"),
)


def config(sample_dir: Path, tmp_path: Path, cache: Path, **overrides: object) -> AuditConfig:
    values: dict[str, object] = dict(
        originals=sample_dir, out=tmp_path / "report", methods=METHODS, cache_dir=cache, recognizers=("dlib",),
        attacks=("none", "parrot", "bicubic", "blind_deconv"), builtin_policy="demo_policy.toml",
    )  # fmt: skip
    values.update(overrides)
    return AuditConfig(**values)  # type: ignore[arg-type]


class DeviceBicubic(BicubicUpscale):
    """bicubic with a `device` parameter, as `sr` and `diffpir` have: the run fills the device in, which
    changes the attack's spec (`device_bicubic:device=cpu`) but never the name its probes are scored under."""

    name = "device_bicubic"
    parameters = (Parameter("device", str, "auto", "cpu, cuda or auto", choices=("auto", "cpu", "cuda")),)

    def use_device(self, device: torch.device) -> Attack:
        if self.values.get("device") == "auto":
            self.values["device"] = str(device)
        return self


@pytest.mark.slow
def test_workers_give_the_results_of_one_process(sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ATTACKS, DeviceBicubic.name, DeviceBicubic)  # the workers are forked: they see it too
    attacks = ("none", "parrot", "bicubic", "blind_deconv", DeviceBicubic.name)
    local = AuditRun(config(sample_dir, tmp_path, tmp_path / "cache_local", attacks=attacks)).run()
    split = AuditRun(config(sample_dir, tmp_path, tmp_path / "cache_split", attacks=attacks, workers=2)).run()
    frame = results_frame(split)
    assert (frame["attack"] == DeviceBicubic.name).sum() == (frame["attack"] == "bicubic").sum() > 0
    pd.testing.assert_frame_equal(reproducible_columns(results_frame(local)), reproducible_columns(frame))
    assert [v.verdict for v in local.method_verdicts] == [v.verdict for v in split.method_verdicts]
    assert [e.face_id for e in local.examples] == [e.face_id for e in split.examples]


def test_a_second_run_attacks_nothing_and_gives_the_same_table(sample_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = AuditRun(config(sample_dir, tmp_path, cache)).run()
    second = AuditRun(config(sample_dir, tmp_path, cache)).run()
    assert first.cache_stats["blur_attack_results_computed"] > 0
    assert second.cache_stats["blur_attack_results_computed"] == 0 and second.cache_stats["mosaic_attack_results_computed"] == 0
    pd.testing.assert_frame_equal(reproducible_columns(results_frame(first)), reproducible_columns(results_frame(second)))
    assert [e.face_id for e in first.examples] == [e.face_id for e in second.examples]
    assert all(len(e.reconstructions) >= 2 for e in second.examples)  # example crops come from the cache too


class Slow:
    """Makes an attack take over a second per face: a costly attack, whose cost the run announces."""

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        time.sleep(1.05 * len(images))
        return super().reconstruct(images, method=method, generator=generator)  # type: ignore[misc]


class SlowBicubic(Slow, BicubicUpscale):
    name = "slow_bicubic"


class SlowLanczos(Slow, LanczosUpscale):
    name = "slow_lanczos"


def test_the_cost_of_a_costly_attack_is_announced_when_it_is_spent_not_when_it_is_cached(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ATTACKS, SlowBicubic.name, SlowBicubic)
    settings = dict(methods=METHODS[1:], attacks=("none", SlowBicubic.name), examples_per_method=0)
    cold: list[str] = []
    AuditRun(config(sample_dir, tmp_path, tmp_path / "cache", **settings), log=cold.append).run()
    announced = [line for line in cold if "slow_bicubic ~" in line]
    assert len(announced) == 1 and announced[0].startswith("mosaic: slow_bicubic ~1.") and "attacked faces at this rate" in announced[0]
    warm: list[str] = []
    AuditRun(config(sample_dir, tmp_path, tmp_path / "cache", **settings), log=warm.append).run()
    assert not [line for line in warm if "s/face" in line]  # nothing is spent: no minutes are promised
    monkeypatch.setitem(ATTACKS, SlowLanczos.name, SlowLanczos)
    added: list[str] = []  # one more costly attack: only its seconds are spent, and only it is announced
    AuditRun(config(sample_dir, tmp_path, tmp_path / "cache", **(settings | {"attacks": ("none", SlowBicubic.name, SlowLanczos.name)})), log=added.append).run()
    announced = [line for line in added if "s/face" in line]
    assert len(announced) == 1 and announced[0].startswith("mosaic: slow_lanczos ~1.") and "slow_bicubic" not in announced[0]


def test_damaged_cache_entries_are_recomputed_not_trusted(sample_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = AuditRun(config(sample_dir, tmp_path, cache, attacks=("none",))).run()
    for path in (cache / "embeddings").rglob("*.npy"):
        np.save(path.open("wb"), np.full(3, np.nan), allow_pickle=False)  # wrong shape, not finite
    for path in (cache / "probes").rglob("*.json"):
        entry = json.loads(path.read_text())
        for record in entry["records"].values():
            record["embeddings"]["dlib"] = [float("nan")] * 128
        path.write_text(json.dumps(entry))
    for path in (cache / "detections").rglob("*.json"):
        path.write_text('[{"box": [1, 2], "landmarks": "x", "score": 7}]')
    alignments = sorted((cache / "alignments").rglob("*.json"))
    assert alignments
    for path in alignments:
        entry = json.loads(path.read_text())
        path.write_text(json.dumps({"alignment": [[1, float("nan")], "x"], "chip": entry["chip"]}))
    lines: list[str] = []
    second = AuditRun(config(sample_dir, tmp_path, cache, attacks=("none",)), log=lines.append).run()
    pd.testing.assert_frame_equal(reproducible_columns(results_frame(first)), reproducible_columns(results_frame(second)))
    assert any("probe cache entry" in line and "recomputed" in line for line in lines)
    assert any("detection cache entry" in line for line in lines)
    assert any("alignment cache entry" in line and "recomputed" in line for line in lines)


@pytest.mark.ray
def test_a_ray_cluster_of_two_workers_gives_the_results_of_one_process(sample_dir: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'face-anon-redteam[ray]'")
    local = AuditRun(config(sample_dir, tmp_path, tmp_path / "cache_local", attacks=("none", "bicubic"))).run()
    try:
        clustered = AuditRun(config(sample_dir, tmp_path, tmp_path / "cache_ray", attacks=("none", "bicubic"), executor="ray", workers=2)).run()
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(reproducible_columns(results_frame(local)), reproducible_columns(results_frame(clustered)))


def test_auto_minus_an_attack() -> None:
    from types import SimpleNamespace

    import torch

    from attacks import ATTACKS
    from redteam.core.errors import ConfigError
    from redteam.engine.models import select_attacks

    chosen, requested = select_attacks(("auto", "-parrot", "-sr"), SimpleNamespace(device=torch.device("cpu")))  # type: ignore[arg-type]
    assert {a.name for a in chosen} == set(ATTACKS) - {"parrot", "sr"} and requested == set()
    with pytest.raises(ConfigError, match="unknown attack 'nosuch'"):
        select_attacks(("auto", "-nosuch"), SimpleNamespace(device=torch.device("cpu")))  # type: ignore[arg-type]


def test_a_warm_re_run_of_observed_folders_decodes_no_file(originals: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-run hashes every input and reads its results from the cache; it decodes a file only for the
    example faces it shows (none asked for here): not the anonymized files, and not the originals either
    (their faces' alignments and embeddings are cached), nor the pairs the folder's operator was
    identified from (the fit is cached too). It starts no worker process."""
    import redteam.engine.methods
    import redteam.images
    from tests.redteam.test_run import make_observed

    observed = make_observed(originals, tmp_path / "observed")
    settings = dict(methods=(MethodSource("seen", "observed", folder=observed),), attacks=("none", "bicubic"), examples_per_method=0)
    cache = tmp_path / "cache"
    calls: list[tuple[str, int, int]] = []
    first = AuditRun(config(originals, tmp_path, cache, **settings), progress=lambda *call: calls.append(call)).run()
    bars = {stage.split(" | ")[0] for stage, _, _ in calls}
    assert len(bars) <= 3  # one bar per stage (reading, attacking), not one per image
    assert any(stage.endswith("seen: none on " + face.image) for stage, _, _ in calls for face in first.faces)  # names what runs
    assert all(0 <= done <= total for _, done, total in calls)
    decoded: list[Path] = []
    real = redteam.images.load_image
    monkeypatch.setattr(redteam.images, "load_image", lambda path, **kw: decoded.append(path) or real(path, **kw))
    monkeypatch.setattr(redteam.engine.methods, "load_image", lambda path, **kw: decoded.append(path) or real(path, **kw))
    read: list[Path] = []  # the observed files opened: each once (the hidden-content scan and the pass share its hash)
    real_open, real_read_bytes = Path.open, Path.read_bytes
    monkeypatch.setattr(Path, "open", lambda self, *a, **kw: (observed in self.parents and read.append(self)) or real_open(self, *a, **kw))
    monkeypatch.setattr(Path, "read_bytes", lambda self: (observed in self.parents and read.append(self)) or real_read_bytes(self))
    lines: list[str] = []
    second = AuditRun(config(originals, tmp_path, cache, workers=2, **settings), log=lines.append).run()
    assert decoded == []
    assert read and sorted(read) == sorted(set(read))
    assert "every image's results were in the cache: no worker started" in lines
    assert second.cache_stats["seen_attack_results_computed"] == 0
    pd.testing.assert_frame_equal(reproducible_columns(results_frame(first)), reproducible_columns(results_frame(second)))
    assert second.input_hashes == first.input_hashes
    assert second.identifications == first.identifications and first.identifications["seen"].faces


def test_an_attack_on_a_shrunk_window_is_told_where_the_face_is_in_it(originals: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A face wider than SCALE_CAP chips is attacked on a shrunk window (for attacks that work at any
    scale); the geometry the attack gets (face, window corner, image shape) is scaled with the pixels."""
    from PIL import Image

    from attacks import ATTACKS, Attack, ThreatTier
    from metrics.columns import METRIC_CROP
    from redteam.attack_runner import SCALE_CAP

    seen: list[tuple[tuple[int, ...], MethodInfo]] = []

    class Recording(Attack):
        name = "recording"
        tier = ThreatTier.RECONSTRUCTION
        works_at_any_scale = True

        def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
            seen.append((tuple(images.shape), method))
            return images

    monkeypatch.setitem(ATTACKS, "recording", Recording)
    folder = tmp_path / "large"
    folder.mkdir()
    photo = Image.open(originals / "eileen_collins" / "astronaut.jpg")
    photo.resize((photo.width * 5 // 2, photo.height * 5 // 2), Image.Resampling.BICUBIC).save(folder / "astronaut.png")
    run = AuditRun(config(folder, tmp_path, tmp_path / "cache", methods=METHODS[:1], attacks=("none", "recording"))).run()
    assert len(seen) == 1, run.issues
    shape, info = seen[0]
    assert info.face is not None and info.image_shape is not None
    height, width = shape[-2:]
    x0, y0, x1, y1 = (
        info.face.box[0] - info.origin[0],
        info.face.box[1] - info.origin[1],
        info.face.box[2] - info.origin[0],
        info.face.box[3] - info.origin[1],
    )
    assert x1 - x0 == pytest.approx(SCALE_CAP * METRIC_CROP, rel=0.02)  # the face as wide as the cap, in the shrunk pixels
    assert 0 <= x0 < x1 <= width + 1 and 0 <= y0 < y1 <= height + 1
    side = photo.width * 5 // 2  # a square photo
    assert info.image_shape[0] == info.image_shape[1] < side  # the image, shrunk with the window
    assert info.origin[0] + width <= info.image_shape[1] + 1 and info.origin[1] + height <= info.image_shape[0] + 1


@pytest.mark.slow
def test_a_workers_library_warnings_go_to_the_run_log_not_the_terminal(sample_dir: Path, tmp_path: Path) -> None:
    """A plugin attack that warns, run by `--workers 2`: each worker's warnings come back with its results
    and are written to OUT/redteam.log with the caller's, none printed by the workers."""
    import subprocess
    import sys
    import textwrap

    from tests.conftest import plugin_environment

    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "warning_attack.py").write_text(
        textwrap.dedent(
            """
            import warnings

            from attacks import Attack, ThreatTier


            class WarningAttack(Attack):
                name = "warns"
                tier = ThreatTier.RECONSTRUCTION

                def reconstruct(self, images, *, method, generator):
                    warnings.warn("the plugin's model is deprecated", FutureWarning, stacklevel=1)
                    return images
            """
        )
    )
    env = plugin_environment(plugin, "warning-attack", {"redteam.attacks": {"warns": "warning_attack:WarningAttack"}})
    out = tmp_path / "out"
    args = ["audit", sample_dir, "--method", "blur=gaussian_blur:sigma=3", "--attack", "none", "--attack", "warns", "--recognizer", "dlib"]
    args += ["--workers", "2", "--cache-dir", tmp_path / "cache", "--out", out]
    done = subprocess.run([sys.executable, "-m", "redteam", *map(str, args)], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode in (0, 1), done.stderr
    assert "deprecated" not in done.stderr and "FutureWarning" not in done.stderr
    log = (out / "redteam.log").read_text()
    assert "redteam.workers warning: FutureWarning: the plugin's model is deprecated" in log  # from the workers


def test_an_unreadable_anonymized_folder_is_an_input_issue_naming_it(
    sample_dir: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22: a permission error listing an observed identity folder ended the audit with exit 5 and a
    traceback. Its faces are gaps now (the method cannot PASS) and the folder is named with the fix.
    Tests run as root, where chmod 000 does not stop reads: the listing is refused by monkeypatching."""
    import os

    from PIL import Image

    anonymized = tmp_path / "anon"
    for path in sorted(sample_dir.rglob("*.jpg")):
        target = anonymized / path.relative_to(sample_dir).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros_like(np.asarray(Image.open(path).convert("RGB")))).save(target)
    locked = anonymized / "barack_obama"
    real_scandir, real_iterdir = os.scandir, Path.iterdir

    def scandir(path: object = ".") -> object:
        if os.fspath(path) == os.fspath(locked):  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", os.fspath(path))  # type: ignore[arg-type]
        return real_scandir(path)  # type: ignore[arg-type]

    def iterdir(self: Path) -> object:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(Path, "iterdir", iterdir)
    policy = tmp_path / "p.toml"
    policy.write_text('min_samples = 1\nrequired_tiers = ["naive"]\n[limits.naive]\nverify = 0.5\n')
    from redteam.core.errors import InputError

    run = AuditRun(
        config(
            sample_dir, tmp_path, cache_dir, methods=(MethodSource("black", "observed", folder=anonymized),), attacks=("none",), policy=policy, identify=False
        )
    )
    try:
        result = run.run()
    except InputError as error:  # a stage that must list the whole folder may refuse it outright (exit 3): as clear
        assert str(locked) in error.message and "Permission denied" in error.message and error.fix and "chmod" in error.fix
        return
    verdict = result.method_verdicts[0]
    assert verdict.verdict.value == "INCONCLUSIVE", verdict.reasons
    unreadable = [issue for issue in result.issues if issue.kind == "unreadable"]
    assert {issue.path for issue in unreadable} >= {"barack_obama/obama.jpg", "black:barack_obama/"}
    assert all(str(locked) in issue.detail and "Permission denied" in issue.detail and "chmod" in issue.fix for issue in unreadable)
    assert len({row.face_id for row in result.rows}) == 2  # biden and the astronaut; obama's three faces are gaps
