"""KDLAN wire format: length-prefixed frames with a JSON header and an optional binary body.

One frame on the TCP stream (docs/lan-protocol.md §2)::

    +----------------------+-----------------------------+------------------------+
    | header_len: u32 BE   | header: UTF-8 JSON object   | body: body_len bytes   |
    | 1 .. 16384           | header_len bytes            | 0 .. 1048576           |
    +----------------------+-----------------------------+------------------------+

The header is a JSON object with at least ``"v"`` (protocol version, the integer 1),
``"type"`` (message type, 1-32 of ``a-z 0-9 _``), ``"seq"`` (integer 0 .. 2**31-1; a
reply echoes its request's) and ``"body_len"`` (integer, the exact number of body
bytes that follow). Other keys are the message's fields. Both sides enforce the caps
*before* reading what follows: an oversized length is never buffered.

``read_frame(sock, limits)`` reads one frame under deadlines (idle wait for the first
byte, an absolute cap per frame, and a minimum transfer rate), so a peer that stops
sending or trickles bytes is cut off instead of holding a thread. ``encode_frame``
builds one. Violations raise ``FrameError`` with a protocol error code (``E_FRAME``,
``E_TOO_LARGE``, ``E_VERSION``, ``E_TIMEOUT``, ``E_SLOW``); a clean end of stream before
a frame starts raises ``Closed``.
"""

import json
import re
import socket
import struct
import time
from typing import Any, Dict, NamedTuple, Optional

VERSION = 1
HEADER_MAX = 16 * 1024
BODY_MAX = 1024 * 1024
SEQ_MAX = 2 ** 31 - 1
PREFIX = struct.Struct(">I")
_TYPE = re.compile(r"^[a-z0-9_]{1,32}$")

# error codes of the framing layer (the full table is in docs/lan-protocol.md §5)
E_FRAME = "E_FRAME"
E_TOO_LARGE = "E_TOO_LARGE"
E_VERSION = "E_VERSION"
E_TIMEOUT = "E_TIMEOUT"
E_SLOW = "E_SLOW"


class FrameError(Exception):
    """The peer broke the framing rules or the deadlines; the connection must be closed."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__("{}: {}".format(code, message))


class Closed(Exception):
    """The peer closed the connection cleanly between frames."""


class Frame(NamedTuple):
    header: Dict[str, Any]
    body: bytes

    @property
    def type(self) -> str:
        return str(self.header["type"])

    @property
    def seq(self) -> int:
        return int(self.header["seq"])


class Limits(NamedTuple):
    """Deadlines for reading one frame (seconds, bytes per second)."""

    #: longest wait for the first byte of the next frame (None: wait forever)
    idle: Optional[float] = 60.0
    #: longest time from the first byte of a frame to its last
    request: float = 60.0
    #: minimum average transfer rate while a frame is being read ...
    min_rate: float = 32 * 1024.0
    #: ... after this grace period: a frame of n bytes may take grace + n / min_rate seconds
    grace: float = 3.0


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def encode_header(header: Dict[str, Any], body_len: int) -> bytes:
    """The length prefix and JSON header of a frame whose body has ``body_len`` bytes.

    Fills in ``v`` and ``body_len``. Raises ``ValueError`` when the header or body would
    exceed the caps or the header lacks a valid ``type``/``seq`` (a programming error on
    the sending side, never sent).
    """
    if not 0 <= body_len <= BODY_MAX:
        raise ValueError("body of {} bytes exceeds {}".format(body_len, BODY_MAX))
    full = dict(header)
    full["v"] = VERSION
    full["body_len"] = body_len
    if not isinstance(full.get("type"), str) or not _TYPE.match(full["type"]):
        raise ValueError("bad frame type {!r}".format(full.get("type")))
    if not _is_int(full.get("seq")) or not 0 <= full["seq"] <= SEQ_MAX:
        raise ValueError("bad frame seq {!r}".format(full.get("seq")))
    raw = json.dumps(full, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(raw) > HEADER_MAX:
        raise ValueError("header of {} bytes exceeds {}".format(len(raw), HEADER_MAX))
    return PREFIX.pack(len(raw)) + raw


def encode_frame(header: Dict[str, Any], body: bytes = b"") -> bytes:
    """One whole frame: ``encode_header`` followed by ``body``."""
    return encode_header(header, len(body)) + bytes(body)


def _reject_constant(name: str) -> Any:
    raise ValueError("JSON constant {} is not allowed".format(name))


def decode_header(raw: bytes) -> Dict[str, Any]:
    """Parse and check a header; ``FrameError`` (E_FRAME / E_VERSION / E_TOO_LARGE) if it is not valid."""
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FrameError(E_FRAME, "header is not UTF-8 JSON: {}".format(e)) from None
    if not isinstance(header, dict):
        raise FrameError(E_FRAME, "header is not a JSON object")
    version = header.get("v")
    if not _is_int(version):
        raise FrameError(E_FRAME, "header has no integer 'v'")
    if version != VERSION:
        raise FrameError(E_VERSION, "protocol version {} is not supported (this side speaks {})".format(
            version, VERSION))
    kind = header.get("type")
    if not isinstance(kind, str) or not _TYPE.match(kind):
        raise FrameError(E_FRAME, "header 'type' must be 1-32 of a-z 0-9 _")
    seq: Any = header.get("seq")
    if not _is_int(seq) or not 0 <= seq <= SEQ_MAX:
        raise FrameError(E_FRAME, "header 'seq' must be an integer 0..{}".format(SEQ_MAX))
    body_len: Any = header.get("body_len")
    if not _is_int(body_len) or body_len < 0:
        raise FrameError(E_FRAME, "header 'body_len' must be a non-negative integer")
    if body_len > BODY_MAX:
        raise FrameError(E_TOO_LARGE, "body of {} bytes exceeds {}".format(body_len, BODY_MAX))
    return header


class _Clock:
    """The deadline of one frame: absolute cap, and the rate rule over the bytes expected."""

    def __init__(self, limits: Limits, start: float) -> None:
        self.limits = limits
        self.start = start
        self.expected = PREFIX.size

    def deadline(self) -> float:
        by_rate = self.start + self.limits.grace + self.expected / max(self.limits.min_rate, 1.0)
        return min(self.start + self.limits.request, by_rate)

    def code(self, now: float) -> str:
        """Which rule a missed deadline broke."""
        return E_TIMEOUT if now >= self.start + self.limits.request else E_SLOW


def _recv_into(sock: socket.socket, view: memoryview, clock: _Clock) -> None:
    got = 0
    while got < len(view):
        now = time.monotonic()
        left = clock.deadline() - now
        if left <= 0:
            raise FrameError(clock.code(now), "frame not received in time ({} of {} bytes)".format(
                got, len(view)))
        sock.settimeout(left)
        try:
            n = sock.recv_into(view[got:])
        except socket.timeout:
            continue  # the loop turns it into E_TIMEOUT / E_SLOW
        if n == 0:
            raise FrameError(E_FRAME, "connection closed inside a frame")
        got += n


DEFAULT_LIMITS = Limits()


def read_frame(sock: socket.socket, limits: Limits = DEFAULT_LIMITS) -> Frame:
    """Read one frame from ``sock`` under ``limits``.

    Raises ``Closed`` on a clean end of stream before a frame, ``FrameError`` on a
    framing violation or a missed deadline, ``OSError`` on a socket error.
    """
    first = bytearray(1)
    sock.settimeout(limits.idle)
    while True:
        try:
            n = sock.recv_into(first)
        except socket.timeout:
            raise FrameError(E_TIMEOUT, "no frame within {} s".format(limits.idle)) from None
        if n == 0:
            raise Closed()
        break
    clock = _Clock(limits, time.monotonic())
    prefix = bytearray(PREFIX.size)
    prefix[0:1] = first
    _recv_into(sock, memoryview(prefix)[1:], clock)
    (header_len,) = PREFIX.unpack(bytes(prefix))
    if header_len > HEADER_MAX:
        raise FrameError(E_TOO_LARGE, "header of {} bytes exceeds {}".format(header_len, HEADER_MAX))
    if header_len == 0:
        raise FrameError(E_FRAME, "empty header")
    clock.expected += header_len
    raw = bytearray(header_len)
    _recv_into(sock, memoryview(raw), clock)
    header = decode_header(bytes(raw))
    body_len = header["body_len"]
    body = b""
    if body_len:
        clock.expected += body_len
        buf = bytearray(body_len)
        _recv_into(sock, memoryview(buf), clock)
        body = buf  # a bytearray (a bytes for the type checker): no 1 MiB copy
    return Frame(header, body)


def send_frame(sock: socket.socket, header: Dict[str, Any], body: bytes = b"",
               timeout: Optional[float] = 30.0) -> None:
    """Encode and send one frame; ``timeout`` bounds the whole send (``socket.timeout``)."""
    head = encode_header(header, len(body))
    sock.settimeout(timeout)
    if len(body) < 64 * 1024:
        sock.sendall(head + bytes(body))
    else:  # no copy of a large body; two writes
        sock.sendall(head)
        sock.sendall(body)
