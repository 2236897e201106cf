"""The control channel's frames: a 4-byte length, then one JSON object (docs/control-protocol.md §2).

One frame on the TCP stream::

    +--------------------+----------------------------------------------+
    | length: u32 BE     | payload: UTF-8 JSON, one object              |
    | 2 .. limit         | exactly ``length`` bytes                     |
    +--------------------+----------------------------------------------+

``limit`` is the receiver's: the running instance accepts frames of at most
``REQUEST_MAX`` (64 KiB) from a command line, the command line accepts frames of at
most ``REPLY_MAX`` (1 MiB) from the instance. A length over the limit (or under 2, the
shortest object ``{}``) is refused before anything after it is read, so an oversized
frame is never buffered. The payload is ``json.dumps(obj, ensure_ascii=False,
separators=(",", ":"))`` encoded as UTF-8 (any valid JSON object is accepted on
reading); every frame carries a ``"type"`` string.

``encode(obj)`` builds a frame, ``decode(payload)`` checks one, ``send(sock, obj, timeout)``
writes one and ``recv(sock, limit, deadline=..., cancelled=...)`` reads one: ``None``
when the peer closed the stream cleanly before a frame started, ``FrameError`` for a
frame cut short, over the limit or not a JSON object, ``FrameTimeout`` (a
``FrameError``) when ``deadline`` (a ``time.monotonic()`` value) passes or
``cancelled()`` turns true while waiting.
"""

import json
import socket
import struct
import time
from typing import Any, Callable, Dict, Optional

PREFIX = struct.Struct(">I")
#: the largest frame the running instance reads (a request, an input line)
REQUEST_MAX = 64 * 1024
#: the largest frame a command line reads (output chunks are far smaller)
REPLY_MAX = 1024 * 1024
#: how often a waiting ``recv`` looks at ``cancelled`` (seconds)
POLL_S = 0.25


class FrameError(Exception):
    """The peer broke the framing rules: the connection must be closed."""


class FrameTimeout(FrameError):
    """No whole frame arrived before the deadline (or the wait was cancelled)."""


def encode(obj: Dict[str, Any]) -> bytes:
    """One frame holding ``obj`` (a dict with a ``"type"``)."""
    payload = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return PREFIX.pack(len(payload)) + payload


def decode(payload: bytes) -> Dict[str, Any]:
    """The object of a frame's payload; ``FrameError`` unless it is a JSON object with a string ``type``."""
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise FrameError("not UTF-8 JSON: {}".format(e)) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise FrameError("not a JSON object with a type")
    return obj


def send(sock: socket.socket, obj: Dict[str, Any], timeout: Optional[float] = 30.0) -> None:
    """Write one frame; ``timeout`` (seconds, None: no limit) bounds a peer that stops reading."""
    sock.settimeout(timeout)
    sock.sendall(encode(obj))


def _read(sock: socket.socket, n: int, deadline: Optional[float],
          cancelled: Optional[Callable[[], bool]], started: bool) -> Optional[bytes]:
    buf = bytearray()
    while len(buf) < n:
        if cancelled is not None and cancelled():
            raise FrameTimeout("cancelled")
        wait: Optional[float] = None
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise FrameTimeout("no frame before the deadline")
        if cancelled is not None:
            wait = POLL_S if wait is None else min(wait, POLL_S)
        sock.settimeout(wait)
        try:
            chunk = sock.recv(min(n - len(buf), 65536))
        except socket.timeout:
            continue
        if not chunk:
            if not buf and not started:
                return None
            raise FrameError("the stream ended inside a frame")
        buf += chunk
    return bytes(buf)


def recv(sock: socket.socket, limit: int, *, deadline: Optional[float] = None,
         cancelled: Optional[Callable[[], bool]] = None) -> Optional[Dict[str, Any]]:
    """Read one frame of at most ``limit`` payload bytes (module docstring); None at a clean end."""
    prefix = _read(sock, PREFIX.size, deadline, cancelled, started=False)
    if prefix is None:
        return None
    (length,) = PREFIX.unpack(prefix)
    if length < 2 or length > limit:
        raise FrameError("frame length {} outside 2..{}".format(length, limit))
    payload = _read(sock, length, deadline, cancelled, started=True)
    assert payload is not None
    return decode(payload)
