"""Typed errors, the exit codes, and the one table between them.

Nothing below the CLI calls ``sys.exit``: each error carries the sysexits(3)
code the command line should return. ``ExitCode`` is the list of codes;
``classify`` turns any exception into its code and message (the command
line and a daemon reporting to its launcher both use it), and ``error_for``
turns a code and message back into the error (the launcher raises it).
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """sysexits(3) codes the command line returns (docs/configuration.md lists them)."""

    OK = 0
    USAGE = 64  # bad usage or configuration
    UNAVAILABLE = 69  # port in use or address not available, or already running
    SOFTWARE = 70  # a bug: should never be seen
    NOPERM = 77  # privileged port, user switch refused

    @property
    def meaning(self) -> str:
        """What the code tells a user or a script, as ``--help`` and the docs say it."""
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "clean: config OK (-t), or stopped by SIGTERM/SIGINT",
    ExitCode.USAGE: "bad usage or configuration",
    ExitCode.UNAVAILABLE: "address in use or unavailable, or already running",
    ExitCode.SOFTWARE: "internal error (a bug: please report it)",
    ExitCode.NOPERM: "permission denied (privileged port, user or group switch)",
}


# The sysexits names of the same codes, typed as plain ints for variables that
# also hold codes from elsewhere (a worker's exit status).
EX_OK: int = ExitCode.OK
EX_USAGE: int = ExitCode.USAGE
EX_UNAVAILABLE: int = ExitCode.UNAVAILABLE
EX_SOFTWARE: int = ExitCode.SOFTWARE
EX_NOPERM: int = ExitCode.NOPERM


class BlackholeError(Exception):
    """Base of every error Blackhole raises on purpose."""

    exit_code: int = EX_SOFTWARE


class ConfigError(BlackholeError):
    """The configuration (file or command line) is invalid.

    ``problems`` holds every problem found, each a plain sentence, already
    prefixed with its location (``file:line``) when it has one, so that a user
    fixes them all in one go instead of one per run.
    """

    exit_code = EX_USAGE

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class UsageError(BlackholeError):
    """The command line is wrong."""

    exit_code = EX_USAGE


# Named after the sysexits codes they map to (EX_NOPERM, EX_UNAVAILABLE), and
# part of the CLI's contract, hence no "Error" suffix.
class PermissionDenied(BlackholeError):  # noqa: N818
    """Binding a privileged port or switching user or group was refused."""

    exit_code = EX_NOPERM


class Unavailable(BlackholeError):  # noqa: N818
    """An address is in use or cannot be bound, or the server is already running."""

    exit_code = EX_UNAVAILABLE


def classify(exc: BaseException) -> tuple[int, str]:
    """The exit code and the message for ``exc``, whatever it is.

    Typed errors carry their code. OS errors the server did not wrap still
    tell a script what kind of failure it was. Anything else is a bug.
    """
    if isinstance(exc, BlackholeError):
        return exc.exit_code, str(exc)
    if isinstance(exc, PermissionError):
        return EX_NOPERM, str(exc)
    if isinstance(exc, OSError):
        return EX_UNAVAILABLE, str(exc)
    return EX_SOFTWARE, f"internal error: {exc!r}"


def error_for(code: int, message: str) -> BlackholeError:
    """The error that ``classify`` made ``(code, message)`` of, rebuilt (for ``-b``)."""
    if code == EX_USAGE:
        return ConfigError(message.splitlines() or [message])
    if code == EX_NOPERM:
        return PermissionDenied(message)
    if code == EX_UNAVAILABLE:
        return Unavailable(message)
    error = BlackholeError(message)
    error.exit_code = code
    return error
