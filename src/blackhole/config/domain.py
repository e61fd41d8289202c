"""Domain names and address literals, by RFC 5321: the one check for mail names.

The ``mailname`` key, ``/etc/mailname`` and the host's FQDN all end up in the
220 greeting and the EHLO reply (RFC 5321 section 4.1.1.1), so each must be
what that grammar allows there, and nothing that could break a reply line.
``listen`` host names use the same label rules.
"""

from __future__ import annotations

import ipaddress
import re

# RFC 5321 section 4.1.2: sub-domain = Let-dig [Ldh-str], that is letters,
# digits and hyphens, not starting or ending with a hyphen; RFC 1035 section
# 2.3.4 limits a label to 63 octets.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
# RFC 5321 section 4.5.3.1.2: a domain is at most 255 octets.
MAX_DOMAIN = 255
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


def is_domain(text: str) -> bool:
    """True for an RFC 5321 ``Domain``: dot-separated labels, no trailing dot."""
    if not text or len(text) > MAX_DOMAIN:
        return False
    return all(_LABEL.fullmatch(label) for label in text.split("."))


def is_address_literal(text: str) -> bool:
    """True for an RFC 5321 section 4.1.3 literal: ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``."""
    if not (text.startswith("[") and text.endswith("]")):
        return False
    inner = text[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True


def mailname_problem(name: str) -> str | None:
    """Why ``name`` cannot be the server's mail name, or None if it can.

    RFC 5321 section 4.1.1.1: the greeting and EHLO name the server by a
    ``Domain`` or an ``address-literal``.
    """
    if is_domain(name) or is_address_literal(name):
        return None
    if not name:
        return "it is empty"
    if _BAD_CHARS.search(name):
        # Anything here would split or corrupt the reply line it goes into.
        return "it contains spaces or control characters"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_DOMAIN:
        return f"it is longer than {MAX_DOMAIN} octets"
    if not name.isascii():
        return "it is not ASCII; write an international name in its xn-- (A-label) form"
    return (
        "it is not a domain (RFC 5321: labels of letters, digits and inner hyphens, at most"
        " 63 each, joined by dots) or an address literal such as [192.0.2.1]"
    )
