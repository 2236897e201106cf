"""The platform API's endpoints in the simulator: the route table and one ``h_<name>`` method per route.

Each endpoint answers as docs/platform-api.md says (the contract): ping, login, the site
package and its info, 考试授权 and 授权验证 per session, lock sync, idempotent reports
(an ``upload_status`` with a completeness proof: verified with the platform's own key,
its roster and package compared with the package published for the site
(``kd.formats.proofroster``), and kept with both verdicts, §6.1),
the resumable upload (create or find, status, data at an offset, commit with a signed
receipt), and the simulator's own ``/_sim/...`` inspection and control routes (never
faulted, no auth). The HTTP plumbing is ``kd.platform.simhttp.ApiHandler``'s; what is
signed and stored is ``kd.platform.simdata`` / ``kd.platform.simstore``'s.
"""

import hmac
import logging
import re
import time
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import quote

from kd.formats import proof as proof_format
from kd.formats import proofroster
from kd.formats.signing import TrustedKeys
from kd.formats.timeutil import format_time
from kd.platform import simincidents
from kd.platform.simdata import now_cst
from kd.platform.simhttp import API, MAX_CHUNK, MAX_JSON_BYTES, ApiError, ApiHandler, Route

log = logging.getLogger(__name__)

CHUNK_SIZE = 4 * 1024 * 1024
MAX_UPLOAD = 4 * 1024 * 1024 * 1024
TOKEN_TTL = 12 * 3600
#: a report's body may be this large (an ``upload_status`` carries the session's completeness proof)
MAX_REPORT_BYTES = 16 * 1024 * 1024
REPORT_KINDS = ("seal_check", "room_status", "session_started", "session_ended", "recovery_status",
                "upload_status", simincidents.KIND)
KEY_RE = re.compile(r"[A-Za-z0-9._:-]{8,80}", re.ASCII)
CODE_RE = re.compile(r"[0-9A-Za-z_-]{1,32}", re.ASCII)
SHA_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
UPLOAD = r"(?P<upload>U[0-9a-f]{20})"

#: (method, path regex, handler name, needs auth)
ROUTES: List[Route] = [
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



class Handler(ApiHandler):
    """The simulated platform's endpoints (see the module docstring)."""

    routes = ROUTES

    # -- field checks --------------------------------------------------------------

    @staticmethod
    def _field(body: Dict[str, Any], name: str, kind: type, pattern: Optional["re.Pattern[str]"] = None) -> Any:
        value = body.get(name)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ApiError(400, "bad_request", "缺少或错误的字段：" + name)
        if pattern is not None and not pattern.fullmatch(str(value)):  # patterns go with kind=str
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
        body = self._json_body(MAX_REPORT_BYTES)
        kind = body.get("kind")
        if kind not in REPORT_KINDS:
            raise ApiError(400, "bad_report_kind", f"未知的上报类型：{kind}")
        if not isinstance(body.get("data"), dict):
            raise ApiError(400, "bad_request", "缺少或错误的字段：data")
        proof = body["data"].get("proof") if kind == "upload_status" else None
        if proof is not None and not isinstance(proof, dict):
            raise ApiError(400, "bad_request", "字段格式错误：data.proof")
        for name in ("session_id", "room_code"):
            if body.get(name) is not None:
                self._field(body, name, str, CODE_RE)
        if body.get("site_code", self._site) != self._site:
            raise ApiError(403, "wrong_site", "上报的考点代码与登录的考点不符")
        if kind == simincidents.KIND:  # docs/platform-api.md §6.2: 400 bad_incidents for a bad shape
            simincidents.check(body)
        outcome, line = self.server.sim.reports.record(key, body, format_time(now_cst()))
        if outcome == "conflict":
            raise ApiError(409, "idempotency_conflict", "同一上报编号对应了不同的内容",
                           report_id=line["report_id"])
        if outcome == "new" and proof is not None:
            self._keep_proof(line, proof)
        self._send_json(201 if outcome == "new" else 200, {
            "report_id": line["report_id"], "received_at": line["received_at"], "duplicate": outcome == "duplicate"})

    def _keep_proof(self, line: Dict[str, Any], proof: Dict[str, Any]) -> None:
        """Verify the completeness proof of an ``upload_status`` with the platform's own key
        (``kd.formats.proof.verify``), compare its roster and package with the package
        published for the site (``kd.formats.proofroster``: what only the platform can check),
        and keep it with both verdicts (``ProofStore``)."""
        sim = self.server.sim
        document = proof_format.encode(proof)
        verdict = proof_format.verify(document, TrustedKeys([sim.public_key]))
        try:
            published = proofroster.published_package(sim.data.package_bytes())
            platform = proofroster.summary(proofroster.compare_roster(proof.get("body"), published))
        except Exception:  # noqa: BLE001 - the platform's own package unreadable: its bug, the proof is still kept
            log.exception("simulator: cannot read the published package to check a proof's roster")
            platform = {"ok": False, "checks": [],
                        "message": proofroster.PACKAGE_PLATFORM + ": 平台无法读取其发布的考场数据包，未能核对名单。"}
        try:
            sha256: Optional[str] = proof_format.document_sha256(document)
        except Exception:  # noqa: BLE001 - an unreadable proof has no hash; its verdict says why
            sha256 = None
        report = line["report"]
        sim.proofs.add(line["report_id"], document, {
            "site_code": report.get("site_code", self._site), "session_id": report["data"].get("session_id"),
            "received_at": line["received_at"], "sha256": sha256, "ok": verdict.ok, "message": verdict.message(),
            "failures": [c.as_dict() for c in verdict.failures], "platform": platform})

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
        sim = self.server.sim
        received = sim.received()
        received["incidents"] = simincidents.latest(received["reports"])  # §6.2: each session's latest version
        self._send_json(200, received)

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
    return quote(text, safe="")
