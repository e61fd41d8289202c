"""Why a TLS handshake failed, in the words the log uses."""

from __future__ import annotations

import ssl

import pytest

from blackhole.server.upgrade import failure_reason


def _ssl_error(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, f"[SSL: {reason}] ...")
    exc.reason = reason
    return exc


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (_ssl_error("WRONG_VERSION_NUMBER"), "wrong version number (plaintext on a TLS port?)"),
        (_ssl_error("HTTP_REQUEST"), "http request (plaintext on a TLS port?)"),
        (_ssl_error("UNSUPPORTED_PROTOCOL"), "unsupported protocol"),
        (_ssl_error("NO_SHARED_CIPHER"), "no shared cipher"),
        (ssl.SSLError(1, "made in Python"), "sslerror"),
        (TimeoutError(), "timed out after 10 s"),
        (
            ConnectionAbortedError(
                "SSL handshake is taking longer than 10.0 seconds: aborting the connection"
            ),
            "timed out after 10 s",
        ),
        (ConnectionResetError(), "the client closed the connection"),
        (None, "the client closed the connection"),
        (OSError(113, "No route to host"), "No route to host"),
    ],
)
def test_failure_reason(exc: BaseException | None, text: str) -> None:
    assert failure_reason(exc, 10.0) == text
    assert "None" not in failure_reason(exc, 10.0)
