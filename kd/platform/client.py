"""The monitoring platform client (docs/platform-api.md): one ``requests.Session``, bounded retries.

Every call has a **total deadline** (docs/platform-api.md §1.2): connecting, sending,
every read, every retry and every backoff wait of one call end by one monotonic time.
A watchdog thread (``kd.platform.watchdog``) shuts the call's socket down when the
exchange under way passes its deadline, so a platform that drips one byte every few
seconds, or a port that never answers, fails the call on time; each socket operation
is also bounded by ``timeout=(connect, read)`` and by the time left. The deadlines:

- ``probe()`` / ``server_time()``: ``probe_deadline`` (5 s), one try, never raises;
- every other small call (login, package info, 考试授权, 授权验证, 校时, a report, upload
  status): ``deadline`` (30 s) for all its tries;
- transfers (the package download, a result upload): ``2 · deadline + size / min_rate``
  for the whole call (``min_rate`` 64 KiB/s), and the bytes must keep pace: a package
  body at most ``deadline`` seconds behind ``min_rate``, an upload chunk of ``n`` bytes
  within ``deadline + n / min_rate``.

Calls that are safe to repeat (GETs, login, lock sync, reports carrying an
``Idempotency-Key``, the upload steps, which are guarded by offsets) are retried with
exponential backoff, at most ``retries`` extra times and only while the deadline leaves
time for it, on "no answer" (connection refused or reset, DNS, timeout, a body cut
short, the deadline of one exchange) and on HTTP 429/502/503/504. A 401 makes the
client log in again once.

Errors are ``UserError``s, in Chinese, naming the offline fallback (手工导入, 续报):

- ``PlatformUnreachable``: the platform did not answer (network down, DNS, timeout,
  dropped connection, the deadline passed — the cause then says after how long);
- ``PlatformRefused``: it answered with an HTTP error; the platform's own message is shown;
- ``FormatError`` (from ``kd.formats``): an artefact arrived but failed verification.

Everything the platform signs is verified with the configured ``TrustedKeys`` before it
is returned. Downloads stream to a ``.part`` file with a size cap and are removed when
anything fails, so a half file is never left behind.

A client may be shared between threads (the token is guarded by a lock; requests'
connection pool is thread-safe; each thread's call has its own deadline). ``close()``
ends any backoff wait and cuts any exchange under way at once; a closed client refuses
every call (``PlatformUnreachable``) and ``probe()`` is False.

This module has the API calls; the session, deadlines, retries and errors are
``kd.platform.transport``'s (``Transport``, the base of ``PlatformClient``).
"""

import datetime
import hashlib
import json as jsonlib
import logging
import os
import secrets
import tempfile
from typing import Any, Callable, Dict, Optional

import requests

from kd.core.ports import Downloaded
from kd.errors import StoreError, UserError
from kd.fileio import remove_quietly, sha256_file
from kd.formats import documents
from kd.formats.package import load_package
from kd.formats.timeutil import parse_time
from kd.platform.transport import (
    API,
    BLOCK,
    DEADLINE,
    MAX_DOCUMENT_BYTES,
    MAX_JSON_BYTES,
    MIN_RATE,
    OPERATIONS,
    PROBE_DEADLINE,
    RETRY_STATUSES,
    GiB,
    KiB,
    MiB,
    Retry,
    Transport,
    failure_text,
    now_cst,
    refused,
    unreachable,
)

__all__ = [
    "API", "BLOCK", "DEADLINE", "INCIDENTS", "MAX_DOCUMENT_BYTES", "MAX_JSON_BYTES", "MIN_RATE", "OPERATIONS",
    "PROBE_DEADLINE", "RECOVERY_STATUS", "REPORT_KINDS", "RETRY_STATUSES", "ROOM_STATUS", "SEAL_CHECK", "SESSION_ENDED",
    "SESSION_STARTED", "UPLOAD_STATUS", "GiB", "KiB", "MiB", "PackageDownload", "PlatformClient", "new_report_key",
    "now_cst", "refused", "unreachable",
]

log = logging.getLogger(__name__)

#: report kinds (docs/platform-api.md §6)
SEAL_CHECK = "seal_check"
ROOM_STATUS = "room_status"
SESSION_STARTED = "session_started"
SESSION_ENDED = "session_ended"
RECOVERY_STATUS = "recovery_status"
UPLOAD_STATUS = "upload_status"
INCIDENTS = "incidents"  # a session's 考场情况记录 and 补时 (kd.core.incidentreport, docs/platform-api.md §6.2)
REPORT_KINDS = (SEAL_CHECK, ROOM_STATUS, SESSION_STARTED, SESSION_ENDED, RECOVERY_STATUS, UPLOAD_STATUS, INCIDENTS)


def new_report_key() -> str:
    """A fresh idempotency key for a report (store it with the report in the outbox)."""
    return "kd-" + secrets.token_hex(16)


#: a downloaded and verified package (``path``, ``package``): the core port's record, not a second one
PackageDownload = Downloaded


class PlatformClient(Transport):
    """Talks to the monitoring platform for one site (see the module docstring; the constructor's
    arguments are ``Transport``'s)."""

    # -- login and probe -------------------------------------------------------------

    def login(self) -> Dict[str, Any]:
        """Log in with site code + platform password; the platform's answer (token, exam name...)."""
        def once() -> Dict[str, Any]:
            resp = self._send("POST", "/login", "login", auth=False, stream=True,
                              json={"site_code": self.site_code, "password": self._password})
            body = self._json(resp, "login")
            if not isinstance(body.get("token"), str):
                raise refused("login", resp.status_code, "平台未返回登录令牌")
            with self._token_lock:
                self._token = body["token"]
            return body

        return self._with_retries("login", once)

    def _ping(self) -> bytes:
        """The ping's body (a 2xx answer): one try within ``probe_deadline``."""
        def once() -> bytes:
            resp = self._send("GET", "/ping", "probe", auth=False, stream=True)
            try:
                return self._read_capped(resp, MAX_JSON_BYTES, "probe")
            finally:
                resp.close()

        return self._with_retries("probe", once, retries=0, budget=self.probe_deadline)

    def probe(self) -> bool:
        """True when the platform answers its ping within ``probe_deadline`` (网络连接: 正常); never raises."""
        try:
            self._ping()
            return True
        except UserError as e:
            log.debug("platform probe failed: %s", e.detail or e.cause)
            return False

    def server_time(self) -> Optional[datetime.datetime]:
        """The platform's clock from its ping (for the 封场检测 clock check); None when unreachable."""
        try:
            body = jsonlib.loads(self._ping().decode("utf-8"))
            return parse_time(str(body.get("server_time", "")), "server_time")
        except (UserError, ValueError, AttributeError) as e:
            log.debug("platform time unavailable: %s", e)
            return None

    # -- downloads -------------------------------------------------------------------

    def package_info(self) -> Dict[str, Any]:
        """``{"site_code", "publish_time", "size", "sha256"}`` of the latest package."""
        return self._call_json("GET", "/site/package/info", "package_info")

    def download_package(self, folder: Optional[str] = None,
                         loaded_publish_time: Optional[str] = None) -> PackageDownload:
        """Download, verify and load the site package; the file is kept in ``folder``.

        The bytes stream to a ``.part`` file (at most ``max_package_bytes``), are checked
        against the announced length and SHA-256, renamed to ``package-<sha256[:16]>.zip``
        and loaded with ``load_package`` (signature, site, rollback against
        ``loaded_publish_time``, members...). On any failure nothing is left behind.
        Raises ``PlatformUnreachable``, ``PlatformRefused`` or ``FormatError``.
        """
        folder = folder or self.download_dir or tempfile.gettempdir()
        os.makedirs(folder, exist_ok=True)
        try:
            final = self._with_retries("package", lambda: self._fetch_package(folder))
        except OSError as e:
            raise StoreError(f"无法保存下载的考场数据包（{folder}）", "请检查磁盘空间和写入权限后重试。",
                             detail=repr(e)) from e
        try:
            package = load_package(final, self.trusted, self.site_code, loaded_publish_time)
        except BaseException:
            remove_quietly(final)
            raise
        return PackageDownload(final, package)

    def _fetch_package(self, folder: str) -> str:
        op = "package"
        # identity: the byte count and hash are checked against the bytes as sent
        resp = self._send("GET", "/site/package", op, stream=True, headers={"Accept-Encoding": "identity"})
        part = os.path.join(folder, "package-{}.part".format(secrets.token_hex(6)))
        try:
            announced = resp.headers.get("Content-Length")
            expected = int(announced) if announced and announced.isdigit() else None
            if expected is not None and expected > self.max_package_bytes:
                raise refused(op, resp.status_code, f"考场数据包过大（{expected} 字节）")
            pace = self._pacer(expected if expected is not None else self.max_package_bytes)
            digest = hashlib.sha256()
            total = 0
            with open(part, "wb") as out:
                try:
                    pace(0)
                    for block in resp.iter_content(BLOCK):
                        total += len(block)
                        if total > self.max_package_bytes:
                            raise refused(op, resp.status_code, f"考场数据包过大（超过 {self.max_package_bytes} 字节）")
                        out.write(block)
                        digest.update(block)
                        pace(total)
                except requests.exceptions.RequestException as e:
                    raise Retry(unreachable(
                        op, f"package download cut after {total} bytes: {failure_text(e)}")) from None
                out.flush()
                os.fsync(out.fileno())
            if expected is not None and total != expected:
                raise Retry(unreachable(op, f"package download short: {total} of {expected} bytes"))
            sha = digest.hexdigest()
            announced_sha = resp.headers.get("X-KD-SHA256")
            if announced_sha and announced_sha.lower() != sha:
                raise Retry(unreachable(op, f"package sha256 {sha} != announced {announced_sha}"))
            final = os.path.join(folder, "package-{}.zip".format(sha[:16]))
            os.replace(part, final)
            log.info("downloaded site package: %d bytes, sha256 %s", total, sha)
            return final
        except BaseException:
            remove_quietly(part)
            raise
        finally:
            resp.close()

    def download_authorization(self, session_id: str) -> documents.SessionAuthorization:
        """The verified 考试授权 (.PTQ) of a session (``.raw`` holds the bytes to store)."""
        data = self._call_bytes(f"/sessions/{_segment(session_id)}/authorization", "authorization")
        return documents.load_session_authorization(data, self.trusted, self.site_code, self.clock(),
                                                    session_id=session_id, skew=self.skew)

    def download_verification(self, session_id: str,
                              lock_id: Optional[str] = None) -> documents.AuthorizationVerification:
        """The verified 授权验证 data of a session (bound to ``lock_id`` when given)."""
        data = self._call_bytes(f"/sessions/{_segment(session_id)}/verification", "verification")
        return documents.load_authorization_verification(data, self.trusted, self.site_code, self.clock(),
                                                         session_id=session_id, lock_id=lock_id, skew=self.skew)

    def sync_lock(self, lock_id: str, lock_time: float) -> documents.SyncTicket:
        """Dongle clock sync (校时): send the lock id and its clock (Unix seconds), get the signed ticket.

        Run on the internet PC; write ``ticket.raw`` into the dongle. The ticket is
        verified here (signature, lock, site) with ``skew`` of tolerance for this PC's clock.
        """
        def once() -> bytes:
            resp = self._send("POST", "/lock/sync", "sync", stream=True,
                              json={"lock_id": lock_id, "lock_time": lock_time})
            try:
                return self._read_capped(resp, MAX_DOCUMENT_BYTES, "sync")
            finally:
                resp.close()

        data = self._with_retries("sync", once)
        return documents.load_sync_ticket(data, self.trusted, self.clock(), lock_id=lock_id,
                                          site_code=self.site_code, skew=self.skew)

    # -- reports ---------------------------------------------------------------------

    def post_report(self, kind: str, data: Dict[str, Any], key: str, *, session_id: Optional[str] = None,
                    room_code: Optional[str] = None, created_at: Optional[str] = None) -> Dict[str, Any]:
        """Report to the platform; recorded once per ``key`` however often it is sent.

        ``kind``: one of ``REPORT_KINDS``; ``key``: the report's idempotency key (keep it
        with the report in the outbox, see ``new_report_key``). Returns
        ``{"report_id", "received_at", "duplicate"}``.
        """
        if kind not in REPORT_KINDS:
            raise ValueError("unknown report kind: " + kind)
        body: Dict[str, Any] = {"kind": kind, "site_code": self.site_code, "data": data,
                                "created_at": created_at or self.clock().replace(microsecond=0).isoformat()}
        if session_id is not None:
            body["session_id"] = session_id
        if room_code is not None:
            body["room_code"] = room_code
        return self._call_json("POST", "/reports", "report", json=body, headers={"Idempotency-Key": key})

    # -- resumable upload ------------------------------------------------------------

    def upload_status(self, upload_id: str) -> Dict[str, Any]:
        """The platform's view of an upload: offset, size, state (``open``/``committed``)."""
        return self._call_json("GET", f"/uploads/{_segment(upload_id)}", "upload")

    def upload_result(self, path: str, *, session_id: str, room_code: str, file_id: Optional[str] = None,
                      attempts: Optional[int] = None,
                      progress: Optional[Callable[[int, int], None]] = None) -> documents.UploadReceipt:
        """Upload a result file, resuming from the platform's offset; the verified receipt.

        Each attempt asks the platform for the upload (created or found by session,
        room, file id, size and SHA-256) and its offset, sends the rest in chunks with
        ``Upload-Offset``, commits, and verifies the signed receipt against the file's
        size and SHA-256. On "no answer" it waits and tries again, ``attempts`` times in
        all (default ``retries + 1``); the next call (续报) resumes where it stopped.

        Deadlines: the whole call (every attempt) ends within ``transfer_deadline(size)``;
        creating, committing and each chunk's exchange have ``deadline`` seconds, a chunk of
        ``n`` bytes ``deadline + n / min_rate``.
        """
        op = "upload"
        file_id = file_id or os.path.basename(path)
        try:
            sha, size = sha256_file(path)
        except OSError as e:
            raise UserError(f"无法读取要上报的文件：{path}", "请确认文件存在且未被其他程序占用后重试。",
                            detail=repr(e)) from e
        tries = (self.retries + 1) if attempts is None else max(1, attempts)

        def once() -> documents.UploadReceipt:
            state = self._json(self._send("POST", "/uploads", op, stream=True, budget=self.deadline, json={
                "session_id": session_id, "room_code": room_code, "file_id": file_id,
                "size": size, "sha256": sha}), op)
            if state.get("state") != "committed":
                state = self._send_rest(path, state, size, progress)
            receipt = state.get("receipt")
            if not isinstance(receipt, str):
                raise refused(op, 200, "平台未返回上报回执")
            return documents.load_upload_receipt(receipt.encode("utf-8"), self.trusted, self.site_code,
                                                 session_id=session_id, room_code=room_code, file_id=file_id,
                                                 sha256=sha, size=size)

        return self._with_retries(op, once, retries=tries - 1, budget=self.transfer_deadline(size))

    def _send_rest(self, path: str, state: Dict[str, Any], size: int,
                   progress: Optional[Callable[[int, int], None]]) -> Dict[str, Any]:
        op = "upload"
        upload_id = _segment(str(state.get("upload_id", "")))
        offset = _offset_of(state, size, op)
        max_chunk = state.get("max_chunk")
        chunk = min(self.chunk_size, max_chunk) if isinstance(max_chunk, int) and max_chunk > 0 else self.chunk_size
        log.info("upload %s: %d of %d bytes already on the platform", upload_id, offset, size)
        with open(path, "rb") as f:
            while offset < size:
                f.seek(offset)
                data = f.read(min(chunk, size - offset))
                if not data:
                    raise UserError("上报文件在上报过程中被改动或截短：" + path, "请重新生成上报文件后再上报。")
                resp = self._send("PUT", f"/uploads/{upload_id}/data", op, data=data, stream=True, ok=(409,),
                                  budget=self.deadline + len(data) / self.min_rate,
                                  headers={"Upload-Offset": str(offset),
                                           "Content-Type": "application/octet-stream"})
                answer = self._json(resp, op)
                if resp.status_code == 409:
                    err = answer.get("error")
                    if not isinstance(err, dict):
                        err = {}
                    if err.get("code") == "already_committed":
                        break
                    if err.get("code") != "offset_mismatch":
                        raise refused(op, 409, str(err.get("message", "上报冲突")))
                    log.info("upload %s: platform is at offset %s, not %d", upload_id, answer.get("offset"), offset)
                offset = _offset_of(answer, size, op)
                if progress is not None:
                    progress(offset, size)
        return self._json(self._send("POST", f"/uploads/{upload_id}/commit", op, stream=True, json={},
                                     budget=self.deadline), op)


def _offset_of(answer: Dict[str, Any], size: int, op: str) -> int:
    offset = answer.get("offset")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= size:
        raise refused(op, 200, f"平台返回的断点位置无效（{offset!r}）")
    return offset


def _segment(value: str) -> str:
    """A path segment we send: codes only, so nothing can be smuggled into the URL."""
    if not value or not all(c.isalnum() or c in "_-" for c in value) or not value.isascii():
        raise ValueError(f"not a valid code for a URL: {value!r}")
    return value
