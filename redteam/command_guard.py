"""What every command shares around its body: errors as their message and documented exit code, never a
traceback (`guarded`), and an unexpected exception as one line naming where it happened (`internal_error`)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer

from redteam.core.errors import ExitCode, RedteamError
from redteam.core.text import markup_text as escape
from redteam.core.text import printable

F = TypeVar("F", bound=Callable[..., object])


def guarded(command: F) -> F:
    """Turn RedteamError into its message on stderr and its documented exit code, and any other exception
    into exit 5 with where it happened (`internal_error`): never a traceback, never click's "Aborted!" and
    exit 1 (which an EOFError from a library would otherwise give, looking like a verdict)."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.exceptions.TyperException):
            raise  # the command's own exit code, or a usage error Typer reports
        except RedteamError as error:
            from redteam import terminal

            terminal.stderr.print(f"[bold red]error:[/bold red] {escape(error.message)}", highlight=False)
            if error.fix:
                terminal.stderr.print(f"  [bold]fix:[/bold] {escape(error.fix, keep_newlines=True)}", highlight=False)
            raise typer.Exit(int(error.exit_code)) from None
        except KeyboardInterrupt:
            print("interrupted: cached results are kept, run again to resume", file=sys.stderr)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except Exception as error:  # noqa: BLE001 - a bug must not look like a verdict, nor show a traceback
            raise typer.Exit(internal_error(error)) from None

    return wrapper  # type: ignore[return-value]


#: Top-level packages of this project: the innermost of their frames is where an internal error is placed.
_PROJECT = ("redteam", "attacks", "metrics", "reports")


def internal_error(error: BaseException) -> int:
    """Report an unexpected exception on stderr in one line, without a traceback: its type and message,
    where in this project it happened, the file it concerns when it names one, and a file holding the full
    traceback to send with a bug report. Returns the exit code (5)."""
    import tempfile
    import traceback

    frames = traceback.extract_tb(error.__traceback__)
    ours = [frame for frame in frames if any(f"{os.sep}{package}{os.sep}" in frame.filename for package in _PROJECT)]
    where = (ours or frames)[-1] if (ours or frames) else None
    location = ""
    if where is not None:
        parts = Path(where.filename).parts
        start = max((i for i, part in enumerate(parts) if part in _PROJECT), default=len(parts) - 1)
        location = f" at {'/'.join(parts[start:])}:{where.lineno} ({where.name})"
    concerns = getattr(error, "filename", None)
    try:
        handle, name = tempfile.mkstemp(prefix="redteam-crash-", suffix=".txt")
        with os.fdopen(handle, "w", encoding="utf-8", errors="backslashreplace") as stream:
            traceback.print_exception(error, file=stream)
        saved = f"the traceback is in {name}"
    except OSError:
        saved = "the traceback could not be saved"
    message = f"redteam: internal error ({type(error).__name__}: {error}){location}" + (f", file {concerns}" if concerns else "")
    print(printable(f"{message}; {saved}: please report it (a bug, not a verdict)"), file=sys.stderr)
    return int(ExitCode.INTERNAL)
