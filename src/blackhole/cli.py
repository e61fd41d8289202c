"""The command line: ``blackhole`` and ``blackhole_config``.

Thin on purpose: argv -> Config (file, then command-line overrides) -> run.
Library code raises typed errors; this is the one place that turns them into
messages on standard error and sysexits(3) exit codes, never a traceback.

Without ``-c`` the built-in defaults are used and no file is looked for (the
classic server read /etc/blackhole.conf): the same command then does the same
thing on every machine, which is what a quick start and a test need.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import NoReturn

from blackhole import __version__
from blackhole.config.classic import load_config
from blackhole.config.model import Config
from blackhole.config.options import format_options
from blackhole.config.preflight import preflight
from blackhole.errors import (
    EX_OK,
    EX_SOFTWARE,
    ConfigError,
    ExitCode,
    UsageError,
    classify,
)
from blackhole.observe.logs import setup_logging

log = logging.getLogger(__name__)


def _exit_codes() -> str:
    return "\n".join(f"  {code.value:<3} {code.meaning}" for code in ExitCode)


EPILOG = f"""\
Without -c, the built-in defaults are used: SMTP on 127.0.0.1:2525 and SMTPS
on 127.0.0.1:4650 with a self-signed certificate. No file is read.

blackhole_config prints every configuration option, documented, as a
commented-out config file to start from.

exit codes:
{_exit_codes()}

documentation: README.md, docs/configuration.md (every option and switch),
docs/production.md (workers, signals, daemon, systemd), docs/tls-and-auth.md.
"""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` (exit 64) instead of exiting with 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="blackhole",
        description="An SMTP sink: accepts mail, delivers none of it, answers as told.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("-c", "--conf", metavar="FILE", help="read the configuration from FILE")
    parser.add_argument(
        "-t",
        "--test",
        action="store_true",
        help="check the configuration, print the result and exit (0 good, 64 bad)",
    )
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-d", "--debug", action="store_true", help="log debug messages")
    loudness.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors")
    parser.add_argument(
        "-b", "--background", action="store_true", help="run in the background (daemon)"
    )
    parser.add_argument(
        "-ls",
        "--less-secure",
        action="store_true",
        help="TLS: skip single-use Diffie-Hellman keys (faster, less forward-secret)",
    )
    parser.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    return parser


def build_config(args: argparse.Namespace) -> Config:
    """The Config the parsed command line asks for: file or defaults, then switches."""
    # No file at all: the server must still be useful on a laptop, so TLS runs
    # on a certificate made at start-up.
    config = load_config(args.conf) if args.conf is not None else Config(generated_cert=True)
    return replace(
        config,
        debug=args.debug,
        quiet=args.quiet,
        background=args.background,
        less_secure=args.less_secure,
    )


def _load_runner() -> Callable[[Config], object]:
    # Imported on demand: -v, -t and usage errors must work (and be testable)
    # without the server and its heavier imports (ssl, asyncio, uvloop).
    module = importlib.import_module("blackhole.supervisor")
    run: Callable[[Config], object] = module.run
    return run


def _error(message: str) -> None:
    for line in message.splitlines() or [""]:
        print(f"blackhole: {line}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``blackhole`` with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Calls ``blackhole.supervisor.run(config)``, which blocks until the server
    stops. It returns ``None`` (exit 0) or an int exit code, and reports
    expected failures by raising ``BlackholeError`` subclasses.
    """
    debug = testing = False
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:  # --help printed its text and asked to exit
            return exc.code if isinstance(exc.code, int) else EX_OK
        debug, testing = args.debug, args.test
        if args.version:
            print(f"blackhole {__version__}")
            return EX_OK
        config = build_config(args)
        if args.test:
            return _test(config)
        setup_logging(config)
        result = _load_runner()(config)
        return result if isinstance(result, int) else EX_OK
    except KeyboardInterrupt:
        return EX_OK
    except ConfigError as exc:
        for problem in exc.problems:
            _error(problem)
        count = len(exc.problems)
        problems = f"{count} problem{'s' if count != 1 else ''}"
        _error(f"config test failed: {problems}" if testing else f"{problems}; not started")
        return exc.exit_code
    except Exception as exc:
        code, message = classify(exc)
        if code == EX_SOFTWARE:
            # A bug. One line by default; the traceback with -d.
            message += "" if debug else " (run with -d for details)"
        _error(message)
        if code == EX_SOFTWARE and debug:
            log.exception("internal error")
        return code


def _test(config: Config) -> int:
    """``-t``: the file, then what start-up would check on this host. Raises ``ConfigError``."""
    # Warnings (a weak DH group, a library's deprecation) are shown the way the
    # server would log them, in its format, but here on the terminal.
    setup_logging(replace(config, log_file=None))
    problems = preflight(config)
    if problems:
        raise ConfigError(problems)
    print(f"Config OK: {config.config_file or 'built-in defaults (no -c given)'}")
    return EX_OK


def config_main(argv: Sequence[str] | None = None) -> int:
    """``blackhole_config``: print every configuration option, documented."""
    parser = _ArgumentParser(
        prog="blackhole_config",
        description="Print every configuration option with its default and meaning."
        " The output is a valid, commented-out config file.",
        allow_abbrev=False,
    )
    try:
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else EX_OK
    except UsageError as exc:
        _error(str(exc))
        return exc.exit_code
    print(format_options())
    return EX_OK
