"""An identification as a cache record, and the digest of the code a fit depends on."""

from __future__ import annotations

import functools

from redteam.core.results import FaceFit, Identification


@functools.cache
def code_fingerprint() -> str:
    """A digest of the code a fit depends on (this module, the anonymizers it replays and the shared
    vocabulary in redteam/core they build on: geometry, parameters, specs): a cached identification is
    reused only by the code that made it."""
    import hashlib
    from pathlib import Path

    import redteam.anonymizers
    import redteam.core

    digest = hashlib.sha256()
    here = Path(__file__).parent  # every part of identification, and its entry point redteam/engine/identify.py
    packages = [here, Path(redteam.anonymizers.__file__).parent, Path(redteam.core.__file__).parent]
    for path in [here.parent / "identify.py", *(p for package in packages for p in sorted(package.glob("*.py")))]:
        digest.update(f"{path.parent.name}/{path.name}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def to_record(result: Identification) -> dict[str, object]:
    """`result` at full precision, for the cache (`from_record` reads it back unchanged)."""
    return {
        "spec": result.spec,
        "residual": result.residual,
        "identified": result.identified,
        "faces": [[f.image, f.face_index, f.residual] for f in result.faces],
        "candidates": [[spec, value] for spec, value in result.candidates],
        "reason": result.reason,
        "max_residual": result.max_residual,
    }


def from_record(record: object) -> Identification | None:
    """An identification written by `to_record`, or None if `record` is not one (a damaged entry)."""
    if not isinstance(record, dict):
        return None
    spec, reason, identified = record.get("spec"), record.get("reason"), record.get("identified")
    if not (spec is None or isinstance(spec, str)) or not isinstance(reason, str) or not isinstance(identified, bool):
        return None
    try:
        faces = tuple(FaceFit(str(image), int(index), float(value)) for image, index, value in record["faces"])
        candidates = tuple((str(name), float(value)) for name, value in record["candidates"])
        return Identification(spec, float(record["residual"]), identified, faces, candidates, reason, float(record["max_residual"]))
    except (KeyError, TypeError, ValueError):
        return None
