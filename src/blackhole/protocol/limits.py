"""Limits of the SMTP core, with the RFC arithmetic that sets them."""

from typing import Final

# RFC 5321 section 4.5.3.1.4: a command line is at most 512 octets, CRLF included.
MAX_COMMAND_LINE: Final = 512
# RFC 5321 section 4.5.3.1.5: a reply line too, its code and CRLF included.
MAX_REPLY_LINE: Final = 512
# RFC 4954 section 4: an AUTH command line (with its initial response) and
# each SASL response line may be up to 12288 octets.
MAX_AUTH_LINE: Final = 12288
# RFC 5321 section 4.5.3.1.6: a text line is at most 1000 octets, CRLF
# included, "not counting the leading dot duplicated for transparency": a
# line the client dot-stuffed (section 4.5.2) may have one octet more on the
# wire, and only such a line (reader.DataReader checks both).
MAX_TEXT_LINE: Final = 1000
# The classic server closed a session after ten unknown commands (SPEC.md).
MAX_UNKNOWN_COMMANDS: Final = 10
# Header bytes kept while looking for X-Blackhole-* switches. Headers beyond
# this are still read and discarded, only no longer scanned (memory stays flat).
MAX_HEADER_SCAN: Final = 64 * 1024
# RFC 3461 section 4.4: ENVID is at most 100 characters; ORCPT at most 500.
MAX_ENVID: Final = 100
MAX_ORCPT: Final = 500
# RFC 5321 section 4.5.3.1.1/2/3: local part 64, domain 255, path 256 octets.
MAX_LOCAL_PART: Final = 64
MAX_DOMAIN: Final = 255
MAX_PATH: Final = 256
