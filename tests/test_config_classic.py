"""The classic ``key = value`` blackhole.conf loader, with real files on disk.

Error messages are compared whole: they are the user interface of a config
test, so a change to one should be a deliberate change to this file.
"""

from __future__ import annotations

import codecs
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from blackhole.config import classic
from blackhole.config.classic import load_config, parse_config, reload_config
from blackhole.config.domain import mailname_problem
from blackhole.config.model import Config, Listener
from blackhole.config.options import OPTION_NAMES, OPTIONS, format_options
from blackhole.errors import EX_USAGE, ConfigError
from blackhole.policy.modes import Delay, Mode

CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
DHPARAMS = "-----BEGIN DH PARAMETERS-----\nMIIB\n-----END DH PARAMETERS-----\n"
VALID_KEYS = ", ".join(OPTION_NAMES)
BOOL_WORDS = "true or false (or yes/no, on/off, 1/0)"
HEARTBEAT = "heartbeat_interval must be more than 0 and at most 60 seconds"
LISTEN_FLAGS = (
    "the flags are mode=MODE, delay=N or A-B, name=NAME, proxy=yes|no, cert=PATH, key=PATH,"
    " socket_mode=MODE and starttls=yes|no"
)


def unknown(key: str, hint: str | None = None) -> str:
    did_you_mean = f" (did you mean {hint!r}?)" if hint else ""
    return f"unknown key {key!r}{did_you_mean}; the valid keys are: {VALID_KEYS}"


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, Path]:
    files = {"cert": CERT, "key": KEY, "dhparams": DHPARAMS}
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_text(text)
    return paths


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "blackhole.conf"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def problems(tmp_path: Path, text: str) -> list[str]:
    """The problems a file has, with its path shortened to FILE for readability."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.exit_code == EX_USAGE
    return [p.replace(str(path), "FILE") for p in caught.value.problems]


# --- the happy paths ---------------------------------------------------------


def test_empty_file_gives_defaults_with_generated_cert(tmp_path: Path) -> None:
    config = load(tmp_path, "# nothing set\n\n")
    assert config == Config(
        generated_cert=True, config_file=str(tmp_path / "blackhole.conf"), base_dir=str(Path.cwd())
    )
    assert config.listeners == (
        Listener("127.0.0.1", 2525),
        Listener("127.0.0.1", 4650, tls=True),
    )


def test_every_classic_key(tmp_path: Path, pem: dict[str, Path]) -> None:
    config = load(
        tmp_path,
        f"""\
listen = :25, :::25, :587 mode=bounce, :::587 delay=1-5
tls_listen = :465, :::465 mode=random delay=3
user = nobody
group = nogroup
pidfile = {tmp_path}/blackhole.pid
timeout = 45.5
tls_cert = {pem["cert"]}
tls_key = {pem["key"]}
tls_dhparams = {pem["dhparams"]}
delay = 10
mode = bounce
max_message_size = 1048576
dynamic_switch = false
workers = 4
""",
    )
    assert config == Config(
        listeners=(
            Listener("0.0.0.0", 25),
            Listener("::", 25),
            Listener("0.0.0.0", 587, mode=Mode.BOUNCE),
            Listener("::", 587, delay=Delay(1, 5)),
            Listener("0.0.0.0", 465, tls=True),
            Listener("::", 465, tls=True, mode=Mode.RANDOM, delay=Delay(3, 3)),
        ),
        user="nobody",
        group="nogroup",
        pidfile=str(tmp_path / "blackhole.pid"),
        timeout=45.5,
        tls_cert=str(pem["cert"]),
        tls_key=str(pem["key"]),
        tls_dhparams=str(pem["dhparams"]),
        delay=Delay(10, 10),
        mode=Mode.BOUNCE,
        max_message_size=1048576,
        dynamic_switch=False,
        workers=4,
        config_file=str(tmp_path / "blackhole.conf"),
        base_dir=str(Path.cwd()),
    )


@pytest.mark.parametrize(("text", "share"), [("0", 0.0), ("0.25", 0.25), ("1", 1.0), ("1.0", 1.0)])
def test_random_accept(tmp_path: Path, text: str, share: float) -> None:
    assert load(tmp_path, f"mode = random\nrandom_accept = {text}\n").random_accept == share


def test_random_accept_default_is_the_classic_one_in_eleven(tmp_path: Path) -> None:
    assert load(tmp_path, "mode = random\n").random_accept == 1 / 11


def test_every_new_key(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        f"""\
mailname = mx.example.test
max_recipients = 100
seed = -7
auth_required = yes
auth_tls_only = on
log_file = {tmp_path}/blackhole.log
log_format = JSON
grace_period = 0
heartbeat_interval = 0.5
""",
    )
    assert (
        config.mailname,
        config.max_recipients,
        config.seed,
        config.auth_required,
        config.auth_tls_only,
        config.log_file,
        config.log_format,
        config.grace_period,
        config.heartbeat_interval,
    ) == ("mx.example.test", 100, -7, True, True, str(tmp_path / "blackhole.log"), "json", 0, 0.5)


def test_comments_quotes_and_blank_lines(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
# full-line comment = with an equals sign
   # indented comment

mode = bounce  # inline comment
delay = '1-5'   # single quotes stripped
listen = ":2525 mode=accept, :::2525"
mailname = "mx.example.test"  # comment after quotes
user = "  nobody  "
timeout=30
""",
    )
    assert config.mode is Mode.BOUNCE
    assert config.delay == Delay(1, 5)
    assert config.listeners == (
        Listener("0.0.0.0", 2525, mode=Mode.ACCEPT),
        Listener("::", 2525),
    )
    assert config.mailname == "mx.example.test"
    assert config.user == "nobody"
    assert config.timeout == 30


def test_hash_inside_quotes_is_not_a_comment(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs#1"
    log_dir.mkdir()
    config = load(tmp_path, f'log_file = "{log_dir}/b.log"  # real comment\n')
    assert config.log_file == str(log_dir / "b.log")


def test_crlf_line_endings_and_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "blackhole.conf"
    path.write_bytes(b"\xef\xbb\xbfmode = random\r\nworkers = 2\r\n")
    config = load_config(path)
    assert (config.mode, config.workers) == (Mode.RANDOM, 2)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 60.0), ("0.0", 60.0), ("1", 1.0), ("2.5", 2.5), ("180", 180.0)],
)
def test_timeout_zero_means_default(tmp_path: Path, value: str, expected: float) -> None:
    # Classic bug: timeout = 0 closed every connection at once.
    assert load(tmp_path, f"timeout = {value}\n").timeout == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", Delay(7, 7)), ("0", Delay(0, 0)), ("1-5", Delay(1, 5)), ("1, 5", Delay(1, 5))],
)
def test_delay_values(tmp_path: Path, value: str, expected: Delay) -> None:
    assert load(tmp_path, f"delay = {value}\n").delay == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("True", True),
        ("yes", True),
        ("on", True),
        ("1", True),
        ("false", False),
        ("NO", False),
        ("off", False),
        ("0", False),
    ],
)
def test_dynamic_switch_words(tmp_path: Path, value: str, expected: bool) -> None:
    assert load(tmp_path, f"dynamic_switch = {value}\n").dynamic_switch is expected


@pytest.mark.parametrize("value", ["accept", "BOUNCE", "Random"])
def test_mode_any_case(tmp_path: Path, value: str) -> None:
    assert load(tmp_path, f"mode = {value}\n").mode is Mode(value.lower())


def test_only_listen_means_no_tls_listener(tmp_path: Path) -> None:
    config = load(tmp_path, "listen = 127.0.0.1:2500\n")
    assert config.listeners == (Listener("127.0.0.1", 2500),)
    assert not config.generated_cert


def test_default_listeners_use_configured_cert(tmp_path: Path, pem: dict[str, Path]) -> None:
    config = load(tmp_path, f"tls_cert = {pem['cert']}\ntls_key = {pem['key']}\n")
    assert config.listeners == Config().listeners
    assert config.tls_cert == str(pem["cert"])
    assert not config.generated_cert


def test_relative_paths_are_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pem: dict[str, Path]
) -> None:
    # A daemon changes directory and a SIGHUP reload may run elsewhere; the
    # paths must keep meaning what they meant at load time.
    monkeypatch.chdir(tmp_path)
    config = load(tmp_path, "pidfile = run.pid\ntls_cert = cert.pem\ntls_key = key.pem\n")
    assert config.pidfile == str(tmp_path / "run.pid")
    assert config.tls_cert == str(tmp_path / "cert.pem")


def test_parse_config_uses_given_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("mode = drop\n", filename="inline")
    assert caught.value.problems == [
        "inline:1: mode must be one of accept, bounce, random, not 'drop'"
    ]


# --- one problem at a time ------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("timeout = -1", "timeout cannot be negative: '-1'"),
        ("timeout = 181", "timeout must be at most 180 seconds, not 181"),
        ("timeout = soon", "timeout must be a number of seconds, not 'soon'"),
        ("timeout = inf", "timeout must be a finite number of seconds, not 'inf'"),
        ("timeout = nan", "timeout must be a finite number of seconds, not 'nan'"),
        ("delay = 61", "delay 61 seconds is over the maximum of 60"),
        ("delay = 9-3", "delay range '9-3' runs backwards; write the smaller number first"),
        ("delay = -2", "delay cannot be negative: '-2'"),
        ("mode = drop", "mode must be one of accept, bounce, random, not 'drop'"),
        ("max_message_size = 0", "max_message_size must be 1 byte or more, not 0"),
        ("max_message_size = 10MB", "max_message_size must be a whole number, not '10MB'"),
        (
            "max_message_size = 100000000000000000000",
            "max_message_size must be at most 99999999999999999999 (20 digits, RFC 1870),"
            " not 100000000000000000000",
        ),
        ("timeout = \uff15", "timeout must be a number of seconds, not '５'"),
        ("random_accept = \uff10.5", "random_accept must be a number from 0.0 to 1.0, not '０.5'"),
        (
            "dynamic_switch = maybe",
            "dynamic_switch must be true or false (or yes/no, on/off, 1/0), not 'maybe'",
        ),
        ("workers = 0", "workers must be from 1 to 64, not 0"),
        ("workers = 65", "workers must be from 1 to 64, not 65"),
        ("workers = 1.5", "workers must be a whole number, not '1.5'"),
        ("user = no body", "user must be a single name without spaces, not 'no body'"),
        ("group = 'a b'", "group must be a single name without spaces, not 'a b'"),
        (
            "mailname = not a name",
            "mailname 'not a name' is not usable: it contains spaces or control characters",
        ),
        (
            "max_recipients = 99",
            "max_recipients must be 100 or more (RFC 5321 section 4.5.3.1.8), not 99",
        ),
        ("seed = x", "seed must be a whole number, not 'x'"),
        ("auth_required = sure", f"auth_required must be {BOOL_WORDS}, not 'sure'"),
        ("log_format = xml", "log_format must be text or json, not 'xml'"),
        ("grace_period = 3601", "grace_period must be at most 3600 seconds, not 3601"),
        ("heartbeat_interval = 0", f"{HEARTBEAT}, not 0"),
        ("heartbeat_interval = 61", f"{HEARTBEAT}, not 61"),
        ("pidfile = /no-such-dir/b.pid", "pidfile directory '/no-such-dir' does not exist"),
        ("log_file = /no-such-dir/b.log", "log_file directory '/no-such-dir' does not exist"),
        ("listen = :65536", "listen entry ':65536': port must be from 0 to 65535, not 65536"),
        ("listen = :25 fast=1", f"listen entry ':25 fast=1': unknown flag 'fast'; {LISTEN_FLAGS}"),
        (
            "listen = :25 delay=1-99",
            "listen entry ':25 delay=1-99': delay 99 seconds is over the maximum of 60",
        ),
        ("listen = :25, :25", "listen lists 0.0.0.0:25 twice"),
        ("listen = [::1]:25, ::1:25", "listen lists [::1]:25 twice"),
        ("mode =", "mode has no value (remove the line to use the default)"),
        ("mode = ''", "mode has no value (remove the line to use the default)"),
        ("mode = 'bounce", "mode has an opening ' without a closing one"),
        ('mode = "bounce" random', "mode has text after its closing quote: 'random'"),
        ("mode bounce", "expected 'key = value', found 'mode bounce'"),
        ("mode # = bounce", "expected 'key = value', found 'mode'"),
        ("= bounce", "there is no key before '='"),
        ("foo = bar", unknown("foo")),
        ("Mode = bounce", unknown("Mode", "mode")),
        ("MODE = bounce", unknown("MODE", "mode")),
        ("tmeout = 5", unknown("tmeout", "timeout")),
        ("tls-listen = :465", unknown("tls-listen", "tls_listen")),
        # Swapped words: difflib alone suggested 'listen'.
        ("listen_tls = :465", unknown("listen_tls", "tls_listen")),
        ("TLS_LISTEN = :465", unknown("TLS_LISTEN", "tls_listen")),
        ("accept_random = 0.5", unknown("accept_random", "random_accept")),
        ("message_size_max = 10", unknown("message_size_max", "max_message_size")),
        ("random_accept = 1.5", "random_accept must be from 0.0 to 1.0, not 1.5"),
        ("random_accept = half", "random_accept must be a number from 0.0 to 1.0, not 'half'"),
        ("random_accept = nan", "random_accept must be from 0.0 to 1.0, not nan"),
    ],
)
def test_single_problem(tmp_path: Path, line: str, message: str) -> None:
    # The bad line is line 2, so the line number is not just "the first line".
    assert problems(tmp_path, f"# header\n{line}\n") == [f"FILE:2: {message}"]


@pytest.mark.parametrize(
    "value", ["mx.example.test", "localhost", "[192.0.2.1]", "[IPv6:2001:db8::1]"]
)
def test_mailname_accepts(tmp_path: Path, value: str) -> None:
    assert load(tmp_path, f"mailname = {value}\n").mailname == value


@pytest.mark.parametrize("value", ["[a b]", "[x]", "[2001:db8::1]", "mx_1.test", "[]"])
def test_mailname_rejects(tmp_path: Path, value: str) -> None:
    # The same RFC 5321 rule as /etc/mailname and the FQDN (config/domain.py).
    assert problems(tmp_path, f"mailname = {value}\n") == [
        f"FILE:1: mailname {value!r} is not usable: {mailname_problem(value)}"
    ]


def test_pidfile_that_is_a_directory(tmp_path: Path) -> None:
    assert problems(tmp_path, f"pidfile = {tmp_path}\n") == [
        f"FILE:1: pidfile '{tmp_path}' is a directory; give a file name inside it"
    ]


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    assert problems(tmp_path, "mode = accept\n\n\nmode = bounce\n") == [
        "FILE:4: mode is set twice, on lines 1 and 4; keep one"
    ]


# --- TLS files and how they go together ------------------------------------------


def test_tls_files_missing_directory_and_not_pem(tmp_path: Path) -> None:
    (tmp_path / "empty.pem").write_text("hello\n")
    (tmp_path / "swapped.pem").write_text(CERT)
    assert problems(
        tmp_path,
        f"tls_cert = {tmp_path}/missing.pem\n"
        f"tls_key = {tmp_path}/swapped.pem\n"
        f"tls_dhparams = {tmp_path}\n",
    ) == [
        f"FILE:1: tls_cert file '{tmp_path}/missing.pem' does not exist",
        f"FILE:2: tls_key file '{tmp_path}/swapped.pem' does not look like a PEM private key"
        " (no 'PRIVATE KEY-----' line)",
        f"FILE:3: tls_dhparams '{tmp_path}' is a directory, not a file",
    ]


def test_tls_dhparams_must_be_dh_parameters(tmp_path: Path, pem: dict[str, Path]) -> None:
    assert problems(
        tmp_path,
        f"tls_cert = {pem['cert']}\ntls_key = {pem['key']}\ntls_dhparams = {pem['key']}\n",
    ) == [
        f"FILE:3: tls_dhparams file '{pem['key']}' does not look like PEM DH parameters"
        " (no 'DH PARAMETERS-----' line)"
    ]


def test_tls_file_unreadable(tmp_path: Path, pem: dict[str, Path]) -> None:
    if os.geteuid() != 0:
        pem["key"].chmod(0)
        assert problems(tmp_path, f"tls_cert = {pem['cert']}\ntls_key = {pem['key']}\n") == [
            f"FILE:2: tls_key file '{pem['key']}' cannot be read: Permission denied"
        ]
        return
    # Root reads any file, so the loader runs with the effective uid of nobody
    # (the real uid stays root, so it switches back), on files in a directory
    # nobody can enter (pytest's own are 0700): the certificate and the config
    # readable to all, the key to no one.
    with tempfile.TemporaryDirectory() as name:
        home = Path(name)
        home.chmod(0o755)
        cert, key = home / "cert.pem", home / "key.pem"
        cert.write_bytes(pem["cert"].read_bytes())
        key.write_bytes(pem["key"].read_bytes())
        key.chmod(0)
        config = home / "blackhole.conf"
        config.write_text(f"tls_cert = {cert}\ntls_key = {key}\n")
        codecs.lookup("utf-8-sig")  # nobody cannot import it from root's Python
        os.seteuid(65534)
        try:
            with pytest.raises(ConfigError) as caught:
                load_config(config)
        finally:
            os.seteuid(0)
    assert caught.value.problems == [
        f"{config}:2: tls_key file '{key}' cannot be read: Permission denied"
    ]


def test_tls_file_unreadable_even_as_root(
    tmp_path: Path, pem: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root reads any file, so the permission case is simulated for the key alone.
    real_open = os.open

    def guarded_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(path) == pem["key"]:
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    assert problems(tmp_path, f"tls_cert = {pem['cert']}\ntls_key = {pem['key']}\n") == [
        f"FILE:2: tls_key file '{pem['key']}' cannot be read: Permission denied"
    ]


def test_tls_cert_and_key_come_together(tmp_path: Path, pem: dict[str, Path]) -> None:
    assert problems(tmp_path, f"tls_cert = {pem['cert']}\n") == [
        "FILE:1: tls_cert is set but tls_key is not; TLS needs both"
    ]
    assert problems(tmp_path, f"mode = accept\ntls_key = {pem['key']}\n") == [
        "FILE:2: tls_key is set but tls_cert is not; TLS needs both"
    ]


def test_tls_listen_and_dhparams_need_a_cert(tmp_path: Path, pem: dict[str, Path]) -> None:
    assert problems(
        tmp_path, f"listen = :25\ntls_listen = :465\ntls_dhparams = {pem['dhparams']}\n"
    ) == [
        "FILE:2: tls_listen needs tls_cert and tls_key (or cert= and key= on each entry):"
        " a TLS listener cannot start without a certificate",
        "FILE:3: tls_dhparams is set but tls_cert is not; DH parameters are only used with TLS",
    ]


def test_same_address_in_listen_and_tls_listen(tmp_path: Path, pem: dict[str, Path]) -> None:
    assert problems(
        tmp_path,
        f"tls_cert = {pem['cert']}\ntls_key = {pem['key']}\n"
        "listen = 127.0.0.1:2525, :::2525\n"
        "tls_listen = [::]:2525\n",
    ) == [
        "FILE:4: tls_listen repeats [::]:2525, already in listen on line 3; an address and port"
        " can have only one listener"
    ]


# --- everything at once -----------------------------------------------------------


def test_all_problems_reported_at_once_in_line_order(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
# A file with one problem on almost every line.
listen = :25 mode=drop, localhost
tls_listen = :25
timeout = 500
delay = 1-90
nonsense
mode = loud  # comment
workers = many
foo = bar
timeout = 5
dynamic_switch = true
""",
    )
    # The bad listen entries yield no listeners, so no clash with tls_listen
    # is reported on top: one mistake, one message.
    assert found == [
        "FILE:2: listen entry ':25 mode=drop': mode must be one of accept, bounce, random,"
        " not 'drop'",
        "FILE:2: listen entry 'localhost': no port; write HOST:PORT, or :PORT for every"
        " IPv4 address",
        "FILE:3: tls_listen needs tls_cert and tls_key (or cert= and key= on each entry):"
        " a TLS listener cannot start without a certificate",
        "FILE:4: timeout must be at most 180 seconds, not 500",
        "FILE:5: delay 90 seconds is over the maximum of 60",
        "FILE:6: expected 'key = value', found 'nonsense'",
        "FILE:7: mode must be one of accept, bounce, random, not 'loud'",
        "FILE:8: workers must be a whole number, not 'many'",
        f"FILE:9: {unknown('foo')}",
        "FILE:10: timeout is set twice, on lines 4 and 10; keep one",
    ]


def test_listen_clash_reported_beside_a_bad_entry_in_entry_order(tmp_path: Path) -> None:
    # Regression: one bad entry hid every clash on the line (the whole value
    # was dropped), and the problems of one line came out sorted by their text
    # rather than in the order of the entries.
    assert problems(
        tmp_path,
        "mode = accept\n"
        "listen = 127.0.0.1:2525, 127.0.0.1:2525, :3 fast=1, [::1]:1 delay=5-2, :1 delay=abc\n",
    ) == [
        f"FILE:2: listen entry ':3 fast=1': unknown flag 'fast'; {LISTEN_FLAGS}",
        "FILE:2: listen entry '[::1]:1 delay=5-2': delay range '5-2' runs backwards;"
        " write the smaller number first",
        "FILE:2: listen entry ':1 delay=abc': delay must be seconds from 0 to 60, as N or A-B,"
        " not 'abc'",
        "FILE:2: listen lists 127.0.0.1:2525 twice",
    ]


def test_config_error_message_holds_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "mode = x\nworkers = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}:1: mode must be one of accept, bounce, random, not 'x'\n"
        f"{path}:2: workers must be from 1 to 64, not 0"
    )


# --- the file itself ------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.conf")
    assert caught.value.problems == [
        f"{tmp_path}/nope.conf: cannot read the config file: No such file or directory"
    ]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.problems == [f"{tmp_path}: cannot read the config file: Is a directory"]


@pytest.mark.parametrize("kind", ["fifo", "device", "too long"])
def test_a_file_that_is_no_config_file_is_refused_unread(tmp_path: Path, kind: str) -> None:
    # A FIFO would wait for a writer for ever, /dev/zero never end.
    path = tmp_path / "blackhole.conf"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    else:
        path.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    reason = "larger than 1 MiB" if kind == "too long" else "not a regular file"
    assert caught.value.problems == [f"{path}: cannot read the config file: {reason}"]
    rules = tmp_path / "rules.conf"
    rules.write_text(f"rules = {path}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(rules)
    assert f"{path}: cannot read the rules file: {reason}" in str(caught.value)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "blackhole.conf"
    path.write_bytes(b"mode = accept\n# caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [f"{path}:2: the file is not UTF-8 text"]


def test_reload_keeps_command_line_switches(tmp_path: Path) -> None:
    path = write(tmp_path, "mode = accept\n")
    first = dataclasses.replace(load_config(path), debug=True, less_secure=True, background=True)
    path.write_text("mode = bounce\n")
    second = reload_config(first)
    assert (second.mode, second.debug, second.less_secure, second.background) == (
        Mode.BOUNCE,
        True,
        True,
        True,
    )
    assert reload_config(Config()) == Config()


# --- options.py is the one list of keys -----------------------------------------------


def test_every_option_has_a_parser_and_a_config_field() -> None:
    fields = {field.name for field in dataclasses.fields(Config)}
    assert set(OPTION_NAMES) == set(classic._parsers(Path("/")))
    assert set(OPTION_NAMES) - {"listen", "tls_listen", "lmtp_listen"} <= fields
    assert len(OPTION_NAMES) == len(set(OPTION_NAMES))


def test_option_defaults_match_config_defaults() -> None:
    defaults = Config()
    simple = {
        option.name: option.default
        for option in OPTIONS
        if not option.default.startswith("(")
        and option.name not in {"listen", "tls_listen", "lmtp_listen"}
    }
    for name, text in simple.items():
        value = getattr(defaults, name)
        if isinstance(value, bool):
            shown = str(value).lower()
        elif isinstance(value, float):
            shown = f"{value:g}"
        elif isinstance(value, frozenset):
            shown = " ".join(sorted(value))
        else:
            shown = str(value)
        assert shown == text, name
    # Options documented as "(none...)" really default to None.
    for option in OPTIONS:
        if option.default.startswith("(none"):
            assert getattr(defaults, option.name) is None, option.name


def test_option_examples_are_valid(tmp_path: Path, pem: dict[str, Path]) -> None:
    # Each documented example, on its own (with files where a file is needed).
    needs_files = {
        "tls_cert",
        "tls_key",
        "tls_dhparams",
        "tls_listen",
        "pidfile",
        "log_file",
        "control_token_file",
        "rules",
    }
    for option in OPTIONS:
        if option.name in needs_files:
            continue
        load(tmp_path, f"{option.name} = {option.example}\n")


def test_printed_option_list_is_a_valid_config_file(tmp_path: Path) -> None:
    text = format_options()
    for name in OPTION_NAMES:
        assert f"\n# {name}" in text
    assert load(tmp_path, text) == load(tmp_path, "")


def test_refused_files_leave_no_descriptor_open(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    descriptors = Path("/proc/self/fd")
    before = len(list(descriptors.iterdir()))
    for path in (tmp_path, fifo, Path("/dev/zero")) * 20:
        with pytest.raises(ConfigError):
            load_config(path)
    assert len(list(descriptors.iterdir())) == before
