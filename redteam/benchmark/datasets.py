"""Dataset adapters for `redteam benchmark`: what a researcher's dataset holds (photos and who is in
them), read from its own layout, checksummed, and laid out as the audit's originals folder.

Layouts (`detect_layout` picks one; `--layout` forces it):
    folder    DATASET/<identity>/<photo>  (the research CelebA subset, VGGFace2, most benchmark sets)
    celeba    DATASET/img_align_celeba/<photo> (or img_celeba/) beside identity_CelebA.txt ("photo identity"
              per line), the layout CelebA ships in
    lfw       DATASET/<Person_Name>/<Person_Name>_0001.jpg beside pairs.txt: the people pairs.txt names
              (its header line, then "name n1 n2" same-person and "name1 n1 name2 n2" pairs)
    manifest  a CSV with columns path,identity (paths relative to the CSV)

The split (documented in the README, "Benchmarking techniques"): of each person with two photos or more,
the first K photos in name order are probes (`--probes-per-person K`, 1 by default, never all of a person's
photos) and every photo, probes included, is in the gallery; `--probes-per-person all` makes every photo a
probe. A probe's re-identification counts another photo of the same person ranked first (rank-1 "other",
its own original removed); people with one photo stay in the gallery as distractors. Only probes are
anonymized and attacked, so a run costs per probe, not per photo. `--limit N` keeps the first N people in
name order (their photos in name order): a prefix, so a larger run contains a smaller one. The learned
attacks' corpus is never drawn from the benchmark set: they use checkpoints trained beforehand with
`redteam attack train` on a corpus the researcher holds out (UTKFace here), and without one they are
skipped with the reason.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from redteam.core.errors import InputError
from redteam.images import is_image_file

LAYOUTS = ("folder", "celeba", "lfw", "manifest")


@dataclass(frozen=True)
class Photo:
    """One photo of the benchmark: its file and the person in it."""

    path: Path
    identity: str


@dataclass(frozen=True)
class BenchmarkDataset:
    """What an adapter read: the photos (sorted by identity, then name), the layout and a checksum.

    Attributes:
        checksum: SHA-256 over every selected photo's identity, file name and content: two runs with the
            same checksum audited the same pictures of the same people.
    """

    root: Path
    layout: str
    photos: tuple[Photo, ...]
    checksum: str

    @property
    def identities(self) -> int:
        return len({photo.identity for photo in self.photos})

    def probes(self, per_person: int | None, people: int | None = None) -> tuple[str, ...]:
        """The probes (their paths in the originals folder, `<identity>/<file>`): the first `per_person`
        photos of each person with two photos or more, at most all but one of them (so each probe has
        another photo of its person in the gallery); every photo when `per_person` is None. With `people`,
        only the first that many people (name order) give probes; the others stay in the gallery."""
        if (per_person is not None and per_person < 1) or (people is not None and people < 1):
            raise ValueError(f"per_person and people must be at least 1, got {per_person} and {people}")
        by_person: dict[str, list[Photo]] = {}
        for photo in self.photos:
            by_person.setdefault(photo.identity, []).append(photo)
        chosen = list(by_person.values())[:people]
        if per_person is None:
            return tuple(rel_path(photo) for photos in chosen for photo in photos)
        return tuple(rel_path(photo) for photos in chosen if len(photos) >= 2 for photo in photos[: min(per_person, len(photos) - 1)])

    def materialise(self, target: Path, only: tuple[str, ...] | None = None) -> Path:
        """The photos (or those of `only`, paths from `probes`) as a folder the audit reads,
        `target/<identity>/<file>`, hard-linked where the file system allows and copied where not (the
        dataset itself is never changed). Done once per checksum and selection: a folder made for another
        selection is replaced."""
        selection = hashlib.sha256("\n".join(only).encode()).hexdigest() if only is not None else "all"
        stamp, wanted = target / ".checksum", f"{self.checksum} {selection}"
        if stamp.is_file() and stamp.read_text().strip() == wanted:
            return target
        shutil.rmtree(target, ignore_errors=True)
        keep = set(only) if only is not None else None
        for photo in self.photos:
            if keep is not None and rel_path(photo) not in keep:
                continue
            out = target / rel_path(photo)
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(photo.path, out)
            except OSError:
                shutil.copyfile(photo.path, out)
        stamp.write_text(wanted + "\n")
        return target


def rel_path(photo: Photo) -> str:
    """Where a photo lies in the folders the benchmark lays out: `<identity>/<file>`."""
    return f"{_safe(photo.identity)}/{photo.path.name}"


def _safe(identity: str) -> str:
    """An identity as a folder name (path separators and leading dots replaced)."""
    cleaned = "".join("_" if c in '/\\:*?"<>|' else c for c in identity).strip().lstrip(".")
    return cleaned or "_"


def detect_layout(root: Path) -> str:
    """The layout of `root` (see the module's docstring).

    Raises:
        InputError: `root` is neither a folder of identity folders, a CelebA or LFW download, nor a CSV.
    """
    if root.is_file() and root.suffix.lower() == ".csv":
        return "manifest"
    if not root.is_dir():
        raise InputError(f"dataset {root} is neither a folder nor a manifest CSV", fix="give a folder of identity folders, CelebA, LFW, or a CSV path,identity")
    if (root / "identity_CelebA.txt").is_file():
        return "celeba"
    if (root / "pairs.txt").is_file():
        return "lfw"
    return "folder"


def read_dataset(root: Path, layout: str | None = None, limit: int | None = None) -> BenchmarkDataset:
    """The photos of the dataset at `root` (first `limit` people, in name order).

    Raises:
        InputError: an unknown layout, a missing or malformed index file (the message names the line), or
            no photo of anybody.
    """
    layout = layout or detect_layout(root)
    readers = {"folder": _folder, "celeba": _celeba, "lfw": _lfw, "manifest": _manifest}
    if layout not in readers:
        raise InputError(f"unknown dataset layout '{layout}'", fix="choose one of: " + ", ".join(LAYOUTS))
    photos = sorted(readers[layout](root), key=lambda p: (p.identity, p.path.name, str(p.path)))
    if limit is not None:
        keep = sorted({p.identity for p in photos})[:limit]
        photos = [p for p in photos if p.identity in set(keep)]
    if not photos:
        raise InputError(f"dataset {root} ({layout} layout) holds no photo", fix="check the path and the layout (--layout)")
    return BenchmarkDataset(root, layout, tuple(photos), _checksum(photos))


def _checksum(photos: Iterable[Photo]) -> str:
    digest = hashlib.sha256()
    for photo in photos:
        digest.update(f"{photo.identity}\0{photo.path.name}\0".encode())
        digest.update(hashlib.sha256(photo.path.read_bytes()).digest())
    return digest.hexdigest()


def _folder(root: Path) -> list[Photo]:
    return [Photo(path, person.name) for person in sorted(p for p in root.iterdir() if p.is_dir()) for path in sorted(person.iterdir()) if is_image_file(path)]


def _lines(index: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of a whitespace-separated index file, blank lines left out."""
    try:
        text = index.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{index} cannot be read as UTF-8 text ({error})", fix="restore the file from the dataset's download") from error
    return [(number, line.split()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _celeba(root: Path) -> list[Photo]:
    images = next((root / name for name in ("img_align_celeba", "img_celeba", "images") if (root / name).is_dir()), root)
    photos = []
    for number, fields in _lines(root / "identity_CelebA.txt"):
        if len(fields) != 2:
            raise InputError(f"identity_CelebA.txt line {number}: expected 'photo identity', got {' '.join(fields)!r}", fix="restore the file")
        path = images / fields[0]
        if path.is_file():  # CelebA's index lists all 202,599 photos; a subset download holds fewer
            photos.append(Photo(path, fields[1]))
    return photos


def _lfw(root: Path) -> list[Photo]:
    names: set[str] = set()
    for number, fields in _lines(root / "pairs.txt")[1:]:  # the first line gives the folds and pairs per fold
        if len(fields) == 3:
            names.add(fields[0])
        elif len(fields) == 4:
            names.update((fields[0], fields[2]))
        else:
            raise InputError(f"pairs.txt line {number}: expected 'name n1 n2' or 'name1 n1 name2 n2'", fix="restore the file from the LFW download")
    people = root / "lfw" if (root / "lfw").is_dir() else root
    return [Photo(path, name) for name in sorted(names) if (people / name).is_dir() for path in sorted((people / name).iterdir()) if is_image_file(path)]


def _manifest(root: Path) -> list[Photo]:
    try:
        with root.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"manifest {root} cannot be read ({error})", fix="a UTF-8 CSV with columns path,identity") from error
    if rows and not {"path", "identity"} <= set(rows[0]):
        raise InputError(f"manifest {root} lacks the columns path and identity", fix="a UTF-8 CSV with columns path,identity")
    photos = []
    for number, row in enumerate(rows, start=2):
        path = (root.parent / row["path"]).resolve()
        if not path.is_file() or not (row["identity"] or "").strip():
            raise InputError(f"manifest {root} line {number}: {row['path']!r} is not a file or has no identity", fix="fix that row")
        photos.append(Photo(path, row["identity"].strip()))
    return photos
