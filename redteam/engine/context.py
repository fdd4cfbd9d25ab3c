"""The state of one run: configuration, policy, cache, clock, input bookkeeping, log and progress.

Created per run (nothing module-level), so one missing model or one bad input never sticks to the next
run in the same process.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from redteam.cache import Cache, content_key
from redteam.core.config import AuditConfig
from redteam.core.errors import InputError
from redteam.core.geometry import FaceGeometry
from redteam.core.policy import Policy
from redteam.core.results import ISSUE_FIXES, InputIssue, LogFn, ProgressFn

if TYPE_CHECKING:
    import torch

    from redteam.datasets import Counterparts, Dataset
    from redteam.engine.handles import ImageHandle
    from redteam.faces import FaceDetector


@dataclass
class Clock:
    """Accumulates wall time by category (model inference vs. the harness around it)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def measure(self, category: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[category] = self.seconds.get(category, 0.0) + time.perf_counter() - start

    def add(self, seconds: dict[str, float]) -> None:
        """Seconds measured elsewhere (a worker's), added per category."""
        for category, value in seconds.items():
            self.seconds[category] = self.seconds.get(category, 0.0) + value


@dataclass
class RunContext:
    """Everything the stages share for one run."""

    config: AuditConfig
    policy: Policy
    device: torch.device
    cache: Cache
    detector: FaceDetector
    log: LogFn
    progress: ProgressFn
    clock: Clock = field(default_factory=Clock)
    issues: list[InputIssue] = field(default_factory=list)
    conversions: Counter[str] = field(default_factory=Counter)
    input_hashes: dict[str, str] = field(default_factory=dict)
    counterparts: dict[Path, Counterparts] = field(default_factory=dict)  # observed folder -> its listing, made once per run
    listings: dict[tuple[Path, bool], tuple[Dataset, list[tuple[str, str]]]] = field(default_factory=dict)  # `listing`
    file_hashes: dict[Path, tuple[tuple[int, int, int], str]] = field(default_factory=dict)  # path -> (inode, size, mtime), SHA-256

    def listing(self, folder: Path, role: str, unreadable: list[tuple[str, str]] | None = None) -> Dataset:
        """`discover_images(folder, role=role, unreadable=unreadable)`, listed once per run: several stages
        walk the originals and each observed folder. With `unreadable`, the sub-folders that could not be
        listed are added to it on every call."""
        from redteam.datasets import discover_images

        key = (folder, unreadable is not None)
        if key not in self.listings:
            skipped: list[tuple[str, str]] = []
            self.listings[key] = (discover_images(folder, role=role, unreadable=skipped if unreadable is not None else None), skipped)
        dataset, skipped = self.listings[key]
        if unreadable is not None:
            unreadable.extend(skipped)
        return dataset

    def issue(self, kind: str, path: str, method: str | None, detail: str, action: str, fix: str | None = None) -> None:
        self.issues.append(InputIssue(kind, path, method, detail, action, fix or ISSUE_FIXES[kind]))

    def open(self, path: Path, label: str, method: str | None) -> ImageHandle | None:
        """A handle on an input (hashed now, decoded when needed: `redteam.engine.handles`), recording its
        conversions; an unreadable file becomes an input issue."""
        from redteam.engine.handles import open_image

        try:
            with self.clock.measure("io"):
                handle = open_image(path, self.cache, self.sha256(path))
        except InputError as error:
            self.issue(error.issue_kind, label, method, error.message, "skipped", error.fix)
            self.log(f"skipped {label}: {error.message}")
            return None
        self.conversions.update(handle.conversions)
        return handle

    def remember_sha256(self, path: Path, status: os.stat_result, sha256: str) -> None:
        """The SHA-256 of a file's bytes, read in this run while the file had `status` (from `fstat` on the
        handle they were read through)."""
        self.file_hashes[path] = ((status.st_ino, status.st_size, status.st_mtime_ns), sha256)

    def sha256(self, path: Path) -> str:
        """The SHA-256 of a file's bytes: remembered (`known_sha256`), or read now and remembered.

        Raises:
            InputError: the file cannot be read.
        """
        known = self.known_sha256(path)
        return known if known is not None else self.read(path)[1]

    def read(self, path: Path) -> tuple[bytes, str]:
        """A file's bytes and their SHA-256, read through one handle and remembered (`known_sha256`).

        Raises:
            InputError: the file cannot be read.
        """
        try:
            with path.open("rb") as stream:
                status = os.fstat(stream.fileno())
                data = stream.read()
        except OSError as error:
            raise InputError(f"{path}: cannot be read ({error.strerror})", fix="check the path and its permissions") from error
        digest = hashlib.sha256(data).hexdigest()
        self.remember_sha256(path, status, digest)
        return data, digest

    def known_sha256(self, path: Path) -> str | None:
        """The SHA-256 remembered for `path` in this run, if the file still has the inode, size and mtime it
        had then (else None: it is read and hashed again). Every input is hashed once per run: the
        hidden-content scan and the pass read the same files."""
        known = self.file_hashes.get(path)
        if known is None:
            return None
        try:
            status = os.stat(path)
        except OSError:
            return None
        return known[1] if known[0] == (status.st_ino, status.st_size, status.st_mtime_ns) else None

    def load_detector(self) -> None:
        """Load the detector (timed as "models", not as inference: the overhead ratio compares with model
        inference alone)."""
        with self.clock.measure("models"):
            self.detector.load()

    def cached_detection(self, content_hash: str, min_face_size: int | None = None) -> list[FaceGeometry] | None:
        """The cached detections for an image, or None (absent, or malformed: then logged)."""
        return cached_faces(self.cache, self.detector, content_hash, min_face_size, self.log)

    def store_detection(self, content_hash: str, faces: list[FaceGeometry], min_face_size: int | None = None) -> None:
        store_faces(self.cache, self.detector, content_hash, faces, min_face_size)

    def detect(self, pixels: np.ndarray | Callable[[], np.ndarray], content_hash: str, min_face_size: int | None = None) -> list[FaceGeometry]:
        """Detections for an image (or a function giving it, called only on a cache miss), cached by its
        content hash and the detector's settings; a cache entry that does not parse is recomputed."""
        cached = self.cached_detection(content_hash, min_face_size)
        if cached is not None:
            return cached
        image = pixels() if callable(pixels) else pixels
        self.load_detector()
        with self.clock.measure("inference"):
            faces = self.detector.detect(image, min_face_size)
        self.store_detection(content_hash, faces, min_face_size)
        return faces


def cached_faces(cache: Cache, detector: FaceDetector, content_hash: str, min_face_size: int | None, log: LogFn) -> list[FaceGeometry] | None:
    """The detections `detector` found on the content `content_hash`, from `cache`, or None (absent, or
    malformed: then logged); shared by a run and by whatever detects its originals ahead of it."""
    key = content_key(content_hash, detector.cache_key_for(min_face_size))
    cached = cache.get_json("detections", key)
    if isinstance(cached, list):
        try:
            return [FaceGeometry.from_json(face) for face in cached]
        except (KeyError, TypeError, ValueError, IndexError):
            log(f"detection cache entry {key[:12]} is malformed: recomputed")
    return None


def store_faces(cache: Cache, detector: FaceDetector, content_hash: str, faces: list[FaceGeometry], min_face_size: int | None = None) -> None:
    """`faces` as the detections of `content_hash`, where `cached_faces` reads them."""
    cache.put_json("detections", content_key(content_hash, detector.cache_key_for(min_face_size)), [face.to_json() for face in faces])
