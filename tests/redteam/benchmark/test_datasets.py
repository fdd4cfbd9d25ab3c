"""Dataset adapters: each layout read from small folders the test makes, with its checksum, limit and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from redteam.benchmark.datasets import detect_layout, read_dataset
from redteam.core.errors import InputError


def photo(path: Path, shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), shade, dtype=np.uint8)).save(path)
    return path


def test_a_folder_of_identity_folders(tmp_path: Path) -> None:
    photo(tmp_path / "anna" / "1.png", 10)
    photo(tmp_path / "anna" / "2.png", 20)
    photo(tmp_path / "bob" / "1.png", 30)
    (tmp_path / "notes.txt").write_text("not a photo")
    dataset = read_dataset(tmp_path)
    assert dataset.layout == "folder" and [(p.identity, p.path.name) for p in dataset.photos] == [("anna", "1.png"), ("anna", "2.png"), ("bob", "1.png")]
    assert read_dataset(tmp_path, limit=1).identities == 1
    photo(tmp_path / "bob" / "1.png", 31)  # one pixel value changed: another checksum
    assert read_dataset(tmp_path).checksum != dataset.checksum


def test_celeba_reads_its_identity_file_and_keeps_the_photos_present(tmp_path: Path) -> None:
    photo(tmp_path / "img_align_celeba" / "000001.jpg", 10)
    photo(tmp_path / "img_align_celeba" / "000002.jpg", 20)
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg 2880\n000002.jpg 2937\n000003.jpg 2880\n")
    dataset = read_dataset(tmp_path)
    assert dataset.layout == "celeba" and [(p.identity, p.path.name) for p in dataset.photos] == [("2880", "000001.jpg"), ("2937", "000002.jpg")]
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg\n")
    with pytest.raises(InputError, match="line 1"):
        read_dataset(tmp_path)


def test_lfw_takes_the_people_pairs_txt_names(tmp_path: Path) -> None:
    photo(tmp_path / "lfw" / "Ann_Lee" / "Ann_Lee_0001.jpg", 10)
    photo(tmp_path / "lfw" / "Ann_Lee" / "Ann_Lee_0002.jpg", 20)
    photo(tmp_path / "lfw" / "Bo_Ma" / "Bo_Ma_0001.jpg", 30)
    photo(tmp_path / "lfw" / "Not_Paired" / "Not_Paired_0001.jpg", 40)
    (tmp_path / "pairs.txt").write_text("10\t300\nAnn_Lee\t1\t2\nAnn_Lee\t1\tBo_Ma\t1\n")
    dataset = read_dataset(tmp_path)
    assert detect_layout(tmp_path) == "lfw" and sorted({p.identity for p in dataset.photos}) == ["Ann_Lee", "Bo_Ma"]
    (tmp_path / "pairs.txt").write_text("10\t300\nAnn_Lee\t1\n")
    with pytest.raises(InputError, match="pairs.txt line 2"):
        read_dataset(tmp_path)


def test_a_manifest_csv(tmp_path: Path) -> None:
    photo(tmp_path / "x" / "a.png", 10)
    photo(tmp_path / "y" / "b.png", 20)
    manifest = tmp_path / "set.csv"
    manifest.write_text("path,identity\nx/a.png,p1\ny/b.png,p1\n")
    dataset = read_dataset(manifest)
    assert dataset.layout == "manifest" and dataset.identities == 1 and len(dataset.photos) == 2
    manifest.write_text("path,identity\nx/missing.png,p1\n")
    with pytest.raises(InputError, match="line 2"):
        read_dataset(manifest)


def test_materialise_lays_out_identity_folders_once_and_leaves_the_dataset_alone(tmp_path: Path) -> None:
    source = photo(tmp_path / "data" / "a" / "1.png", 10)
    photo(tmp_path / "data" / "c" / "1.png", 20)
    photo(tmp_path / "data" / "c" / "deeper" / "2.png", 30)  # below an identity folder: not a photo of the set
    before = source.read_bytes()
    dataset = read_dataset(tmp_path / "data")
    folder = dataset.materialise(tmp_path / "work")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == ["a/1.png", "c/1.png"]
    assert (folder / "a" / "1.png").read_bytes() == before == source.read_bytes()
    assert dataset.materialise(tmp_path / "work") == folder  # reused: same checksum


def test_probes_are_the_first_photos_of_each_person_who_has_another(tmp_path: Path) -> None:
    for name, count in (("anna", 3), ("bob", 2), ("cy", 1)):
        for index in range(count):
            photo(tmp_path / "data" / name / f"{index}.png", 10 * index + len(name))
    dataset = read_dataset(tmp_path / "data")
    assert dataset.probes(1) == ("anna/0.png", "bob/0.png")  # cy has no other photo: a distractor only
    assert dataset.probes(2) == ("anna/0.png", "anna/1.png", "bob/0.png")  # bob keeps one photo in the gallery
    assert dataset.probes(5) == ("anna/0.png", "anna/1.png", "bob/0.png")
    assert dataset.probes(None) == ("anna/0.png", "anna/1.png", "anna/2.png", "bob/0.png", "bob/1.png", "cy/0.png")
    folder = dataset.materialise(tmp_path / "probes", only=dataset.probes(1))
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == ["anna/0.png", "bob/0.png"]
    folder = dataset.materialise(tmp_path / "probes", only=dataset.probes(2))  # another selection: laid out again
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == ["anna/0.png", "anna/1.png", "bob/0.png"]
    assert dataset.probes(1, people=1) == ("anna/0.png",)  # probes from anna only; bob and cy stay in the gallery
    assert dataset.probes(None, people=2) == ("anna/0.png", "anna/1.png", "anna/2.png", "bob/0.png", "bob/1.png")
    with pytest.raises(ValueError, match="at least 1"):
        dataset.probes(0)


def test_no_photo_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no photo"):
        read_dataset(tmp_path / "empty")


def test_the_benchmark_refuses_to_write_into_its_dataset(sample_dir: Path, tmp_path: Path) -> None:
    import shutil

    from redteam.benchmark import BenchmarkConfig, run_benchmark
    from redteam.benchmark.techniques import method
    from redteam.core.errors import UsageError

    dataset = tmp_path / "set"
    shutil.copytree(sample_dir, dataset)
    with pytest.raises(UsageError, match="output folder"):
        run_benchmark(BenchmarkConfig(dataset=dataset, techniques=(method("box"),), out=dataset / "results", cache_dir=tmp_path / "c"))
    assert not (dataset / "results").exists()
