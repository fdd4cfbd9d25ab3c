"""The `--workers N` processes of a run: started once, shared by every stage that has work for them
(`redteam.engine.warmup` for the originals' stage and the operator fits, `redteam.engine.executors` for
the pass), each worker keeping its detector and recognizers loaded between jobs."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from metrics.recognizers import RECOGNIZERS, Recognizer
from metrics.recognizers.base import Threshold
from redteam.cache import Cache
from redteam.core.config import AuditConfig
from redteam.core.devices import resolve_device
from redteam.core.policy import Policy
from redteam.engine.context import Clock, RunContext

#: Where the library warnings a worker raised are re-issued in the calling process.
WORKER_LOG = logging.getLogger("redteam.workers")


@dataclass(frozen=True)
class WorkerRun:
    """What a worker needs to rebuild the run's context and recognizers: picklable (no model inside)."""

    config: AuditConfig
    policy: Policy
    thresholds: dict[str, Threshold]
    threads: int


class WorkerPool:
    """`workers` processes, started on first use (a warm re-run that computes nothing never starts them)
    and shut down by `close`.

    Where it is safe (`start_method`) the workers are forked from this process once it has imported the
    libraries: they start in milliseconds, sharing its imported code, instead of importing torch and the
    models' packages again (seconds each: on 2 cores, 26 s instead of 33 s for a cold audit of 25 photos
    of 1 MP with 3 observed folders). Elsewhere they are spawned, and import while the caller goes on."""

    def __init__(self, workers: int, device: Any = "cpu") -> None:
        self.workers = workers
        self.device = resolve_device(device) if isinstance(device, str) else device
        self._pool: ProcessPoolExecutor | None = None

    @property
    def started(self) -> bool:
        return self._pool is not None

    @property
    def start_method(self) -> str:
        """ "fork" on Linux with the CPU as device and one torch thread per worker, else "spawn": a forked
        child that ran torch with several threads could wait forever on the OpenMP pool it inherited
        (torch's own DataLoader workers run with one thread for this reason), and CUDA cannot be used in
        a forked child."""
        single_thread = threads_per_worker(self.workers) == 1
        return "fork" if sys.platform == "linux" and self.device.type == "cpu" and single_thread else "spawn"

    def start(self) -> None:
        """Start the workers now (forked, or spawned and importing the libraries while the caller goes on)."""
        if self._pool is None:
            _import_libraries()  # forked workers inherit them; the caller needs them anyway
            forked = self.start_method == "fork"
            context = multiprocessing.get_context(self.start_method)
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=_fresh_stdio if forked else None)
            for _ in range(self.workers):
                self._pool.submit(_import_libraries)

    def submit(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        self.start()
        assert self._pool is not None
        return self._pool.submit(function, *args)

    def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fresh_stdio() -> None:
    """In a forked worker: standard output and error on new stream objects, so a lock the parent's
    progress thread held at the fork (inside a write) is not the child's."""
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the process's own streams, for its lifetime
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


def _import_libraries() -> None:
    """Import what every stage needs (torch, the detector's and recognizers' packages, the attacks)."""
    import attacks  # noqa: F401
    import metrics.perceptual  # noqa: F401
    import redteam.faces  # noqa: F401
    from redteam.engine import probes  # noqa: F401

    try:
        import redteam.mtcnn_cascade  # noqa: F401  - the detector's cascade: facenet-pytorch's networks and OpenCV
    except ImportError:  # reported by the stage that needs it
        pass


# -- what a worker keeps between jobs ---------------------------------------------------------------

_recognizers: dict[tuple[str, str, Threshold], Recognizer] = {}
_detectors: dict[tuple[object, str], Any] = {}


def worker_recognizer(name: str, device: Any, threshold: Threshold) -> Recognizer:
    """The recognizer `name`, loaded once per worker process and reused by every job and pass."""
    key = (name, str(device), threshold)
    if key not in _recognizers:
        _recognizers[key] = RECOGNIZERS[name](device=device, threshold=threshold)
    return _recognizers[key]


def worker_context(config: AuditConfig, policy: Policy, threads: int, log: Callable[[str], None] = lambda message: None) -> RunContext:
    """A run context in a worker: the run's config, policy and cache, a detector loaded once per process."""
    import torch

    from redteam.core.paths import default_cache_dir
    from redteam.faces import FaceDetector

    # OpenCV's thread count is left as it is: cv2.setNumThreads in a forked worker whose parent had started
    # OpenCV's pool waits forever on the parent's threads (seen under pytest, which forks after other tests).
    torch.set_num_threads(threads)
    device = resolve_device(config.device)
    key = (config.detector, str(device))
    if key not in _detectors:
        _detectors[key] = FaceDetector(config.detector, device=device)
    return RunContext(
        config=config,
        policy=policy,
        device=device,
        cache=Cache(config.cache_dir if config.cache_dir is not None else default_cache_dir(), log=log),
        detector=_detectors[key],
        log=log,
        progress=lambda stage, done, total: None,
    )


def worker_run(config: AuditConfig, policy: Policy, recognizers: dict[str, Recognizer], workers: int) -> WorkerRun:
    return WorkerRun(config, policy, {name: r.threshold for name, r in recognizers.items()}, threads_per_worker(workers))


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of `workers` processes: the cores divided among them, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def reissue_warnings(warned: Counter[str]) -> None:
    """A worker's library warnings, each as often as it was raised, to the caller's run log (which
    captures this logger's records: `redteam.runlog`)."""
    for text, count in warned.items():
        for _ in range(count):
            WORKER_LOG.warning(text)


@dataclass(frozen=True)
class Job:
    """A function the workers run with the run's `WorkerRun` first, then `args`; it returns its seconds."""

    function: Callable[..., dict[str, float]]
    args: tuple[Any, ...]


def run_jobs(pool: WorkerPool, run: WorkerRun, jobs: Sequence[Job], log: Callable[[str], None]) -> dict[str, float]:
    """Every job in the workers, in order; their seconds summed per category. A job that fails (a worker
    that died, an error) is logged and left to the caller's own stage, which computes whatever is not in
    the cache."""
    total = Clock()
    if not jobs:
        return total.seconds
    try:
        futures = [pool.submit(_captured, job.function, run, *job.args) for job in jobs]
    except BrokenProcessPool as error:  # the workers died before this stage: it runs in the caller
        pool.close()
        log(f"the worker processes stopped ({error}): this stage runs in one process")
        return total.seconds
    for future in futures:
        try:
            seconds, warned = future.result()
        except Exception as error:  # noqa: BLE001 - the caller's own stage computes whatever is missing
            if isinstance(error, BrokenProcessPool):  # a worker died: the next stage starts fresh ones
                pool.close()
            log(f"a worker could not finish its part ({type(error).__name__}: {error}): computed here instead")
            continue
        total.add(seconds)
        reissue_warnings(warned)
    return total.seconds


def _captured(function: Callable[..., dict[str, float]], run: WorkerRun, *args: Any) -> tuple[dict[str, float], Counter[str]]:
    """A job in a worker, its library warnings collected and returned with its seconds (not printed by
    the worker: the caller's run log gets them)."""
    from redteam.runlog import RunLog

    runlog = RunLog()
    with runlog.capturing():
        seconds = function(run, *args)
    return seconds, runlog.warnings
