"""A small client of the server's control API (OBSERVE.md "Control API").

Standard library only (``http.client``), one short-lived connection per
request on loopback: nothing stays open between calls, so a ``Blackhole``
holds no socket of its own besides the server's pipe. Errors the API
answers (400 with the bad field, 404, 409) become ``ControlError`` with the
API's own message.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

TIMEOUT = 30.0  # adding a rule waits for every worker to apply it


class ControlError(RuntimeError):
    """The control API refused a request: ``status`` and its message (and ``field``)."""

    def __init__(self, status: int, message: str, field: str | None) -> None:
        where = f" ({field})" if field else ""
        super().__init__(f"{status}: {message}{where}")
        self.status = status
        self.message = message
        self.field = field


class ControlClient:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The decoded JSON answer (None for 204); raises ``ControlError`` for 4xx/5xx."""
        payload = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        text = data[:200].decode("utf-8", "replace").strip()
        try:
            answer = json.loads(data) if data and response.status != 204 else None
        except ValueError:
            # The HTTP layer's own plain-text error (an overlong request line, say).
            raise ControlError(response.status, text, None) from None
        if response.status >= 400:
            detail = answer if isinstance(answer, dict) else {}
            raise ControlError(response.status, str(detail.get("error", text)), detail.get("field"))
        return answer
