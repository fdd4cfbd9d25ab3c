"""The example heap: the riskiest faces of each method so far, with their crops, bounded in size; the
crops of a face that never enters it are never made."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping

import numpy as np
import torch

from metrics.columns import METRIC_CROP
from metrics.recognizers.base import Recognizer
from redteam.cache import content_key
from redteam.core.results import FaceRecord
from redteam.engine.context import RunContext
from redteam.engine.embedding import Gallery
from redteam.engine.handles import ImageHandle
from redteam.engine.work import CachedCrop, Crop, MethodWork, PendingExample, Probe


class ExampleHeap:
    """Keeps, per method, the 2 x `examples_per_method` riskiest faces (closest to their own original
    under any clean attack and recognizer)."""

    def __init__(self, ctx: RunContext, recognizers: Mapping[str, Recognizer], gallery: Gallery) -> None:
        self.ctx, self.recognizers, self.gallery = ctx, recognizers, gallery
        self.gallery_index = gallery.index

    def crop(self, image: ImageHandle, box: tuple[float, float, float, float], make: Callable[[], np.ndarray]) -> Crop:
        """The crop of an example face, kept in the cache under its image's pixel digest and box: a warm
        re-run shows the same examples without decoding the images they come from (or reading the crops
        of faces that do not stay among the examples)."""
        key = content_key(image.digest, f"example-crop-{METRIC_CROP}", ",".join(f"{v:.4f}" for v in box))
        if self.ctx.cache.has("example_crops", key, ".npy"):
            return CachedCrop("example_crops", key)
        crop = make()
        self.ctx.cache.put_array("example_crops", key, crop)
        return crop

    def keep(
        self,
        work: MethodWork,
        faces: list[FaceRecord],
        fresh: dict[str, dict[str, Probe]],
        original_crops: Mapping[str, Crop],
        anonymized_crops: Mapping[str, Crop],
        reconstructions: dict[str, Mapping[str, Crop]],
    ) -> None:
        """Keep the riskiest faces so far (closest to their own original under any clean attack),
        with their crops, in a bounded heap; the crops of a face that does not enter it are never made."""
        keep = 2 * self.ctx.config.examples_per_method
        if keep <= 0:
            return
        clean = {a.name for a in work.attacks if a.gallery_domain == "clean"}
        for face in faces:
            pairs, risk = [], -math.inf  # (attack, recognizer, attacked embedding, own embedding)
            for attack_name, probe in fresh.get(face.face_id, {}).items():
                if attack_name not in clean:
                    continue
                for name, recognizer in self.recognizers.items():
                    own = self.gallery.embeddings[name][self.gallery_index[face.face_id]].numpy()
                    distance = float(recognizer.distances(torch.from_numpy(probe.embeddings[name])[None], torch.from_numpy(own)[None])[0, 0])
                    pairs.append((attack_name, name, probe.embeddings[name], own))
                    risk = max(risk, 1.0 - distance / recognizer.threshold.value)
            if not pairs:
                continue
            if len(work.examples) >= keep and (risk, face.face_id) <= work.examples[0][:2]:
                continue  # not riskier than the least risky kept: neither its crops nor its similarities are needed
            similarity = [(a, name, float(np.dot(x, own) / (np.linalg.norm(x) * np.linalg.norm(own) + 1e-12))) for a, name, x, own in pairs]
            example = PendingExample(
                method=work.method.name,
                face_id=face.face_id,
                original=original_crops[face.face_id],
                anonymized=anonymized_crops[face.face_id],
                reconstructions=tuple(
                    (a, reconstructions[a][face.face_id]) for a in sorted(reconstructions) if a in clean and face.face_id in reconstructions[a]
                ),
                similarity=tuple(similarity),
            )
            item = (risk, face.face_id, example)  # the face id breaks ties: the same choice in any worker
            if len(work.examples) < keep:
                heapq.heappush(work.examples, item)
            else:
                heapq.heappushpop(work.examples, item)
