"""Frames on the private channels between processes of one Blackhole server.

The supervisor and a worker, the supervisor and the hub, a worker and the hub
talk over private UNIX sockets between processes of the same program, so
messages are pickled dataclasses (never data from the network), each sent as
one frame: a 4-byte big-endian length, then the pickle.
"""

from __future__ import annotations

import pickle
import socket
import struct

from blackhole.errors import BlackholeError

_HEADER = struct.Struct("!I")
# A Config pickles to a few kilobytes; anything near this is a bug, not a message.
MAX_FRAME = 16 * 1024 * 1024


class ChannelError(BlackholeError):
    """The other end sent something that is not a frame: treat it as dead."""


def encode(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class FrameReader:
    """Turns a byte stream back into messages, whatever the chunking."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[object]:
        self._buffer += data
        messages: list[object] = []
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise ChannelError(f"frame of {length} bytes on the control channel")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            payload = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            try:
                # Only ever our own process at the other end of a socketpair.
                messages.append(pickle.loads(payload))  # noqa: S301
            except Exception as exc:
                raise ChannelError(f"unreadable frame on the control channel: {exc!r}") from None
        return messages


def receive_first(control: socket.socket, timeout: float) -> tuple[object, FrameReader] | None:
    """A child's first message on its channel (its start order), and the reader
    holding whatever came after it; None if the other end closed first.
    ``TimeoutError`` when nothing came for ``timeout`` seconds."""
    reader = FrameReader()
    control.settimeout(timeout)
    messages: list[object] = []
    while not messages:
        data = control.recv(65536)
        if not data:
            return None
        messages = reader.feed(data)
    return messages[0], reader
