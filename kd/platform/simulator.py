"""The monitoring platform simulator: docs/platform-api.md served on loopback, with faults.

    python -m kd.platform.simulator --port 8600 --data DIR [--site 11003 --rooms 30
        --sessions 2 --candidates 40 --first-start-in 60 --duration 90 --room-kb 1024
        --password kaodian] [--refuse 503|close --slow S --drip S --drop-after N
        --drop-count K --fail-every N]

On first run it makes its keys and a demo site in DIR (``kd.platform.simdata``), then
serves every endpoint of docs/platform-api.md on 127.0.0.1 with a
``ThreadingHTTPServer`` (HTTP/1.1, keep-alive). It prints its public key and writes it
to ``DIR/platform.pub`` for the app's drill mode. What it receives is kept under
``DIR/received`` (``kd.platform.simstore``).

Tests use it in-process: ``with start_simulator(data_dir, port=0, ...) as sim:`` gives a
running ``SimulatorServer`` (``sim.url``, ``sim.public_key``, ``sim.password``,
``sim.faults.set(...)``, ``sim.received()``), stopped cleanly by ``shutdown()``.

Inspection and control (simulator only, never faulted, no auth):
``GET /_sim/received``, ``GET /_sim/faults``, ``POST /_sim/faults`` (JSON with the
arguments of ``Faults.set``), ``POST /_sim/republish`` (new package publish time).
"""

import argparse
import hmac
import json
import logging
import re
import secrets
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from kd.formats.timeutil import format_time
from kd.platform.faults import Faults
from kd.platform.simdata import SimData, now_cst
from kd.platform.simstore import EventLog, ReportLog, UploadStore

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
API = "/api/v1"
MAX_JSON_BYTES = 256 * 1024
CHUNK_SIZE = 4 * 1024 * 1024
MAX_CHUNK = 16 * 1024 * 1024
MAX_UPLOAD = 4 * 1024 * 1024 * 1024
TOKEN_TTL = 12 * 3600
BLOCK = 64 * 1024
REPORT_KINDS = ("seal_check", "room_status", "session_started", "session_ended", "recovery_status",
                "upload_status")
KEY_RE = re.compile(r"[A-Za-z0-9._:-]{8,80}", re.ASCII)
CODE_RE = re.compile(r"[0-9A-Za-z_-]{1,32}", re.ASCII)
SHA_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
UPLOAD = r"(?P<upload>U[0-9a-f]{20})"


class _Cut(Exception):
    """The connection was cut on purpose (fault)."""


class _Gone(Exception):
    """The client went away in the middle of a request body."""


class ApiError(Exception):
    """An error answer: HTTP status, code and a Chinese message for the user."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


# (method, path regex, handler name, needs auth)
ROUTES: List[Tuple[str, "re.Pattern[str]", str, bool]] = [
    (m, re.compile(p), h, a)
    for m, p, h, a in [
        ("GET", API + r"/ping", "ping", False),
        ("POST", API + r"/login", "login", False),
        ("GET", API + r"/site/package/info", "package_info", True),
        ("GET", API + r"/site/package", "package", True),
        ("GET", API + r"/sessions/(?P<session>[0-9A-Za-z_-]{1,32})/authorization", "authorization", True),
        ("GET", API + r"/sessions/(?P<session>[0-9A-Za-z_-]{1,32})/verification", "verification", True),
        ("POST", API + r"/lock/sync", "lock_sync", True),
        ("POST", API + r"/reports", "report", True),
        ("POST", API + r"/uploads", "upload_create", True),
        ("GET", API + r"/uploads/" + UPLOAD, "upload_status", True),
        ("PUT", API + r"/uploads/" + UPLOAD + r"/data", "upload_data", True),
        ("POST", API + r"/uploads/" + UPLOAD + r"/commit", "upload_commit", True),
        ("GET", r"/_sim/received", "sim_received", False),
        ("GET", r"/_sim/faults", "sim_faults_get", False),
        ("POST", r"/_sim/faults", "sim_faults_set", False),
        ("POST", r"/_sim/republish", "sim_republish", False),
    ]
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kd-platform-sim/1"
    timeout = 30  # idle keep-alive connections go away
    disable_nagle_algorithm = True  # headers and body are separate writes: no delayed-ACK stalls
    server: "_HTTPServer"

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
        entry = {"method": method, "path": path, "status": None, "in": 0, "out": 0}
        self._entry = entry
        drip = self.server.sim.faults.drip if self._faulty else 0.0
        if drip:
            entry["fault"] = "drip"
            self.wfile = _Drip(self._plain_wfile, drip, self.server.stopping)  # type: ignore[assignment]
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
        except _Cut:
            entry["fault"] = "cut"
            self.close_connection = True
        except (_Gone, ConnectionError, socket.timeout):
            entry["fault"] = entry.get("fault") or "client-gone"
            self.close_connection = True
        finally:
            self.wfile = self._plain_wfile

    def _route(self, method: str, path: str) -> Tuple[Tuple[str, Any, str, bool], Dict[str, str]]:
        allowed = False
        for route in ROUTES:
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
        raise _Cut()

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
                    raise _Gone()
                n = 1
            budget = faults.budget() if self._faulty else None
            if budget is not None:
                n = max(1, min(n, budget))
            data = self.rfile.read(n)
            if not data:
                raise _Gone()
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
                raise _Gone()
            self._body_left -= len(data)

    def _json_body(self) -> Dict[str, Any]:
        raw = self._read_all(MAX_JSON_BYTES)
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

    # -- field checks --------------------------------------------------------------

    @staticmethod
    def _field(body: Dict[str, Any], name: str, kind: type, pattern: Optional["re.Pattern[str]"] = None) -> Any:
        value = body.get(name)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ApiError(400, "bad_request", "缺少或错误的字段：" + name)
        if pattern is not None and not pattern.fullmatch(value):
            raise ApiError(400, "bad_request", "字段格式错误：" + name)
        return value

    def _upload(self, upload: str) -> Dict[str, Any]:
        meta = self.server.sim.uploads.get(upload)
        if meta is None or meta["site_code"] != self._site:
            raise ApiError(404, "no_such_upload", "上报任务不存在，请重新开始上报")
        return meta

    # -- API -----------------------------------------------------------------------

    def h_ping(self) -> None:
        self._send_json(200, {"ok": True, "api": 1, "server_time": format_time(now_cst())})

    def h_login(self) -> None:
        body = self._json_body()
        site = body.get("site_code")
        password = body.get("password")
        sim = self.server.sim
        if not isinstance(site, str) or not isinstance(password, str):
            raise ApiError(400, "bad_request", "请填写考点代码和平台密码")
        good = hmac.compare_digest(site.encode("utf-8"), sim.data.site_code.encode("utf-8"))
        good = hmac.compare_digest(password.encode("utf-8"), sim.data.password.encode("utf-8")) and good
        if not good:
            raise ApiError(401, "bad_credentials", "考点代码或平台密码错误")
        token = sim.new_token(site)
        self._send_json(200, {"token": token, "expires_in": TOKEN_TTL, "site_code": site,
                              "exam_name": sim.data.site["exam_name"], "server_time": format_time(now_cst())})

    def h_package_info(self) -> None:
        sim = self.server.sim
        data = sim.data.package_bytes()
        self._send_json(200, {"site_code": sim.data.site_code, "publish_time": sim.data.config["publish_time"],
                              "size": len(data), "sha256": sim.package_sha256()})

    def h_package(self) -> None:
        sim = self.server.sim
        data = sim.data.package_bytes()
        code = sim.data.site_code
        quoted = _quote(f"考场数据包({code}).zip")
        self._send(200, data, "application/zip", {
            "X-KD-SHA256": sim.package_sha256(),
            "X-KD-Publish-Time": sim.data.config["publish_time"],
            "Content-Disposition": f"attachment; filename=\"package-{code}.zip\"; filename*=UTF-8''{quoted}",
        })

    def _document(self, build: Callable[[str], bytes], session: str, suffix: str) -> None:
        try:
            data = build(session)
        except KeyError:
            raise ApiError(404, "no_such_session", "场次不存在：" + session) from None
        self._send(200, data, "application/octet-stream", {
            "Content-Disposition": f"attachment; filename=\"{self.server.sim.data.site_code}-{session}{suffix}\""})

    def h_authorization(self, session: str) -> None:
        self._document(self.server.sim.data.authorization, session, ".PTQ")

    def h_verification(self, session: str) -> None:
        try:
            opens = self.server.sim.data.verification_opens(session)
        except KeyError:
            raise ApiError(404, "no_such_session", "场次不存在：" + session) from None
        if now_cst() < opens:
            raise ApiError(409, "not_open_yet",
                           f"本场次的授权验证尚未开放（开考前 2 小时起可下载，开放时间 {format_time(opens)}）",
                           opens_at=format_time(opens))
        self._document(self.server.sim.data.verification, session, ".KDV")

    def h_lock_sync(self) -> None:
        body = self._json_body()
        lock_id = self._field(body, "lock_id", str, CODE_RE)
        lock_time = body.get("lock_time")
        if isinstance(lock_time, bool) or not isinstance(lock_time, (int, float)):
            raise ApiError(400, "bad_request", "缺少或错误的字段：lock_time")
        sim = self.server.sim
        if lock_id != sim.data.lock_id:
            raise ApiError(403, "lock_not_registered", f"机考锁 {lock_id} 未登记到考点 {self._site}")
        server_time = now_cst()
        ticket = sim.data.sync_ticket(lock_id, server_time)
        sim.syncs.append({"lock_id": lock_id, "lock_time": lock_time, "server_time": format_time(server_time),
                          "drift_seconds": round(lock_time - time.time(), 3)})
        self._send(200, ticket, "application/octet-stream")

    def h_report(self) -> None:
        key = self.headers.get("Idempotency-Key", "")
        if not KEY_RE.fullmatch(key):
            self._drain()
            raise ApiError(400, "idempotency_key_required", "缺少或错误的 Idempotency-Key 请求头")
        body = self._json_body()
        kind = body.get("kind")
        if kind not in REPORT_KINDS:
            raise ApiError(400, "bad_report_kind", f"未知的上报类型：{kind}")
        if not isinstance(body.get("data"), dict):
            raise ApiError(400, "bad_request", "缺少或错误的字段：data")
        for name in ("session_id", "room_code"):
            if body.get(name) is not None:
                self._field(body, name, str, CODE_RE)
        if body.get("site_code", self._site) != self._site:
            raise ApiError(403, "wrong_site", "上报的考点代码与登录的考点不符")
        outcome, line = self.server.sim.reports.record(key, body, format_time(now_cst()))
        if outcome == "conflict":
            raise ApiError(409, "idempotency_conflict", "同一上报编号对应了不同的内容",
                           report_id=line["report_id"])
        self._send_json(201 if outcome == "new" else 200, {
            "report_id": line["report_id"], "received_at": line["received_at"], "duplicate": outcome == "duplicate"})

    def h_upload_create(self) -> None:
        body = self._json_body()
        session = self._field(body, "session_id", str, CODE_RE)
        room = self._field(body, "room_code", str, CODE_RE)
        file_id = self._field(body, "file_id", str)
        size = self._field(body, "size", int)
        sha256 = self._field(body, "sha256", str, SHA_RE)
        if not (1 <= len(file_id) <= 128) or any(ord(c) < 32 for c in file_id):
            raise ApiError(400, "bad_request", "字段格式错误：file_id")
        if not 0 <= size <= MAX_UPLOAD:
            raise ApiError(413, "too_large", "文件过大")
        sim = self.server.sim
        if sim.data.session(session) is None:
            raise ApiError(404, "no_such_session", "场次不存在：" + session)
        created, meta = sim.uploads.find_or_create(self._site, session, room, file_id, size, sha256,
                                                   format_time(now_cst()))
        self._send_json(201 if created else 200, self._upload_view(meta))

    @staticmethod
    def _upload_view(meta: Dict[str, Any]) -> Dict[str, Any]:
        view = {k: meta[k] for k in ("upload_id", "session_id", "room_code", "file_id", "size", "sha256",
                                     "state", "offset") if k in meta}
        view["session_id"] = meta["session"]
        view["chunk_size"] = CHUNK_SIZE
        view["max_chunk"] = MAX_CHUNK
        if meta.get("receipt"):
            view["receipt"] = meta["receipt"]
        return view

    def h_upload_status(self, upload: str) -> None:
        self._send_json(200, self._upload_view(self._upload(upload)))

    def h_upload_data(self, upload: str) -> None:
        sim = self.server.sim
        meta = self._upload(upload)
        try:
            offset = int(self.headers.get("Upload-Offset", ""))
        except ValueError:
            raise ApiError(400, "bad_offset", "缺少或错误的 Upload-Offset 请求头") from None
        if self.headers.get("Content-Length") is None:
            raise ApiError(411, "length_required", "缺少 Content-Length 请求头")
        length = self._body_left
        if length > MAX_CHUNK:
            self.close_connection = True
            raise ApiError(413, "chunk_too_large", f"分块过大（上限 {MAX_CHUNK} 字节）", max_chunk=MAX_CHUNK)
        lock = sim.uploads.lock_of(upload)
        with lock:
            current = sim.uploads.offset(upload)
            if meta["state"] != "open":
                raise ApiError(409, "already_committed", "该文件已上报完成", offset=current)
            if offset != current:
                raise ApiError(409, "offset_mismatch", "断点位置不符，请从平台记录的位置继续", offset=current)
            if offset + length > meta["size"]:
                raise ApiError(413, "beyond_size", "数据超出声明的文件大小", offset=current)
            self._entry["offset"] = offset
            self._entry["length"] = length
            new_offset = sim.uploads.append(upload, self._reader())
            if self._cut_due:
                self._cut()
        self._send_json(200, {"upload_id": upload, "offset": new_offset, "size": meta["size"]})

    def h_upload_commit(self, upload: str) -> None:
        sim = self.server.sim
        self._read_all(MAX_JSON_BYTES)
        meta = self._upload(upload)
        with sim.uploads.lock_of(upload):
            meta = self._upload(upload)
            if meta["state"] == "committed":
                self._send_json(200, self._upload_view(meta))
                return
            if meta["offset"] != meta["size"]:
                got = "{} / {}".format(meta["offset"], meta["size"])
                raise ApiError(409, "incomplete", f"文件尚未传完（已收到 {got} 字节）", offset=meta["offset"])
            digest = sim.uploads.hash_of(upload)
            if digest != meta["sha256"]:
                sim.uploads.reset(upload)
                raise ApiError(422, "hash_mismatch", "平台收到的文件校验值不符，已清除，请重新上报", offset=0)
            receipt = sim.data.receipt(meta["session"], meta["room_code"], meta["file_id"], digest, meta["size"])
            meta["state"] = "committed"
            meta["receipt"] = receipt.decode("utf-8")
            meta["committed_at"] = format_time(now_cst())
            sim.uploads.save(meta)
        self._send_json(200, self._upload_view(meta))

    # -- inspection ----------------------------------------------------------------

    def h_sim_received(self) -> None:
        self._send_json(200, self.server.sim.received())

    def h_sim_faults_get(self) -> None:
        self._send_json(200, self.server.sim.faults.as_dict())

    def h_sim_faults_set(self) -> None:
        body = self._json_body()
        try:
            self.server.sim.faults.set(**body)
        except (TypeError, ValueError) as e:
            raise ApiError(400, "bad_faults", str(e)) from None
        self._send_json(200, self.server.sim.faults.as_dict())

    def h_sim_republish(self) -> None:
        self._read_all(MAX_JSON_BYTES)
        self.server.sim.republish()
        self._send_json(200, {"publish_time": self.server.sim.data.config["publish_time"]})


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


class _Drip:
    """The ``drip`` fault's writer: every byte written alone, after a pause (ends at shutdown)."""

    def __init__(self, raw: Any, pause: float, stopping: threading.Event) -> None:
        self._raw = raw
        self._pause = pause
        self._stopping = stopping

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        for i in range(len(view)):
            if self._stopping.wait(self._pause):
                raise _Gone()
            self._raw.write(view[i:i + 1])
        return len(view)

    def flush(self) -> None:
        self._raw.flush()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: "SimulatorServer"

    def __init__(self, address: Tuple[str, int]) -> None:
        self.stopping = threading.Event()
        self._conns: Set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

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


class SimulatorServer:
    """A running (or ready to run) simulated platform on 127.0.0.1."""

    def __init__(self, data_dir: str, port: int = 0, **site: Any) -> None:
        self.data = SimData(data_dir, **site)
        self.faults = Faults()
        self.reports = ReportLog(self.data.received_dir)
        self.syncs = EventLog(self.data.received_dir + "/syncs.jsonl")
        self.uploads = UploadStore(self.data.received_dir + "/uploads")
        self._tokens: Dict[str, Tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._requests: List[Dict[str, Any]] = []
        self._package_sha: Optional[str] = None
        self._thread: Optional[threading.Thread] = None
        self.httpd = _HTTPServer((HOST, port))
        self.httpd.sim = self
        self.port = self.httpd.server_address[1]
        self.url = f"http://{HOST}:{self.port}"

    # -- identity for tests and the CLI ---------------------------------------------

    @property
    def public_key(self) -> bytes:
        return self.data.public_key

    @property
    def password(self) -> str:
        return self.data.password

    @property
    def site_code(self) -> str:
        return self.data.site_code

    # -- state used by handlers --------------------------------------------------------

    def new_token(self, site: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (site, time.time() + TOKEN_TTL)
        return token

    def check_token(self, token: str) -> Optional[str]:
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[1] < time.time():
            return None
        return entry[0]

    def expire_tokens(self) -> None:
        """Forget every login (tests: the client must log in again by itself)."""
        with self._lock:
            self._tokens.clear()

    def record_request(self, entry: Dict[str, Any]) -> None:
        with self._lock:
            entry["n"] = len(self._requests) + 1
            self._requests.append(entry)
            if len(self._requests) > 100000:
                del self._requests[:50000]

    def faults_cut_note(self, entry: Dict[str, Any]) -> None:
        entry["fault"] = entry.get("fault") or "cut"

    def package_sha256(self) -> str:
        if self._package_sha is None:
            import hashlib

            self._package_sha = hashlib.sha256(self.data.package_bytes()).hexdigest()
        return self._package_sha

    def republish(self) -> None:
        self.data.republish()
        self._package_sha = None

    def republish_at(self, first_start_in: int) -> None:
        """Move the sessions so the first starts in ``first_start_in`` minutes; new package."""
        self.data.reschedule(first_start_in)
        self._package_sha = None

    def requests(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._requests]

    def received(self) -> Dict[str, Any]:
        """What the simulator received: reports, uploads (no bytes), syncs, requests."""
        return {
            "reports": self.reports.all(),
            "uploads": self.uploads.all(),
            "syncs": self.syncs.all(),
            "requests": self.requests(),
            "faults": self.faults.as_dict(),
        }

    # -- running -------------------------------------------------------------------

    def start(self) -> "SimulatorServer":
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="platform-sim", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def shutdown(self) -> None:
        """Stop serving, end slow responses and open connections, close the socket."""
        self.httpd.stopping.set()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.httpd.close_all()
        self.httpd.server_close()

    def __enter__(self) -> "SimulatorServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def start_simulator(data_dir: str, port: int = 0, **site: Any) -> SimulatorServer:
    """A simulator serving in a background thread (use as a context manager or call ``shutdown()``)."""
    return SimulatorServer(data_dir, port, **site).start()


def _refuse_arg(text: str) -> Any:
    return text if text == "close" else int(text)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kd.platform.simulator",
                                     description="监控平台模拟器（仅 127.0.0.1）")
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--data", required=True, help="模拟器数据目录（密钥、演示考点、收到的上报）")
    parser.add_argument("--site", default="11003", help="考点代码（仅首次运行时生效）")
    parser.add_argument("--rooms", type=int, default=30)
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=40, help="每考场每场次考生数")
    parser.add_argument("--first-start-in", type=int, metavar="MIN",
                        help="第一场次在多少分钟后开考（默认 60；对已有数据目录：重排场次并重新发布数据包）")
    parser.add_argument("--duration", type=int, default=90, metavar="MIN", help="每场次考试时长（分钟）")
    parser.add_argument("--room-kb", type=int, default=1024, help="每个考场数据文件的大小（KB）")
    parser.add_argument("--password", help="平台密码（默认 kaodian）")
    parser.add_argument("--refuse", type=_refuse_arg, help="故障：对每个请求回答此 HTTP 状态，或 close 直接断开")
    parser.add_argument("--slow", type=float, default=0.0, help="故障：每个请求延迟的秒数")
    parser.add_argument("--drip", type=float, default=0.0, metavar="S",
                        help="故障：逐字节收发请求和回答，每字节间隔 S 秒")
    parser.add_argument("--drop-after", type=int, default=0, metavar="BYTES", help="故障：传输 N 字节后断开连接")
    parser.add_argument("--drop-count", type=int, default=1, help="故障：断开的次数")
    parser.add_argument("--fail-every", type=int, default=0, metavar="N", help="故障：每第 N 个请求回答 503")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sim = SimulatorServer(args.data, args.port, site_code=args.site, rooms=args.rooms, sessions=args.sessions,
                          candidates=args.candidates, first_start_in=args.first_start_in or 60,
                          duration=args.duration, room_kb=args.room_kb, password=args.password)
    if args.first_start_in is not None and not sim.data.created:
        sim.republish_at(args.first_start_in)
    sim.faults.set(refuse=args.refuse, slow=args.slow, drip=args.drip, drop_after=args.drop_after,
                   drop_count=args.drop_count, fail_every=args.fail_every)
    sim.data.package_bytes()
    out = sys.stdout
    out.write(f"监控平台模拟器 {sim.url}  考点 {sim.site_code}  平台密码 {sim.password}\n")
    with open(sim.data.public_key_path, encoding="ascii") as f:
        out.write(f"平台公钥 platform public key (base64, key id {sim.data.key_id}): {f.read().strip()}\n")
    out.write(f"  written to {sim.data.public_key_path} (trust it in drill mode)\n")
    out.write("dongle: {} registered to site {} (seed and public key in {})\n".format(
        sim.data.lock_id, sim.data.dongle["site_code"], sim.data.root + "/dongle.json"))
    out.write("sessions: {}\n".format(", ".join("{} {} {}".format(s["id"], s["name"], s["start"])
                                                for s in sim.data.site["sessions"])))
    out.flush()
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
