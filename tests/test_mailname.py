"""The mail name: config, else /etc/mailname, else the FQDN, else localhost."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from blackhole.errors import ConfigError
from blackhole.server.mailname import resolve_mailname, validate_mailname


def fqdn_fails() -> str:
    raise OSError("resolver down")


def never_called() -> str:
    raise AssertionError("the FQDN must not be looked up")


@pytest.fixture
def etc_mailname(tmp_path: Path) -> Path:
    return tmp_path / "mailname"


def test_configured_name_wins(etc_mailname: Path) -> None:
    etc_mailname.write_text("from-file.example\n")
    assert resolve_mailname("mx.example", etc_mailname, fqdn=never_called) == "mx.example"


@pytest.mark.parametrize(
    "name",
    [
        "mx.example",
        "localhost",
        "[192.0.2.1]",
        "[IPv6:2001:db8::1]",
        "xn--bcher-kva.example",
        ".".join(["x" * 63] * 4),  # 255 octets, RFC 5321 section 4.5.3.1.2
    ],
)
def test_configured_names_accepted(name: str, tmp_path: Path) -> None:
    assert resolve_mailname(name, tmp_path / "none") == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("mx example", "spaces"),
        ("mx.example\r\n250 injected", "control"),
        ("mx.example\n", "control"),
        ("mx\texample", "spaces"),
        ("mx\x00example", "control"),
        ("x" * 256, "longer than 255"),
        # RFC 5321 section 4.1.2 domain rules, the same as the mailname key's.
        ("bücher.example", "xn--"),
        ("x" * 64 + ".example", "not a domain"),
        ("-mx.example", "not a domain"),
        ("mx.example.", "not a domain"),
        ("mx_1.example", "not a domain"),
    ],
)
def test_configured_names_rejected(name: str, why: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=why) as info:
        resolve_mailname(name, tmp_path / "none", fqdn=never_called)
    assert repr(name) in str(info.value)
    assert info.value.exit_code == 64


def test_validate_mailname_returns_the_name() -> None:
    assert validate_mailname("mx.example") == "mx.example"


def test_etc_mailname_first_line(etc_mailname: Path) -> None:
    etc_mailname.write_text("mail.example.org\nsecond.example.org\n")
    assert resolve_mailname(None, etc_mailname, fqdn=never_called) == "mail.example.org"


def test_etc_mailname_skips_comments_and_blank_lines(etc_mailname: Path) -> None:
    etc_mailname.write_text(
        "# managed by ansible\n\n   \n  # indented comment\n  mx.example.net  \n"
    )
    assert resolve_mailname(None, etc_mailname, fqdn=never_called) == "mx.example.net"


def test_etc_mailname_without_trailing_newline(etc_mailname: Path) -> None:
    etc_mailname.write_text("mx.example.net")
    assert resolve_mailname(None, etc_mailname, fqdn=never_called) == "mx.example.net"


def test_etc_mailname_crlf(etc_mailname: Path) -> None:
    etc_mailname.write_bytes(b"mx.example.net\r\n")
    assert resolve_mailname(None, etc_mailname, fqdn=never_called) == "mx.example.net"


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n", "  \n# c\n"])
def test_empty_etc_mailname_falls_back_to_fqdn(etc_mailname: Path, content: str) -> None:
    etc_mailname.write_text(content)
    assert resolve_mailname(None, etc_mailname, fqdn=lambda: "host.example") == "host.example"


def test_unusable_etc_mailname_falls_back_to_fqdn(
    etc_mailname: Path, caplog: pytest.LogCaptureFixture
) -> None:
    etc_mailname.write_text("two words\n")
    assert resolve_mailname(None, etc_mailname, fqdn=lambda: "host.example") == "host.example"
    assert "two words" in caplog.text


def test_missing_etc_mailname_falls_back_to_fqdn(tmp_path: Path) -> None:
    missing = tmp_path / "mailname"
    assert resolve_mailname(None, missing, fqdn=lambda: "host.example") == "host.example"


def test_etc_mailname_that_is_a_directory(tmp_path: Path) -> None:
    assert resolve_mailname(None, tmp_path, fqdn=lambda: "host.example") == "host.example"


def test_fqdn_failure_gives_localhost(tmp_path: Path) -> None:
    assert resolve_mailname(None, tmp_path / "none", fqdn=fqdn_fails) == "localhost"


@pytest.mark.parametrize("fqdn", ["", "   ", "bad name"])
def test_unusable_fqdn_gives_localhost(tmp_path: Path, fqdn: str) -> None:
    assert resolve_mailname(None, tmp_path / "none", fqdn=lambda: fqdn) == "localhost"


def test_real_fqdn_by_default(tmp_path: Path) -> None:
    name = resolve_mailname(None, tmp_path / "none")
    assert name in (socket.getfqdn().strip(), "localhost")
    validate_mailname(name)
