"""Calibrate verification thresholds at a fixed false-accept rate from labelled pairs.

A threshold at FAR f is the largest distance t such that at most a fraction f of impostor pairs have
distance < t. Estimating it needs at least 1/f impostor pairs; with fewer the threshold is marked
unreliable and the audit refuses to use it (a too-strict threshold would understate verification).

References:
    Huang, Ramesh, Berg and Learned-Miller, "Labeled Faces in the Wild", UMass TR 07-49, 2007 (pairs
    protocol); Grother, Ngan and Hanaoka, NIST FRVT 1:1 (thresholds reported at fixed FMR).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from metrics.recognizers.base import Recognizer, Threshold
from redteam.core.errors import ConfigError, InputError

CALIBRATION_FARS = (1e-3, 1e-4)


def read_pairs(path: Path) -> list[tuple[Path, Path, bool]]:
    """CSV with columns image_a, image_b, same (1/0, true/false); paths relative to the CSV's folder."""
    if not path.is_file():
        raise InputError(f"pairs file {path} does not exist", fix="give a CSV with columns image_a,image_b,same")
    try:
        pairs = _pair_rows(path)
    except UnicodeDecodeError as error:
        raise InputError(f"pairs file {path} is not UTF-8 text (byte {error.start})", fix="save the CSV as UTF-8") from error
    except csv.Error as error:
        raise InputError(f"pairs file {path} is not a well-formed CSV ({error})", fix="one row per pair: image_a,image_b,same") from error
    if not pairs:
        raise InputError(f"pairs file {path} has no rows", fix="add labelled pairs")
    return pairs


def _pair_rows(path: Path) -> list[tuple[Path, Path, bool]]:
    pairs = []
    with path.open(newline="", encoding="utf-8-sig") as handle:  # a BOM (Excel's UTF-8 CSV) is not part of the header
        reader = csv.DictReader(handle)
        missing = [c for c in ("image_a", "image_b", "same") if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"pairs file {path} lacks column(s) {', '.join(missing)}", fix="header: image_a,image_b,same")
        for line, record in enumerate(reader, start=2):
            a, b, same = ((record.get(column) or "").strip() for column in ("image_a", "image_b", "same"))
            if not a or not b or "\x00" in a + b:
                raise InputError(f"pairs file {path}, line {line}: image_a and image_b must be file paths", fix="fill both columns with image paths")
            if same.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise InputError(f"pairs file {path}, line {line}: 'same' must be 1 or 0, got '{same}'", fix="use 1 for same person, 0 otherwise")
            pairs.append(((path.parent / a).resolve(), (path.parent / b).resolve(), same.lower() in ("1", "true", "yes")))
    return pairs


def pairs_from_identity_folders(root: Path) -> list[tuple[Path, Path, bool]]:
    """Every pair of images under root/<identity>/<file>: same identity = genuine, else impostor."""
    from redteam.datasets import discover_images

    dataset = discover_images(root, role="calibration faces")
    entries = [e for e in dataset.entries if "/" in e.rel]
    if not entries:
        raise InputError(f"{root} has no identity folders", fix="arrange images as DIR/<identity>/<file>")
    return [(a.path, b.path, a.identity == b.identity) for a, b in itertools.combinations(entries, 2)]


def threshold_at_far(impostor: np.ndarray, genuine: np.ndarray, far: float) -> dict[str, object]:
    """Threshold, observed FAR and TAR for one target FAR (accept when distance < threshold)."""
    ordered = np.sort(impostor)
    allowed = int(math.floor(far * len(ordered)))
    threshold = float(ordered[min(allowed, len(ordered) - 1)])
    return {
        "threshold": threshold,
        "far_observed": float(np.mean(impostor < threshold)),
        "tar": float(np.mean(genuine < threshold)) if len(genuine) else None,
        "reliable": len(ordered) >= math.ceil(1.0 / far),
    }


def calibrate(
    pairs: Sequence[tuple[Path, Path, bool]],
    recognizers: dict[str, Recognizer],
    embed_image: Callable[[Recognizer, Path], torch.Tensor | None],
    source: str,
) -> dict[str, object]:
    """Compute thresholds at CALIBRATION_FARS for each recognizer.

    Args:
        embed_image: returns the embedding of the largest face in an image, or None (no face).
    """
    report: dict[str, object] = {"version": 1, "source": source, "recognizers": {}}
    for name, recognizer in recognizers.items():
        cache: dict[Path, torch.Tensor | None] = {}
        genuine: list[float] = []
        impostor: list[float] = []
        skipped = 0
        for a, b, same in pairs:
            for path in (a, b):
                if path not in cache:
                    cache[path] = embed_image(recognizer, path)
            ea, eb = cache[a], cache[b]
            if ea is None or eb is None:
                skipped += 1
                continue
            distance = float(recognizer.distances(ea[None], eb[None])[0, 0])
            (genuine if same else impostor).append(distance)
        if not impostor:
            raise InputError(f"{source}: no impostor pair with faces for {name}", fix="add pairs of different people")
        thresholds = {f"{far:g}": threshold_at_far(np.array(impostor), np.array(genuine), far) for far in CALIBRATION_FARS}
        report["recognizers"][name] = {  # type: ignore[index]
            "fingerprint": recognizer.fingerprint,
            "distance": recognizer.threshold.distance,
            "n_genuine": len(genuine),
            "n_impostor": len(impostor),
            "pairs_without_face": skipped,
            "thresholds": thresholds,
        }
    return report


def load_threshold(path: Path, recognizer: str, far: float, fingerprint: str | None = None) -> Threshold | None:
    """The calibrated threshold for `recognizer` at `far`, or None if the file does not cover it.

    Raises:
        ConfigError: unreadable file, another model's calibration, or a threshold estimated from too
            few impostor pairs.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entry = data["recognizers"].get(recognizer)
    except (OSError, ValueError, KeyError, AttributeError) as error:
        raise ConfigError(f"calibration file {path} is unreadable ({error})", fix="re-run `redteam calibrate`") from error
    if entry is None:
        return None
    if fingerprint is not None and entry.get("fingerprint") != fingerprint:
        raise ConfigError(
            f"calibration file {path} was made with another {recognizer} model or preprocessing ({entry.get('fingerprint')} != {fingerprint})",
            fix="re-run `redteam calibrate` with the weights this audit uses",
        )
    value = entry["thresholds"].get(f"{far:g}")
    if value is None:
        raise ConfigError(f"calibration file {path} has no threshold at FAR {far:g}", fix="use --far 0.001 or 0.0001")
    if not value["reliable"]:
        raise ConfigError(
            f"calibration file {path}: {recognizer} threshold at FAR {far:g} rests on only {entry['n_impostor']} impostor pairs",
            fix=f"calibrate with at least {math.ceil(1 / far)} impostor pairs, or use a larger --far",
        )
    return Threshold(
        value=float(value["threshold"]),
        distance=str(entry["distance"]),
        source=f"calibrated by `redteam calibrate` ({path}, {entry['n_impostor']} impostor pairs)",
        calibrated=True,
        far=far,
    )


def chosen_recognizers(names: Sequence[str], device: torch.device) -> dict[str, Recognizer]:
    """The recognizers to calibrate: those named (each must be available), or every available one.

    Raises:
        UsageError: an unknown name. ModelUnavailableError: a named one, or every one, is unavailable.
    """
    from metrics.recognizers import RECOGNIZERS
    from redteam.core.errors import ModelUnavailableError, UsageError

    chosen: dict[str, Recognizer] = {}
    for name in names or list(RECOGNIZERS):
        if name not in RECOGNIZERS:
            raise UsageError(f"unknown recognizer '{name}'", fix="choose from: " + ", ".join(RECOGNIZERS))
        availability = RECOGNIZERS[name].availability()
        if availability.available:
            chosen[name] = RECOGNIZERS[name](device=device)
        elif names:
            raise ModelUnavailableError(f"recognizer {name} unavailable: {availability.reason}")
    if not chosen:
        raise ModelUnavailableError("no recognizer is available to calibrate", fix="see `redteam models`")
    return chosen


def largest_face_embedder(device: torch.device, log: Callable[[str], object]) -> Callable[[Recognizer, Path], torch.Tensor | None]:
    """`calibrate`'s `embed_image`: the embedding of the largest face MTCNN finds in an image, or None (no
    face, or a file that does not decode: logged)."""
    from redteam.faces import FaceDetector
    from redteam.images import load_image

    detector = FaceDetector(device=device)

    def embed_image(model: Recognizer, path: Path) -> torch.Tensor | None:
        try:
            image = load_image(path)
        except InputError as error:
            log(f"skipped {path}: {error}")
            return None
        found = detector.detect(image.pixels)
        if not found:
            return None
        face = max(found, key=lambda f: f.width * f.height)
        chip = model.crop(image.pixels, model.locate(image.pixels, face))
        tensor = torch.from_numpy(np.ascontiguousarray(chip)).permute(2, 0, 1)[None].float() / 255.0
        return model.embed(tensor)[0]

    return embed_image
