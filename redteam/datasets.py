"""Discover originals and their anonymized counterparts (folders mirroring the originals, or a manifest).

Layouts:
    originals/<identity>/<file>   identities known: other photos of the same person are used;
    originals/<file>              flat: each file is its own identity.
Anonymized folders mirror the originals' relative paths; the suffix may differ (obama.jpg may be
anonymized as obama.png). A manifest CSV has columns original, anonymized, method[, identity].
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from redteam.core.errors import InputError, UsageError
from redteam.core.paths import ensure_writable_dir
from redteam.images import SUPPORTED_SUFFIXES, is_image_file


@dataclass(frozen=True)
class OriginalEntry:
    """One original image file.

    Attributes:
        rel: path relative to the originals folder, POSIX style (the image's id in every report).
        path: absolute path.
        identity: the person, from the first folder level; the file stem in a flat layout.
    """

    rel: str
    path: Path
    identity: str


@dataclass(frozen=True)
class Dataset:
    """The originals of a run, sorted by relative path.

    Attributes:
        ignored: relative paths of files skipped because they are not a supported image type.
        identities_known: True when at least one file sits in an identity folder.
        outside: relative paths of links to files outside the folder: not followed (a hostile tree could
            point at any file the user can read, and `anonymize` would publish it).
    """

    root: Path
    entries: tuple[OriginalEntry, ...]
    ignored: tuple[str, ...]
    identities_known: bool
    outside: tuple[str, ...] = ()

    def skipped(self, *, own_prefix: str | None = None) -> list[tuple[str, str]]:
        """(relative path, why) of every file not listed: links leading outside, unsupported types (except
        the tool's own files, named `own_prefix`...)."""
        ignored = [rel for rel in self.ignored if own_prefix is None or not rel.startswith(own_prefix)]
        return [(rel, LINK_OUTSIDE) for rel in self.outside] + [(rel, "not a supported image type") for rel in ignored]


#: What a command says about a skipped link (`Dataset.outside`).
LINK_OUTSIDE = "a link to a file outside the folder: not followed"


def discover_images(root: Path, *, role: str) -> Dataset:
    """List the images under `root` (recursively, hidden files and folders skipped)."""
    if not root.exists():
        raise InputError(f"{role} folder {root} does not exist", fix="check the path")
    if not root.is_dir():
        raise InputError(f"{role} path {root} is not a folder", fix="give a folder of images")
    entries: list[OriginalEntry] = []
    ignored: list[str] = []
    outside: list[str] = []
    resolved_root = root.resolve()
    for path in sorted(root.rglob("*")):  # folder links are not descended into, so link loops end here
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        rel = relative.as_posix()
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            ignored.append(rel)
            continue
        # Only a link can lead outside: folder links are not descended, so a plain file lies under the root.
        resolved = path.resolve() if path.is_symlink() else resolved_root / relative
        if resolved_root not in resolved.parents:
            outside.append(rel)
            continue
        identity = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        entries.append(OriginalEntry(rel=rel, path=resolved, identity=identity))
    if not entries:
        links = f" ({len(outside)} link(s) to files outside it are not followed)" if outside else ""
        raise InputError(
            f"{role} folder {root} holds no images{links} ({', '.join(sorted(SUPPORTED_SUFFIXES))})",
            fix="point to a folder of face images, flat or one sub-folder per identity",
        )
    return Dataset(
        root=root.resolve(),
        entries=tuple(entries),
        ignored=tuple(ignored),
        identities_known=any(len(PurePosixPath(e.rel).parts) > 1 for e in entries),
        outside=tuple(outside),
    )


class Counterparts:
    """The file in `folder` mirroring an original's relative path: the same path, or the same path with
    another image suffix. Each sub-folder is listed once, on first use, rather than once per original
    (which made matching N originals cost N x N directory entries). Made per run: a listing is never
    reused across runs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.outside: set[str] = set()  # originals whose counterpart is a link leading outside `folder`: not followed
        self._root = folder.resolve()
        self._stems: dict[Path, dict[str, list[Path]]] = {}
        self._inside: dict[Path, bool] = {}  # sub-folder -> whether it resolves under the folder (not a folder link)

    def _by_stem(self, parent: Path) -> dict[str, list[Path]]:
        if parent not in self._stems:
            stems: dict[str, list[Path]] = {}
            if parent.is_dir():
                for path in parent.iterdir():
                    if path.suffix.lower() in SUPPORTED_SUFFIXES:
                        stems.setdefault(path.stem, []).append(path)
            self._stems[parent] = stems
        return self._stems[parent]

    def find(self, rel: str) -> Path | None:
        """The counterpart of original `rel`, or None.

        Raises:
            InputError: several candidate files (e.g. a.png and a.webp) make the match ambiguous.
        """
        exact = self.folder / rel
        if is_image_file(exact):
            return self._followed(rel, exact)
        stem = PurePosixPath(rel).with_suffix("")
        candidates = sorted(p for p in self._by_stem(self.folder / stem.parent).get(stem.name, []) if p.is_file())
        if len(candidates) > 1:
            raise InputError(
                f"{self.folder}: several anonymized files match original '{rel}': {', '.join(p.name for p in candidates)}",
                fix="keep one anonymized file per original, or use a manifest CSV",
            )
        return self._followed(rel, candidates[0]) if candidates else None

    def _followed(self, rel: str, path: Path) -> Path | None:
        """`path`, unless it leads outside the folder (a link, or a file under a folder link): then None, and
        `rel` is in `outside` (as `discover_images`, which lists neither)."""
        parent = path.parent
        if parent not in self._inside:
            resolved = parent.resolve()
            self._inside[parent] = resolved == self._root or self._root in resolved.parents
        if self._inside[parent] and (not path.is_symlink() or self._root in path.resolve().parents):
            return path
        self.outside.add(rel)
        return None


@dataclass(frozen=True)
class ManifestRow:
    original_rel: str
    anonymized: Path
    method: str
    identity: str | None


MANIFEST_COLUMNS = ("original", "anonymized", "method")


def read_manifest(manifest: Path, originals_root: Path) -> tuple[ManifestRow, ...]:
    """Read a manifest CSV; relative paths are relative to the manifest's folder.

    Raises:
        InputError: missing file or columns, or an original outside the originals folder.
    """
    if not manifest.is_file():
        raise InputError(f"manifest {manifest} does not exist", fix="check the path")
    try:
        return _manifest_rows(manifest, originals_root)
    except UnicodeDecodeError as error:
        raise InputError(f"manifest {manifest} is not UTF-8 text (byte {error.start})", fix="save the CSV as UTF-8") from error
    except csv.Error as error:
        raise InputError(f"manifest {manifest} is not a well-formed CSV ({error})", fix="one row per pair: original,anonymized,method[,identity]") from error


def _manifest_rows(manifest: Path, originals_root: Path) -> tuple[ManifestRow, ...]:
    rows: list[ManifestRow] = []
    seen: dict[tuple[str, str], int] = {}  # (original, method) -> line
    with manifest.open(newline="", encoding="utf-8-sig") as handle:  # a BOM (Excel's UTF-8 CSV) is not part of the header
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [c for c in MANIFEST_COLUMNS if c not in header]
        if missing:
            raise InputError(
                f"manifest {manifest} lacks column(s) {', '.join(missing)}",
                fix="the header must be: original,anonymized,method[,identity]",
            )
        root = originals_root.resolve()
        for line, record in enumerate(reader, start=2):
            record = {k.strip(): (v or "").strip() for k, v in record.items() if k}
            if not record.get("original") or not record.get("anonymized") or not record.get("method"):
                raise InputError(f"manifest {manifest}, line {line}: empty original, anonymized or method", fix="fill every column")
            if any("\x00" in value for value in record.values()):
                raise InputError(f"manifest {manifest}, line {line}: a field contains a NUL character", fix="remove the NUL byte (no path contains one)")
            original = (manifest.parent / record["original"]).resolve()
            try:
                original_rel = original.relative_to(root).as_posix()
            except ValueError:
                raise InputError(
                    f"manifest {manifest}, line {line}: original {original} is outside the originals folder {root}",
                    fix="list originals inside the folder given to `redteam audit`",
                ) from None
            earlier = seen.get((original_rel, record["method"]))
            if earlier is not None:
                raise InputError(
                    f"manifest {manifest}, line {line}: original {record['original']} already has a '{record['method']}' row (line {earlier})",
                    fix="one row per original and method: remove the duplicate",
                )
            seen[(original_rel, record["method"])] = line
            rows.append(
                ManifestRow(
                    original_rel=original_rel,
                    anonymized=(manifest.parent / record["anonymized"]).resolve(),
                    method=record["method"],
                    identity=record.get("identity") or None,
                )
            )
    if not rows:
        raise InputError(f"manifest {manifest} has no rows", fix="add one row per anonymized image")
    return tuple(rows)


def check_outside_inputs(path: Path, inputs: list[Path], role: str) -> None:
    """Refuse a folder the run writes into (output, cache) that is, or lies inside, an input folder."""
    resolved = path.resolve()
    for folder in inputs:
        root = folder.resolve()
        if resolved == root or root in resolved.parents:
            raise UsageError(f"{role} {path} is inside input folder {folder}", fix=f"choose another {role}, outside the input folders")


def check_out_dir(out: Path, inputs: list[Path], *, mirrors_inputs: bool = False) -> None:
    """Refuse an output folder inside (or equal to) an input folder (inputs are never modified), or one
    that is a file, lies under a file or cannot be written; create it. A command that writes a tree
    mirroring its input (`mirrors_inputs`: anonymize, attack run) also refuses an output folder that
    contains an input folder: the two trees must not overlap at all."""
    resolved = out.resolve()
    check_outside_inputs(out, inputs, "output folder")
    for folder in inputs:
        root = folder.resolve()
        if mirrors_inputs and resolved in root.parents:
            raise UsageError(
                f"output folder {out} contains input folder {folder}: the images written could replace inputs",
                fix="choose an output folder beside the input folder, not above it",
            )
    ensure_writable_dir(out, "output folder", "choose a writable output folder with --out")


def output_targets(rels: list[str], out: Path, suffix: str = ".png") -> dict[str, Path]:
    """Where a command writing one image per input writes each (`out/rel` with `suffix`).

    Raises:
        UsageError: two inputs would write the same file (`person.jpg` and `person.png`): nothing is
            written, both are named.
    """
    targets: dict[Path, str] = {}
    for rel in rels:
        target = out / PurePosixPath(rel).with_suffix(suffix)
        if target in targets:
            raise UsageError(
                f"inputs {targets[target]} and {rel} would both be written as {target}: one would be lost",
                fix="rename one of them (their names differ only in the suffix)",
            )
        targets[target] = rel
    return {rel: target for target, rel in targets.items()}
