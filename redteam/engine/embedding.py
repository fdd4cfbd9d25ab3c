"""The embedding stage: batched, cached embeddings per recognizer, and the identification gallery.

Cache keys are the chip's content plus the recognizer's fingerprint, so a changed model never reuses a
stale result. A cached entry of the wrong shape or with a non-finite value is recomputed, not trusted.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metrics.recognizers import Recognizer
from redteam.cache import Cache, content_key
from redteam.core.results import FaceRecord
from redteam.engine.context import Clock
from redteam.engine.gallery_entries import GalleryEntry


class Embedder:
    """Batched, cached embedding for one recognizer; counts what it reused and computed."""

    def __init__(self, recognizer: Recognizer, cache: Cache, clock: Clock, batch_size: int) -> None:
        self.recognizer = recognizer
        self.cache = cache
        self.clock = clock
        self.batch_size = batch_size
        self.fingerprint = recognizer.fingerprint
        self.hits = 0
        self.computed = 0
        self.rejected = 0

    def key(self, chip: np.ndarray) -> str:
        """The cache key of a chip's embedding: its content and the recognizer's fingerprint."""
        return content_key(self.fingerprint, str(chip.shape), chip.tobytes())

    def cached(self, key: str) -> np.ndarray | None:
        """The stored embedding under `key`, or None (absent, of the wrong shape or not finite: a damaged
        or foreign entry is recomputed, never trusted)."""
        value = self.cache.get_array("embeddings", key)
        if value is None:
            return None
        if value.shape != (self.recognizer.embedding_dim,) or not np.all(np.isfinite(value)):
            self.rejected += 1
            return None
        return value.astype(np.float32)

    def __call__(self, chips: Sequence[np.ndarray | Known]) -> torch.Tensor:
        """N x D embeddings of N aligned chips (H x W x 3 uint8), or of embeddings the caller already
        read from the cache (`Known`, counted as reused)."""
        out: list[np.ndarray | None] = []
        todo: list[tuple[int, str, np.ndarray]] = []  # (position, cache key, chip) of what is not in the cache
        for index, chip in enumerate(chips):
            if isinstance(chip, Known):
                out.append(chip.embedding)
                continue
            key = self.key(chip)
            out.append(self.cached(key))
            if out[-1] is None:
                todo.append((index, key, chip))
        self.hits += len(chips) - len(todo)
        self.computed += len(todo)
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            tensor = torch.from_numpy(np.stack([chip for _, _, chip in batch])).permute(0, 3, 1, 2).float() / 255.0
            with self.clock.measure("inference"):
                embeddings = self.recognizer.embed(tensor).numpy().astype(np.float32)
            for (index, key, _), embedding in zip(batch, embeddings, strict=True):
                out[index] = embedding
                self.cache.put_array("embeddings", key, embedding)
        if not chips:
            return torch.zeros((0, self.recognizer.embedding_dim))
        return torch.from_numpy(np.stack([np.asarray(v) for v in out]))


@dataclass(frozen=True)
class Known:
    """An embedding read from the cache without making its chip (see `redteam.engine.inputs`)."""

    embedding: np.ndarray


@dataclass(frozen=True)
class Gallery:
    """The identification gallery of a run (originals plus distractors), per recognizer.

    Attributes:
        faces: every gallery face, in column order.
        entries: who each column shows.
        embeddings: recognizer -> G x D embeddings of the clean faces.
        same_photo: recognizer -> column -> near-duplicate columns (the same photo).
        alignments: recognizer -> face id -> alignment computed on the original.
    """

    faces: list[FaceRecord]
    entries: list[GalleryEntry]
    embeddings: dict[str, torch.Tensor]
    same_photo: dict[str, dict[int, tuple[int, ...]]]
    alignments: dict[str, dict[str, Hashable]]

    @property
    def index(self) -> dict[str, int]:
        return {face.face_id: i for i, face in enumerate(self.faces)}

    def subset(self, columns: list[int]) -> Gallery:
        """The gallery restricted to `columns` (the parrot gallery of an observed folder), with its
        near-duplicate map renumbered."""
        position = {column: i for i, column in enumerate(columns)}
        return Gallery(
            faces=[self.faces[c] for c in columns],
            entries=[self.entries[c] for c in columns],
            embeddings={name: values[columns] for name, values in self.embeddings.items()},
            same_photo={
                name: {position[c]: tuple(position[t] for t in twins if t in position) for c, twins in mapping.items() if c in position}
                for name, mapping in self.same_photo.items()
            },
            alignments=self.alignments,
        )
