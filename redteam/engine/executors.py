"""Where the pass over the images runs: here, in `--workers N` processes, or on a Ray cluster.

Each image's work is independent of every other's and seeded from the run's seed and the image's name,
so splitting the images into contiguous chunks and merging the chunks' results in order gives exactly
the results of a run in one process. A worker builds its own models once, from a picklable
description of the run (`PassSpec`), and processes the chunks it is given; the caches on disk are
shared (atomic writes), so concurrent workers never corrupt an entry.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

from attacks import Attack, MethodInfo, build_attack
from attacks.hidden import HiddenContentAttack
from metrics.recognizers import RECOGNIZERS
from metrics.recognizers.base import Threshold
from redteam.core.config import AuditConfig
from redteam.core.errors import UsageError
from redteam.core.policy import Policy
from redteam.core.results import FaceRecord, InputIssue
from redteam.engine.context import RunContext
from redteam.engine.inputs import Inputs
from redteam.engine.methods import Method
from redteam.engine.models import Models
from redteam.engine.probe_cache import resolve_example
from redteam.engine.probes import Pass
from redteam.engine.work import MethodWork, PendingExample
from redteam.engine.worker_pool import WorkerPool, reissue_warnings, threads_per_worker, worker_context, worker_recognizer
from redteam.runlog import RunLog

EXECUTORS = ("local", "processes", "ray")
Task = tuple[str, list[FaceRecord], list[FaceRecord]]


@dataclass(frozen=True)
class PassSpec:
    """Everything a worker needs to rebuild the pass: picklable (no loaded model inside)."""

    config: AuditConfig
    policy: Policy
    inputs: Inputs
    methods: tuple[tuple[Method, MethodInfo, tuple[tuple[str, str], ...], frozenset[str]], ...]  # attacks as (name, spec)
    thresholds: dict[str, Threshold]
    lpips: bool
    threads: int
    token: str  # identifies the run, so a worker builds its models once for all the chunks it gets


@dataclass
class ChunkResult:
    """What one chunk of images added to each method, and to the run's bookkeeping."""

    works: list[dict[str, Any]]
    issues: list[InputIssue] = field(default_factory=list)
    conversions: Counter[str] = field(default_factory=Counter)
    input_hashes: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: Counter[str] = field(default_factory=Counter)  # library warnings raised in the worker, with counts


def spec_of(run_pass: Pass, workers: int) -> PassSpec:
    models = run_pass.models
    for name, recognizer in models.recognizers.items():
        if type(recognizer) is not RECOGNIZERS.get(name):
            raise UsageError(f"recognizer '{name}' was injected, so workers cannot rebuild it", fix="run with --workers 1")
    return PassSpec(
        config=run_pass.ctx.config,
        policy=run_pass.ctx.policy,
        inputs=run_pass.inputs,
        methods=tuple((w.method, w.info, tuple((a.name, a.spec) for a in w.attacks), w.hidden) for w in run_pass.works),
        thresholds={name: r.threshold for name, r in models.recognizers.items()},
        lpips=models.lpips is not None,
        threads=threads_per_worker(workers),
        token=uuid.uuid4().hex,
    )


_built: dict[str, Pass] = {}  # per worker process: the pass built from the spec it was given


def _attack(name: str, spec: str) -> Attack:
    """The caller's attack rebuilt from its spec, under the caller's name: the spec can differ from the name
    the caller built it with (`sr` becomes `sr:device=cpu` once the run's device is filled in), and every
    probe must come back under the name the caller scores. `hidden_content` is not in the registry (the
    audit adds it)."""
    attack = HiddenContentAttack() if spec == HiddenContentAttack.name else build_attack(spec)
    attack.name = name  # type: ignore[misc]  # an instance attribute, as build_attack sets it
    return attack


def _build(spec: PassSpec) -> Pass:
    """The pass, rebuilt in a worker: models loaded once per worker (`worker_pool`: shared with the stages
    that ran there before) and reused for every chunk."""
    from metrics.perceptual import LPIPSMetric

    key = spec.token
    if key not in _built:
        ctx = worker_context(spec.config, spec.policy, spec.threads, log=_warn)
        device = ctx.device
        recognizers = {name: worker_recognizer(name, device, threshold) for name, threshold in spec.thresholds.items()}
        models = Models(recognizers, LPIPSMetric(device=device) if spec.lpips else None, [], set())
        works = [
            MethodWork(method, info, [_attack(name, a).use_device(device) for name, a in attacks], hidden=hidden)
            for method, info, attacks, hidden in spec.methods
        ]
        _built.clear()
        _built[key] = Pass(ctx, spec.inputs, models, works)
    return _built[key]


def _warn(message: str) -> None:
    """A worker's log line (a bad cache entry), returned to the run's log with the worker's warnings."""
    import warnings

    warnings.warn(message, RuntimeWarning, stacklevel=2)


def process_chunk(spec: PassSpec, tasks: list[Task]) -> ChunkResult:
    """Process one chunk of images in a worker and return what it added."""
    run_pass = _build(spec)
    for work in run_pass.works:  # a fresh accumulation per chunk
        work.probes, work.parrot, work.gaps, work.attack_seconds, work.examples, work.face_operators, work.exempt = {}, {}, {}, {}, [], {}, {}
        work.reused = work.computed = 0
    ctx = run_pass.ctx
    ctx.issues, ctx.conversions, ctx.input_hashes, ctx.clock.seconds = [], Counter(), {}, {}
    runlog = RunLog()
    with runlog.capturing():  # a worker's library warnings go back to the caller's log, not to the terminal
        run_pass.run(tasks)
        for work in run_pass.works:  # crops travel as pixels: a worker's cache (a Ray node's disk) need not be the caller's
            work.examples = [(risk, face_id, materialized(ctx, example)) for risk, face_id, example in work.examples]
    return ChunkResult(
        works=[
            {
                "probes": w.probes,
                "parrot": w.parrot,
                "gaps": w.gaps,
                "attack_seconds": w.attack_seconds,
                "face_operators": w.face_operators,
                "exempt": w.exempt,
                "examples": w.examples,
                "reused": w.reused,
                "computed": w.computed,
            }
            for w in run_pass.works
        ],
        issues=ctx.issues,
        conversions=ctx.conversions,
        input_hashes=ctx.input_hashes,
        seconds=ctx.clock.seconds,
        warnings=runlog.warnings,
    )


def materialized(ctx: RunContext, example: PendingExample) -> PendingExample:
    """The example with every crop read from this process's cache."""
    resolved = resolve_example(ctx.cache, example, ctx.log)
    return replace(example, original=resolved.original, anonymized=resolved.anonymized, reconstructions=resolved.reconstructions)


def merge(run_pass: Pass, result: ChunkResult) -> None:
    """Add a chunk's results to the pass, in chunk order (the order of a run in one process)."""
    import heapq

    keep = 2 * run_pass.ctx.config.examples_per_method
    for work, part in zip(run_pass.works, result.works, strict=True):
        known = {a.name for a in work.attacks}
        for attack, probes in part["probes"].items():
            if attack not in known:  # a probe the scoring would never read: a verdict on less evidence than it says
                raise RuntimeError(f"a worker returned probes of attack '{attack}', which {work.method.name} does not run ({sorted(known)})")
            work.probes.setdefault(attack, []).extend(probes)
        for name, embeddings in part["parrot"].items():
            work.parrot.setdefault(name, {}).update(embeddings)
        for reason, faces in part["gaps"].items():
            work.gaps.setdefault(reason, []).extend(faces)
        for attack, seconds in part["attack_seconds"].items():
            work.attack_seconds[attack] = work.attack_seconds.get(attack, 0.0) + seconds
        work.face_operators.update(part["face_operators"])
        for attack, faces in part["exempt"].items():
            work.exempt.setdefault(attack, set()).update(faces)
        for item in part["examples"]:
            if len(work.examples) < keep:
                heapq.heappush(work.examples, item)
            elif keep > 0:
                heapq.heappushpop(work.examples, item)
        work.reused += part["reused"]
        work.computed += part["computed"]
    ctx = run_pass.ctx
    ctx.issues.extend(result.issues)
    ctx.conversions.update(result.conversions)
    ctx.input_hashes.update(result.input_hashes)
    ctx.clock.add(result.seconds)
    reissue_warnings(result.warnings)


def chunked(tasks: list[Task], workers: int) -> list[list[Task]]:
    """Contiguous chunks, about four per worker (so a slow chunk does not hold the others back)."""
    size = max(1, math.ceil(len(tasks) / max(1, 4 * workers)))
    return [tasks[i : i + size] for i in range(0, len(tasks), size)]


def run_pass(run: Pass, executor: str, workers: int, address: str | None = None, pool: WorkerPool | None = None) -> None:
    """Run the pass with the chosen executor (`processes`: on `pool`, the run's workers, or on a pool of
    its own); results identical to `local` in every case."""
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor '{executor}'", fix="choose one of: " + ", ".join(EXECUTORS))
    tasks = run.labels()
    if executor == "local" and workers <= 1:
        run.run(tasks)
        return
    # Images whose results are all in the cache (a warm re-run, the done part of a resumed one) are read
    # here: starting workers, each loading its models, would cost more than reading them. Workers the run
    # started already (a cold run) get every image.
    if pool is None or not pool.started:
        tasks = tasks[run.run(tasks, until_computed=True) :]
    if not tasks:
        run.ctx.log("every image's results were in the cache: no worker started")
        return
    spec = spec_of(run, workers)
    chunks = chunked(tasks, workers)
    done = 0
    for result, size in _map(executor, workers, spec, chunks, address, pool):
        merge(run, result)
        done += size
        run.ctx.progress(f"attacking {len(run.works)} method(s) on {workers} {executor} worker(s)", done, len(tasks))


def _map(executor: str, workers: int, spec: PassSpec, chunks: list[list[Task]], address: str | None, pool: WorkerPool | None) -> Any:
    """(result, chunk size) for every chunk, in chunk order."""
    if executor == "ray":
        yield from _ray_map(workers, spec, chunks, address)
        return
    with WorkerPool(workers, spec.config.device) if pool is None else nullcontext(pool) as processes:
        futures = [processes.submit(process_chunk, spec, chunk) for chunk in chunks]
        for future, chunk in zip(futures, chunks, strict=True):
            yield future.result(), len(chunk)


def _ray_map(workers: int, spec: PassSpec, chunks: list[list[Task]], address: str | None) -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray", fix='pip install "face-anon-redteam[ray]"') from None
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(process_chunk)
    shared = ray.put(spec)
    pending = [remote.remote(shared, chunk) for chunk in chunks]
    for reference, chunk in zip(pending, chunks, strict=True):
        yield ray.get(reference), len(chunk)
