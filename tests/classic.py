"""Facts of the classic Blackhole 2.1.19 that the tests hold the server to."""

from __future__ import annotations

# Its bounce texts (blackhole/smtp.py _bounce_responses), code -> text. Kept
# here, not imported from src/, so that a change to the catalogue is caught.
CLASSIC_BOUNCES = {
    450: "Requested mail action not taken: mailbox unavailable",
    451: "Requested action aborted: local error in processing",
    452: "Requested action not taken: insufficient system storage",
    458: "Unable to queue message",
    521: "Machine does not accept mail",
    550: "Requested action not taken: mailbox unavailable",
    551: "User not local",
    552: "Requested mail action aborted: exceeded storage allocation",
    553: "Requested action not taken: mailbox name not allowed",
    571: "Blocked",
}
