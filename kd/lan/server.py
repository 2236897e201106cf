"""The proctor LAN service (port 9190): KDLAN v1 over threaded TCP sockets.

``LanServer(ctx, registration=..., verification=..., monitor=..., recovery=...)`` serves
docs/lan-protocol.md with ``socketserver.ThreadingTCPServer`` (one daemon thread per
connection). It implements ``kd.core.ports.Lan`` (``listening()``, ``address()``,
``port()``, ``disconnect_room()``). It is the transport; the rest lives in three parts:

- ``kd.lan.registry``: the connections and the slots (admission in the accept thread),
- ``kd.lan.handlers``: one function per message type (``HANDLERS``), calling only the
  core services and the upload store,
- ``kd.lan.uploads``: the partial uploads in ``DATA/lan-uploads/`` (``UploadStore``:
  part files, take-over, resumption after a restart, commit, the abandoned-part sweep).

A connection's thread reads a frame, dispatches it by type to its handler and sends the
reply: the handler's fields as ``ok``, or its ``Reply`` as ``error`` (a ``UserError``
from a core service answers ``E_REFUSED``, anything else ``E_INTERNAL``, logged). The
server never writes the stores.

Defences (``LanOptions``): caps on connections in total and per IP (refused in the
accept loop with ``E_BUSY``, no thread spent), an idle deadline, an absolute deadline
per request, a minimum transfer rate while a request is received (``kd.lan.framing``),
a send deadline for replies. A connection that has not authenticated yet (no successful
``register`` or authenticated request) must do so within ``auth_timeout`` (10 s) of
being accepted, and is closed after a failed ``register`` or authentication (the error
reply says ``closing: true``). Unauthenticated connections from addresses no room is
registered from share ``max_unauthenticated`` (256) of the ``max_connections`` (512)
slots (``kd.lan.registry``). Addresses rooms are registered from
(``RegistrationService.registered_ips()`` at start and after a revocation, and every
address that authenticates since) are not limited by that share. The counts of refused
registrations are audited by the registration service once per window; the accept loop
flushes the windows that closed, ``stop()`` all of them. The accept loop also sweeps
abandoned partial uploads every ``sweep_interval`` (and ``start()`` once).

``stop()`` closes every connection, waits for requests in progress (a commit finishes
before its thread ends), flushes the counted refusals, and frees the port.

Start and stop::

    server = LanServer(ctx, registration=RegistrationService(ctx), verification=VerificationService(ctx),
                       monitor=monitor, recovery=RecoveryService(ctx, outbox)).start()   # sets ctx.lan
    ...
    server.stop()

Events on ``ctx.hub``: ``lan.started`` (host, port), ``lan.stopped`` (port),
``lan.connected`` (ip), ``lan.closed`` (ip, room, reason), ``lan.refused`` (ip, reason),
and the upload store's ``lan.upload``, ``lan.committed``, ``lan.commit_failed``,
``lan.part_removed`` (``kd.lan.uploads``).
"""

import logging
import os
import socket
import socketserver
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from kd.core.context import Context
from kd.core.loading import LoadingService
from kd.errors import UserError
from kd.forward import Forward
from kd.lan import addresses, framing
from kd.lan.framing import Closed, FrameError, Limits
from kd.lan.handlers import BODY_TYPES, HANDLERS, Services
from kd.lan.registry import Connection, QuietLog, Registry
from kd.lan.replies import REMEDY_RETRY, Reply, bad, seconds
from kd.lan.uploads import UploadStore

log = logging.getLogger(__name__)

DEFAULT_PORT = 9190
UPLOAD_DIR = "lan-uploads"

AUTH_TIMEOUT_MESSAGE = "监考机连接后 {:g} 秒内没有完成考场注册或身份验证，连接已断开。"
AUTH_TIMEOUT_REMEDY = "请重新连接；连接后请立即注册考场或发送带考场令牌的请求。"
#: errors that close a connection that has not authenticated yet (the reply carries ``closing: true``)
AUTH_FAILURES = frozenset(["E_AUTH", "E_REGISTER"])
#: how long an error reply right before closing may take to send (seconds)
CLOSING_SEND_TIMEOUT = 2.0
FRAME_MESSAGES = {
    "E_FRAME": "监考机发送的数据格式错误，连接已断开。",
    "E_TOO_LARGE": "监考机发送的数据超过大小限制，连接已断开。",
    "E_VERSION": "监考机的通讯协议版本与考点机不一致，连接已断开。",
    "E_TIMEOUT": "监考机长时间没有发送数据，连接已断开。",
    "E_SLOW": "监考机发送数据过慢，连接已断开。",
}

class LanOptions(NamedTuple):
    """Where to listen and the limits that keep slow or hostile clients in check."""

    #: the address to listen on: every interface by default; one local address binds the service to it
    #: (main.py --lan-host, docs/lan-protocol.md §9)
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
            self.owner.registry.track(thread)
            thread.start()
        except BaseException:
            self.owner.registry.release(id(request))
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("LAN connection from %s failed", client_address)

    def service_actions(self) -> None:  # the accept loop, between polls
        super().service_actions()
        self.owner._housekeeping()


class LanServer:
    """The KDLAN v1 server over the core services (see the module docstring)."""

    def __init__(self, ctx: Context, *, registration: Any, verification: Any, monitor: Any, recovery: Any,
                 loading: Optional[LoadingService] = None, options: Optional[LanOptions] = None,
                 extra_time: Any = None, clock_skew: Any = None) -> None:
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
        self.registry = Registry(options.max_connections, options.max_per_ip, options.max_unauthenticated)
        self.uploads = UploadStore(
            self.upload_dir, recovery=recovery, damage=lambda sha, size: self.ctx.spool.damage(sha, size),
            publish=lambda event, **fields: self.ctx.hub.publish(event, **fields),
            retry_after=seconds(options.storage_retry_after), part_max_age=options.part_max_age)
        self.services = Services(ctx=ctx, registration=registration, verification=verification, monitor=monitor,
                                 loading=self.loading, uploads=self.uploads, max_upload=options.max_upload,
                                 bind=self.registry.bind, extra_time=extra_time,
                                 clock_skew=clock_skew)
        self._server: Optional[_TCPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._listening = False
        self._quiet_refusals = QuietLog(5.0, log)
        self._quiet_closes = QuietLog(5.0, log)
        self._next_sweep = 0.0
        self._next_flush = 0.0

    refused = Forward[int]("registry", doc="Connections refused in the accept loop so far.")
    evicted = Forward[int]("registry", doc="Unauthenticated connections closed to make room for a newcomer so far.")

    # -- the Lan port --------------------------------------------------------------------
    def listening(self) -> bool:
        return self._listening

    def address(self) -> str:
        """The address proctors should use: the bound one, or this PC's LAN address for 0.0.0.0."""
        host = self.options.host
        if self._server is not None:
            host = str(self._server.server_address[0])
        if host in ("0.0.0.0", ""):  # noqa: S104
            return addresses.best()
        return str(host)

    def addresses(self) -> List[str]:
        """This PC's IPv4 addresses, best first (``kd.lan.addresses``); only the bound one when bound to one."""
        host = str(self._server.server_address[0]) if self._server is not None else self.options.host
        if host in ("0.0.0.0", ""):  # noqa: S104
            return addresses.ipv4_addresses()
        return [host]

    def probe(self, host: str, port: int) -> Optional[str]:
        """A proctor's connect and ``bye`` to ``host:port``: None when the service answered, else why not."""
        return addresses.probe(host, port)

    def port(self) -> int:
        if self._server is not None:
            return int(self._server.server_address[1])
        return int(self.options.port)

    def disconnect_room(self, room_code: str) -> None:
        """Close every connection serving ``room_code`` (its registration was revoked)."""
        for conn in self.registry.connections(room_code):
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
        self.registry.set_known(ips)

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> "LanServer":
        """Bind and serve in a background thread; sets ``ctx.lan``. Raises ``LanServiceError``."""
        if self._server is not None:
            return self
        self.uploads.open()
        self._seed_known()
        self._next_sweep = time.monotonic() + self.options.sweep_interval
        try:
            server = _TCPServer(self, (self.options.host, self.options.port))
        except OSError as e:
            where = self.options.host
            if where in ("0.0.0.0", ""):  # noqa: S104 - every interface: only the port can be the trouble
                raise LanServiceError(
                    "考场通讯服务无法在端口 {} 上启动。".format(self.options.port),
                    "请确认没有另一个考点管理系统或其他程序占用该端口，然后重新启动本系统。",
                    detail=repr(e)) from e
            raise LanServiceError(
                "考场通讯服务无法在 {}:{} 上启动。".format(where, self.options.port),
                "请确认 {} 是本机的网络地址（--lan-host），且没有其他程序占用端口 {}，然后重新启动本系统。".format(
                    where, self.options.port),
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
        for conn in self.registry.connections():
            if conn.idle:
                self._send_error_nowait(conn, "E_SHUTDOWN", "考点管理系统的考场通讯服务已停止。", "请稍后重新连接。")
            conn.kill("shutdown")
        deadline = time.monotonic() + self.options.stop_timeout
        while True:
            threads = self.registry.threads()
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
        counts = self.registry.counts()
        return {"port": self.port(), "listening": self._listening, "state": "运行" if self._listening else "停止",
                "connections": counts["connections"], "rooms": counts["rooms"], "refused": self.refused,
                "unauthenticated": counts["unauthenticated"], "evicted": self.evicted}

    # -- the accept thread ----------------------------------------------------------------
    def _admit(self, request: socket.socket, ip: str) -> bool:
        """Admit a new connection or refuse it with ``E_BUSY`` (accept thread; never blocks)."""
        reason, victim = self.registry.admit(id(request), ip, self._listening)
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
            self.uploads.sweep()
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

    # -- one connection (its own thread) ------------------------------------------------
    def _serve(self, sock: socket.socket, address: Tuple[str, int]) -> None:
        ip = address[0]
        conn = self.registry.open(sock, ip, self.options.auth_timeout)
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
            self.uploads.release(conn)
            self.registry.close(conn, threading.current_thread())
            if conn.room is not None:
                log.info("LAN connection from %s (room %s) closed: %s", ip, conn.room, reason)
            else:  # a flood of them is logged every 5 s, not one by one
                self._quiet_closes.log(logging.INFO, "LAN connection from %s (not authenticated) closed: %s",
                                       ip, reason)
            self.ctx.hub.publish("lan.closed", ip=ip, room=conn.room, reason=reason)

    def _loop(self, conn: Connection) -> str:
        """Read → dispatch → send until the connection ends; why it ended."""
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
                self._send_error(conn, 0, Reply(e.code, FRAME_MESSAGES.get(e.code, "连接已断开。"),
                                                "请检查监考机软件或网络。"))
                return e.code
            if conn.room is None and time.monotonic() > conn.auth_deadline:
                return self._auth_timeout(conn)
            conn.idle = False
            seq = frame.seq
            try:
                fields, body = self._dispatch(conn, frame)
            except Reply as e:
                if conn.room is None and e.code in AUTH_FAILURES:  # not authenticated: one try per connection
                    self._send_error(conn, seq, e, closing=True)
                    return "authentication failed ({})".format(e.code)
                self._send_error(conn, seq, e)
                continue
            except UserError as e:
                log.info("LAN request %s from %s refused: %s", frame.type, conn.ip, e.cause)
                self._send_error(conn, seq, Reply("E_REFUSED", e.cause, e.remedy))
                continue
            except Exception:  # noqa: BLE001 - one bad request must not end the service
                log.exception("LAN request %s from %s failed", frame.type, conn.ip)
                self._send_error(conn, seq, Reply("E_INTERNAL", "考点机处理请求时出错。", REMEDY_RETRY))
                continue
            reply = dict(fields)
            reply.update({"type": "ok", "seq": seq})
            with conn.send_lock:
                framing.send_frame(conn.sock, reply, body, timeout=self.options.send_timeout)
            if frame.type == "bye":
                return "goodbye"

    def _dispatch(self, conn: Connection, frame: framing.Frame) -> Tuple[Dict[str, Any], bytes]:
        handler = HANDLERS.get(frame.type)
        if handler is None:
            raise Reply("E_TYPE", "考点机不支持该请求（{}）。".format(frame.type),
                        "请确认监考机软件的版本与考点一致。")
        if frame.body and frame.type not in BODY_TYPES:
            raise bad("该请求不应带数据")
        return handler(self.services, conn, frame)

    def _read_limits(self, conn: Connection) -> Tuple[Optional[Limits], bool]:
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

    def _auth_timeout(self, conn: Connection) -> str:
        """Close a connection that did not authenticate in time (E_TIMEOUT, best effort)."""
        try:
            self._send_error(conn, 0, Reply("E_TIMEOUT", AUTH_TIMEOUT_MESSAGE.format(self.options.auth_timeout),
                                            AUTH_TIMEOUT_REMEDY), closing=True)
        except OSError:
            pass
        return "not authenticated within {:g} s".format(self.options.auth_timeout)

    def _send_error(self, conn: Connection, seq: int, e: Reply, closing: bool = False) -> None:
        """An error reply; ``closing``: the connection is closed right after it (``closing: true``, short send)."""
        header = {"type": "error", "seq": seq, "code": e.code, "message": e.message, "remedy": e.remedy}
        header.update(e.extra)
        if closing:
            header["closing"] = True
        with conn.send_lock:
            framing.send_frame(conn.sock, header,
                               timeout=CLOSING_SEND_TIMEOUT if closing else self.options.send_timeout)

    def _send_error_nowait(self, conn: Connection, code: str, message: str, remedy: str) -> None:
        if not conn.send_lock.acquire(blocking=False):
            return
        try:
            framing.send_frame(conn.sock, {"type": "error", "seq": 0, "code": code, "message": message,
                                           "remedy": remedy}, timeout=0.5)
        except OSError:
            pass
        finally:
            conn.send_lock.release()

    # -- partial uploads (kd.lan.uploads) -------------------------------------------------
    def sweep_parts(self, now: Optional[float] = None) -> List[str]:
        """Remove abandoned partial uploads now; their names (``UploadStore.sweep``)."""
        return self.uploads.sweep(now)

    def partial_uploads(self) -> List[Dict[str, Any]]:
        """The partial uploads kept between connections: room, session, sha256, bytes."""
        return self.uploads.partial_uploads()
