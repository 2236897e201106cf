"""The exam dongle's wire format (KDLOCK protocol version 1, revision 2; docs/lock-protocol.md).

A byte stream (USB CDC serial port, a pty or a TCP socket) carrying ASCII lines::

    line     = 1*2048(%x20-7E) [CR] LF       ; printable ASCII, at most MAX_LINE bytes
    request  = COMMAND *(SP ARG)             ; host -> dongle, one at a time
    reply    = "OK" *(SP FIELD)              ; dongle -> host, exactly one per request
             / "ERR" SP CODE [SP TEXT]       ; CODE = "E_" 1*(A-Z / "_"), TEXT free ASCII

Fields are separated by one SP (receivers accept runs of SP). Empty lines are ignored
and get no reply; the host sends one LF after opening the port, which ends any partial
line left in the dongle's buffer. An over-long line is discarded up to its LF and
answered ``ERR E_TOOLONG``; a line with bytes outside %x20-7E gets ``ERR E_SYNTAX``.

Commands (payloads in ``docs/lock-protocol.md``)::

    VERSION            -> OK KDLOCK <protocol> <firmware>
    ID                 -> OK <lock id>
    KEY                -> OK <base64 of the 32-byte Ed25519 public key>
    TIME               -> OK <dongle clock, Unix time in milliseconds>
    CHAL <64 hex>      -> OK <clock ms> <base64 of the 64-byte signature>
    TICKET PUT <b64>   -> OK <clock ms after setting it from the ticket>
    TICKET GET         -> OK <b64 of the stored ticket>  |  ERR E_NOTICKET ...
    STATE              -> OK key=value ...
    ECHO <token>       -> OK <token>
    SITE               -> OK <site code>  |  ERR E_NOSITE ...     (revision 2)

``SITE`` (revision 2 of version 1) answers the site code the platform registered the
dongle to: 4 to 10 ASCII digits, an identifier compared as text (leading zeros count).
A dongle registered to no site answers ``ERR E_NOSITE``; a revision-1 dongle does not
know the command and answers ``ERR E_UNKNOWN`` -- hosts read that as "not reported",
never as a failure (``site_reading``).

The challenge answer signs ``challenge_message(lock_id, nonce, clock_ms)``::

    b"kaodian-lock-challenge-v1\\0" + lock_id + b"\\0" + nonce (32 raw bytes) + b"\\0" + clock_ms

(``clock_ms`` in ASCII decimal), so the signature proves both the dongle's identity and
the clock reading it returned, and can never be mistaken for any other kaodian signature.
"""

import base64
import binascii
import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

PROTOCOL_NAME = "KDLOCK"
PROTOCOL_VERSION = 1
#: longest line (without CR LF) either side sends or accepts
MAX_LINE = 2048
NONCE_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
#: longest sync ticket a dongle stores (its base64 must fit in one ``TICKET PUT`` line)
MAX_TICKET_BYTES = 1500
CHALLENGE_DOMAIN = b"kaodian-lock-challenge-v1\0"

# commands
VERSION = "VERSION"
ID = "ID"
KEY = "KEY"
TIME = "TIME"
CHAL = "CHAL"
TICKET = "TICKET"
STATE = "STATE"
ECHO = "ECHO"
SITE = "SITE"  # revision 2
#: the commands of revision 1 (a revision-1 dongle answers E_UNKNOWN to anything else)
COMMANDS_R1 = (VERSION, ID, KEY, TIME, CHAL, TICKET, STATE, ECHO)
COMMANDS = COMMANDS_R1 + (SITE,)

# error codes
E_SYNTAX = "E_SYNTAX"  # not printable ASCII
E_TOOLONG = "E_TOOLONG"  # line longer than MAX_LINE
E_UNKNOWN = "E_UNKNOWN"  # unknown command
E_ARG = "E_ARG"  # wrong number or form of arguments
E_TICKET = "E_TICKET"  # ticket refused: signature, untrusted key, other lock, bad times
E_STALE = "E_STALE"  # ticket not newer than the stored one
E_NOTICKET = "E_NOTICKET"  # no ticket stored yet
E_INTERNAL = "E_INTERNAL"  # the dongle failed (e.g. could not store its state)
E_NOSITE = "E_NOSITE"  # SITE: the dongle is not registered to any site (revision 2)

# what a host learns from SITE (``site_reading``)
SITE_REGISTERED = "registered"  # OK <site code>
SITE_NONE = "none"  # ERR E_NOSITE: registered to no site
SITE_UNREPORTED = "unreported"  # ERR E_UNKNOWN: a revision-1 dongle that cannot say

LOCK_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")  # as the package's lock.id
SITE_CODE_RE = re.compile(r"[0-9]{4,10}\Z")  # as the site code of 系统设置 (kd.core.accounts)
_TOKEN_RE = re.compile(r"[\x21-\x7e]+\Z")
_CODE_RE = re.compile(r"E_[A-Z_]+\Z")
_DIGITS_RE = re.compile(r"(0|[1-9][0-9]{0,15})\Z")
_HEX_RE = re.compile(r"[0-9a-fA-F]*\Z")


class _TooLong:
    """Marker for a line that exceeded MAX_LINE (its bytes were discarded)."""

    def __repr__(self) -> str:
        return "TOO_LONG"


TOO_LONG = _TooLong()
Frame = Union[bytes, _TooLong]


class LineFramer:
    """Splits a byte stream into lines (without CR LF); over-long lines become TOO_LONG."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> List[Frame]:
        out: List[Frame] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            chunk = data[start:] if end < 0 else data[start:end]
            if not self._discarding:
                self._buf += chunk
                if len(self._buf) > self.max_line + 1:  # +1: a CR before LF is allowed
                    self._discarding = True
                    self._buf.clear()
            if end < 0:
                return out
            line = bytes(self._buf)
            self._buf.clear()
            if self._discarding:
                self._discarding = False
                out.append(TOO_LONG)
            else:
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) > self.max_line:
                    out.append(TOO_LONG)
                else:
                    out.append(line)
            start = end + 1


def decode_line(line: bytes) -> Optional[str]:
    """The line as text when it is printable ASCII; None otherwise."""
    if any(b < 0x20 or b > 0x7E for b in line):
        return None
    return line.decode("ascii")


def _encode(text: str) -> bytes:
    data = text.encode("ascii")  # callers validated the fields
    if len(data) > MAX_LINE:
        raise ValueError("line of {} bytes exceeds {}".format(len(data), MAX_LINE))
    return data + b"\n"


def check_token(value: str, what: str = "field") -> str:
    """``value`` when it is one non-empty printable-ASCII token without spaces."""
    if not isinstance(value, str) or not _TOKEN_RE.match(value):
        raise ValueError("{} is not a printable ASCII token: {!r}".format(what, value))
    return value


class Request(NamedTuple):
    command: str
    args: Tuple[str, ...]


class RequestError(Exception):
    """A request the dongle answers with ``ERR code text`` (dongle side)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__("{} {}".format(code, text))
        self.code = code
        self.text = text


def encode_request(command: str, *args: str) -> bytes:
    """One request line; ``ValueError`` when a field or the line is not allowed."""
    fields = [check_token(command, "command")] + [check_token(a, "argument") for a in args]
    return _encode(" ".join(fields))


def parse_request(line: bytes) -> Optional[Request]:
    """The request on ``line`` (None for an empty line); ``RequestError`` when malformed."""
    if len(line) > MAX_LINE:
        raise RequestError(E_TOOLONG, "line longer than {} bytes".format(MAX_LINE))
    text = decode_line(line)
    if text is None:
        raise RequestError(E_SYNTAX, "line is not printable ASCII")
    fields = text.split()
    if not fields:
        return None
    return Request(fields[0], tuple(fields[1:]))


def encode_ok(*fields: str) -> bytes:
    return _encode(" ".join(["OK"] + [check_token(f) for f in fields]))


def encode_err(code: str, text: str = "") -> bytes:
    if not _CODE_RE.match(code):
        raise ValueError("bad error code {!r}".format(code))
    clean = "".join(c if " " <= c <= "~" else "?" for c in text)[:200]
    return _encode("ERR {} {}".format(code, clean).rstrip())


class Reply(NamedTuple):
    ok: bool
    fields: Tuple[str, ...] = ()
    code: str = ""
    text: str = ""


def parse_reply(line: bytes) -> Optional[Reply]:
    """The reply on ``line``; None when the line is not a reply at all (line noise)."""
    text = decode_line(line)
    if text is None:
        return None
    fields = text.split()
    if not fields:
        return None
    if fields[0] == "OK":
        return Reply(True, tuple(fields[1:]))
    if fields[0] == "ERR" and len(fields) >= 2 and _CODE_RE.match(fields[1]):
        parts = text.split(None, 2)
        return Reply(False, (), parts[1], parts[2].strip() if len(parts) > 2 else "")
    return None


# --- payloads ---------------------------------------------------------------------


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, size: Optional[int] = None, max_size: Optional[int] = None) -> bytes:
    """Strict base64; ``ValueError`` when malformed or of the wrong length."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError("not base64") from None
    if size is not None and len(data) != size:
        raise ValueError("expected {} bytes, got {}".format(size, len(data)))
    if max_size is not None and len(data) > max_size:
        raise ValueError("more than {} bytes".format(max_size))
    return data


def parse_ms(text: str) -> int:
    """A non-negative decimal integer (milliseconds); ``ValueError`` otherwise."""
    if not _DIGITS_RE.match(text):
        raise ValueError("not a decimal integer: {!r}".format(text))
    return int(text)


def parse_nonce(text: str) -> bytes:
    if len(text) != 2 * NONCE_BYTES or not _HEX_RE.match(text):
        raise ValueError("nonce must be {} hex digits".format(2 * NONCE_BYTES))
    return bytes.fromhex(text)


def check_lock_id(lock_id: object) -> str:
    if not isinstance(lock_id, str) or not LOCK_ID_RE.match(lock_id):
        raise ValueError("bad lock id {!r}".format(lock_id))
    return lock_id


def check_site_code(site_code: object) -> str:
    """``site_code`` when it is 4 to 10 ASCII digits; ``ValueError`` otherwise."""
    if not isinstance(site_code, str) or not SITE_CODE_RE.match(site_code):
        raise ValueError("bad site code {!r}".format(site_code))
    return site_code


class SiteReading(NamedTuple):
    """What a dongle said to ``SITE``: ``status`` (``SITE_REGISTERED`` / ``SITE_NONE`` /
    ``SITE_UNREPORTED``) and the site code (only when registered)."""

    status: str
    site_code: Optional[str] = None


def site_reading(reply: Reply) -> SiteReading:
    """Interpret the reply to ``SITE``; ``ValueError`` for any other answer.

    ``OK <code>`` -> registered; ``ERR E_NOSITE`` -> none; ``ERR E_UNKNOWN`` (a
    revision-1 dongle) -> unreported. Anything else (another error code, a malformed
    code, extra fields) is a protocol violation.
    """
    if reply.ok:
        if len(reply.fields) != 1:
            raise ValueError("SITE reply has {} fields".format(len(reply.fields)))
        return SiteReading(SITE_REGISTERED, check_site_code(reply.fields[0]))
    if reply.code == E_NOSITE:
        return SiteReading(SITE_NONE)
    if reply.code == E_UNKNOWN:
        return SiteReading(SITE_UNREPORTED)
    raise ValueError("SITE answered ERR {} {}".format(reply.code, reply.text))


def challenge_message(lock_id: str, nonce: bytes, clock_ms: int) -> bytes:
    """The bytes a dongle signs to answer ``CHAL`` (domain-separated)."""
    check_lock_id(lock_id)
    if len(nonce) != NONCE_BYTES:
        raise ValueError("nonce must have {} bytes".format(NONCE_BYTES))
    return CHALLENGE_DOMAIN + lock_id.encode("ascii") + b"\0" + nonce + b"\0" + str(int(clock_ms)).encode("ascii")


def encode_state(items: Sequence[Tuple[str, str]]) -> List[str]:
    return ["{}={}".format(check_token(k), check_token(v)) for k, v in items]


def parse_state(fields: Sequence[str]) -> Dict[str, str]:
    """``key=value`` fields as a dict; ``ValueError`` on a field without ``=``."""
    out: Dict[str, str] = {}
    for field in fields:
        key, sep, value = field.partition("=")
        if not sep or not key:
            raise ValueError("state field without '=': {!r}".format(field))
        out[key] = value
    return out
