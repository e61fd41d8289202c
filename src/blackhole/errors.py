"""Typed errors that library code raises and ``cli.main`` maps to exit codes.

Nothing below the CLI calls ``sys.exit``: each error carries the sysexits(3)
code the command line should return, so the mapping lives in one place.
"""

from __future__ import annotations

# sysexits(3) codes used by the command line.
EX_OK = 0
EX_USAGE = 64  # bad usage or configuration
EX_UNAVAILABLE = 69  # port in use or address not available
EX_SOFTWARE = 70  # a bug: should never be seen
EX_NOPERM = 77  # privileged port, user switch refused


class BlackholeError(Exception):
    """Base of every error Blackhole raises on purpose."""

    exit_code = EX_SOFTWARE


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
