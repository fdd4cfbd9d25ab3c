"""Discover originals and their anonymized counterparts (folders mirroring the originals, or a manifest).

Layouts:
    originals/<identity>/<file>   identities known: other photos of the same person are used;
    originals/<file>              flat: each file is its own identity.
Anonymized folders mirror the originals' relative paths; the suffix may differ (obama.jpg may be
anonymized as obama.png). A manifest CSV has columns original, anonymized, method[, identity].
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from redteam.core.errors import InputError, UsageError
from redteam.core.paths import check_creatable_dir, ensure_writable_dir
from redteam.core.text import decodable, printable
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


def discover_images(root: Path, *, role: str, unreadable: list[tuple[str, str]] | None = None) -> Dataset:
    """List the images under `root` (recursively, hidden files and folders skipped, folder links not
    descended). Each file's `rel` and `identity` are its names as valid Unicode (`redteam.core.text.decodable`:
    bytes that are not UTF-8 are shown as ``\\xNN``); its `path` is the file itself.

    Args:
        unreadable: where to list the sub-folders that cannot be read, as (relative path, reason); when
            None (the default) such a folder is an error: its images would silently be left out.

    Raises:
        InputError: `root` is missing, not a folder, holds no images, or (without `unreadable`) a folder
            under it cannot be read; two names that show alike (see `decodable`).
    """
    if not root.exists():
        raise InputError(f"{role} folder {root} does not exist", fix="check the path")
    if not root.is_dir():
        raise InputError(f"{role} path {root} is not a folder", fix="give a folder of images")
    entries: list[OriginalEntry] = []
    ignored: list[str] = []
    outside: list[str] = []
    resolved_root = root.resolve()
    labels: dict[str, Path] = {}
    for path in _files_under(root, role, unreadable):
        relative = path.relative_to(root)
        rel = decodable(relative.as_posix())
        if rel in labels:
            raise InputError(
                f"{role} folder {root}: the names {printable(str(labels[rel]))!r} and {printable(str(path))!r} both show as '{rel}'",
                fix="rename one of them (use UTF-8 file names)",
            )
        labels[rel] = path
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            ignored.append(rel)
            continue
        # Only a link can lead outside: folder links are not descended, so a plain file lies under the root.
        resolved = path.resolve() if path.is_symlink() else resolved_root / relative
        if resolved_root not in resolved.parents:
            outside.append(rel)
            continue
        identity = decodable(relative.parts[0] if len(relative.parts) > 1 else relative.stem)
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


def _files_under(root: Path, role: str, unreadable: list[tuple[str, str]] | None) -> list[Path]:
    """Every non-hidden file (or link that is not a folder) under `root`, sorted; folder links are not
    descended, so link loops end. A folder that cannot be listed is an error naming it, or, with
    `unreadable`, recorded there (relative path, reason) and skipped."""
    found: list[Path] = []
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as listing:
                children = list(listing)
        except OSError as error:
            reason = error.strerror or type(error).__name__
            if unreadable is None:
                raise InputError(
                    f"{role} folder {folder} cannot be read ({reason}): its images would be left out of the audit",
                    fix="make it readable (e.g. chmod u+rx) or move it out of the folder",
                ) from error
            unreadable.append((decodable(folder.relative_to(root).as_posix()), reason))
            continue
        for child in children:
            if child.name.startswith("."):
                continue
            path = Path(child.path)
            try:
                is_folder = child.is_dir(follow_symlinks=False)
                is_file = not is_folder and path.is_file()
            except OSError:  # a file that cannot even be examined is listed: reading it reports it
                is_folder, is_file = False, True
            if is_folder:
                folders.append(path)
            elif is_file:
                found.append(path)
    return sorted(found)


class Counterparts:
    """The file in `folder` mirroring an original's relative path: the same path, or the same path with
    another image suffix. Each sub-folder is listed once, on first use, rather than once per original
    (which made matching N originals cost N x N directory entries). Made per run: a listing is never
    reused across runs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.outside: set[str] = set()  # originals whose counterpart is a link leading outside `folder`: not followed
        self.unreadable: dict[str, str] = {}  # originals whose counterpart's folder cannot be read -> why (not audited)
        self._root = folder.resolve()
        self._stems: dict[Path, dict[str, list[Path]]] = {}
        self._unlisted: dict[Path, str] = {}  # sub-folder -> why it cannot be listed
        self._inside: dict[Path, bool] = {}  # sub-folder -> whether it resolves under the folder (not a folder link)
        self._found: dict[str, Path | None] = {}  # original -> its counterpart (`find`)

    def _by_stem(self, parent: Path) -> dict[str, list[Path]] | None:
        """The image files of `parent` by stem (as shown: `decodable`); None if it cannot be listed."""
        if parent not in self._stems and parent not in self._unlisted:
            stems: dict[str, list[Path]] = {}
            try:
                if parent.is_dir():
                    for path in parent.iterdir():
                        if path.suffix.lower() in SUPPORTED_SUFFIXES:
                            stems.setdefault(decodable(path.stem), []).append(path)
            except OSError as error:
                self._unlisted[parent] = f"folder {parent} cannot be read ({error.strerror or type(error).__name__})"
                return None
            self._stems[parent] = stems
        return self._stems.get(parent)

    def _subfolder(self, parts: tuple[str, ...]) -> Path:
        """The folder under `folder` whose path shows as `parts`: a folder whose name is not UTF-8 is found
        by its shown form (``\\xNN`` escapes, see `discover_images`)."""
        folder = self.folder
        for part in parts:
            candidate = folder / part
            if "\\x" in part and not _is_dir(candidate):
                try:
                    matches = [child for child in folder.iterdir() if decodable(child.name) == part and _is_dir(child)]
                except OSError:  # reported when the folder is listed
                    matches = []
                candidate = matches[0] if len(matches) == 1 else candidate
            folder = candidate
        return folder

    def find(self, rel: str) -> Path | None:
        """The counterpart of original `rel`, or None (then `rel` may be in `outside` or `unreadable`);
        found once per run (the stages ask for the same originals' files several times).

        Raises:
            InputError: several candidate files (e.g. a.png and a.webp) make the match ambiguous.
        """
        if rel not in self._found:
            self._found[rel] = self._find(rel)
        return self._found[rel]

    def _find(self, rel: str) -> Path | None:
        exact = self.folder / rel
        try:
            if is_image_file(exact):
                return self._followed(rel, exact)
        except OSError:  # cannot be examined (its folder cannot be searched): listed below, which says why
            pass
        stem = PurePosixPath(rel).with_suffix("")
        parent = self._subfolder(stem.parent.parts)
        listing = self._by_stem(parent)
        if listing is None:
            self.unreadable[rel] = self._unlisted[parent]
            return None
        candidates = sorted(p for p in listing.get(stem.name, []) if _is_file(p))
        if len(candidates) > 1:
            raise InputError(
                f"{self.folder}: several anonymized files match original '{rel}': {', '.join(decodable(p.name) for p in candidates)}",
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


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


@dataclass(frozen=True)
class ManifestRow:
    original_rel: str
    anonymized: Path
    method: str
    identity: str | None


MANIFEST_COLUMNS = ("original", "anonymized", "method")


def read_manifest(manifest: Path, originals_root: Path | None) -> tuple[ManifestRow, ...]:
    """Read a manifest CSV; relative paths are relative to the manifest's folder.

    Args:
        originals_root: the originals folder; None: the deepest folder holding every original the manifest
            lists (`manifest_originals_root`).

    Raises:
        InputError: missing file or columns; a row whose original lies outside the originals folder, does
            not exist or is a folder, or whose anonymized path is a folder (the message names the line).
    """
    if not manifest.is_file():
        raise InputError(f"manifest {manifest} does not exist", fix="check the path")
    try:
        records = _manifest_records(manifest)
    except UnicodeDecodeError as error:
        raise InputError(f"manifest {manifest} is not UTF-8 text (byte {error.start})", fix="save the CSV as UTF-8") from error
    except csv.Error as error:
        raise InputError(f"manifest {manifest} is not a well-formed CSV ({error})", fix="one row per pair: original,anonymized,method[,identity]") from error
    root = (originals_root if originals_root is not None else _common_folder(manifest, records)).resolve()
    return _manifest_rows(manifest, records, root, derived=originals_root is None)


def manifest_originals_root(manifest: Path) -> Path:
    """The originals folder of a manifest given without ORIGINALS: the deepest folder that holds every
    original it lists (so `originals/<identity>/<file>` rows keep their identity folders when they name
    more than one person).

    Raises:
        InputError: as `read_manifest`.
    """
    if not manifest.is_file():
        raise InputError(f"manifest {manifest} does not exist", fix="check the path")
    try:
        return _common_folder(manifest, _manifest_records(manifest))
    except UnicodeDecodeError as error:
        raise InputError(f"manifest {manifest} is not UTF-8 text (byte {error.start})", fix="save the CSV as UTF-8") from error
    except csv.Error as error:
        raise InputError(f"manifest {manifest} is not a well-formed CSV ({error})", fix="one row per pair: original,anonymized,method[,identity]") from error


def _common_folder(manifest: Path, records: list[tuple[int, dict[str, str]]]) -> Path:
    parents = [str((manifest.parent / record["original"]).resolve().parent) for _, record in records]
    return Path(os.path.commonpath(parents))


def _manifest_records(manifest: Path) -> list[tuple[int, dict[str, str]]]:
    """(line, row) of every row, each with its original, anonymized and method filled and free of NUL."""
    records: list[tuple[int, dict[str, str]]] = []
    with manifest.open(newline="", encoding="utf-8-sig") as handle:  # a BOM (Excel's UTF-8 CSV) is not part of the header
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [c for c in MANIFEST_COLUMNS if c not in header]
        if missing:
            raise InputError(
                f"manifest {manifest} lacks column(s) {', '.join(missing)}",
                fix="the header must be: original,anonymized,method[,identity]",
            )
        for line, record in enumerate(reader, start=2):
            record = {k.strip(): (v or "").strip() for k, v in record.items() if k}
            if not record.get("original") or not record.get("anonymized") or not record.get("method"):
                raise InputError(f"manifest {manifest}, line {line}: empty original, anonymized or method", fix="fill every column")
            if any("\x00" in value for value in record.values()):
                raise InputError(f"manifest {manifest}, line {line}: a field contains a NUL character", fix="remove the NUL byte (no path contains one)")
            records.append((line, record))
    if not records:
        raise InputError(f"manifest {manifest} has no rows", fix="add one row per anonymized image")
    return records


def _manifest_rows(manifest: Path, records: list[tuple[int, dict[str, str]]], root: Path, *, derived: bool) -> tuple[ManifestRow, ...]:
    rows: list[ManifestRow] = []
    seen: dict[tuple[str, str], int] = {}  # (original, method) -> line
    for line, record in records:
        where = f"manifest {manifest}, line {line}"
        original = (manifest.parent / record["original"]).resolve()
        anonymized = (manifest.parent / record["anonymized"]).resolve()
        try:
            original_rel = original.relative_to(root).as_posix()
        except ValueError:
            raise InputError(
                f"{where}: original {original} is outside the originals folder {root}",
                fix="list originals inside the folder given to `redteam audit`",
            ) from None
        for role, path in (("original", original), ("anonymized", anonymized)):
            if _is_dir(path):
                raise InputError(f"{where}: {role} {path} is a folder, not an image file", fix="list one image file per row: original,anonymized,method")
        if not _is_file(original):
            raise InputError(f"{where}: original {original} does not exist", fix="fix the path (relative to the manifest's folder) or remove the row")
        if derived and (anonymized == root or root in anonymized.parents):
            raise InputError(
                f"{where}: anonymized {anonymized} lies inside {root}, the folder of the originals (every image in it is audited as an original)",
                fix="keep the originals in a folder of their own, or give the originals folder: redteam audit ORIGINALS --manifest ...",
            )
        earlier = seen.get((original_rel, record["method"]))
        if earlier is not None:
            raise InputError(
                f"{where}: original {record['original']} already has a '{record['method']}' row (line {earlier})",
                fix="one row per original and method: remove the duplicate",
            )
        seen[(original_rel, record["method"])] = line
        rows.append(ManifestRow(original_rel=original_rel, anonymized=anonymized, method=record["method"], identity=record.get("identity") or None))
    return tuple(rows)


def check_outside_inputs(path: Path, inputs: list[Path], role: str) -> None:
    """Refuse a folder the run writes into (output, cache) that is, or lies inside, an input folder."""
    resolved = path.resolve()
    for folder in inputs:
        root = folder.resolve()
        if resolved == root or root in resolved.parents:
            raise UsageError(f"{role} {path} is inside input folder {folder}", fix=f"choose another {role}, outside the input folders")


def check_out_dir(out: Path, inputs: list[Path], *, mirrors_inputs: bool = False, create: bool = True) -> None:
    """Refuse an output folder inside (or equal to) an input folder (inputs are never modified), or one
    that is a file, lies under a file or cannot be written; create it (unless `create` is False: then
    nothing is made, and the output is created when it is written). A command that writes a tree
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
    if create:
        ensure_writable_dir(out, "output folder", "choose a writable output folder with --out")
    else:
        check_creatable_dir(out, "output folder", "choose a writable output folder with --out")


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
