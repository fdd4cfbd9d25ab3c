"""The run's log file: every line the run logged and every warning a library raised during it.

Libraries (diffusers, transformers, huggingface_hub, deepinv, torch) warn through `warnings` and
`logging`; printed as they come, they bury the progress and the verdict. During a run they are captured
here instead and written to `OUT/redteam.log` (atomically) with the run's own log lines, each distinct
warning once with how often it came.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from redteam.core.atomic import write_atomically
from redteam.core.text import printable

LOG_NAME = "redteam.log"
#: Library loggers that install their own console handlers (captured like the root logger).
LIBRARY_LOGGERS = ("diffusers", "transformers", "huggingface_hub", "deepinv", "torch", "PIL", "matplotlib", "facenet_pytorch")


class _Collect(logging.Handler):
    def __init__(self, runlog: RunLog) -> None:
        super().__init__(logging.WARNING)
        self.runlog = runlog

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.runlog.warning(f"{record.name} {record.levelname.lower()}: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - a malformed library message must not end the run
            self.runlog.warning(f"{record.name} {record.levelname.lower()}: (unformattable message {record.msg!r})")


class RunLog:
    """Collects the log lines and library warnings of one run."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.warnings: Counter[str] = Counter()

    def log(self, line: str) -> None:
        self.lines.append(f"{datetime.now(timezone.utc).strftime('%H:%M:%S')} {line}")

    def warning(self, text: str) -> None:
        self.warnings[text] += 1

    @contextmanager
    def capturing(self) -> Iterator[RunLog]:
        """Within: `warnings` and library `logging` records at WARNING and above go to this log, not the
        terminal (restored on exit, whatever happens)."""
        handler = _Collect(self)
        saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate) for name in LIBRARY_LOGGERS}
        root = logging.getLogger()
        root.addHandler(handler)
        for name in LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            logger.handlers = [handler]
            logger.propagate = False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            try:
                yield self
            finally:
                for item in caught:
                    self.warning(f"{item.category.__name__}: {item.message} ({Path(item.filename).name}:{item.lineno})")
                root.removeHandler(handler)
                for name, (handlers, propagate) in saved.items():
                    logger = logging.getLogger(name)
                    logger.handlers, logger.propagate = handlers, propagate

    def write(self, out: Path) -> Path:
        """OUT/redteam.log: the log lines, then each distinct warning with its count; every line shown with
        its control characters escaped (`redteam.core.text.printable`: a name from the inputs can neither
        forge a line nor act on the terminal that shows the log)."""
        text = "\n".join(printable(line) for line in self.lines) + "\n"
        if self.warnings:
            text += f"\nLibrary warnings during the run ({sum(self.warnings.values())}, {len(self.warnings)} distinct):\n"
            text += "".join(f"- {printable(message)}" + (f" (x{count})" if count > 1 else "") + "\n" for message, count in self.warnings.most_common())
        return write_atomically(out / LOG_NAME, lambda path: path.write_text(text, encoding="utf-8"))
