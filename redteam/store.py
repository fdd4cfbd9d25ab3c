"""The run store: every audit recorded in one SQLite file, for history, comparison and the baseline gate.

The store is `--store PATH`, else `$REDTEAM_STORE`, else `runs.sqlite` in the cache folder. SQLite in WAL
mode with a busy timeout, one transaction per record, so concurrent audits can share it. Each record
holds the run id and time; hashes of the inputs (every input file's SHA-256 and every method's spec),
of the policy and of the configuration; the catalog of attacks and recognizers that ran with their model
hashes; package versions; the verdict rows. The results table is copied beside the database
(`runs/<run id>.parquet`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redteam.core.errors import InputError, UsageError
from redteam.core.paths import default_cache_dir
from redteam.core.results import AuditResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    finished_at TEXT NOT NULL,
    inputs_hash TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    overall TEXT NOT NULL,
    exit_code INTEGER NOT NULL,
    record TEXT NOT NULL
)
"""


def default_store_path(cache_dir: Path | None = None) -> Path:
    """$REDTEAM_STORE, else runs.sqlite in `cache_dir` (the run's --cache-dir), else in the default cache."""
    env = os.environ.get("REDTEAM_STORE")
    return Path(env).expanduser() if env else (cache_dir or default_cache_dir()) / "runs.sqlite"


def open_store(path: Path | None, cache_dir: Path | None = None) -> RunStore:
    """The run store of a command: `path` (--store), else $REDTEAM_STORE, else runs.sqlite in the cache;
    errors name where the path came from."""
    if path is not None:
        return RunStore(path, "from --store")
    origin = "from REDTEAM_STORE" if os.environ.get("REDTEAM_STORE") else "the default, in the cache folder"
    return RunStore(default_store_path(cache_dir), origin)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class RunRecord:
    """One audit as the store keeps it (see the module docstring); `record` is JSON-serialisable."""

    run_id: str
    finished_at: str
    inputs_hash: str
    policy_hash: str
    config_hash: str
    overall: str
    exit_code: int
    record: dict[str, Any]

    @property
    def verdict_rows(self) -> list[dict[str, Any]]:
        return list(self.record.get("verdicts", []))

    @property
    def method_verdicts(self) -> dict[str, str]:
        return {m["method"]: m["verdict"] for m in self.record.get("methods", [])}


def run_record(result: AuditResult, finished_at: datetime | None = None) -> RunRecord:
    """The store's record of an audit result."""
    finished = (finished_at or datetime.now(UTC)).replace(microsecond=0)
    methods = {m.name: m.spec or "" for m in result.methods}
    inputs_hash = _digest({"files": result.input_hashes, "methods": methods})
    policy = result.policy.to_json()
    config = result.config.to_json()
    for volatile in ("out", "cache_dir", "attacks", "workers", "executor", "ray_address", "device", "batch_size"):
        config.pop(volatile, None)  # where and how it ran, and which attacks: not what it audited
    verdicts = [
        {
            "method": v.method,
            "tier": v.tier,
            "attack": v.attack,
            "recognizer": v.recognizer,
            "metric": v.metric,
            "k": v.estimate.successes,
            "n": v.estimate.trials,
            "low": v.estimate.low,
            "high": v.estimate.high,
            "limit": None if v.limit != v.limit else v.limit,
            "verdict": v.verdict.value,
        }
        for v in result.metric_verdicts
    ]
    catalog = {
        "attacks": sorted({v.attack for v in result.metric_verdicts}),
        "attack_models": result.attack_models,
        "recognizers": {name: {k: str(v) for k, v in details.items()} for name, details in result.recognizers.items()},
    }
    record = {
        "methods": [{"method": m.method, "verdict": m.verdict.value, "tiers": {t: v.value for t, v in m.tiers}} for m in result.method_verdicts],
        "verdicts": verdicts,
        "catalog": catalog,
        "packages": result.environment,
        "policy": policy,
        "faces": len(result.faces),
        "out": str(result.config.out),
    }
    run_id = f"{finished:%Y%m%dT%H%M%SZ}-{_digest([inputs_hash, verdicts, catalog, os.getpid(), datetime.now(UTC).isoformat()])[:8]}"
    return RunRecord(run_id, finished.isoformat(), inputs_hash, _digest(policy), _digest(config), result.overall.value, int(result.exit_code), record)


#: The columns of the runs table, in order (a table with others is not a run store of this version).
COLUMNS = ("run_id", "finished_at", "inputs_hash", "policy_hash", "config_hash", "overall", "exit_code", "record")


class RunStore:
    """The SQLite file of runs (WAL: concurrent audits can record into one store).

    Attributes:
        origin: where the path came from, named in errors (e.g. "from REDTEAM_STORE").
    """

    def __init__(self, path: Path, origin: str = "") -> None:
        self.path = path
        self.origin = origin

    def _named(self) -> str:
        return f"run store {self.path}" + (f" ({self.origin})" if self.origin else "")

    def check(self) -> None:
        """Check, before an audit, that its record can be kept here: an existing store must be a readable
        run store, a new one must be creatable. Nothing is created or written. An audit whose record could
        not be kept would end in an error after its reports said otherwise.

        Raises:
            InputError: the path is a folder, a file that is not a run store, or lies where no file can be made.
        """
        fix = "give --store a path to a run store file (or set REDTEAM_STORE to one), or move the file away"
        if self.path.is_dir():
            raise InputError(f"{self._named()} is a folder, not a store file", fix=fix)
        if not self.path.exists():
            parent = self.path.parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
                raise InputError(f"{self._named()} cannot be created in {parent}", fix=fix)
            return
        try:
            connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            raise InputError(f"{self._named()} cannot be opened ({error})", fix=fix) from error
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            columns = tuple(row[1] for row in connection.execute("PRAGMA table_info(runs)")) if "runs" in tables else COLUMNS
        except sqlite3.DatabaseError as error:
            raise InputError(f"{self._named()} is not a readable run store ({error})", fix=fix) from error
        finally:
            connection.close()
        if columns != COLUMNS:
            raise InputError(f"{self._named()} has a 'runs' table that is not a run store's ({', '.join(columns)})", fix=fix)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            raise InputError(f"{self._named()} cannot be opened ({error})", fix="give a writable --store PATH (or REDTEAM_STORE)") from error
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA busy_timeout=60000")
            connection.execute(SCHEMA)
            yield connection
        except sqlite3.DatabaseError as error:
            raise InputError(f"{self._named()} is not a readable store ({error})", fix="give another --store PATH (or REDTEAM_STORE)") from error
        finally:
            connection.close()

    @property
    def results_dir(self) -> Path:
        return self.path.parent / "runs"

    def record(self, run: RunRecord, results_table: Path | None = None) -> None:
        """Add a run (one transaction); copy its results table beside the store first."""
        if results_table is not None and results_table.is_file():
            self.results_dir.mkdir(parents=True, exist_ok=True)
            target = self.results_dir / f"{run.run_id}.parquet"
            temporary = target.with_suffix(f".parquet.{os.getpid()}.tmp")
            shutil.copyfile(results_table, temporary)
            os.replace(temporary, target)
        with self._connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run.run_id, run.finished_at, run.inputs_hash, run.policy_hash, run.config_hash, run.overall, run.exit_code, json.dumps(run.record)),
            )
            connection.execute("COMMIT")

    def runs(self) -> list[RunRecord]:
        """Every run, oldest first."""
        if not self.path.is_file():
            return []
        with self._connection() as connection:
            rows = connection.execute("SELECT * FROM runs ORDER BY finished_at, rowid").fetchall()
        return [RunRecord(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), json.loads(r[7])) for r in rows]

    def get(self, run_id: str) -> RunRecord:
        """A run by id, by unique id prefix, or `latest`."""
        runs = self.runs()
        if run_id == "latest":
            if not runs:
                raise UsageError(f"run store {self.path} holds no runs yet", fix="run an audit first (it is recorded automatically)")
            return runs[-1]
        matches = [r for r in runs if r.run_id == run_id] or [r for r in runs if r.run_id.startswith(run_id)]
        if len(matches) != 1:
            known = ", ".join(r.run_id for r in runs[-5:]) or "none"
            raise UsageError(f"run '{run_id}' {'is ambiguous' if matches else 'is not'} in {self.path}", fix=f"use `redteam history`; latest runs: {known}")
        return matches[0]
