"""The platform simulator's HTTP layer: a threaded HTTP/1.1 server, routing, faults, request bodies, answers.

``SimHTTPServer`` (a ``ThreadingHTTPServer`` that tracks its connections so ``shutdown``
can end them) runs ``ApiHandler`` subclasses. ``ApiHandler`` routes each request by its
``routes`` table to ``h_<name>(**path groups)``, checks the bearer token of routes that
need it, applies the faults of ``kd.platform.faults`` to ``/api/v1/...`` requests (refuse,
slow, drip, cut after N bytes, fail every Nth) and records them; an ``ApiError`` becomes
the error answer of docs/platform-api.md: ``{"error": {"code", "message"}, ...extra}``
(``Retry-After`` when the extra names ``retry_after``). The endpoints are
``kd.platform.simapi``'s, the state ``kd.platform.simulator.SimulatorServer``'s.
"""

import json
import logging
import re
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple, Type

if TYPE_CHECKING:
    from kd.platform.simulator import SimulatorServer

log = logging.getLogger(__name__)

API = "/api/v1"
MAX_JSON_BYTES = 256 * 1024
MAX_CHUNK = 16 * 1024 * 1024
BLOCK = 64 * 1024

#: (method, path regex, handler name, needs auth)
Route = Tuple[str, "re.Pattern[str]", str, bool]


class Cut(Exception):
    """The connection was cut on purpose (fault)."""


class Gone(Exception):
    """The client went away in the middle of a request body."""


class ApiError(Exception):
    """An error answer: HTTP status, code and a Chinese message for the user."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


class ApiHandler(BaseHTTPRequestHandler):
    """One connection's requests: routing by ``routes``, faults, bodies, answers (``kd.platform.simapi``
    subclasses it with the endpoints, ``h_<name>`` per route)."""

    #: (method, path regex, handler name, needs auth), set by the subclass
    routes: List[Route] = []
    #: the site the request's token belongs to (routes that need auth)
    _site: str
    protocol_version = "HTTP/1.1"
    server_version = "kd-platform-sim/1"
    timeout = 30  # idle keep-alive connections go away
    disable_nagle_algorithm = True  # headers and body are separate writes: no delayed-ACK stalls
    server: "SimHTTPServer"

    # -- plumbing ------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def setup(self) -> None:
        super().setup()
        self._plain_wfile = self.wfile
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except (OSError, ValueError):
            pass
        self.server.track(self.connection, False)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        sim = self.server.sim
        self._cut_due = False
        self._body_left = self._content_length()
        path = self.path.split("?", 1)[0]
        self._faulty = path.startswith(API + "/")
        entry: Dict[str, Any] = {"method": method, "path": path, "status": None, "in": 0, "out": 0}
        self._entry = entry
        drip = self.server.sim.faults.drip if self._faulty else 0.0
        if drip:
            entry["fault"] = "drip"
            self.wfile = Drip(self._plain_wfile, drip, self.server.stopping)  # type: ignore[assignment]  # write/flush is all it needs
        try:
            try:
                route, params = self._route(method, path)
                api = path.startswith(API + "/")
                if api:
                    sim.record_request(entry)
                    self._apply_faults(entry)
                    if route[3]:
                        self._site = self._authorize()
                getattr(self, "h_" + route[2])(**params)
            except ApiError as e:
                body = {"error": {"code": e.code, "message": e.message}}
                body.update(e.extra)
                retry = {"Retry-After": str(e.extra["retry_after"])} if "retry_after" in e.extra else None
                self._send_json(e.status, body, retry)
        except Cut:
            entry["fault"] = "cut"
            self.close_connection = True
        except (Gone, ConnectionError, socket.timeout):
            entry["fault"] = entry.get("fault") or "client-gone"
            self.close_connection = True
        finally:
            self.wfile = self._plain_wfile

    def _route(self, method: str, path: str) -> Tuple[Route, Dict[str, str]]:
        allowed = False
        for route in self.routes:
            match = route[1].fullmatch(path)
            if match:
                if route[0] == method:
                    return route, match.groupdict()
                allowed = True
        if allowed:
            raise ApiError(405, "method_not_allowed", "请求方法不被支持")
        raise ApiError(404, "not_found", "接口不存在：" + path)

    def _content_length(self) -> int:
        value = self.headers.get("Content-Length")
        if value is None:
            return 0
        try:
            length = int(value)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return 0
        return length

    def _apply_faults(self, entry: Dict[str, Any]) -> None:
        faults = self.server.sim.faults
        if faults.refuse == "close":
            entry["fault"] = "refuse-close"
            self._cut()
        if isinstance(faults.refuse, int):
            entry["fault"] = "refuse"
            raise ApiError(faults.refuse, "unavailable", "监控平台暂时无法提供服务（维护中），请稍后再试",
                           retry_after=1)
        if faults.next_request_fails():
            entry["fault"] = "fail-every"
            raise ApiError(faults.fail_status, "unavailable", "监控平台繁忙，请稍后再试", retry_after=1)
        if faults.slow:
            self.server.stopping.wait(faults.slow)

    def _authorize(self) -> str:
        header = self.headers.get("Authorization", "")
        token = header[7:].strip() if header.startswith("Bearer ") else ""
        site = self.server.sim.check_token(token)
        if site is None:
            raise ApiError(401, "unauthorized", "登录已失效，请重新登录监控平台")
        return site

    def _cut(self) -> None:
        """Reset the connection now (TCP RST), like a network that fails mid-transfer."""
        self.server.sim.faults_cut_note(self._entry)
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        for f in (self.rfile, self.wfile):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        try:
            self.connection.close()
        except OSError:
            pass
        raise Cut()

    # -- bodies --------------------------------------------------------------------

    def _reader(self) -> Callable[[], bytes]:
        """read() returning the next block of the request body, b"" at its end (faults apply)."""
        faults = self.server.sim.faults

        def read() -> bytes:
            if self._cut_due:
                self._cut()
            if self._body_left <= 0:
                return b""
            n = min(BLOCK, self._body_left)
            if self._faulty and faults.drip:
                if self.server.stopping.wait(faults.drip):
                    raise Gone()
                n = 1
            budget = faults.budget() if self._faulty else None
            if budget is not None:
                n = max(1, min(n, budget))
            data = self.rfile.read(n)
            if not data:
                raise Gone()
            self._body_left -= len(data)
            self._entry["in"] += len(data)
            if budget is not None and faults.moved(len(data)):
                self._cut_due = True
            return data

        return read

    def _read_all(self, cap: int) -> bytes:
        if self._body_left > cap:
            self.close_connection = True
            raise ApiError(413, "too_large", "请求内容过大")
        read = self._reader()
        parts = []
        while True:
            data = read()
            if not data:
                break
            parts.append(data)
        if self._cut_due:
            self._cut()
        return b"".join(parts)

    def _drain(self) -> None:
        """Discard an unread request body, so the connection can serve the next request."""
        if self._body_left > MAX_CHUNK:
            self.close_connection = True
            return
        while self._body_left > 0:
            data = self.rfile.read(min(BLOCK, self._body_left))
            if not data:
                raise Gone()
            self._body_left -= len(data)

    def _json_body(self, cap: int = MAX_JSON_BYTES) -> Dict[str, Any]:
        raw = self._read_all(cap)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "bad_json", "请求内容不是有效的 JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "bad_json", "请求内容应为 JSON 对象")
        return body

    def _send(self, status: int, body: bytes, content_type: str, headers: Optional[Dict[str, str]] = None) -> None:
        if self._body_left:
            self._drain()
        self._entry["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        faults = self.server.sim.faults
        view = memoryview(body)
        pos = 0
        while pos < len(body):
            n = min(BLOCK, len(body) - pos)
            budget = faults.budget() if self._faulty else None
            if budget is not None:
                n = max(1, min(n, budget))
            self.wfile.write(view[pos:pos + n])
            pos += n
            self._entry["out"] += n
            if budget is not None and faults.moved(n):
                self._cut()

    def _send_json(self, status: int, obj: Any, headers: Optional[Dict[str, str]] = None) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self._send(status, data, "application/json; charset=utf-8", headers)


class Drip:
    """The ``drip`` fault's writer: every byte written alone, after a pause (ends at shutdown)."""

    def __init__(self, raw: Any, pause: float, stopping: threading.Event) -> None:
        self._raw = raw
        self._pause = pause
        self._stopping = stopping

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        for i in range(len(view)):
            if self._stopping.wait(self._pause):
                raise Gone()
            self._raw.write(view[i:i + 1])
        return len(view)

    def flush(self) -> None:
        self._raw.flush()


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: "SimulatorServer"

    def __init__(self, address: Tuple[str, int], handler: Type[ApiHandler]) -> None:
        self.stopping = threading.Event()
        self._conns: Set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_all(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)
