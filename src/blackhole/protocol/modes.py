"""How the core reads its next input bytes (the command state is ``states.State``)."""

from __future__ import annotations

import enum


class Mode(enum.IntEnum):
    COMMAND = 0
    SASL = 1
    DATA = 2
    BDAT = 3
    # Modes at or above STAGE do not process input; STAGE and WAITING keep it.
    STAGE = 4  # a watched rules stage awaits the adapter's resolve()
    WAITING = 5  # a message is complete; the adapter owes the final reply
    TLS = 6  # STARTTLS answered; everything until the handshake is discarded
    HUNG = 7  # a rule said hang: nothing is read or answered again
    CLOSED = 8
