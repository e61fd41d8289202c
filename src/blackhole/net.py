"""Network addresses as people read them; imported by config and server alike."""

from __future__ import annotations


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 literal in brackets: ``[::1]:25``.

    RFC 3986 section 3.2.2: without them the port cannot be told from the
    last group of the address.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
