"""An audit run from the command line: checked outputs, the run, its record in the run store, the gate
against a baseline, and the reports published all at once (or not at all)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redteam.core.config import AuditConfig
from redteam.core.results import AuditResult, LogFn, ProgressFn

#: A run for `run_and_report`: (log, progress) -> the result and the further files to publish with its
#: reports (name -> a writer of that file into the staging folder).
Runner = Callable[[LogFn, ProgressFn], tuple[AuditResult, dict[str, Callable[[Path], Path]]]]


def still_audit(config: AuditConfig) -> Runner:
    """The still-image audit of `config` as a runner."""

    def run(log: LogFn, progress: ProgressFn) -> tuple[AuditResult, dict[str, Callable[[Path], Path]]]:
        from redteam.engine import AuditRun

        return AuditRun(config, log=log, progress=progress).run(), {}

    return run


def run_and_report(
    config: AuditConfig, store: Path | None = None, baseline: str | None = None, *, json_output: bool = False, runner: Runner | None = None
) -> Any:
    """Run the audit and publish its reports: all of them or none, never contradicting the exit code.

    Before anything is created: the output and cache folders are checked (outside the inputs, writable;
    the output folder is made only when the reports are published), the run store is checked (a folder or
    a file that is not a run store is refused now, not after an audit whose reports would then say PASS
    beside an exit 3), the policy is read. The reports are staged, the run is recorded in the store, the
    log is added, and only then do the files appear in `config.out` (`reports.ReportStage`).

    With `json_output`, stdout carries summary.json and nothing else (what the terminal shows goes to stderr).
    `runner` runs something other than the still audit of `config` (the video audit), with further files.
    """
    from dataclasses import replace

    from redteam import terminal
    from redteam.core.paths import default_cache_dir, ensure_writable_dir
    from redteam.datasets import check_out_dir, check_outside_inputs
    from redteam.regression import compare, gate
    from redteam.runlog import LOG_NAME, RunLog
    from redteam.store import open_store, run_record
    from reports import ReportStage

    inputs = [config.originals] + [m.folder for m in config.methods if m.folder is not None]
    inputs += [config.gallery] if config.gallery is not None else []
    check_out_dir(config.out, inputs, create=False)
    cache = config.cache_dir or default_cache_dir()
    check_outside_inputs(cache, inputs, "cache folder")
    runs = open_store(store, config.cache_dir)
    runs.check()
    before = runs.get(baseline) if baseline else None  # an unknown baseline fails before the audit runs
    runlog = RunLog()

    def log(line: str) -> None:
        runlog.log(line)
        if not line.startswith("LEAK "):  # the LEAK lines are printed first with the result, once
            terminal.log(line)

    with terminal.progress_bar() as progress, runlog.capturing():
        ensure_writable_dir(cache, "cache folder", "give a writable --cache-dir (or set REDTEAM_CACHE)")
        result, extra = (runner or still_audit(config))(log, progress)
    record = run_record(result)
    if before is not None:
        reasons = gate(before, record, result.policy.confidence)
        changes = [change.to_json() for change in compare(before, record, result.policy.confidence)]
        result = replace(result, regression={"baseline": before.run_id, "run": record.run_id, "gate": reasons, "changes": changes})
        record = replace(record, exit_code=int(result.exit_code))
    stage = ReportStage(config.out)
    try:
        with runlog.capturing():
            stage.write(result)
            for name, write in extra.items():
                stage.add(name, write)
        runs.record(record, stage.paths.get("parquet"))
        log(f"recorded run {record.run_id} in {runs.path}")
        if runlog.warnings:
            terminal.log(f"{sum(runlog.warnings.values())} library warning(s) during the run: see {config.out / LOG_NAME}")
        stage.add("log", runlog.write)
        written = stage.publish()
    except BaseException:
        stage.discard()
        raise
    terminal.print_result(result, terminal.stderr if json_output else None)
    terminal.log(f"timings (s): {result.timings}")
    for name, path in written.items():
        terminal.log(f"wrote {name}: {path}")
    if json_output:
        sys.stdout.write(written["json"].read_text(encoding="utf-8"))
        sys.stdout.flush()
    return result


#: `redteam audit --help` ends with the exit-code contract (README, "Exit codes"; `ExitCode`).
EXIT_CODES_HELP = """Exit codes (when several apply, the first of 4, 6, 1, 0):

  0  every method PASSes
  1  a method FAILs or is INCONCLUSIVE under the policy (with --baseline: and nothing regressed)
  2  usage error (bad option, no ORIGINALS nor --manifest, no method, output inside an input folder)
  3  bad config, policy, method spec, input or run store (the message names the file and the fix)
  4  a recognizer, attack, metric or model that was requested or required is unavailable (no PASS)
  5  internal error (a bug: the message names the file holding the traceback)
  6  --baseline: regressed (a method that passed no longer passes, a rate rose significantly, or the baseline is not comparable)"""
