"""How the core reads its next input bytes (the command state is ``states.State``)."""

from __future__ import annotations

import enum
from typing import Final


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


# The members again, as module constants: on Python 3.11 reading a member
# through its class (Mode.DATA) goes through EnumType.__getattr__'s slow slot,
# about ten times the cost of a module attribute, and the core reads modes
# dozens of times per message. The core reads them as ``modes.DATA`` etc.
COMMAND: Final = Mode.COMMAND
SASL: Final = Mode.SASL
DATA: Final = Mode.DATA
BDAT: Final = Mode.BDAT
STAGE: Final = Mode.STAGE
WAITING: Final = Mode.WAITING
TLS: Final = Mode.TLS
HUNG: Final = Mode.HUNG
CLOSED: Final = Mode.CLOSED
