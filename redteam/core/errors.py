"""Exceptions that carry the CLI's documented exit codes and a message that says how to fix it."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit-code contract of every command (README, "Exit codes").

    An audit's code is the first that applies of: 4 (something requested or required is unavailable),
    6 (regressed against `--baseline`), 1 (a method does not PASS), 0. Usage, input and internal errors
    (2, 3, 5) stop the command before any verdict."""

    ALL_PASS = 0
    NOT_ALL_PASS = 1
    USAGE = 2
    BAD_INPUT = 3
    MODEL_UNAVAILABLE = 4
    INTERNAL = 5  # a bug: never a verdict
    REGRESSED = 6  # `audit --baseline`: worse than the baseline run (or the baseline is not comparable)
    INTERRUPTED = 130


class RedteamError(Exception):
    """Base class: an error the user can fix; `fix` tells them how."""

    exit_code: ExitCode = ExitCode.BAD_INPUT

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(message if fix is None else f"{message}\n  fix: {fix}")


class UsageError(RedteamError):
    """The command line itself is wrong (exit 2)."""

    exit_code = ExitCode.USAGE


class InputError(RedteamError):
    """An input file or folder is missing, unreadable or malformed (exit 3).

    Inside an audit a bad file is not fatal: it becomes an input issue of kind `issue_kind`."""

    exit_code = ExitCode.BAD_INPUT
    issue_kind = "unreadable"


class ImageTooLargeError(InputError):
    """An image declares more pixels than the decoding limit (a possible decompression bomb)."""

    issue_kind = "too_large"


class ConfigError(RedteamError):
    """The policy, config or method spec is invalid (exit 3)."""

    exit_code = ExitCode.BAD_INPUT


class ModelUnavailableError(RedteamError):
    """A model or weight file the run needs is not available (exit 4)."""

    exit_code = ExitCode.MODEL_UNAVAILABLE
