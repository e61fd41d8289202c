"""Blackhole inside a test suite: a real server per test session, and what it saw.

``Blackhole`` runs the real server on ephemeral loopback ports
(``blackhole.testing.server``); ``Message``, ``Reply`` and ``Headers`` are the
recorded messages (``records``); the pytest plugin (``plugin``, registered
through the ``pytest11`` entry point) gives the ``blackhole`` and
``blackhole_factory`` fixtures and the ``blackhole`` marker. docs/testing.md
shows them at work.
"""

from blackhole.errors import ConfigError
from blackhole.testing.control import ControlError
from blackhole.testing.plugin import BlackholeFactory
from blackhole.testing.process import StartError
from blackhole.testing.records import Headers, Message, Reply
from blackhole.testing.server import Blackhole

__all__ = [
    "Blackhole",
    "BlackholeFactory",
    "ConfigError",
    "ControlError",
    "Headers",
    "Message",
    "Reply",
    "StartError",
]
