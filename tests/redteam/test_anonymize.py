"""`redteam anonymize`: mirrored, reproducible, recorded, never writing into its input; the written
folder declares its method to `redteam audit`, and matches the on-the-fly audit exactly."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from redteam.anonymize import RECORD_NAME, anonymize_folder, read_declared_spec
from redteam.core.config import AuditConfig, MethodSource
from redteam.core.errors import InputError, UsageError
from redteam.engine import AuditRun
from reports.table import results_frame


def test_output_mirrors_the_input_and_records_the_method(originals, tmp_path, hashes_of):
    Image.fromarray(np.full((120, 120, 3), 70, np.uint8)).save(originals / "wall.png")
    (originals / "notes.txt").write_text("x")
    before = hashes_of(originals)
    summary = anonymize_folder(originals, tmp_path / "out", "downsample:factor=4 | jpeg:quality=15 | noise:sigma=0.05", seed=3)
    assert hashes_of(originals) == before
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert written == [
        "barack_obama/obama.png",
        "barack_obama/obama2.png",
        "barack_obama/obama3.png",
        "eileen_collins/astronaut.png",
        "joe_biden/biden.png",
        "wall.png",
    ]
    assert summary.faces == 5 and summary.no_face == ("wall.png",)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "wall.png")), np.full((120, 120, 3), 70, np.uint8))
    record = json.loads((tmp_path / "out" / RECORD_NAME).read_text())
    assert record["spec"] == "downsample:factor=4 | jpeg:quality=15 | noise:sigma=0.05"
    assert record["seed"] == 3 and record["environment"]["torch"] and record["skipped"] == [{"file": "notes.txt", "reason": "not a supported image type"}]
    assert [stage["method"] for stage in record["stages"]] == ["downsample", "jpeg", "noise"]
    assert read_declared_spec(tmp_path / "out") == record["spec"]
    Image.fromarray(np.full((120, 120, 3), 71, np.uint8)).save(tmp_path / "out" / "wall.png")  # changed after anonymizing
    with pytest.raises(InputError, match="wall.png is missing or differs"):
        read_declared_spec(tmp_path / "out")
    Image.fromarray(np.full((120, 120, 3), 70, np.uint8)).save(tmp_path / "out" / "wall.png")
    assert read_declared_spec(tmp_path / "out") == record["spec"]  # the same pixels, the same PNG bytes
    Image.fromarray(np.full((9, 9, 3), 1, np.uint8)).save(tmp_path / "out" / "extra.png")
    with pytest.raises(InputError, match="does not list .*extra.png"):
        read_declared_spec(tmp_path / "out")


def test_same_seed_same_bytes_other_seed_other_noise(sample_dir, tmp_path):
    anonymize_folder(sample_dir, tmp_path / "a", "noise:sigma=0.1", seed=1)
    anonymize_folder(sample_dir, tmp_path / "b", "noise:sigma=0.1", seed=1)
    anonymize_folder(sample_dir, tmp_path / "c", "noise:sigma=0.1", seed=2)
    name = "joe_biden/biden.png"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_refuses_to_write_into_its_input(originals):
    with pytest.raises(UsageError, match="inside input folder"):
        anonymize_folder(originals, originals / "anonymized", "box")


def test_written_folder_declares_its_method_and_matches_the_on_the_fly_audit(sample_dir, tmp_path, cache_dir):
    anonymize_folder(sample_dir, tmp_path / "mosaic", "mosaic:block=12", seed=0)
    base = dict(originals=sample_dir, out=tmp_path / "report", cache_dir=cache_dir, recognizers=("dlib",), attacks=("none", "parrot"))
    observed = AuditRun(AuditConfig(methods=(MethodSource("m", "observed", folder=tmp_path / "mosaic"),), **base)).run()
    on_the_fly = AuditRun(AuditConfig(methods=(MethodSource("m", "reference", spec="mosaic:block=12"),), **base)).run()
    assert {row.attack for row in observed.rows} == {"none", "parrot"}  # declared: the parrot tier runs
    assert observed.methods[0].spec == "mosaic:block=12" and not observed.skipped_attacks
    columns = ["face_id", "attack", "distance", "verify", "rank", "rank_other", "ssim", "anonymized_sha256"]
    pd.testing.assert_frame_equal(results_frame(observed)[columns], results_frame(on_the_fly)[columns])
