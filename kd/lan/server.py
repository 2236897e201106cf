"""The proctor LAN service (port 9190): KDLAN v1 over threaded TCP sockets.

``LanServer(ctx, registration=..., verification=..., monitor=..., recovery=...)`` serves
docs/lan-protocol.md with ``socketserver.ThreadingTCPServer`` (one daemon thread per
connection). It implements ``kd.core.ports.Lan`` (``listening()``, ``address()``,
``port()``, ``disconnect_room()``) and calls only the core services:

- ``register``       → ``RegistrationService.register``
- every other request → ``RegistrationService.authenticate`` (token bound to room and IP)
- ``data_imported``  → ``RegistrationService.mark_data_imported``
- ``data``, ``hello`` → ``LoadingService.room_file_path / room_data_sha256 / room_detail``
- ``heartbeat``      → ``MonitorService.heartbeat`` (``StateRefused``, an end without a
  start, answers ``E_STATE``; a start recorded as 未经许可开考 adds ``warning`` to the reply)
- ``permit``         → ``VerificationService.start_permit``
- ``upload_begin``   → ``RecoveryService.recovered`` (is this file already recorded?) and
  ``ctx.spool.has`` (is it still in the spool?)
- ``upload_commit``  → ``RecoveryService.receive`` (the reply only after it returned:
  the file is durable in the spool and recorded)

It never writes the stores. Partial uploads live in ``DATA/lan-uploads/<room>.<session>.
<sha256>.part`` (names built only from validated codes and a hex digest) between
connections and restarts, written unbuffered so the size on disk is the offset the
server reports.

Commit semantics (docs/lan-protocol.md, ``upload_commit``): what ``receive`` raises decides
the part file's fate. A refusal of the content (``IntegrityError``, ``ResultConflict``,
``FormatError``, a room or session without candidates) removes it; a storage failure
(``SpoolError``, ``StoreError``, ``OSError``: disk full, folder unwritable) keeps it and
answers ``E_STORAGE`` with ``offset`` (the bytes held) and ``retry_after``, so the proctor
commits again later without resending. ``upload_begin`` for a file already recorded for
its room and session (a commit whose reply was lost) and intact in the spool answers
``offset = size, committed: true``; the following ``upload_commit`` answers the recorded
result again. A damaged spool file is sent again (``Spool.put`` replaces it).
A part no connection has begun or continued for ``LanOptions.part_max_age`` (24 h) is
removed at ``start()`` and by the accept thread's housekeeping every ``sweep_interval``.

Defences (``LanOptions``): caps on connections in total and per IP (refused in the
accept loop with ``E_BUSY``, no thread spent), an idle deadline, an absolute deadline
per request, a minimum transfer rate while a request is received (``kd.lan.framing``),
a send deadline for replies. A connection that has not authenticated yet (no successful
``register`` or authenticated request) must do so within ``auth_timeout`` (10 s) of
being accepted, and is closed after a failed ``register`` or authentication (the error
reply says ``closing: true``). Unauthenticated connections from addresses no room is
registered from share ``max_unauthenticated`` (256) of the ``max_connections`` (512)
slots; when that share is full, a new one takes the place of the oldest idle one (closed
without a reply), so a flood cannot hold the share. Addresses rooms are registered from
(``RegistrationService.registered_ips()`` at start, and every address that authenticates
since) are not limited by that share: an authenticated room's proctor always gets a slot
(when every slot is taken, an unauthenticated connection makes room for it). The counts
of refused registrations are audited by the registration service once per window; the
accept loop flushes the windows that closed, ``stop()`` all of them.

``stop()`` closes every connection, waits for requests in progress (a commit finishes
before its thread ends), flushes the counted refusals, and frees the port.

Start and stop::

    server = LanServer(ctx, registration=RegistrationService(ctx), verification=VerificationService(ctx),
                       monitor=monitor, recovery=RecoveryService(ctx, outbox)).start()   # sets ctx.lan
    ...
    server.stop()

Events on ``ctx.hub``: ``lan.started`` (host, port), ``lan.stopped`` (port),
``lan.connected`` (ip), ``lan.closed`` (ip, room, reason), ``lan.refused`` (ip, reason),
``lan.upload`` (room, session, offset, size; at most one per second per connection),
``lan.committed`` (room, session, sha256, size), ``lan.commit_failed`` (room, session, sha256,
code, cause, kept: the part file stays for a retry), ``lan.part_removed`` (room, session,
sha256, bytes, reason ``"abandoned"``).
"""

import logging
import os
import re
import shutil
import socket
import socketserver
import threading
import time
from collections import OrderedDict
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

from kd.core.context import Context
from kd.core.loading import LoadingService, NotLoaded
from kd.core.monitor import START_UNPERMITTED, UNPERMITTED_LABEL
from kd.errors import (
    FormatError,
    IntegrityError,
    PermitRefused,
    RegistrationRefused,
    ResultConflict,
    SpoolError,
    StateRefused,
    StoreError,
    UserError,
)
from kd.formats.timeutil import format_time
from kd.lan import framing
from kd.lan.framing import BODY_MAX, Closed, FrameError, Limits

log = logging.getLogger(__name__)

DEFAULT_PORT = 9190
UPLOAD_DIR = "lan-uploads"
PART_SUFFIX = ".part"
ACTOR = "proctor"
_CODE = re.compile(r"^[0-9A-Za-z_-]{1,32}$")
_SHA = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_TEXT = 64
MAX_COUNT = 100000

REMEDY_RETRY = "请稍后重试；如反复出现，请联系考点管理员。"
AUTH_TIMEOUT_MESSAGE = "监考机连接后 {:g} 秒内没有完成考场注册或身份验证，连接已断开。"
AUTH_TIMEOUT_REMEDY = "请重新连接；连接后请立即注册考场或发送带考场令牌的请求。"
#: errors that close a connection that has not authenticated yet (the reply carries ``closing: true``)
AUTH_FAILURES = frozenset(["E_AUTH", "E_REGISTER"])
#: how long an error reply right before closing may take to send (seconds)
CLOSING_SEND_TIMEOUT = 2.0
STORAGE_MESSAGE = "考点机暂时无法保存上报的结果包（磁盘已满或数据目录不可写），已收到的数据仍保留在考点机上。"
UNPERMITTED_MESSAGE = "本考场在考点机给予开考许可之前开考了场次 {}，考点机已记为“{}”并报告考点管理员。"
UNPERMITTED_REMEDY = "请立即联系考点管理员核实；以后每场开考前须先获得开考许可（考点机完成授权验证后）。"
STORAGE_REMEDY = "监考机稍后会自动重试，无需重新传送；如反复出现，请联系考点管理员检查考点机的磁盘空间和数据目录。"


class LanOptions(NamedTuple):
    """Where to listen and the limits that keep slow or hostile clients in check."""

    host: str = "0.0.0.0"  # noqa: S104 - proctor machines are on the LAN
    port: int = DEFAULT_PORT
    max_connections: int = 512
    max_per_ip: int = 8
    idle_timeout: float = 60.0
    request_timeout: float = 60.0
    min_rate: float = 32 * 1024.0
    rate_grace: float = 3.0
    send_timeout: float = 30.0
    #: largest result package accepted (kd.formats.result caps it at 2 GiB)
    max_upload: int = 2 * 1024 ** 3
    #: folder of partial uploads (default DATA/lan-uploads)
    upload_dir: Optional[str] = None
    #: how long stop() waits for requests in progress
    stop_timeout: float = 30.0
    #: ``retry_after`` (seconds) of an ``E_STORAGE`` reply
    storage_retry_after: float = 10
    #: a partial upload that no connection has begun or continued for this long (seconds) is removed
    part_max_age: float = 24 * 3600.0
    #: how often the accept thread looks for abandoned partial uploads (seconds)
    sweep_interval: float = 600.0
    #: a connection must authenticate (a successful register or authenticated request) within this (seconds)
    auth_timeout: float = 10.0
    #: unauthenticated connections from addresses no room is registered from, at most (of max_connections)
    max_unauthenticated: int = 256


class LanServiceError(UserError):
    """The LAN service could not start (port taken, address not available)."""


class _Reply(Exception):
    """An error reply: ``code`` and Chinese message/remedy, extra fields (offset...)."""

    def __init__(self, code: str, message: str, remedy: str = "", **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.message = message
        self.remedy = remedy
        self.extra = extra


def _bad(message: str) -> _Reply:
    return _Reply("E_ARG", "监考机发送的请求无效：{}".format(message), "请升级监考机软件或联系技术服务。")


def _no_data(room: str) -> _Reply:
    return _Reply("E_REFUSED", "考点机上没有考场 {} 的考场数据。".format(room), "请联系考点管理员先完成“导入考务”。")


def _text(header: Dict[str, Any], name: str, limit: int = MAX_TEXT) -> str:
    value = header.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _bad("字段 {} 应为 1-{} 个字符的文本".format(name, limit))
    return value


def _code(header: Dict[str, Any], name: str) -> str:
    value = _text(header, name, 32)
    if not _CODE.match(value):
        raise _bad("字段 {} 不是有效的代码".format(name))
    return value


def _int(header: Dict[str, Any], name: str, low: int, high: int) -> int:
    value = header.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad("字段 {} 应为 {}..{} 的整数".format(name, low, high))
    return value


def _sha(header: Dict[str, Any], name: str = "sha256") -> str:
    value = header.get(name)
    if not isinstance(value, str) or not _SHA.match(value):
        raise _bad("字段 {} 应为 64 位十六进制 SHA-256".format(name))
    return value.lower()


class _Upload:
    """One connection's upload in progress: which part file, how far, the open handle."""

    def __init__(self, room: str, session: str, sha256: str, size: int, path: str) -> None:
        self.room, self.session, self.sha256, self.size, self.path = room, session, sha256, size, path
        self.file: Optional[Any] = None
        self.offset = 0
        self.last_event = 0.0
        #: True when this file is already recorded for its room and session (nothing to send)
        self.committed = False

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                log.exception("closing %s", self.path)
            self.file = None


class _Connection:
    """A proctor connection: socket, peer IP, the room it serves (None: not authenticated yet), its upload."""

    def __init__(self, sock: socket.socket, ip: str, known: bool = False, auth_deadline: float = 0.0) -> None:
        self.sock = sock
        self.ip = ip
        #: from an address a room is registered from (not limited by the unauthenticated share)
        self.known = known
        #: ``time.monotonic()`` by which it must have authenticated
        self.auth_deadline = auth_deadline
        self.room: Optional[str] = None
        self.upload: Optional[_Upload] = None
        self.idle = True
        self.closing: Optional[str] = None
        self.send_lock = threading.Lock()

    def kill(self, reason: str) -> None:
        """Close the socket from another thread; the handler thread then ends."""
        if self.closing is None:
            self.closing = reason
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Handler(socketserver.BaseRequestHandler):
    server: "_TCPServer"

    def handle(self) -> None:
        self.server.owner._serve(self.request, self.client_address)


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = os.name != "nt"  # on Windows SO_REUSEADDR would let another program share the port

    def __init__(self, owner: "LanServer", address: Tuple[str, int]) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self.owner._admit(request, client_address[0])

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                  name="lan-{}:{}".format(*client_address[:2]), daemon=True)
        try:
            self.owner._track(thread, request)
            thread.start()
        except BaseException:
            self.owner._release(request)
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("LAN connection from %s failed", client_address)

    def service_actions(self) -> None:  # the accept loop, between polls
        super().service_actions()
        self.owner._housekeeping()


class LanServer:
    """The KDLAN v1 server over the core services (see the module docstring)."""

    def __init__(self, ctx: Context, *, registration: Any, verification: Any, monitor: Any, recovery: Any,
                 loading: Optional[LoadingService] = None, options: Optional[LanOptions] = None) -> None:
        self.ctx = ctx
        self.registration = registration
        self.verification = verification
        self.monitor = monitor
        self.recovery = recovery
        self.loading = loading or LoadingService(ctx)
        self.options = options = options or LanOptions()
        self.limits = Limits(idle=options.idle_timeout, request=options.request_timeout,
                             min_rate=options.min_rate, grace=options.rate_grace)
        self.upload_dir = options.upload_dir or os.path.join(ctx.data_dir, UPLOAD_DIR)
        self._server: Optional[_TCPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._pending: Dict[int, Tuple[str, bool]] = {}  # id(request) -> (ip, known), admitted, not yet serving
        self._per_ip: Dict[str, int] = {}
        self._conns: Set[_Connection] = set()
        #: connections not authenticated yet, oldest first
        self._unauth: OrderedDict[_Connection, None] = OrderedDict()
        #: addresses rooms are registered from (seeded at start, grown by authenticated connections)
        self._known: Set[str] = set()
        self._threads: Set[threading.Thread] = set()
        self._part_locks: Dict[str, threading.Lock] = {}
        self._owners: Dict[str, _Connection] = {}
        self._listening = False
        self.refused = 0
        self.evicted = 0
        self._quiet_refusals = _Quiet(5.0)
        self._quiet_closes = _Quiet(5.0)
        self._next_sweep = 0.0
        self._next_flush = 0.0

    # -- the Lan port --------------------------------------------------------------------
    def listening(self) -> bool:
        return self._listening

    def address(self) -> str:
        """The address proctors should use: the bound one, or this PC's LAN address for 0.0.0.0."""
        host = self.options.host
        if self._server is not None:
            host = self._server.server_address[0]
        if host in ("0.0.0.0", ""):  # noqa: S104
            from kd.core.registration import default_address  # noqa: PLC0415

            return default_address()
        return str(host)

    def port(self) -> int:
        if self._server is not None:
            return int(self._server.server_address[1])
        return int(self.options.port)

    def disconnect_room(self, room_code: str) -> None:
        """Close every connection serving ``room_code`` (its registration was revoked)."""
        with self._lock:
            victims = [c for c in self._conns if c.room == room_code]
        for conn in victims:
            log.info("closing connection of room %s from %s (revoked)", room_code, conn.ip)
            conn.kill("revoked")
        self._seed_known()

    def _seed_known(self) -> None:
        """The addresses rooms are registered from, as the registration service knows them now."""
        registered = getattr(self.registration, "registered_ips", None)
        if registered is None:
            return
        try:
            ips = set(registered())
        except Exception:  # noqa: BLE001 - a slot reservation is a nicety; the service goes on
            log.exception("could not read the registered addresses")
            return
        with self._lock:
            self._known = ips

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> "LanServer":
        """Bind and serve in a background thread; sets ``ctx.lan``. Raises ``LanServiceError``."""
        if self._server is not None:
            return self
        os.makedirs(self.upload_dir, exist_ok=True)
        self.sweep_parts()
        self._seed_known()
        self._next_sweep = time.monotonic() + self.options.sweep_interval
        try:
            server = _TCPServer(self, (self.options.host, self.options.port))
        except OSError as e:
            raise LanServiceError(
                "考场通讯服务无法在端口 {} 上启动。".format(self.options.port),
                "请确认没有另一个考点管理系统或其他程序占用该端口，然后重新启动本系统。",
                detail=repr(e)) from e
        self._server = server
        self._listening = True
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="lan-accept", daemon=True)
        self._thread.start()
        self.ctx.lan = self
        host, port = server.server_address[:2]
        log.info("LAN service listening on %s:%d", host, port)
        self.ctx.hub.publish("lan.started", host=host, port=port)
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection, wait for requests in progress, free the port."""
        server = self._server
        if server is None:
            return
        self._listening = False
        server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            if conn.idle:
                self._send_error_nowait(conn, "E_SHUTDOWN", "考点管理系统的考场通讯服务已停止。", "请稍后重新连接。")
            conn.kill("shutdown")
        deadline = time.monotonic() + self.options.stop_timeout
        while True:
            with self._lock:
                threads = list(self._threads)
            if not threads:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("%d LAN threads still running at stop", len(threads))
                break
            threads[0].join(left)
        server.server_close()
        self._flush_refusals(everything=True)  # a clean stop loses no counted refusal
        self._server = None
        port = server.server_address[1]
        log.info("LAN service on port %d stopped", port)
        self.ctx.hub.publish("lan.stopped", port=port)

    def __enter__(self) -> "LanServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def snapshot(self) -> Dict[str, Any]:
        """Status-bar state: 端口, 通讯 (运行/停止), connections and the rooms connected."""
        with self._lock:
            rooms = sorted({c.room for c in self._conns if c.room})
            count = len(self._conns) + len(self._pending)
            unauthenticated = len(self._unauth) + len(self._pending)
        return {"port": self.port(), "listening": self._listening, "state": "运行" if self._listening else "停止",
                "connections": count, "rooms": rooms, "refused": self.refused,
                "unauthenticated": unauthenticated, "evicted": self.evicted}

    # -- admission (accept thread) ------------------------------------------------------
    def _admit(self, request: socket.socket, ip: str) -> bool:
        """Admit a new connection or refuse it with ``E_BUSY`` (accept thread; never blocks)."""
        victim: Optional[_Connection] = None
        with self._lock:
            known = ip in self._known
            reason = None
            if not self._listening:
                reason = "stopping"
            elif self._per_ip.get(ip, 0) >= self.options.max_per_ip:
                reason = "too many connections from this address"
            elif self._live() >= self.options.max_connections:
                victim = self._oldest_idle_unauthenticated() if known else None
                if victim is None:
                    reason = "too many connections"
            elif not known and self._unknown_unauthenticated() >= self._unauth_cap():
                victim = self._oldest_idle_unauthenticated()
                if victim is None:
                    reason = "too many unauthenticated connections"
            if reason is None:
                if victim is not None:
                    victim.closing = "evicted"  # no longer counted: its thread ends at once
                    self._unauth.pop(victim, None)
                    self.evicted += 1
                self._pending[id(request)] = (ip, known)
                self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
            else:
                self.refused += 1
        if victim is not None:
            victim.kill("evicted")
            self._quiet_closes.log(logging.WARNING, "LAN connection from %s closed: it had not authenticated and "
                                   "a new connection needed its place (%d so far)", victim.ip, self.evicted)
        if reason is None:
            return True
        self._quiet_refusals.log(logging.WARNING, "refusing LAN connection from %s: %s (%d refused so far)",
                                 ip, reason, self.refused)
        try:  # best effort, never blocks the accept loop
            request.setblocking(False)
            request.send(framing.encode_frame({
                "type": "error", "seq": 0, "code": "E_BUSY", "message": "考点机连接数已满，暂不能连接。",
                "remedy": "请稍后重试。", "retry_after": 10}))
        except (OSError, ValueError):
            pass
        self.ctx.hub.publish("lan.refused", ip=ip, reason=reason)
        return False

    def _unauth_cap(self) -> int:
        return max(1, min(self.options.max_unauthenticated, self.options.max_connections))

    def _live(self) -> int:
        """Connections that hold a slot: admitted and not closing (lock held)."""
        return len(self._pending) + sum(1 for c in self._conns if c.closing is None)

    def _unknown_unauthenticated(self) -> int:
        """Unauthenticated connections from addresses no room is registered from (lock held)."""
        pending = sum(1 for _, known in self._pending.values() if not known)
        return pending + sum(1 for c in self._unauth if not c.known and c.closing is None)

    def _oldest_idle_unauthenticated(self) -> Optional[_Connection]:
        """The connection to close for a newcomer: the oldest idle unauthenticated one from an
        address no room is registered from (lock held); None when there is none."""
        for conn in self._unauth:
            if not conn.known and conn.idle and conn.closing is None and conn.room is None:
                return conn
        return None

    def _track(self, thread: threading.Thread, request: socket.socket) -> None:
        with self._lock:
            self._threads.add(thread)

    def _release(self, request: socket.socket) -> None:
        with self._lock:
            pending = self._pending.pop(id(request), None)
            if pending is not None:
                self._drop_ip(pending[0])

    def _drop_ip(self, ip: str) -> None:
        left = self._per_ip.get(ip, 1) - 1
        if left > 0:
            self._per_ip[ip] = left
        else:
            self._per_ip.pop(ip, None)

    # -- one connection (its own thread) ------------------------------------------------
    def _serve(self, sock: socket.socket, address: Tuple[str, int]) -> None:
        ip = address[0]
        with self._lock:
            _, known = self._pending.pop(id(sock), (ip, False))
            conn = _Connection(sock, ip, known, time.monotonic() + self.options.auth_timeout)
            self._conns.add(conn)
            self._unauth[conn] = None
        if not self._listening:
            conn.kill("shutdown")
        reason = "closed"
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.ctx.hub.publish("lan.connected", ip=ip)
            reason = self._loop(conn)
        except OSError as e:
            reason = conn.closing or "socket error: {}".format(e)
        finally:
            self._drop_upload(conn)
            with self._lock:
                self._conns.discard(conn)
                self._unauth.pop(conn, None)
                self._drop_ip(ip)
                self._threads.discard(threading.current_thread())
            if conn.room is not None:
                log.info("LAN connection from %s (room %s) closed: %s", ip, conn.room, reason)
            else:  # a flood of them is logged every 5 s, not one by one
                self._quiet_closes.log(logging.INFO, "LAN connection from %s (not authenticated) closed: %s",
                                       ip, reason)
            self.ctx.hub.publish("lan.closed", ip=ip, room=conn.room, reason=reason)

    def _loop(self, conn: _Connection) -> str:
        while True:
            conn.idle = True
            if conn.closing:
                return conn.closing
            limits, by_deadline = self._read_limits(conn)
            if limits is None:
                return self._auth_timeout(conn)
            try:
                frame = framing.read_frame(conn.sock, limits)
            except Closed:
                return conn.closing or "peer closed"
            except FrameError as e:
                if conn.closing:
                    return conn.closing
                if by_deadline and e.code == framing.E_TIMEOUT:
                    return self._auth_timeout(conn)
                log.warning("LAN client %s: %s", conn.ip, e)
                self._send_error(conn, 0, _Reply(e.code, _frame_message(e.code), "请检查监考机软件或网络。"))
                return e.code
            if conn.room is None and time.monotonic() > conn.auth_deadline:
                return self._auth_timeout(conn)
            conn.idle = False
            seq = frame.seq
            try:
                fields, body = self._dispatch(conn, frame)
            except _Reply as e:
                if conn.room is None and e.code in AUTH_FAILURES:  # not authenticated: one try per connection
                    self._send_error(conn, seq, e, closing=True)
                    return "authentication failed ({})".format(e.code)
                self._send_error(conn, seq, e)
                continue
            except UserError as e:
                log.info("LAN request %s from %s refused: %s", frame.type, conn.ip, e.cause)
                self._send_error(conn, seq, _Reply("E_REFUSED", e.cause, e.remedy))
                continue
            except Exception:  # noqa: BLE001 - one bad request must not end the service
                log.exception("LAN request %s from %s failed", frame.type, conn.ip)
                self._send_error(conn, seq, _Reply("E_INTERNAL", "考点机处理请求时出错。", REMEDY_RETRY))
                continue
            reply = dict(fields)
            reply.update({"type": "ok", "seq": seq})
            with conn.send_lock:
                framing.send_frame(conn.sock, reply, body, timeout=self.options.send_timeout)
            if frame.type == "bye":
                return "goodbye"

    def _read_limits(self, conn: _Connection) -> Tuple[Optional[Limits], bool]:
        """The deadlines for reading the next request: (limits, whether the authentication deadline
        shortened them); (None, True) when that deadline has passed."""
        if conn.room is not None:
            return self.limits, False
        left = conn.auth_deadline - time.monotonic()
        if left <= 0:
            return None, True
        idle = self.limits.idle
        if idle is not None and idle <= left and self.limits.request <= left:
            return self.limits, False
        return self.limits._replace(idle=left if idle is None else min(idle, left),
                                    request=min(self.limits.request, left)), True

    def _auth_timeout(self, conn: _Connection) -> str:
        """Close a connection that did not authenticate in time (E_TIMEOUT, best effort)."""
        try:
            self._send_error(conn, 0, _Reply("E_TIMEOUT", AUTH_TIMEOUT_MESSAGE.format(self.options.auth_timeout),
                                             AUTH_TIMEOUT_REMEDY), closing=True)
        except OSError:
            pass
        return "not authenticated within {:g} s".format(self.options.auth_timeout)

    def _send_error(self, conn: _Connection, seq: int, e: _Reply, closing: bool = False) -> None:
        """An error reply; ``closing``: the connection is closed right after it (``closing: true``, short send)."""
        header = {"type": "error", "seq": seq, "code": e.code, "message": e.message, "remedy": e.remedy}
        header.update(e.extra)
        if closing:
            header["closing"] = True
        with conn.send_lock:
            framing.send_frame(conn.sock, header,
                               timeout=CLOSING_SEND_TIMEOUT if closing else self.options.send_timeout)

    def _send_error_nowait(self, conn: _Connection, code: str, message: str, remedy: str) -> None:
        if not conn.send_lock.acquire(blocking=False):
            return
        try:
            framing.send_frame(conn.sock, {"type": "error", "seq": 0, "code": code, "message": message,
                                           "remedy": remedy}, timeout=0.5)
        except OSError:
            pass
        finally:
            conn.send_lock.release()

    # -- requests -----------------------------------------------------------------------
    def _dispatch(self, conn: _Connection, frame: framing.Frame) -> Tuple[Dict[str, Any], bytes]:
        handler = _HANDLERS.get(frame.type)
        if handler is None:
            raise _Reply("E_TYPE", "考点机不支持该请求（{}）。".format(frame.type),
                         "请确认监考机软件的版本与考点一致。")
        if frame.body and frame.type != "upload_chunk":
            raise _bad("该请求不应带数据")
        return handler(self, conn, frame)

    def _auth(self, conn: _Connection, header: Dict[str, Any]) -> Dict[str, Any]:
        room = _code(header, "room")
        token = _text(header, "token", 256)
        if conn.room is not None and conn.room != room:
            raise _Reply("E_AUTH", "此连接已用于考场 {}。".format(conn.room), "请为每个考场使用单独的连接。")
        try:
            doc = self.registration.authenticate(room, token, conn.ip)
        except RegistrationRefused as e:
            raise _Reply("E_AUTH", e.cause, e.remedy) from None
        self._bind(conn, room)
        return doc

    def _bind(self, conn: _Connection, room: str) -> None:
        """``conn`` authenticated for ``room``: it serves that room; its address gets slots kept for it."""
        with self._lock:
            conn.room = room
            self._unauth.pop(conn, None)
            self._known.add(conn.ip)

    def _room_data(self, room: str) -> Dict[str, Any]:
        sha = self.loading.room_data_sha256(room)
        try:
            size: Optional[int] = os.path.getsize(self.loading.room_file_path(room))
        except OSError:
            size = None
        return {"sha256": sha, "size": size}

    def _heartbeat_s(self) -> float:
        return float(getattr(self.monitor, "interval", 5.0))

    def _register(self, conn: _Connection, frame: framing.Frame) -> Tuple[Dict[str, Any], bytes]:
        h = frame.header
        room = _text(h, "room")
        reg_code = _text(h, "reg_code")
        if conn.room is not None and conn.room != room:
            raise _Reply("E_AUTH", "此连接已用于考场 {}。".format(conn.room), "请为每个考场使用单独的连接。")
        try:
            result = self.registration.register(room, reg_code, conn.ip)
        except RegistrationRefused as e:
            raise _Reply("E_REGISTER", e.cause, e.remedy) from None
        self._bind(conn, room)
        client = h.get("client")
        log.info("room %s registered from %s (%s)", room, conn.ip, str(client)[:MAX_TEXT] if client else "-")
        return {"token": result["token"], "site_code": result["site_code"], "room": room,
                "sessions": result["sessions"], "data": self._room_data(room),
                "heartbeat_s": self._heartbeat_s()}, b""

    def _hello(self, conn: _Connection, frame: framing.Frame) -> Tuple[Dict[str, Any], bytes]:
        doc = self._auth(conn, frame.header)
        room = doc["code"]
        detail = self.loading.room_detail(room)
        data = self._room_data(room)
        sessions = [{k: s[k] for k in ("id", "name", "start", "duration_min")} for s in detail["sessions"]]
        return {"room": room, "site_code": detail["site_code"], "sessions": sessions, "data": data,
                "data_imported": bool(data["sha256"]) and doc.get("data_sha256") == data["sha256"],
                "heartbeat_s": self._heartbeat_s()}, b""

    def _data(self, conn: _Connection, frame: framing.Frame) -> Tuple[Dict[str, Any], bytes]:
        doc = self._auth(conn, frame.header)
        room = doc["code"]
        offset = _int(frame.header, "offset", 0, 2 ** 62)
        length = _int(frame.header, "length", 1, BODY_MAX)
        sha = self.loading.room_data_sha256(room)
        try:
            with open(self.loading.room_file_path(room), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if offset > size:
                    raise _bad("offset {} 超出考场数据大小 {}".format(offset, size))
                f.seek(offset)
                body = f.read(min(length, size - offset))
        except OSError as e:
            raise _no_data(room) from e
        if sha is None:
            raise _no_data(room)
        return {"offset": offset, "size": size, "sha256": sha}, body

    def _data_imported(self, conn: _Connection, frame: framing.Frame) -> Tuple[Dict[str, Any], bytes]:
        h = frame.header
        doc = self._auth(conn, h)
        sha = _sha(h)
        try:
            self.registration.mark_data_imported(doc["code"], h["token"], conn.ip, sha)
        except RegistrationRefused as e:
            raise _Reply("E_AUTH", e.cause, e.remedy) from None
        return {"room": doc["code"], "sha256": sha}, b""

    def _heartbeat(self, conn: _Connection, frame: framing.Frame) -> Tuple[Dict[str, Any], bytes]:
        doc = self._auth(conn, frame.header)
        state = frame.header.get("state")
        if not isinstance(state, dict):
            raise _bad("state 应为对象")
        session = _code(state, "session")
        beat: Dict[str, Any] = {"session_id": session}
        for name in ("started", "ended"):
            value = state.get(name, False)
            if not isinstance(value, bool):
                raise _bad("state.{} 应为 true/false".format(name))
            beat[name] = value
        for name in ("logged_in", "in_exam"):
            beat[name] = _int(state, name, 0, MAX_COUNT)
        if "candidates" in state:
            beat["candidates"] = _int(state, "candidates", 0, MAX_COUNT)
        try:
            taken = self.monitor.heartbeat(doc["code"], beat)
        except StateRefused as e:
            raise _Reply("E_STATE", e.cause, e.remedy) from None
        except UserError as e:
            raise _Reply("E_ARG", e.cause, e.remedy) from None
        reply: Dict[str, Any] = {"server_time": format_time(self.ctx.now()), "heartbeat_s": self._heartbeat_s()}
        if isinstance(taken, dict) and taken.get("start") == START_UNPERMITTED:
            reply["warning"] = {"code": "W_UNPERMITTED", "remedy": UNPERMITTED_REMEDY,
                                "message": UNPERMITTED_MESSAGE.format(session, UNPERMITTED_LABEL)}
        return reply, b""

    def _permit(self, conn: _Connection, frame: framing.Frame) -> Tuple[Dict[str, Any], bytes]:
        doc = self._auth(conn, frame.header)
        session = _code(frame.header, "session")
        try:
            permit = self.verification.start_permit(doc["code"], session)
        except PermitRefused as e:
            raise _Reply("E_PERMIT", e.cause, e.remedy) from None
        permit = dict(permit)
        permit.setdefault("session", session)
        permit["granted"] = True
        return {"session": session, "permit": permit}, b""

    # -- uploads ------------------------------------------------------------------------
    def _part_path(self, room: str, session: str, sha: str) -> str:
        return os.path.join(self.upload_dir, "{}.{}.{}{}".format(room, session, sha, PART_SUFFIX))

    def _part_lock(self, path: str) -> threading.Lock:
        with self._lock:
            lock = self._part_locks.get(path)
            if lock is None:
                lock = self._part_locks[path] = threading.Lock()
            return lock

    def _drop_upload(self, conn: _Connection) -> None:
        upload = conn.upload
        if upload is None:
            return
        with self._part_lock(upload.path):
            upload.close()
            conn.upload = None
            with self._lock:
                if self._owners.get(upload.path) is conn:
                    del self._owners[upload.path]

    def _upload_begin(self, conn: _Connection, frame: framing.Frame) -> Tuple[Dict[str, Any], bytes]:
        h = frame.header
        doc = self._auth(conn, h)
        room = doc["code"]
        if not _CODE.match(room):
            raise _Reply("E_REFUSED", "考场代码 {} 无法用于文件名。".format(room), REMEDY_RETRY)
        session = _code(h, "session")
        size = _int(h, "size", 1, self.options.max_upload)
        sha = _sha(h)
        detail = self.loading.room_detail(room)
        if session not in {s["id"] for s in detail["sessions"]}:
            raise _Reply("E_REFUSED", "考场 {} 在场次 {} 没有考生安排，不能上报结果。".format(room, session),
                         "请核对监考机上的场次。")
        self._drop_upload(conn)
        path = self._part_path(room, session, sha)
        self._discard_other_parts(room, session, path)
        with self._part_lock(path):  # a commit of this file on another connection finishes first
            self._take_over(conn, path)
            if self._recorded(room, session, sha, size) is not None:
                return self._begin_committed(conn, room, session, sha, size, path)
            upload = _Upload(room, session, sha, size, path)
            try:
                upload.file = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open across chunks
                upload.offset = os.fstat(upload.file.fileno()).st_size
                if upload.offset > size:
                    upload.file.truncate(0)
                    upload.offset = 0
                os.utime(path)  # begun again: not abandoned (see sweep_parts)
                free = shutil.disk_usage(self.upload_dir).free
            except OSError as e:
                upload.close()
                self._release_owner(conn, path)
                log.error("cannot open partial upload %s: %r", path, e)
                raise self._storage_error(_size_of(path)) from e
            if free < 2 * (size - upload.offset) + 64 * 1024 * 1024:
                upload.close()
                self._release_owner(conn, path)
                log.error("not enough disk space for the upload of %s/%s (%d bytes free, %d to come)",
                          room, session, free, size - upload.offset)
                raise _Reply("E_STORAGE", "考点机磁盘空间不足，暂不能接收结果包。",
                             "监考机稍后会自动重试；请联系考点管理员清理考点机磁盘。", offset=upload.offset,
                             retry_after=self.options.storage_retry_after)
            conn.upload = upload
        log.info("upload %s/%s %s: %d of %d bytes already here", room, session, sha[:12], upload.offset, size)
        return {"offset": upload.offset}, b""

    def _take_over(self, conn: _Connection, path: str) -> None:
        """``conn`` now owns the part ``path``; a stale connection of the same proctor loses it (lock held)."""
        with self._lock:
            previous = self._owners.get(path)
            self._owners[path] = conn
        if previous is not None and previous is not conn and previous.upload is not None:
            previous.upload.close()
            previous.upload = None

    def _release_owner(self, conn: _Connection, path: str) -> None:
        with self._lock:
            if self._owners.get(path) is conn:
                del self._owners[path]

    def _begin_committed(self, conn: _Connection, room: str, session: str, sha: str, size: int,
                         path: str) -> Tuple[Dict[str, Any], bytes]:
        """``upload_begin`` of a file already recorded: nothing to send; the caller holds the part's lock."""
        self._release_owner(conn, path)
        if os.path.exists(path):  # the server stopped between recording and removing it
            log.info("removing partial upload %s: its result is already recorded", os.path.basename(path))
            _remove(path)
        upload = _Upload(room, session, sha, size, path)
        upload.offset = size
        upload.committed = True
        conn.upload = upload
        log.info("upload %s/%s %s: already received and recorded (a lost commit reply)", room, session, sha[:12])
        return {"offset": size, "committed": True}, b""

    def _recorded(self, room: str, session: str, sha: str, size: int) -> Optional[Dict[str, Any]]:
        """The result recorded for ``room``/``session`` if it is this file and the spool holds it intact.

        A damaged spool file (``Spool.damage``: re-hashed here, a rare path) is not "committed":
        the proctor sends the bytes again and ``Spool.put`` replaces the damaged file.
        """
        for doc in self.recovery.recovered():
            res = doc.get("result") or {}
            if doc.get("room") == room and doc.get("session") == session:
                if res.get("sha256") == sha and res.get("size") == size and self.ctx.spool.damage(sha, size) is None:
                    return dict(res, room=room, session=session, duplicate=True)
                return None
        return None

    def _storage_error(self, offset: int) -> _Reply:
        return _Reply("E_STORAGE", STORAGE_MESSAGE, STORAGE_REMEDY, offset=offset,
                      retry_after=self.options.storage_retry_after)

    def _discard_other_parts(self, room: str, session: str, keep: str) -> None:
        prefix = "{}.{}.".format(room, session)
        try:
            names = os.listdir(self.upload_dir)
        except OSError:
            return
        for name in names:
            path = os.path.join(self.upload_dir, name)
            if name.startswith(prefix) and name.endswith(PART_SUFFIX) and path != keep:
                rest = name[len(prefix):-len(PART_SUFFIX)]
                if _SHA.match(rest):
                    with self._part_lock(path):
                        with self._lock:
                            owner = self._owners.pop(path, None)
                        if owner is not None and owner.upload is not None:
                            owner.upload.close()
                            owner.upload = None
                        log.info("discarding partial upload %s (a new package was begun)", name)
                        _remove(path)

    def _current_upload(self, conn: _Connection, committed: bool = False) -> _Upload:
        upload = conn.upload
        if upload is not None and upload.committed:
            if committed:
                return upload
            raise _Reply("E_STATE", "该结果包考点机已完整接收并记录，无需再传送。", "请发送 upload_commit。")
        if upload is None or upload.file is None:
            raise _Reply("E_STATE", "没有进行中的结果上报。", "请先发送 upload_begin。")
        return upload

    def _upload_chunk(self, conn: _Connection, frame: framing.Frame) -> Tuple[Dict[str, Any], bytes]:
        self._auth(conn, frame.header)
        offset = _int(frame.header, "offset", 0, 2 ** 62)
        upload = self._current_upload(conn)
        body = frame.body
        if not body:
            raise _bad("upload_chunk 没有数据")
        with self._part_lock(upload.path):
            if conn.upload is not upload or upload.file is None:
                raise _Reply("E_STATE", "结果上报已在另一连接上继续。", "请重新发送 upload_begin。")
            if offset != upload.offset:
                raise _Reply("E_OFFSET", "数据块位置不符：考点机已有 {} 字节。".format(upload.offset),
                             "请从考点机给出的位置继续上报。", offset=upload.offset)
            if offset + len(body) > upload.size:
                raise _bad("数据超出声明的大小 {}".format(upload.size))
            try:
                _write_all(upload.file, body)
                upload.offset += len(body)
            except OSError as e:
                upload.offset = _size_of(upload.path)
                log.error("cannot write partial upload %s: %r", upload.path, e)
                raise self._storage_error(upload.offset) from e
        now = time.monotonic()
        if now - upload.last_event >= 1.0 or upload.offset == upload.size:
            upload.last_event = now
            self.ctx.hub.publish("lan.upload", room=upload.room, session=upload.session, offset=upload.offset,
                                 size=upload.size)
        return {"offset": upload.offset}, b""

    def _upload_commit(self, conn: _Connection, frame: framing.Frame) -> Tuple[Dict[str, Any], bytes]:
        self._auth(conn, frame.header)
        upload = self._current_upload(conn, committed=True)
        if upload.committed:
            return self._commit_again(conn, upload)
        with self._part_lock(upload.path):
            if conn.upload is not upload or upload.file is None:
                raise _Reply("E_STATE", "结果上报已在另一连接上继续。", "请重新发送 upload_begin。")
            if upload.offset != upload.size:
                raise _Reply("E_OFFSET", "结果包尚未传完：考点机已有 {} / {} 字节。".format(upload.offset, upload.size),
                             "请从考点机给出的位置继续上报。", offset=upload.offset)
            upload.close()
            what = "{}/{} {}".format(upload.room, upload.session, upload.sha256[:12])
            try:
                with open(upload.path, "rb") as f:
                    result = self.recovery.receive(upload.room, upload.session, f, upload.sha256, upload.size,
                                                   "lan", ACTOR)
            # refusals of the content: the part file goes
            except IntegrityError as e:
                self._finish(conn, upload)
                log.warning("upload %s refused: %s", what, e.cause)
                raise self._commit_failed(upload, _Reply("E_INTEGRITY", e.cause, "请重新上报结果包（从头开始）。",
                                                         offset=0), e.cause, False) from None
            except ResultConflict as e:
                self._finish(conn, upload)
                raise self._commit_failed(upload, _Reply("E_CONFLICT", e.cause, e.remedy), e.cause, False) from None
            # the site server's storage failed: keep every byte, the proctor commits again later
            except (SpoolError, StoreError) as e:
                log.error("upload %s kept for a retry: the commit could not be stored: %s (%s)", what, e.cause,
                          e.detail)
                raise self._commit_failed(upload, self._storage_error(self._keep(upload)), e.cause, True) from None
            except OSError as e:
                log.error("upload %s kept for a retry: the commit could not be stored: %r", what, e)
                raise self._commit_failed(upload, self._storage_error(self._keep(upload)), repr(e), True) from e
            except NotLoaded as e:  # the site's package is not loaded (a state, not the content)
                self._keep(upload)
                raise self._commit_failed(upload, _Reply("E_REFUSED", e.cause, e.remedy), e.cause, True) from None
            except (FormatError, UserError) as e:  # not a result of this site, room and session
                self._finish(conn, upload)
                log.warning("upload %s refused: %s", what, e.cause)
                raise self._commit_failed(upload, _Reply("E_REFUSED", e.cause, e.remedy), e.cause, False) from None
            except Exception as e:
                self._keep(upload)  # a bug: answered E_INTERNAL and logged by _loop; the bytes stay
                self.ctx.hub.publish("lan.commit_failed", room=upload.room, session=upload.session,
                                     sha256=upload.sha256, code="E_INTERNAL", cause=repr(e), kept=True)
                raise
            self._finish(conn, upload)
        log.info("result of room %s session %s received over the LAN (%s, %d bytes)", upload.room,
                 upload.session, upload.sha256[:12], upload.size)
        self.ctx.hub.publish("lan.committed", room=upload.room, session=upload.session, sha256=upload.sha256,
                             size=upload.size)
        return {"room": upload.room, "session": upload.session, "sha256": upload.sha256, "size": upload.size,
                "result": result}, b""

    def _commit_failed(self, upload: _Upload, reply: _Reply, cause: str, kept: bool) -> _Reply:
        """Publish ``lan.commit_failed`` (for the site's screens) and return ``reply`` to raise."""
        self.ctx.hub.publish("lan.commit_failed", room=upload.room, session=upload.session, sha256=upload.sha256,
                             code=reply.code, cause=cause, kept=kept)
        return reply

    def _commit_again(self, conn: _Connection, upload: _Upload) -> Tuple[Dict[str, Any], bytes]:
        """``upload_commit`` after an ``upload_begin`` that answered ``committed``: the recorded result."""
        conn.upload = None
        result = self._recorded(upload.room, upload.session, upload.sha256, upload.size)
        if result is None:  # the record went away in between (e.g. the site was initialised)
            raise _Reply("E_STATE", "考点机上已没有该结果包的记录。", "请重新发送 upload_begin，从头上报。")
        log.info("upload %s/%s %s committed again: already recorded", upload.room, upload.session,
                 upload.sha256[:12])
        return {"room": upload.room, "session": upload.session, "sha256": upload.sha256, "size": upload.size,
                "result": result}, b""

    def _keep(self, upload: _Upload) -> int:
        """A commit failed but the part stays: reopen it for the retry; the bytes held (caller holds its lock)."""
        try:
            upload.file = open(upload.path, "ab", buffering=0)  # noqa: SIM115
            upload.offset = os.fstat(upload.file.fileno()).st_size
            os.utime(upload.path)
        except OSError:
            log.exception("cannot reopen %s", upload.path)
            upload.close()
            upload.offset = _size_of(upload.path)
        return upload.offset

    def _finish(self, conn: _Connection, upload: _Upload) -> None:
        """The part file is done with (stored, or refused for good): remove it; caller holds its lock."""
        upload.close()
        _remove(upload.path)
        conn.upload = None
        self._release_owner(conn, upload.path)
        # the path's lock stays in _part_locks: a thread may be waiting on it right now, and a
        # fresh lock for the same path would let two threads in (one small entry per file)

    # -- abandoned partial uploads ------------------------------------------------------
    def sweep_parts(self, now: Optional[float] = None) -> List[str]:
        """Remove partial uploads untouched for ``part_max_age`` that no connection holds; their names.

        "Touched" is the file's modification time: every chunk written, every
        ``upload_begin`` and every failed commit of the file sets it. A part whose lock is
        taken (a commit in progress) is skipped, never waited for: this runs in the accept
        thread. ``now`` is a ``time.time()`` value (default: now).
        """
        now = time.time() if now is None else now
        removed: List[str] = []
        try:
            names = sorted(os.listdir(self.upload_dir))
        except OSError as e:
            log.warning("cannot list partial uploads in %s: %r", self.upload_dir, e)
            return removed
        for name in names:
            parts = _parse_part(name)
            if parts is None:
                continue
            path = os.path.join(self.upload_dir, name)
            lock = self._part_lock(path)
            if not lock.acquire(blocking=False):
                continue
            size = None
            try:
                with self._lock:
                    held = path in self._owners
                st = os.stat(path)
                age = now - st.st_mtime
                if not held and age >= self.options.part_max_age:
                    log.warning("removing abandoned partial upload %s (%d bytes, untouched for %.1f h)", name,
                                st.st_size, age / 3600.0)
                    os.remove(path)
                    size = st.st_size
            except OSError as e:
                log.warning("cannot sweep partial upload %s: %r", name, e)
            finally:
                lock.release()
            if size is not None:
                removed.append(name)
                self.ctx.hub.publish("lan.part_removed", room=parts[0], session=parts[1], sha256=parts[2],
                                     bytes=size, reason="abandoned")
        return removed

    def _housekeeping(self) -> None:
        """Called by the accept loop between polls: audit closed refusal windows (every second),
        the periodic sweep of abandoned parts."""
        now = time.monotonic()
        if now >= self._next_flush:
            self._next_flush = now + 1.0
            self._flush_refusals()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.options.sweep_interval
        try:
            self.sweep_parts()
        except Exception:  # noqa: BLE001 - housekeeping must never stop the accept loop
            log.exception("sweeping partial uploads failed")

    def _flush_refusals(self, everything: bool = False) -> None:
        """Have the registration service audit its counted refusals (closed windows, or all)."""
        flush = getattr(self.registration, "flush_refusals", None)
        if flush is None:
            return
        try:
            flush(everything=everything)
        except Exception:  # noqa: BLE001 - housekeeping must never stop the accept loop
            log.exception("auditing the refused registrations failed")

    def _bye(self, conn: _Connection, frame: framing.Frame) -> Tuple[Dict[str, Any], bytes]:
        return {}, b""

    def partial_uploads(self) -> List[Dict[str, Any]]:
        """The partial uploads kept between connections: room, session, sha256, bytes."""
        out = []
        try:
            names = sorted(os.listdir(self.upload_dir))
        except OSError:
            return out
        for name in names:
            parts = _parse_part(name)
            if parts is not None:
                out.append({"room": parts[0], "session": parts[1], "sha256": parts[2],
                            "bytes": _size_of(os.path.join(self.upload_dir, name))})
        return out


_HANDLERS = {
    "register": LanServer._register,
    "hello": LanServer._hello,
    "data": LanServer._data,
    "data_imported": LanServer._data_imported,
    "heartbeat": LanServer._heartbeat,
    "permit": LanServer._permit,
    "upload_begin": LanServer._upload_begin,
    "upload_chunk": LanServer._upload_chunk,
    "upload_commit": LanServer._upload_commit,
    "bye": LanServer._bye,
}

_FRAME_MESSAGES = {
    "E_FRAME": "监考机发送的数据格式错误，连接已断开。",
    "E_TOO_LARGE": "监考机发送的数据超过大小限制，连接已断开。",
    "E_VERSION": "监考机的通讯协议版本与考点机不一致，连接已断开。",
    "E_TIMEOUT": "监考机长时间没有发送数据，连接已断开。",
    "E_SLOW": "监考机发送数据过慢，连接已断开。",
}


class _Quiet:
    """A log line for the first of a kind of event, then at most one per ``every`` seconds with
    the number left out (so that a flood does not flood the log file)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._last = -1e9
        self._left_out = 0
        self._lock = threading.Lock()

    def log(self, level: int, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.every:
                self._left_out += 1
                return
            self._last, left_out, self._left_out = now, self._left_out, 0
        if left_out:
            message += " (and %d more like it in the last %.0f s)"
            args += (left_out, self.every)
        log.log(level, message, *args)


def _frame_message(code: str) -> str:
    return _FRAME_MESSAGES.get(code, "连接已断开。")


def _parse_part(name: str) -> Optional[Tuple[str, str, str]]:
    """(room, session, sha256) of a part file name ``<room>.<session>.<sha256>.part``, else None."""
    if not name.endswith(PART_SUFFIX):
        return None
    parts = name[:-len(PART_SUFFIX)].split(".")
    if len(parts) != 3 or not _CODE.match(parts[0]) or not _CODE.match(parts[1]) or not _SHA.match(parts[2]):
        return None
    return parts[0], parts[1], parts[2]


def _write_all(f: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = f.write(view)
        if n is None or n <= 0:
            raise OSError("short write")
        view = view[n:]


def _size_of(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError:
        log.exception("cannot remove %s", path)
