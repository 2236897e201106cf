"""The reference proctor-machine client of KDLAN v1 (docs/lan-protocol.md).

``ProctorClient(host, port)`` is blocking and single-threaded: one request, one reply,
each bounded by explicit timeouts (``connect_timeout`` to connect, ``timeout`` for the
whole reply). Every failure raises ``LanError`` (a ``UserError`` with the server's
Chinese message, or a network message; ``code`` is the protocol error code, ``E_NET``
for a connection problem). After a network error or a closing error (a closing code, or
an error reply with ``closing: true``) the connection is dropped; the next request
reconnects and re-binds the room with its token.

The proctor's day: ``register`` → ``download_data`` → ``data_imported`` → ``heartbeat``
every ``heartbeat_s`` → ``permit`` until granted → ``upload`` (begins, continues from the
offset the server reports, commits; ``retries`` reconnects on a lost connection or waits
out an ``E_STORAGE``; a begin answered ``committed: true`` goes straight to the commit) →
``bye``.

Heartbeats carry the proctor's clock (docs/lan-protocol.md §4 ``heartbeat``): ``clock``,
``clock()`` read just before the request is sent (ISO 8601 with offset and milliseconds;
by default this machine's local time), and ``rtt_ms``, the round trip of the previous
heartbeat on this client (request sent → reply read, ``time.monotonic``; absent for the
first, and after a heartbeat lost to a network error). ``clock=None`` makes an old
proctor that sends neither.
"""

import datetime
import hashlib
import logging
import os
import socket
import time
from typing import Any, Callable, Dict, Optional, Tuple

from kd.errors import UserError
from kd.fileio import sha256_file
from kd.lan import framing
from kd.lan.framing import BODY_MAX, Closed, FrameError, Limits

log = logging.getLogger(__name__)

E_NET = "E_NET"
CLOSING = frozenset({"E_FRAME", "E_TOO_LARGE", "E_VERSION", "E_TIMEOUT", "E_SLOW", "E_BUSY", "E_SHUTDOWN"})
#: errors after which an upload is tried again (begin, continue, commit) after a pause
UPLOAD_RETRY = frozenset({E_NET, "E_TIMEOUT", "E_SLOW", "E_SHUTDOWN", "E_BUSY", "E_STATE", "E_STORAGE",
                          "E_INTERNAL"})
NET_REMEDY = "请检查监考机与考点机之间的网络，并确认考点管理系统正在运行。"


def local_now() -> datetime.datetime:
    """This machine's clock, in its own zone (aware)."""
    return datetime.datetime.now(datetime.timezone.utc).astimezone()


class LanError(UserError):
    """A KDLAN request failed: the server's error reply or a connection problem."""

    def __init__(self, cause: str, remedy: str = "", *, code: str = E_NET, offset: Optional[int] = None,
                 retry_after: Optional[float] = None, detail: Optional[str] = None) -> None:
        super().__init__(cause, remedy, detail=detail)
        self.code = code
        self.offset = offset
        self.retry_after = retry_after




class ProctorClient:
    """One proctor machine's connection to the site server."""

    def __init__(self, host: str, port: int, *, timeout: float = 30.0, connect_timeout: float = 5.0,
                 source_address: Optional[Tuple[str, int]] = None, room: Optional[str] = None,
                 token: Optional[str] = None, client_name: str = "kd-proctor/1",
                 clock: Optional[Callable[[], datetime.datetime]] = local_now) -> None:
        self.host = host
        self.port = int(port)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.source_address = source_address
        self.room = room
        self.token = token
        self.client_name = client_name
        self.heartbeat_s = 5.0
        #: the clock heartbeats carry (None: send no ``clock``/``rtt_ms``, as an old proctor)
        self.clock = clock
        #: the round trip of the last heartbeat answered (ms; None before one, after a lost one)
        self.last_rtt_ms: Optional[float] = None
        self._sock: Optional[socket.socket] = None
        self._seq = 0

    # -- connection ----------------------------------------------------------------------
    def connect(self) -> "ProctorClient":
        """Open the connection (requests do it on demand). Raises ``LanError`` (E_NET)."""
        if self._sock is not None:
            return self
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout,
                                            source_address=self.source_address)
        except OSError as e:
            raise LanError("无法连接考点机 {}:{}。".format(self.host, self.port), NET_REMEDY, detail=repr(e)) from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        return self

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        """Drop the connection without a goodbye (the server keeps partial uploads)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> "ProctorClient":
        return self.connect()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _next_seq(self) -> int:
        """1, 2, … SEQ_MAX, then 1 again: 0 marks the server's closing errors (docs/lan-protocol.md §1)."""
        self._seq = self._seq + 1 if self._seq < framing.SEQ_MAX else 1
        return self._seq

    def request(self, kind: str, fields: Optional[Dict[str, Any]] = None, body: bytes = b"",
                auth: bool = True) -> Tuple[Dict[str, Any], bytes]:
        """Send one request and return the ``ok`` reply's header and body.

        ``auth`` adds ``room`` and ``token``. Raises ``LanError``: the server's error
        (``code``, ``offset``, ``retry_after``) or ``E_NET`` (the connection is dropped).
        """
        header: Dict[str, Any] = {"type": kind, "seq": self._next_seq()}
        if auth:
            if not self.room or not self.token:
                raise LanError("监考机尚未注册考场。", "请先输入考场代码和注册码进行注册。", code="E_AUTH")
            header["room"], header["token"] = self.room, self.token
        header.update(fields or {})
        self.connect()
        sock = self._sock
        assert sock is not None
        limits = Limits(idle=self.timeout, request=self.timeout, min_rate=1.0, grace=self.timeout)
        beat = kind == "heartbeat" and self.clock is not None
        if beat:
            assert self.clock is not None
            if self.last_rtt_ms is not None:
                header["rtt_ms"] = round(self.last_rtt_ms, 1)
            header["clock"] = self.clock().isoformat(timespec="milliseconds")
        sent = time.monotonic()
        try:
            framing.send_frame(sock, header, body, timeout=self.timeout)
            reply = framing.read_frame(sock, limits)
        except (OSError, Closed, FrameError) as e:
            self.close()
            if beat:
                self.last_rtt_ms = None
            raise LanError("与考点机的连接中断。", NET_REMEDY, detail="{}: {!r}".format(kind, e)) from e
        if beat:
            self.last_rtt_ms = (time.monotonic() - sent) * 1000.0
        h = reply.header
        if h["type"] == "error":
            code = str(h.get("code") or "E_REFUSED")
            if code in CLOSING or h["seq"] != header["seq"] or h.get("closing") is True:
                self.close()  # the server closes it (e.g. a failed register before authenticating)
            raise LanError(str(h.get("message") or code), str(h.get("remedy") or ""), code=code,
                           offset=h.get("offset") if isinstance(h.get("offset"), int) else None,
                           retry_after=h.get("retry_after") if isinstance(h.get("retry_after"), (int, float)) else None,
                           detail="{} -> {}".format(kind, code))
        if h["type"] != "ok" or h["seq"] != header["seq"]:
            self.close()
            raise LanError("考点机的应答无效。", NET_REMEDY, code="E_FRAME",
                           detail="{} -> {} seq {}".format(kind, h["type"], h["seq"]))
        return h, bytes(reply.body)

    # -- the messages --------------------------------------------------------------------
    def register(self, room: str, reg_code: str) -> Dict[str, Any]:
        """考场注册; keeps the token. Returns the reply (token, site_code, sessions, data, heartbeat_s)."""
        h, _ = self.request("register", {"room": room, "reg_code": reg_code, "client": self.client_name},
                            auth=False)
        self.room, self.token = room, h["token"]
        self.heartbeat_s = float(h.get("heartbeat_s") or self.heartbeat_s)
        return h

    def hello(self) -> Dict[str, Any]:
        h, _ = self.request("hello")
        return h

    def download_data(self, dest: str, chunk: int = BODY_MAX,
                      progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, Any]:
        """Download the room data file to ``dest`` and check its SHA-256; ``{"sha256", "size", "path"}``.

        Starts again from 0 when the server's file changes mid-way (at most 3 times).
        Raises ``LanError`` (``E_INTEGRITY`` when the bytes do not hash as announced).
        """
        for _ in range(3):
            digest = hashlib.sha256()
            offset, size, sha = 0, None, None
            part = dest + ".part"
            with open(part, "wb") as f:
                while size is None or offset < size:
                    h, body = self.request("data", {"offset": offset, "length": chunk})
                    if sha is not None and h["sha256"] != sha:
                        break
                    sha, size = h["sha256"], int(h["size"])
                    if not body and offset < size:
                        raise LanError("考点机没有返回考场数据。", NET_REMEDY, code="E_FRAME")
                    f.write(body)
                    digest.update(body)
                    offset += len(body)
                    if progress is not None:
                        progress(offset, size)
                else:
                    f.flush()
                    os.fsync(f.fileno())
            if size is not None and offset == size:
                if digest.hexdigest() != str(sha).lower():
                    os.remove(part)
                    raise LanError("下载的考场数据校验失败。", "请重新下载考场数据。", code="E_INTEGRITY")
                os.replace(part, dest)
                return {"sha256": digest.hexdigest(), "size": size, "path": dest}
        raise LanError("考点机的考场数据在下载过程中不断变化。", "请稍后重新下载考场数据。", code="E_REFUSED")

    def data_imported(self, sha256: str) -> Dict[str, Any]:
        h, _ = self.request("data_imported", {"sha256": sha256})
        return h

    def heartbeat(self, state: Dict[str, Any]) -> Dict[str, Any]:
        """Report the room's live state (``session``, ``started``, ``ended``, ``logged_in``, ``in_exam``,
        optional ``extra_time_ack``); the reply carries ``extra_time`` while a 补时 is pending."""
        h, _ = self.request("heartbeat", {"state": state})
        return h

    def permit(self, session: str) -> Dict[str, Any]:
        """The start permit; ``LanError`` with code ``E_PERMIT`` and the reason while refused."""
        h, _ = self.request("permit", {"session": session})
        return h["permit"]

    def upload(self, path: str, session: str, *, chunk: int = BODY_MAX, retries: int = 3, backoff: float = 1.0,
               progress: Optional[Callable[[int, int], None]] = None,
               abort_after: Optional[int] = None,
               pause: Callable[[float], None] = time.sleep) -> Dict[str, Any]:
        """Upload a result package; returns the commit reply (after the server stored it durably).

        Continues from the offset the server reports, also after reconnecting: up to
        ``retries`` times after a lost connection, an ``E_STORAGE`` (the site server
        could not store it yet; its copy is kept) or an ``E_INTERNAL``, each after
        ``pause(seconds)``: the server's ``retry_after``, else a growing pause from
        ``backoff`` s (at most 30 s).
        A begin answered ``committed: true`` (an earlier commit's reply was lost) sends
        no byte and commits at once. ``abort_after`` (tests, simulator): drop the
        connection once that many bytes of this call were sent, raising ``LanError``
        (E_NET) without a retry. Raises ``LanError``.
        """
        sha, size = sha256_file(path)
        sent = 0
        attempt = 0
        while True:
            try:
                h, _ = self.request("upload_begin", {"session": session, "size": size, "sha256": sha})
                offset = size if h.get("committed") is True else int(h["offset"])
                with open(path, "rb") as f:
                    while offset < size:
                        f.seek(offset)
                        data = f.read(min(chunk, size - offset))
                        if abort_after is not None and sent + len(data) > abort_after:
                            data = data[: max(0, abort_after - sent)]
                            if data:
                                self.request("upload_chunk", {"offset": offset}, data)
                                sent += len(data)
                            self.close()
                            raise _Aborted()
                        try:
                            h, _ = self.request("upload_chunk", {"offset": offset}, data)
                        except LanError as e:
                            if e.code == "E_OFFSET" and e.offset is not None:
                                offset = e.offset
                                continue
                            raise
                        sent += len(data)
                        offset = int(h["offset"])
                        if progress is not None:
                            progress(offset, size)
                h, _ = self.request("upload_commit")
                return h
            except _Aborted:
                raise LanError("上报被中断（测试）。", "请重新上报。",
                               detail="aborted after {} bytes".format(sent)) from None
            except LanError as e:
                if e.code not in UPLOAD_RETRY or attempt >= retries:
                    raise
                attempt += 1
                wait = min(float(e.retry_after if e.retry_after else backoff * attempt), 30.0)
                log.info("upload of %s interrupted (%s); retry %d in %.1f s", path, e.code, attempt, wait)
                pause(wait)

    def bye(self) -> None:
        """Say goodbye and close (errors ignored: the connection ends either way)."""
        if self._sock is not None:
            try:
                self.request("bye", auth=False)
            except LanError:
                pass
        self.close()


class _Aborted(Exception):
    pass
