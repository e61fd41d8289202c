"""The real command, real sockets: the start-up line, a message, a clean stop."""

from __future__ import annotations

import smtplib
import ssl

from tests.serverproc import ServerProcess


def test_plain_and_smtps_listeners_accept_mail(server: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as client:
        refused = client.sendmail("a@example.com", ["b@example.com"], "Subject: t\r\n\r\nhi\r\n")
        assert refused == {}
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP_SSL("127.0.0.1", server.port("smtps"), context=context, timeout=10) as c:
        code, _ = c.ehlo()
        assert code == 250
        assert "STARTTLS" not in c.esmtp_features  # RFC 3207: not offered once TLS is on
    assert server.stop() == 0
