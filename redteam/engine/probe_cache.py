"""The probe cache: each (method, image, attack) result stored as soon as it is computed, keyed by
everything it depends on, and checked when read back (a damaged entry is recomputed, never trusted)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Mapping

import numpy as np
from PIL import Image

from attacks import Attack
from metrics.columns import METRIC_CROP
from metrics.recognizers.base import Recognizer
from redteam.attack_runner import SCALE_CAP
from redteam.cache import Cache, content_key
from redteam.core.results import ExampleFace, FaceRecord
from redteam.engine.context import RunContext
from redteam.engine.work import CachedCrop, Crop, MethodWork, PendingExample

PROBE_VERSION = "probe/2"  # 2: the scale cap resamples in 8 bits (redteam.attack_runner)


def _encode(crop: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)


class ProbeCache:
    """Stored probes of one run's models (recognizers, quality columns, LPIPS: `models_key`)."""

    def __init__(self, ctx: RunContext, recognizers: Mapping[str, Recognizer], models_key: str) -> None:
        self.ctx, self.recognizers, self.models_key = ctx, recognizers, models_key

    def key(self, work: MethodWork, attack: Attack, label: str, digest: str, faces: list[FaceRecord]) -> str:
        """Everything one attack's probes on one image depend on: the method, the image's pixels, the
        attack and its models, the seed, the faces' geometry and operators, the recognizers and columns."""
        provenance = json.dumps(attack.provenance(work.info), sort_keys=True)
        geometry = json.dumps([face.geometry.to_json() for face in faces])
        operators = [work.face_operators[f.face_id].to_json() for f in faces if f.face_id in work.face_operators and attack.needs_known_method]
        return content_key(
            PROBE_VERSION,
            work.method.name,
            label,
            digest,
            attack.spec,
            attack.version,
            provenance,
            str(self.ctx.config.seed),
            geometry,
            self.models_key,
            str(SCALE_CAP),
            json.dumps(operators),
        )

    def store(self, key: str, records: dict[str, dict], refused: dict[str, str], seconds: float, crops: dict[str, np.ndarray]) -> None:
        self.ctx.cache.put_json("probes", key, {"records": records, "refused": refused, "seconds": seconds})
        for face_id, crop in crops.items():
            self.ctx.cache.put_bytes("probe_crops", content_key(key, face_id), _encode(crop))

    def cached(self, key: str, audited: list[FaceRecord]) -> tuple[dict[str, dict], dict[str, str], float, Mapping[str, Crop]] | None:
        """A stored result, checked: every audited face present or refused, finite embeddings of the right
        size for every recognizer, its crops present. A bad entry is recomputed with a log line. The crops
        are read only for the examples finally shown (`resolve_example`)."""
        entry = self.ctx.cache.get_json("probes", key)
        if entry is None:
            return None
        try:
            records, refused, seconds = entry["records"], entry["refused"], float(entry["seconds"])
            present = []
            for face in audited:
                if face.face_id in refused:
                    continue
                record = records[face.face_id]
                for name, recognizer in self.recognizers.items():
                    vector = np.asarray(record["embeddings"][name], dtype=np.float64)
                    if vector.shape != (recognizer.embedding_dim,) or not np.all(np.isfinite(vector)):
                        raise ValueError("embedding")
                    float(record["spread"][name])
                if not self.ctx.cache.has("probe_crops", content_key(key, face.face_id)):
                    raise ValueError("crop")
                present.append(face.face_id)
            if not math.isfinite(seconds):
                raise ValueError("seconds")
        except (KeyError, TypeError, ValueError, OSError):
            self.ctx.log(f"probe cache entry {key[:12]} is incomplete or malformed: recomputed")
            return None
        return records, refused, seconds, {face_id: CachedCrop("probe_crops", content_key(key, face_id)) for face_id in present}


def resolve_crop(cache: Cache, crop: Crop, log: Callable[[str], object]) -> np.ndarray:
    """A crop's pixels: itself if in memory, else read from the cache; an entry gone or no longer
    decoding (the cache was cleaned meanwhile) is shown blank, with a log line."""
    if isinstance(crop, np.ndarray):
        return crop
    blank = np.zeros((METRIC_CROP, METRIC_CROP, 3), np.uint8)
    if crop.kind == "example_crops":
        pixels = cache.get_array(crop.kind, crop.key)
        if pixels is not None and pixels.shape == blank.shape and pixels.dtype == np.uint8:
            return pixels
    else:
        data = cache.get_bytes(crop.kind, crop.key)
        try:
            if data is not None:
                return _decode(data)
        except (OSError, ValueError):
            pass
    log(f"cached crop {crop.kind}/{crop.key[:12]} is gone or no longer decodes: shown blank")
    return blank


def resolve_example(cache: Cache, example: PendingExample, log: Callable[[str], object]) -> ExampleFace:
    """The example with every crop read (`resolve_crop`)."""
    return ExampleFace(
        method=example.method,
        face_id=example.face_id,
        original=resolve_crop(cache, example.original, log),
        anonymized=resolve_crop(cache, example.anonymized, log),
        reconstructions=tuple((attack, resolve_crop(cache, crop, log)) for attack, crop in example.reconstructions),
        similarity=example.similarity,
    )
