"""The audit's inputs as the command line names them: the originals folder, the methods (NAME=DIR folders,
NAME=SPEC or bare SPEC reference methods, a manifest's rows) and the gallery, checked in the order of the
command line before any model (or torch) is loaded."""

from __future__ import annotations

from pathlib import Path

from redteam.core.config import MethodSource
from redteam.core.errors import InputError, UsageError


def _pairs(values: list[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, equals, rest = value.partition("=")
        if not equals or not name.strip() or not rest.strip():
            raise UsageError(f"{option} expects NAME=VALUE, got '{value}'", fix=f"e.g. {option} blur=out/blur")
        pairs.append((name.strip(), rest.strip()))
    return pairs


def named_specs(values: list[str]) -> list[tuple[str, str]]:
    """`--method` values: NAME=SPEC, or a bare SPEC named after its method (`mosaic:block=12` is named
    `mosaic`, a second mosaic `mosaic-2`). A value is NAME=SPEC when what precedes its first `=` is a
    plain name (no `:`, `,` or `|`), so `mosaic:block=12` is never read as a method named `mosaic:block`."""
    named = []
    for value in values:
        head, equals, rest = value.partition("=")
        if equals and not any(mark in head for mark in ":,|"):
            named.extend(_pairs([value], "--method"))
            continue
        family = value.split("|")[0].split(":")[0].strip() or value.strip()
        taken = {name for name, _ in named}
        name = family if family not in taken else next(f"{family}-{n}" for n in range(2, len(values) + 2) if f"{family}-{n}" not in taken)
        named.append((name, value.strip()))
    names = [name for name, _ in named]
    if len(set(names)) != len(names):
        raise UsageError(f"--method names repeat: {', '.join(sorted({n for n in names if names.count(n) > 1}))}", fix="give each method its own NAME=SPEC")
    return named


def _folder(path: Path, role: str, fix: str) -> Path:
    """`path`, an existing folder.

    Raises:
        InputError: it does not exist, or is not a folder.
    """
    if not path.exists():
        raise InputError(f"{role} {path} does not exist", fix=fix)
    if not path.is_dir():
        raise InputError(f"{role} {path} is not a folder", fix=fix)
    return path


def audit_inputs(
    originals: Path | None, anonymized: list[str], method: list[str], manifest: Path | None, gallery: Path | None
) -> tuple[Path, list[MethodSource], list[tuple[str, str]]]:
    """The audit's originals folder, methods and identity overrides, checked in the order of the command
    line before any model (or torch) is loaded, so that the first real problem is the one named: the
    originals folder, then the methods (names, folders, the manifest and its rows), then the gallery.
    Method specs are parsed last (their registry loads torch).

    Returns:
        The originals folder (ORIGINALS, or the one the manifest's rows share when it is omitted), the
        method sources and the manifest's (original, identity) pairs.

    Raises:
        UsageError: neither ORIGINALS nor --manifest, no method, malformed or repeated method names.
        InputError, ConfigError: a missing or unreadable folder or file, a bad manifest row or method spec.
    """
    from redteam.datasets import discover_images, manifest_originals_root, read_manifest

    if originals is None and manifest is None:
        raise UsageError(
            "missing ORIGINALS, the folder of original images",
            fix="redteam audit ORIGINALS --anonymized NAME=DIR --out DIR, or redteam audit --manifest pairs.csv --out DIR",
        )
    if originals is not None:
        discover_images(_folder(originals, "originals folder", "check the path"), role="originals")
    if not (anonymized or method or manifest):
        raise UsageError("no method to audit", fix="give --anonymized NAME=DIR, --method NAME=SPEC or --manifest CSV")
    folders = _pairs(anonymized, "--anonymized")
    named = named_specs(method)
    for name, folder in folders:
        if not Path(folder).is_dir():
            problem = "is not a folder" if Path(folder).exists() else "does not exist"
            raise InputError(f"anonymized folder {folder} for method '{name}' {problem}", fix="check the path")
    identities: list[tuple[str, str]] = []
    by_method: dict[str, list[tuple[str, Path]]] = {}
    root = originals
    if manifest is not None:
        for row in read_manifest(manifest, originals):
            by_method.setdefault(row.method, []).append((row.original_rel, row.anonymized))
            if row.identity:
                identities.append((row.original_rel, row.identity))
        if root is None:  # the folder every original of the manifest lies in
            root = manifest_originals_root(manifest)
            discover_images(root, role="originals folder (holding the manifest's originals)")
    if root is None:
        raise UsageError("missing ORIGINALS, the folder of original images", fix="redteam audit ORIGINALS ... or --manifest pairs.csv")
    names = [name for name, _ in folders] + [name for name, _ in named] + sorted(by_method)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UsageError(f"method name(s) used twice: {', '.join(repeated)}", fix="give each method a unique NAME")
    if gallery is not None:
        _folder(gallery, "gallery folder", "give --gallery a folder of face images")
    from redteam.anonymizers import build_method  # loads torch: after every path is known to be there

    sources = [MethodSource(name, "observed", folder=Path(folder)) for name, folder in folders]
    sources += [MethodSource(name, "reference", spec=build_method(spec).spec) for name, spec in named]
    sources += [MethodSource(name, "observed", files=tuple(files)) for name, files in sorted(by_method.items())]
    return root, sources, identities


def check_execution(workers: int, executor: str) -> None:
    """`--workers` and `--executor` as every command that runs an audit takes them.

    Raises:
        UsageError: no worker, or an executor other than local and ray.
    """
    if workers < 1:
        raise UsageError(f"--workers must be positive, got {workers}", fix="e.g. --workers 2")
    if executor not in ("local", "ray"):
        raise UsageError(f"unknown executor '{executor}'", fix="use --executor local or --executor ray")
