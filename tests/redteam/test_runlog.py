"""Library warnings go to the run's log file, not the terminal, and the capture is undone afterwards."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from redteam.runlog import LOG_NAME, RunLog


def test_warnings_and_library_logging_are_captured_then_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runlog = RunLog()
    diffusers = logging.getLogger("diffusers")
    before = diffusers.handlers[:]
    with runlog.capturing():
        for _ in range(3):
            warnings.warn("scheduler config is deprecated", FutureWarning, stacklevel=1)
        diffusers.warning("retrying the hub (%d)", 1)
        logging.getLogger("some.other.library").warning("root-level message")
        runlog.log("stage one done")
    captured = capsys.readouterr()
    assert "deprecated" not in captured.err and "retrying" not in captured.err and "root-level" not in captured.err
    assert diffusers.handlers == before  # restored
    text = runlog.write(tmp_path).read_text()
    assert (tmp_path / LOG_NAME).is_file()
    assert "stage one done" in text
    assert "FutureWarning: scheduler config is deprecated" in text
    assert "diffusers warning: retrying the hub (1)" in text and "some.other.library warning: root-level message" in text


def test_the_capture_ends_even_when_the_run_fails() -> None:
    runlog = RunLog()
    root_handlers = logging.getLogger().handlers[:]
    with pytest.raises(RuntimeError), runlog.capturing():
        raise RuntimeError("boom")
    assert logging.getLogger().handlers == root_handlers


def test_control_characters_are_escaped_in_the_log(tmp_path: Path) -> None:
    """Issue 22: a file name logged with an ANSI sequence or a line break can neither colour the terminal
    that shows the log nor forge a log line."""
    runlog = RunLog()
    with runlog.capturing():
        runlog.log("skipped evil\x1b[31m.jpg\n12:00:00 all methods PASS\x07")
        warnings.warn("cannot read evil\x1b[2J\udcff.png", UserWarning, stacklevel=1)
    text = runlog.write(tmp_path).read_text(encoding="utf-8")
    assert "\x1b" not in text and "\x07" not in text
    assert "skipped evil\\x1b[31m.jpg\\n12:00:00 all methods PASS\\x07" in text and "evil\\x1b[2J\\xff.png" in text
