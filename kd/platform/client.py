"""The monitoring platform client (docs/platform-api.md): one ``requests.Session``, bounded retries.

Every call has explicit ``(connect, read)`` timeouts. Calls that are safe to repeat
(GETs, login, lock sync, reports carrying an ``Idempotency-Key``, the upload steps,
which are guarded by offsets) are retried with exponential backoff, at most ``retries``
extra times, on "no answer" (connection refused or reset, DNS, timeout, a body cut
short) and on HTTP 429/502/503/504. A 401 makes the client log in again once.

Errors are ``UserError``s, in Chinese, naming the offline fallback (手工导入):

- ``PlatformUnreachable``: the platform did not answer (network down, DNS, timeout,
  dropped connection);
- ``PlatformRefused``: it answered with an HTTP error; the platform's own message is shown;
- ``FormatError`` (from ``kd.formats``): an artefact arrived but failed verification.

Everything the platform signs is verified with the configured ``TrustedKeys`` before it
is returned. Downloads stream to a ``.part`` file with a size cap and are removed when
anything fails, so a half file is never left behind.

A client may be shared between threads (the token is guarded by a lock; requests'
connection pool is thread-safe); ``close()`` also ends any backoff wait at once.
"""

import datetime
import hashlib
import json as jsonlib
import logging
import os
import secrets
import tempfile
import threading
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import requests

from kd.errors import FormatError, PlatformRefused, PlatformUnreachable, StoreError, UserError
from kd.fileio import sha256_file
from kd.formats import documents
from kd.formats.package import SitePackage, load_package
from kd.formats.signing import TrustedKeys
from kd.formats.timeutil import CST, parse_time

log = logging.getLogger(__name__)

API = "/api/v1"
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MAX_DOCUMENT_BYTES = 1 * MiB
MAX_JSON_BYTES = 1 * MiB
RETRY_STATUSES = (429, 502, 503, 504)
BLOCK = 64 * KiB

#: report kinds (docs/platform-api.md §6)
SEAL_CHECK = "seal_check"
ROOM_STATUS = "room_status"
SESSION_STARTED = "session_started"
SESSION_ENDED = "session_ended"
RECOVERY_STATUS = "recovery_status"
UPLOAD_STATUS = "upload_status"
REPORT_KINDS = (SEAL_CHECK, ROOM_STATUS, SESSION_STARTED, SESSION_ENDED, RECOVERY_STATUS, UPLOAD_STATUS)

_RETRY_NET = "请检查本机网络连接（网线、代理、防火墙）后重试。"

#: operation → (what the user was doing, what to do instead when the platform cannot be used)
OPERATIONS: Dict[str, Tuple[str, str]] = {
    "probe": ("检测网络连接", ""),
    "login": ("登录监控平台", "如网络无法恢复，可用“手工导入”导入从监控平台获取的文件"
                              "（考场数据包 .zip、考试授权 .PTQ、授权验证文件）。"),
    "package_info": ("查询考场数据包", "如网络无法恢复，请用“手工导入”选择监控平台提供的考场数据包文件（.zip）。"),
    "package": ("下载考场数据包", "如网络无法恢复，请用“手工导入”选择监控平台提供的考场数据包文件（.zip）。"),
    "authorization": ("下载考试授权", "如网络无法恢复，请用“手工导入”选择该场次的考试授权文件（.PTQ）。"),
    "verification": ("下载授权验证", "如网络无法恢复，请用“手工导入”选择该场次的授权验证文件（.KDV）。"),
    "sync": ("机考锁校时", "请确认这台联网电脑能访问监控平台后重新校时；只有看到“校时授权成功!”才算校时完成。"),
    "report": ("上报状态", "上报内容已保存，网络恢复后系统会自动重新上报，无需重复操作。"),
    "upload": ("上报考试数据", "已上报的部分不会丢失：网络恢复后请点击“续报”，将从断点继续上报。"),
}


def now_cst() -> datetime.datetime:
    return datetime.datetime.now(CST)


def new_report_key() -> str:
    """A fresh idempotency key for a report (store it with the report in the outbox)."""
    return "kd-" + secrets.token_hex(16)


class PackageDownload(NamedTuple):
    """A downloaded and verified package: the file kept at ``path`` and the loaded package."""

    path: str
    package: SitePackage


class _Retry(Exception):
    """A failure worth another try: carries the error to raise when tries run out."""

    def __init__(self, error: UserError, retry_after: float = 0.0) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def unreachable(op: str, detail: str) -> PlatformUnreachable:
    label, fallback = OPERATIONS.get(op, ("访问监控平台", ""))
    return PlatformUnreachable(
        f"无法连接监控平台，{label}失败（网络不通或平台无响应）。",
        _RETRY_NET + fallback,
        detail=detail,
    )


def refused(op: str, status: int, message: str, detail: str = "") -> PlatformRefused:
    label, fallback = OPERATIONS.get(op, ("访问监控平台", ""))
    error = PlatformRefused(
        f"监控平台拒绝了“{label}”：{message}（HTTP {status}）",
        ("请稍后重试。" if status >= 500 or status == 429 else "请核对考点代码、平台密码和场次后重试。") + fallback,
        detail=detail or f"HTTP {status}: {message}",
    )
    error.status = status  # type: ignore[attr-defined]
    return error


def _error_message(resp: requests.Response) -> Tuple[str, str, Dict[str, Any]]:
    """(code, Chinese message, whole error body) of an error answer, tolerant of any body."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code", ""))
        message = str(err.get("message") or resp.reason or "未知错误")[:300]
        return code, message, body
    return "", (resp.reason or "未知错误")[:300], {}


class PlatformClient:
    """Talks to the monitoring platform for one site (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        site_code: str,
        password: str,
        trusted: TrustedKeys,
        *,
        timeout: Tuple[float, float] = (5.0, 30.0),
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        chunk_size: int = 4 * MiB,
        max_package_bytes: int = 2 * GiB,
        download_dir: Optional[str] = None,
        skew: datetime.timedelta = datetime.timedelta(minutes=5),
        clock: Callable[[], datetime.datetime] = now_cst,
        user_agent: str = "kaodian",
    ) -> None:
        if retries < 0 or backoff < 0 or chunk_size < 1:
            raise ValueError("retries, backoff and chunk_size must be positive")
        self.base_url = base_url.rstrip("/")
        self.site_code = site_code
        self._password = password
        self.trusted = trusted
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.chunk_size = chunk_size
        self.max_package_bytes = max_package_bytes
        self.download_dir = download_dir
        self.skew = skew
        self.clock = clock
        self.http = requests.Session()
        self.http.headers["User-Agent"] = user_agent
        self._token: Optional[str] = None
        self._token_lock = threading.Lock()
        self._closed = threading.Event()

    # -- life ----------------------------------------------------------------------

    def close(self) -> None:
        """End backoff waits and close pooled connections."""
        self._closed.set()
        self.http.close()

    def __enter__(self) -> "PlatformClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.base_url + API + path

    def _delay(self, attempt: int, retry_after: float) -> float:
        delay = min(self.max_backoff, self.backoff * (2 ** attempt))
        if retry_after:
            delay = max(delay, min(retry_after, self.max_backoff)) if self.backoff else 0.0
        return delay

    def _with_retries(self, op: str, fn: Callable[[], Any], retries: Optional[int] = None) -> Any:
        """Run ``fn`` until it does not raise ``_Retry``, at most ``retries + 1`` times."""
        tries = (self.retries if retries is None else retries) + 1
        for attempt in range(tries):
            try:
                return fn()
            except _Retry as r:
                if attempt + 1 >= tries or self._closed.is_set():
                    raise r.error from None
                delay = self._delay(attempt, r.retry_after)
                log.info("platform %s: %s; retry %d/%d in %.2fs", op, r.error.detail, attempt + 1, tries - 1, delay)
                if delay:
                    self._closed.wait(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, path: str, op: str, *, auth: bool = True, json: Any = None,
              data: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None, stream: bool = False,
              timeout: Optional[Tuple[float, float]] = None, ok: Tuple[int, ...] = ()) -> requests.Response:
        """One exchange (plus one re-login on 401). Returns a 2xx response (or one whose status is in ``ok``).

        Raises ``_Retry`` for what may pass (no answer, 429/502/503/504) and
        ``PlatformRefused`` for any other HTTP error.
        """
        relogged = False
        while True:
            hdrs = dict(headers or {})
            token = None
            if auth:
                token = self._token or self._login_once(op)
                hdrs["Authorization"] = "Bearer " + token
            try:
                resp = self.http.request(method, self._url(path), json=json, data=data, headers=hdrs,
                                         stream=stream, timeout=timeout or self.timeout, allow_redirects=False)
            except requests.exceptions.RequestException as e:
                raise _Retry(unreachable(op, f"{method} {path}: {type(e).__name__}: {e}")) from None
            if resp.status_code == 401 and auth and not relogged:
                resp.close()
                with self._token_lock:
                    if self._token == token:
                        self._token = None
                relogged = True
                continue
            if resp.status_code < 300 or resp.status_code in ok:
                return resp
            try:
                code, message, _body = _error_message(resp)
            except requests.exceptions.RequestException as e:
                raise _Retry(unreachable(op, f"{method} {path}: error body lost: {e}")) from None
            finally:
                resp.close()
            error = refused(op, resp.status_code, message, f"{method} {path}: HTTP {resp.status_code} {code}")
            if resp.status_code in RETRY_STATUSES:
                try:
                    retry_after = float(resp.headers.get("Retry-After", "0"))
                except ValueError:
                    retry_after = 0.0
                raise _Retry(error, retry_after)
            raise error

    def _json(self, resp: requests.Response, op: str) -> Dict[str, Any]:
        try:
            raw = self._read_capped(resp, MAX_JSON_BYTES, op)
        finally:
            resp.close()
        try:
            body = jsonlib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise refused(op, resp.status_code, "平台的回答无法解析") from None
        if not isinstance(body, dict):
            raise refused(op, resp.status_code, "平台的回答格式不符")
        return body

    def _read_capped(self, resp: requests.Response, cap: int, op: str) -> bytes:
        """The whole body, at most ``cap`` bytes; a body cut short is a ``_Retry``."""
        parts = []
        total = 0
        try:
            for block in resp.iter_content(BLOCK):
                total += len(block)
                if total > cap:
                    raise refused(op, resp.status_code, f"平台返回的内容过大（超过 {cap} 字节）")
                parts.append(block)
        except requests.exceptions.RequestException as e:
            raise _Retry(unreachable(op, f"body cut short after {total} bytes: {e}")) from None
        return b"".join(parts)

    def _call_json(self, method: str, path: str, op: str, **kw: Any) -> Dict[str, Any]:
        return self._with_retries(op, lambda: self._json(self._send(method, path, op, stream=True, **kw), op))

    def _call_bytes(self, path: str, op: str, cap: int = MAX_DOCUMENT_BYTES) -> bytes:
        def once() -> bytes:
            resp = self._send("GET", path, op, stream=True)
            try:
                return self._read_capped(resp, cap, op)
            finally:
                resp.close()

        return self._with_retries(op, once)

    # -- login and probe -------------------------------------------------------------

    def _login_once(self, op: str) -> str:
        """Log in on behalf of ``op`` (one exchange, errors named after ``op``); the new token."""
        resp = self._send("POST", "/login", op, auth=False, stream=True,
                          json={"site_code": self.site_code, "password": self._password})
        body = self._json(resp, op)
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise refused(op, resp.status_code, "平台未返回登录令牌")
        with self._token_lock:
            self._token = token
        log.info("logged in to the platform as site %s", self.site_code)
        return token

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

    def probe(self, timeout: Tuple[float, float] = (2.0, 3.0)) -> bool:
        """True when the platform answers its ping (网络连接: 正常); never raises, never retries."""
        try:
            resp = self.http.get(self._url("/ping"), timeout=timeout, allow_redirects=False)
            resp.close()
            return resp.status_code == 200
        except requests.exceptions.RequestException as e:
            log.debug("platform probe failed: %s", e)
            return False

    def server_time(self, timeout: Tuple[float, float] = (2.0, 3.0)) -> Optional[datetime.datetime]:
        """The platform's clock from its ping (for the 封场检测 clock check); None when unreachable."""
        try:
            resp = self.http.get(self._url("/ping"), timeout=timeout, allow_redirects=False)
            body = resp.json() if resp.status_code == 200 else {}
            resp.close()
            return parse_time(str(body.get("server_time", "")), "server_time")
        except (requests.exceptions.RequestException, ValueError, FormatError, AttributeError) as e:
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
            _remove(final)
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
            digest = hashlib.sha256()
            total = 0
            with open(part, "wb") as out:
                try:
                    for block in resp.iter_content(BLOCK):
                        total += len(block)
                        if total > self.max_package_bytes:
                            raise refused(op, resp.status_code, f"考场数据包过大（超过 {self.max_package_bytes} 字节）")
                        out.write(block)
                        digest.update(block)
                except requests.exceptions.RequestException as e:
                    raise _Retry(unreachable(op, f"package download cut after {total} bytes: {e}")) from None
                out.flush()
                os.fsync(out.fileno())
            if expected is not None and total != expected:
                raise _Retry(unreachable(op, f"package download short: {total} of {expected} bytes"))
            sha = digest.hexdigest()
            announced_sha = resp.headers.get("X-KD-SHA256")
            if announced_sha and announced_sha.lower() != sha:
                raise _Retry(unreachable(op, f"package sha256 {sha} != announced {announced_sha}"))
            final = os.path.join(folder, "package-{}.zip".format(sha[:16]))
            os.replace(part, final)
            log.info("downloaded site package: %d bytes, sha256 %s", total, sha)
            return final
        except BaseException:
            _remove(part)
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
            state = self._json(self._send("POST", "/uploads", op, stream=True, json={
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

        return self._with_retries(op, once, retries=tries - 1)

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
                                  headers={"Upload-Offset": str(offset),
                                           "Content-Type": "application/octet-stream"})
                answer = self._json(resp, op)
                if resp.status_code == 409:
                    err = answer.get("error") if isinstance(answer.get("error"), dict) else {}
                    if err.get("code") == "already_committed":
                        break
                    if err.get("code") != "offset_mismatch":
                        raise refused(op, 409, str(err.get("message", "上报冲突")))
                    log.info("upload %s: platform is at offset %s, not %d", upload_id, answer.get("offset"), offset)
                offset = _offset_of(answer, size, op)
                if progress is not None:
                    progress(offset, size)
        return self._json(self._send("POST", f"/uploads/{upload_id}/commit", op, stream=True, json={}), op)


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




def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
