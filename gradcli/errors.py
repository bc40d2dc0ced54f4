"""Errors a user can cause, each carrying the exit code the CLI reports.

This module imports nothing from the CLI (no click, no rich): library code raises these, and only
``gradcli.cli`` turns them into one stderr line and an exit code.
"""

from __future__ import annotations

__all__ = ["GradcliError", "InputError", "CheckMismatch", "NotFinite", "IOFault", "Uncertified", "for_api"]


class GradcliError(Exception):
    """Base class of every user-facing error; ``exit_code`` is what the CLI exits with."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


#: The CLI's spelling of what the Python API calls by its parameter names (see :func:`for_api`).
_CLI_WORDS = (("--check-timeout", "check_timeout"), ("--wrt", "wrt"), ("--at", "at"), ("--digits N", "digits=N"),
              ("--digits", "digits"),
              ("--tol", "tol"), ("--order", "order"), ("EXPR", "the expression"))


def for_api(exc: GradcliError) -> GradcliError:
    """``exc`` as the Python API reports it: library messages are written for the command line (``--at
    names 'z'``); the API names its own parameters instead (``at names 'z'``). Changes ``exc`` in place."""
    import re

    message = exc.message
    for cli, api in _CLI_WORDS:
        message = re.sub(rf"(?<![\w-]){re.escape(cli)}(?![\w-])", api, message)
    exc.message = message
    exc.args = (message,)
    return exc


class InputError(GradcliError):
    """Invalid input: syntax, unknown or missing variable, bad order, bad points file (exit 2)."""

    exit_code = 2


class CheckMismatch(GradcliError):
    """The symbolic cross-check or ``--expect`` disagreed with the computed value (exit 1)."""

    exit_code = 1


class NotFinite(GradcliError):
    """The result is not finite: outside the domain, or not differentiable there (exit 3)."""

    exit_code = 3


class IOFault(GradcliError):
    """Input or output failed: stdout closed or full, stdin closed, an unreadable file, or text the
    output's encoding cannot carry (exit 74, EX_IOERR from sysexits.h)."""

    exit_code = 74


class Uncertified(GradcliError):
    """No ball could prove the value within the tolerance (or the requested digits) at the precision
    gradcli allows (exit 1): the message names the enclosure that was reached."""

    exit_code = 1
