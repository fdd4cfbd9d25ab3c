"""`redteam benchmark`: every technique applied to one dataset, audited in one run, and compared.

1. The dataset is read by its adapter and laid out as an originals folder (every photo: the gallery) and
   a probes folder (the probes of the split, `datasets`), once per checksum and split.
2. Each technique gets a folder of anonymized probes: a spec through `redteam anonymize` (so the folder
   declares its method and the adaptive tier runs against it), a tool by running its command once over
   the probes folder (an observed folder: operator identification runs on it). A folder made before for
   the same dataset, split and technique is reused, so a re-run with one more setting makes only that
   setting's.
3. One audit runs over all the folders (`redteam.engine.AuditRun`: its cache, `--workers` and the Ray
   executor), attacking the probes with every photo in the gallery, with the attacks and recognizers
   asked for (`auto`: every one that applies).
4. `analysis` and `utility` turn its rows into the leaderboard, the frontier, the minimal safe settings
   and the strata; `outputs` writes them.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redteam.benchmark.datasets import BenchmarkDataset, read_dataset
from redteam.benchmark.techniques import Technique
from redteam.core.errors import InputError

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class BenchmarkConfig:
    """One benchmark: the dataset, the techniques, how to attack, and where the results go."""

    dataset: Path
    techniques: tuple[Technique, ...]
    out: Path
    layout: str | None = None
    limit: int | None = None
    probes_per_person: int | None = 1  # None: every photo is a probe
    probe_people: int | None = None  # probes from the first N people only (the others stay in the gallery)
    attacks: tuple[str, ...] = ("auto",)
    recognizers: tuple[str, ...] = ()
    workers: int = 1
    executor: str = "local"
    device: str = "cpu"
    seed: int = 0
    risk_limit: float = 0.05
    utility: str = "ssim_image"  # the frontier's utility axis (`analysis.UTILITY_AXES`)
    cache_dir: Path | None = None
    tool_timeout: float = 3600.0
    command: str = ""


@dataclass
class Prepared:
    """The dataset and one folder per technique, ready to audit."""

    dataset: BenchmarkDataset
    originals: Path
    probes: tuple[str, ...]  # the probes' paths under `originals`
    folders: dict[str, Path] = field(default_factory=dict)  # audit method name -> folder
    names: dict[str, Technique] = field(default_factory=dict)  # audit method name -> technique
    seconds: dict[str, float] = field(default_factory=dict)  # audit method name -> seconds spent making its folder now

    @property
    def every_photo_probed(self) -> bool:
        """Whether every photo of the dataset is a probe (then the originals folder is the probes folder and
        the audit attacks all of it)."""
        return len(self.probes) == len(self.dataset.photos)


def audit_name(technique: Technique, taken: set[str]) -> str:
    """A technique's name in the audit: its label with every character but letters, digits, '.', '-' and
    '_' replaced, made unique."""
    base = re.sub(r"[^\w.-]+", "_", technique.name).strip("_") or "technique"
    name, index = base, 2
    while name in taken:
        name, index = f"{base}_{index}", index + 1
    taken.add(name)
    return name


def prepare(config: BenchmarkConfig, work: Path, log: LogFn) -> Prepared:
    """The originals folder and each technique's folder under `work` (made or reused)."""
    dataset = read_dataset(config.dataset, config.layout, config.limit)
    root = work / dataset.checksum[:16]
    originals = dataset.materialise(root / "originals")
    probes = dataset.probes(config.probes_per_person, config.probe_people)
    if not probes:
        raise InputError(
            f"dataset {config.dataset} has nobody with two photos or more: rank-1 needs another photo of each probe's person",
            fix="add a second photo of some people, or keep more people (--limit)",
        )
    split = ("all" if config.probes_per_person is None else str(config.probes_per_person)) + (f"-of-{config.probe_people}" if config.probe_people else "")
    prepared = Prepared(dataset, originals, probes)
    probe_folder = originals if prepared.every_photo_probed else dataset.materialise(root / f"probes-{split}", only=probes)
    log(
        f"dataset {config.dataset} ({dataset.layout}): {len(dataset.photos)} photos of {dataset.identities} people, checksum "
        f"{dataset.checksum[:16]}; {len(probes)} probes ({describe_split(config)}), every photo in the gallery"
    )
    faces = detection_memo(config.cache_dir, config.device)
    taken: set[str] = set()
    for technique in config.techniques:
        name = audit_name(technique, taken)
        key = hashlib.sha256(json.dumps([technique.kind, technique.spec, config.seed, split]).encode()).hexdigest()[:16]
        folder = root / "techniques" / f"{name}-{key}"
        started = time.perf_counter()
        if not (folder / ".complete").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            if technique.kind == "spec":
                _anonymize(probe_folder, folder, technique, config, faces)
            else:
                _run_tool(probe_folder, folder, technique, config, log)
            (folder / ".complete").write_text(json.dumps({"technique": technique.__dict__}, default=str) + "\n")
            prepared.seconds[name] = time.perf_counter() - started
            log(f"{name}: folder made in {prepared.seconds[name]:.1f} s")
        else:
            log(f"{name}: folder reused")
        prepared.folders[name] = folder
        prepared.names[name] = technique
    return prepared


def describe_split(config: BenchmarkConfig) -> str:
    """The split in words, for the log and the report."""
    each = "every photo" if config.probes_per_person is None else f"{config.probes_per_person} per person"
    return each + (f" of the first {config.probe_people} people" if config.probe_people else "")


def _anonymize(probes: Path, folder: Path, technique: Technique, config: BenchmarkConfig, faces: Callable[[Any], list[Any]]) -> None:
    from redteam.anonymize import anonymize_folder

    anonymize_folder(probes, folder, technique.spec, seed=config.seed, device=config.device, detections=faces)


def detection_memo(cache_dir: Path | None, device: str) -> Callable[[Any], list[Any]]:
    """The faces of a loaded original, detected once and kept in the run cache under the key the audit
    reads (`redteam.engine.context.cached_faces`): every technique, and the audit after them, reuse them."""
    from redteam.cache import Cache
    from redteam.core.geometry import FaceGeometry
    from redteam.core.paths import default_cache_dir
    from redteam.engine.context import cached_faces, store_faces
    from redteam.faces import FaceDetector

    cache = Cache(cache_dir if cache_dir is not None else default_cache_dir())
    detector = FaceDetector(device=device)

    def faces(image: Any) -> list[FaceGeometry]:
        known = cached_faces(cache, detector, image.sha256, None, lambda line: None)
        if known is not None:
            return known
        found = detector.detect(image.pixels)
        store_faces(cache, detector, image.sha256, found)
        return found

    return faces


def _run_tool(probes: Path, folder: Path, technique: Technique, config: BenchmarkConfig, log: LogFn) -> None:
    """The tool's command once over the probes, writing into a fresh folder (its output is not trusted to
    be complete unless the command exits 0)."""
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    arguments = [part.replace("{input}", str(probes)).replace("{output}", str(staging)) for part in shlex.split(technique.spec)]
    log(f"{technique.name}: running {shlex.join(arguments)}")
    try:
        done = subprocess.run(arguments, capture_output=True, text=True, timeout=config.tool_timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise InputError(f"tool {technique.spec!r} could not run ({error})", fix="check the command and that it finishes") from error
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise InputError(f"tool {technique.spec!r} exited {done.returncode}: {' | '.join(tail)}", fix="run the command by hand on the dataset and fix it")
    staging.rename(folder)


def audit(config: BenchmarkConfig, prepared: Prepared, log: LogFn, progress: Callable[[str, int, int], None]) -> Any:
    """One audit of every technique's folder: the probes attacked, every photo in the gallery."""
    from redteam.core.config import AuditConfig, MethodSource
    from redteam.engine import AuditRun

    methods = tuple(MethodSource(name, "observed", folder=folder) for name, folder in prepared.folders.items())
    audit_config = AuditConfig(
        originals=prepared.originals,
        probes=None if prepared.every_photo_probed else prepared.probes,
        out=config.out / "audit",
        methods=methods,
        recognizers=config.recognizers,
        attacks=config.attacks,
        device=config.device,
        seed=config.seed,
        cache_dir=config.cache_dir,
        workers=config.workers,
        executor=config.executor,
    )
    return AuditRun(audit_config, log=log, progress=progress).run()
