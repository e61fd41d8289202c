"""The command line (in-process and as a real process) and the logging it sets up."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from blackhole import __version__
from blackhole.cli import config_main, main
from blackhole.config.model import Config
from blackhole.config.options import OPTION_NAMES, format_options
from blackhole.errors import (
    ConfigError,
    ExitCode,
    PermissionDenied,
    Unavailable,
    classify,
    error_for,
)
from blackhole.observe.logs import HANDLER_NAME, setup_logging
from blackhole.policy.modes import Mode

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    # main() and setup_logging() configure the root logger; put it back.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def good_conf(tmp_path: Path) -> Path:
    path = tmp_path / "good.conf"
    path.write_text("listen = 127.0.0.1:2526 mode=bounce\nmode = random  # inline\n")
    return path


@pytest.fixture
def bad_conf(tmp_path: Path) -> Path:
    path = tmp_path / "bad.conf"
    path.write_text("mode = loud\n\ntimeout = -3\n")
    return path


class FakeServer:
    """Stands in for blackhole.supervisor: records the Config, then behaves as told."""

    def __init__(self, behaviour: Callable[[Config], object] | None = None) -> None:
        self.configs: list[Config] = []
        self.behaviour = behaviour

    def run(self, config: Config) -> object:
        self.configs.append(config)
        return self.behaviour(config) if self.behaviour else None


@pytest.fixture
def install_server(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeServer]:
    def install(behaviour: Callable[[Config], object] | None = None) -> FakeServer:
        server = FakeServer(behaviour)
        module = types.ModuleType("blackhole.supervisor")
        module.run = server.run  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "blackhole.supervisor", module)
        return server

    return install


def raiser(error: BaseException) -> Callable[[Config], object]:
    def run(config: Config) -> object:
        raise error

    return run


# --- -v, -h, usage errors ----------------------------------------------------------


@pytest.mark.parametrize("flag", ["-v", "--version"])
def test_version(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([flag]) == 0
    assert capsys.readouterr().out == f"blackhole {__version__}\n"


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: blackhole [-h] [-c FILE] [-t] [-d | -q] [-b] [-ls] [-v]")
    assert "Without -c, the built-in defaults are used" in out


def test_help_names_blackhole_config_the_exit_codes_and_the_docs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "blackhole_config prints every configuration option" in out
    for code in ExitCode:
        assert f"  {code.value:<3} {code.meaning}\n" in out, code
    assert "docs/configuration.md" in out


def test_exit_codes_are_one_table() -> None:
    # The codes the SPEC fixes, and classify/error_for as inverses of each other.
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0,
        "USAGE": 64,
        "UNAVAILABLE": 69,
        "SOFTWARE": 70,
        "NOPERM": 77,
    }
    for error in (
        ConfigError(["a", "b"]),
        PermissionError(13, "Permission denied"),
        OSError(98, "Address already in use"),
        RuntimeError("bug"),
    ):
        code, message = classify(error)
        again = error_for(code, message)
        assert (again.exit_code, str(again)) == (code, message)


def test_warnings_go_through_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(Config(log_format="json"))
    try:
        warnings.warn("something is deprecated", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
    err = capsys.readouterr().err
    entry = json.loads(err)
    assert (entry["level"], entry["logger"]) == ("WARNING", "py.warnings")
    assert "something is deprecated" in entry["message"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nope"], "blackhole: unrecognized arguments: --nope (see blackhole --help)\n"),
        (["-c"], "blackhole: argument -c/--conf: expected one argument (see blackhole --help)\n"),
        (
            ["-d", "-q"],
            "blackhole: argument -q/--quiet: not allowed with argument -d/--debug"
            " (see blackhole --help)\n",
        ),
        # No abbreviations: "--back" must not silently mean --background.
        (["--back"], "blackhole: unrecognized arguments: --back (see blackhole --help)\n"),
    ],
)
def test_usage_errors_exit_64(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 64
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", message)


# --- -t ------------------------------------------------------------------------------


def test_test_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-t"]) == 0
    assert capsys.readouterr().out == "Config OK: built-in defaults (no -c given)\n"


def test_test_good_file(good_conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-t", "-c", str(good_conf)]) == 0
    assert capsys.readouterr().out == f"Config OK: {good_conf}\n"


def test_test_bad_file_prints_every_problem(
    bad_conf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--test", "--conf", str(bad_conf)]) == 64
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"blackhole: {bad_conf}:1: mode must be one of accept, bounce, random, not 'loud'",
        f"blackhole: {bad_conf}:3: timeout cannot be negative: '-3'",
        "blackhole: config test failed: 2 problems",
    ]


def test_test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.conf"
    assert main(["-t", "-c", str(missing)]) == 64
    assert capsys.readouterr().err.splitlines() == [
        f"blackhole: {missing}: cannot read the config file: No such file or directory",
        "blackhole: config test failed: 1 problem",
    ]


def test_test_refuses_what_start_up_refuses(
    tmp_path: Path, cert_pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Regression: -t said "Config OK" for a key that is not the certificate's
    # and for corrupt dhparams, and the start then failed with exit 64.
    cert, key = cert_pair
    other = tmp_path / "other-key.pem"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    bad_dh = tmp_path / "dh.pem"
    bad_dh.write_text("-----BEGIN DH PARAMETERS-----\ngarbage\n-----END DH PARAMETERS-----\n")
    mismatch = tmp_path / "mismatch.conf"
    mismatch.write_text(f"tls_cert = {cert}\ntls_key = {other}\n")
    assert main(["-t", "-c", str(mismatch)]) == 64
    assert capsys.readouterr().err.splitlines() == [
        f"blackhole: TLS certificate {cert} and key {other} do not match"
        " (the key is not the certificate's private key)",
        "blackhole: config test failed: 1 problem",
    ]
    dhparams = tmp_path / "dh.conf"
    dhparams.write_text(f"tls_cert = {cert}\ntls_key = {key}\ntls_dhparams = {bad_dh}\n")
    assert main(["-t", "-c", str(dhparams)]) == 64
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"blackhole: TLS dhparams {bad_dh} is not a PEM 'DH PARAMETERS' file")
    good = tmp_path / "good.conf"
    good.write_text(f"tls_cert = {cert}\ntls_key = {key}\n")
    assert main(["-t", "-c", str(good)]) == 0
    assert capsys.readouterr().out == f"Config OK: {good}\n"


def test_test_reads_the_control_token_file_as_start_up_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Regression: -t said "Config OK" for an empty token file; the start
    # then refused it with exit 64.
    token = tmp_path / "token"
    conf = tmp_path / "control.conf"
    conf.write_text(f"control_listen = 127.0.0.1:0\ncontrol_token_file = {token}\n")
    for text in ("  \n", "two words\n"):
        token.write_text(text)
        assert main(["-t", "-c", str(conf)]) == 64
        assert capsys.readouterr().err.splitlines() == [
            f"blackhole: control_token_file {str(token)!r} must hold one token, without spaces",
            "blackhole: config test failed: 1 problem",
        ]
    token.unlink()
    assert main(["-t", "-c", str(conf)]) == 64
    assert f"control_token_file file {str(token)!r} does not exist" in capsys.readouterr().err
    token.write_text("s3cret\n")
    assert main(["-t", "-c", str(conf)]) == 0
    assert capsys.readouterr().out == f"Config OK: {conf}\n"


def test_test_does_not_start_the_server(
    install_server: Callable[..., FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = install_server()
    assert main(["-t"]) == 0
    assert server.configs == []


# --- running: what run() gets, and how its errors come out ----------------------


def test_run_gets_defaults_and_switches(install_server: Callable[..., FakeServer]) -> None:
    server = install_server()
    assert main(["-d", "-b", "-ls"]) == 0
    assert server.configs == [
        Config(generated_cert=True, debug=True, background=True, less_secure=True)
    ]


def test_run_gets_file_config(good_conf: Path, install_server: Callable[..., FakeServer]) -> None:
    server = install_server()
    assert main(["--conf", str(good_conf), "--quiet", "--less-secure"]) == 0
    (config,) = server.configs
    assert (config.mode, config.quiet, config.less_secure, config.debug) == (
        Mode.RANDOM,
        True,
        True,
        False,
    )
    assert config.config_file == str(good_conf)
    assert not config.generated_cert
    assert [(x.host, x.port, x.mode) for x in config.listeners] == [
        ("127.0.0.1", 2526, Mode.BOUNCE)
    ]


def test_bad_file_does_not_start_the_server(
    bad_conf: Path, install_server: Callable[..., FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = install_server()
    assert main(["-c", str(bad_conf)]) == 64
    assert server.configs == []
    assert capsys.readouterr().err.splitlines()[-1] == "blackhole: 2 problems; not started"


def test_run_exit_code_is_passed_on(install_server: Callable[..., FakeServer]) -> None:
    install_server(lambda config: 3)
    assert main([]) == 3


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (Unavailable("127.0.0.1:2525 is in use"), 69, "127.0.0.1:2525 is in use"),
        (PermissionDenied("cannot bind port 25 as a user"), 77, "cannot bind port 25 as a user"),
        (ConfigError(["user 'nobodyx' does not exist"]), 64, "user 'nobodyx' does not exist"),
        (PermissionError(13, "Permission denied"), 77, "[Errno 13] Permission denied"),
        (OSError(98, "Address already in use"), 69, "[Errno 98] Address already in use"),
    ],
)
def test_typed_errors_become_exit_codes(
    error: Exception,
    code: int,
    message: str,
    install_server: Callable[..., FakeServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    install_server(raiser(error))
    assert main([]) == code
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"blackhole: {message}"
    assert "Traceback" not in err


def test_keyboard_interrupt_is_a_clean_exit(
    install_server: Callable[..., FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    install_server(raiser(KeyboardInterrupt()))
    assert main([]) == 0
    assert capsys.readouterr().err == ""


def test_bug_is_one_line_without_debug(
    install_server: Callable[..., FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    install_server(raiser(RuntimeError("oops")))
    assert main([]) == 70
    assert capsys.readouterr().err == (
        "blackhole: internal error: RuntimeError('oops') (run with -d for details)\n"
    )


def test_bug_shows_traceback_with_debug(
    install_server: Callable[..., FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    install_server(raiser(RuntimeError("oops")))
    assert main(["-d"]) == 70
    err = capsys.readouterr().err
    assert "blackhole: internal error: RuntimeError('oops')\n" in err
    assert "Traceback (most recent call last)" in err


def test_logging_is_set_up_before_run(
    install_server: Callable[..., FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    install_server(lambda config: logging.getLogger("blackhole.server").info("listening"))
    assert main([]) == 0
    assert " INFO blackhole.server: listening" in capsys.readouterr().err


# --- blackhole_config ----------------------------------------------------------------


def test_config_main_prints_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert config_main([]) == 0
    assert capsys.readouterr().out == format_options() + "\n"


def test_config_main_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert config_main(["extra"]) == 64
    assert capsys.readouterr().err == (
        "blackhole: unrecognized arguments: extra (see blackhole_config --help)\n"
    )


# --- as a real process ---------------------------------------------------------------


def run_blackhole(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blackhole", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_process_test_good(good_conf: Path) -> None:
    done = run_blackhole("-t", "-c", str(good_conf))
    assert (done.returncode, done.stdout, done.stderr) == (0, f"Config OK: {good_conf}\n", "")


def test_process_test_bad(bad_conf: Path) -> None:
    done = run_blackhole("-t", "-c", str(bad_conf))
    assert done.returncode == 64
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"blackhole: {bad_conf}:1: mode must be one of accept, bounce, random, not 'loud'",
        f"blackhole: {bad_conf}:3: timeout cannot be negative: '-3'",
        "blackhole: config test failed: 2 problems",
    ]


def test_process_usage_error_and_version() -> None:
    done = run_blackhole("-x")
    assert (done.returncode, done.stderr) == (
        64,
        "blackhole: unrecognized arguments: -x (see blackhole --help)\n",
    )
    done = run_blackhole("-v")
    assert (done.returncode, done.stdout) == (0, f"blackhole {__version__}\n")


def test_process_blackhole_config() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from blackhole.cli import config_main;"
         " sys.exit(config_main())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert done.stdout == format_options() + "\n"


# --- logging ----------------------------------------------------------------------


def emit_all_levels() -> None:
    log = logging.getLogger("blackhole.test")
    log.debug("d-message")
    log.info("i-message")
    log.warning("w-message")
    log.error("e-message")


@pytest.mark.parametrize(
    ("config", "shown"),
    [
        (Config(), ["i-message", "w-message", "e-message"]),
        (Config(debug=True), ["d-message", "i-message", "w-message", "e-message"]),
        (Config(quiet=True), ["w-message", "e-message"]),
    ],
)
def test_log_levels(config: Config, shown: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(config)
    emit_all_levels()
    lines = capsys.readouterr().err.splitlines()
    assert [line.rsplit(": ", 1)[1] for line in lines] == shown


def test_text_line_shape_with_worker(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(Config(), worker=3)
    logging.getLogger("blackhole.server").warning("port %d busy", 25)
    (line,) = capsys.readouterr().err.splitlines()
    stamp, rest = line.split(" ", 1)
    assert datetime.fromisoformat(stamp).utcoffset() is not None
    assert rest == "WARNING [worker 3] blackhole.server: port 25 busy"


def test_json_lines(tmp_path: Path) -> None:
    log_file = tmp_path / "blackhole.log"
    setup_logging(Config(log_file=str(log_file), log_format="json"), worker=2)
    log = logging.getLogger("blackhole.session")
    log.info("accepted", extra={"peer": "192.0.2.1", "session": "abc"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    logging.getLogger().handlers[-1].flush()
    first, second = (json.loads(line) for line in log_file.read_text().splitlines())
    assert first["level"] == "INFO"
    assert first["logger"] == "blackhole.session"
    assert first["message"] == "accepted"
    assert (first["worker"], first["peer"], first["session"]) == (2, "192.0.2.1", "abc")
    assert datetime.fromisoformat(first["time"]).utcoffset() is not None
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exception"]


def test_log_file_appends(tmp_path: Path) -> None:
    log_file = tmp_path / "blackhole.log"
    log_file.write_text("earlier line\n")
    setup_logging(Config(log_file=str(log_file)))
    logging.getLogger("blackhole").info("started")
    logging.getLogger().handlers[-1].flush()
    lines = log_file.read_text().splitlines()
    assert lines[0] == "earlier line"
    assert lines[1].endswith(" INFO blackhole: started")


def test_log_file_that_cannot_be_opened(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        setup_logging(Config(log_file=str(tmp_path)))
    assert caught.value.problems == [f"log_file '{tmp_path}' cannot be opened: Is a directory"]


def test_setup_twice_keeps_one_handler_and_others_alone() -> None:
    root = logging.getLogger()
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    setup_logging(Config())
    setup_logging(Config(quiet=True), worker=1)
    ours = [h for h in root.handlers if h.get_name() == HANDLER_NAME]
    assert len(ours) == 1
    assert foreign in root.handlers
    assert root.level == logging.WARNING


# --- the reference document ------------------------------------------------------


def test_configuration_doc_covers_every_option_and_switch() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for name in OPTION_NAMES:
        assert f"`{name}`" in doc, name
    for switch in ["-c", "-t", "-d", "-b", "-q", "-ls", "-v", "--conf", "--test", "--debug",
                   "--background", "--quiet", "--less-secure", "--version"]:  # fmt: skip
        assert f"`{switch}" in doc, switch
