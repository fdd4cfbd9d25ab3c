"""Warm-up jobs: the originals' stage and the operator fits, run in the workers ahead of the stages
that need them.

A cold audit does three kinds of work before scoring: the originals' stage (decode, detect, align and
embed every original), operator identification (one fit per observed folder) and the pass over the
anonymized images. One process did the first two alone while the workers waited to be started for the
third. Now the pool starts at the top of a cold run, and the first two stages are split over it too.

How the split stays exact: the workers run the very functions the caller runs (`inputs.warm_faces`,
`methods.identify_observed`), whose results land in the run's cache (atomic writes; keyed by content
and code). The caller then runs its own stages as before and finds every result there: what it logs,
the issues it records and the order of the gallery are its own, as in one process. A job that fails
leaves its part uncached, and the caller computes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from metrics.recognizers import Recognizer
from redteam.core.errors import InputError
from redteam.core.results import FaceRecord
from redteam.datasets import Dataset
from redteam.engine.context import RunContext
from redteam.engine.inputs import Inputs
from redteam.engine.methods import Method
from redteam.engine.worker_pool import Job, WorkerPool, WorkerRun, run_jobs, worker_context, worker_recognizer, worker_run


def _warm_faces(run: WorkerRun, dataset: Dataset, role: str, overrides: dict[str, str]) -> dict[str, float]:
    """One chunk of the originals' (or distractors') stage, its results left in the cache."""
    from redteam.engine.inputs import warm_faces

    ctx = worker_context(run.config, run.policy, run.threads)
    recognizers = {name: worker_recognizer(name, ctx.device, threshold) for name, threshold in run.thresholds.items()}
    warm_faces(ctx, recognizers, dataset, role, overrides)
    return ctx.clock.seconds


def input_jobs(
    datasets: Sequence[tuple[Dataset, str, dict[str, str]]], uncached: Callable[[Path], bool], workers: int, lead: int = 0
) -> tuple[list[Job], list[Job]]:
    """The originals' stage (and the distractors') for the images whose detections are not cached, as
    contiguous chunks, about four per worker: (the first `lead` originals, one small chunk per worker;
    the rest). The operator fits run between the two (`warm_inputs`)."""
    leading: list[Job] = []
    jobs: list[Job] = []
    for index, (dataset, role, overrides) in enumerate(datasets):
        todo = tuple(entry for entry in dataset.entries if uncached(entry.path))
        first, todo = (todo[:lead], todo[lead:]) if index == 0 else ((), todo)  # the originals come first
        step = max(1, math.ceil(len(first) / max(1, workers)))
        leading += [
            Job(_warm_faces, (replace(dataset, entries=first[i : i + step], ignored=(), outside=()), role, overrides)) for i in range(0, len(first), step)
        ]
        size = max(1, math.ceil(len(todo) / max(1, 4 * workers)))
        jobs += [Job(_warm_faces, (replace(dataset, entries=todo[i : i + size], ignored=(), outside=()), role, overrides)) for i in range(0, len(todo), size)]
    return leading, jobs


def _fit_from_start(run: WorkerRun, method: Method, originals: Dataset) -> dict[str, float]:
    """One observed folder's operator fit, its result left in the cache. It needs only the first
    originals with a counterpart (`methods.fit_pairs`), so it reads them itself (from the cache when a
    chunk did them already) and does not wait for the originals' stage: the fits and that stage share
    the workers."""
    from redteam.engine.identify import MAX_PAIRS
    from redteam.engine.inputs import leading_faces
    from redteam.engine.methods import fit_pairs, identify_observed

    ctx = worker_context(run.config, run.policy, run.threads)
    faces, paths = leading_faces(ctx, originals, lambda faces, paths: len(fit_pairs(ctx, method, faces, paths)[1]) >= MAX_PAIRS)
    identify_observed(ctx, method, faces, paths)
    return ctx.clock.seconds


def fit_jobs(methods: Sequence[Method], originals: Dataset) -> list[Job]:
    """The operator fit of each listed folder, from the first originals."""
    return [Job(_fit_from_start, (method, originals)) for method in methods]


def _fit(run: WorkerRun, method: Method, faces: list[FaceRecord], paths: dict[str, Path]) -> dict[str, float]:
    """One observed folder's operator fit on the faces the caller found, its result left in the cache."""
    from redteam.engine.methods import identify_observed

    ctx = worker_context(run.config, run.policy, run.threads)
    identify_observed(ctx, method, faces, paths)
    return ctx.clock.seconds


def refit_jobs(methods: Sequence[Method], faces: list[FaceRecord], paths: dict[str, Path]) -> list[Job]:
    """The operator fit of each listed folder on the originals' faces as the caller collected them."""
    return [Job(_fit, (method, faces, paths)) for method in methods]


def run_pool(ctx: RunContext, injected: bool) -> WorkerPool:
    """The run's worker processes (`--workers N`, local executor): started now when the first original's
    faces are not cached (a cold run: they start while this process loads its models), else only when a
    stage has work for them. With one worker, injected models or Ray: a pool of none, never started."""
    local = ctx.config.executor in ("local", "processes") and ctx.config.workers > 1 and not injected
    pool = WorkerPool(ctx.config.workers if local else 0, ctx.device)
    entries = ctx.listing(ctx.config.originals, "originals").entries if local else ()
    if entries and uncached(ctx, entries[0].path):
        pool.start()
    return pool


def uncached(ctx: RunContext, path: Path) -> bool:
    """Whether an input's faces are not in the cache yet (an unreadable file is left to the stage)."""
    try:
        return ctx.cached_detection(ctx.sha256(path)) is None
    except InputError:
        return False


def warm_inputs(ctx: RunContext, pool: WorkerPool, recognizers: dict[str, Recognizer], unknown: Sequence[Method]) -> None:
    """Before `inputs.collect`: the workers read the originals (and distractors) that are not cached and,
    in a cold run, fit the `unknown` folders' operators, all into the cache. The first originals go first,
    split over the workers (every fit reads them: fits started together would each detect them), then
    the fits, then the other originals' chunks, so that a long fit and the chunks share the workers
    instead of following one another."""
    from redteam.engine.identify import MAX_PAIRS

    if not pool.workers:
        return
    config = ctx.config
    originals = ctx.listing(config.originals, "originals")
    datasets = [(originals, "originals", dict(config.identity_overrides))]
    if config.gallery is not None:
        datasets.append((ctx.listing(config.gallery, "gallery"), "gallery", {}))
    fits = fit_jobs(unknown, originals) if pool.started else []
    leading, rest = input_jobs(datasets, lambda path: uncached(ctx, path), pool.workers, lead=MAX_PAIRS if fits else 0)
    jobs = leading + fits + rest
    if jobs:
        ctx.clock.add(run_jobs(pool, worker_run(config, ctx.policy, recognizers, pool.workers), jobs, ctx.log))


def warm_fits(ctx: RunContext, pool: WorkerPool, recognizers: dict[str, Recognizer], unknown: Sequence[Method], inputs: Inputs) -> None:
    """After `inputs.collect`: the fits not cached yet (a warm run with a new folder, a failed job), in the
    workers, one folder each."""
    from redteam.engine.methods import identification_cached

    unfitted = [m for m in unknown if not identification_cached(ctx, m, inputs.originals, inputs.paths)] if pool.workers else []
    if unfitted:
        run = worker_run(ctx.config, ctx.policy, recognizers, pool.workers)
        ctx.clock.add(run_jobs(pool, run, refit_jobs(unfitted, inputs.originals, inputs.paths), ctx.log))
