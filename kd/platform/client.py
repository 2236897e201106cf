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
"""

import datetime
import hashlib
import json as jsonlib
import logging
import os
import secrets
import tempfile
import threading
import time
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import requests

from kd.errors import PlatformRefused, PlatformUnreachable, StoreError, UserError
from kd.fileio import sha256_file
from kd.formats import documents
from kd.formats.package import SitePackage, load_package
from kd.formats.signing import TrustedKeys
from kd.formats.timeutil import CST, parse_time
from kd.platform.watchdog import Call, Watchdog, WatchedAdapter, current, running

log = logging.getLogger(__name__)

API = "/api/v1"
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MAX_DOCUMENT_BYTES = 1 * MiB
MAX_JSON_BYTES = 1 * MiB
RETRY_STATUSES = (429, 502, 503, 504)
BLOCK = 64 * KiB

#: total deadlines (docs/platform-api.md §1.2): a small call with all its tries; the ping;
#: the slowest transfer rate waited for (bytes/s)
DEADLINE = 30.0
PROBE_DEADLINE = 5.0
MIN_RATE = 64 * KiB

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


def unreachable(op: str, detail: str, after: Optional[float] = None) -> PlatformUnreachable:
    """The "no answer" error of ``op``; ``after``: the deadline (seconds) that passed, when that was the cause."""
    label, fallback = OPERATIONS.get(op, ("访问监控平台", ""))
    why = "网络不通或平台无响应" if after is None else "{} 秒内未完成，网络不通或平台响应过慢".format(_seconds(after))
    return PlatformUnreachable(
        f"无法连接监控平台，{label}失败（{why}）。",
        _RETRY_NET + fallback,
        detail=detail,
    )


def _seconds(value: float) -> str:
    return str(int(value)) if value >= 10 or value == int(value) else "{:.1f}".format(value)


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
        deadline: float = DEADLINE,
        probe_deadline: float = PROBE_DEADLINE,
        min_rate: float = MIN_RATE,
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
        """``timeout``: (connect, read) seconds for each socket operation; ``deadline``: the total of a
        small call, all tries; ``probe_deadline``: the ping's; ``min_rate``: the slowest transfer waited
        for, bytes/s (see the module docstring)."""
        if retries < 0 or backoff < 0 or chunk_size < 1:
            raise ValueError("retries, backoff and chunk_size must be positive")
        if deadline <= 0 or probe_deadline <= 0 or min_rate <= 0:
            raise ValueError("deadline, probe_deadline and min_rate must be positive")
        self.base_url = base_url.rstrip("/")
        self.site_code = site_code
        self._password = password
        self.trusted = trusted
        self.timeout = timeout
        self.deadline = float(deadline)
        self.probe_deadline = float(probe_deadline)
        self.min_rate = float(min_rate)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.chunk_size = chunk_size
        self.max_package_bytes = max_package_bytes
        self.download_dir = download_dir
        self.skew = skew
        self.clock = clock
        self.http = requests.Session()
        self.http.mount("http://", WatchedAdapter())
        self.http.mount("https://", WatchedAdapter())
        self.http.headers["User-Agent"] = user_agent
        self._token: Optional[str] = None
        self._token_lock = threading.Lock()
        self._closed = threading.Event()
        self._watchdog = Watchdog()

    # -- life ----------------------------------------------------------------------

    def close(self) -> None:
        """End backoff waits, cut exchanges under way, close pooled connections; later calls are refused."""
        self._closed.set()
        self._watchdog.close()
        self.http.close()

    def __enter__(self) -> "PlatformClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def transfer_deadline(self, size: int) -> float:
        """Seconds a transfer of ``size`` bytes may take in all (tries included): ``2·deadline + size/min_rate``."""
        return 2 * self.deadline + max(0, size) / self.min_rate

    # -- plumbing ------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.base_url + API + path

    def _delay(self, attempt: int, retry_after: float) -> float:
        delay = min(self.max_backoff, self.backoff * (2 ** attempt))
        if retry_after:
            delay = max(delay, min(retry_after, self.max_backoff)) if self.backoff else 0.0
        return delay

    def _with_retries(self, op: str, fn: Callable[[], Any], retries: Optional[int] = None,
                      budget: Optional[float] = None) -> Any:
        """Run ``fn`` as one call of ``budget`` seconds (default ``deadline``) until it does not raise ``_Retry``.

        At most ``retries + 1`` tries, each started only when the backoff wait before it
        ends before the deadline. When the deadline ends the call, the error is a
        ``PlatformUnreachable`` saying after how long (unless the platform's last answer
        was a 429/5xx refusal: that one is raised).
        """
        if self._closed.is_set():
            raise unreachable(op, "the platform client is closed")
        if current() is not None:  # a call inside a call (none in this module): it runs on the outer clock
            return fn()
        tries = (self.retries if retries is None else retries) + 1
        call = Call(op, self.deadline if budget is None else budget, self._watchdog)
        self._watchdog.add(call)
        try:
            with running(call):
                for attempt in range(tries):
                    try:
                        return fn()
                    except _Retry as r:
                        error = self._late(call, r.error)
                        if attempt + 1 >= tries or self._closed.is_set() or error is not r.error:
                            raise error from None
                        delay = self._delay(attempt, r.retry_after)
                        if delay >= call.left():
                            raise self._late(call, r.error, force=True) from None
                        log.info("platform %s: %s; retry %d/%d in %.2fs", op, r.error.detail, attempt + 1,
                                 tries - 1, delay)
                        if delay:
                            self._closed.wait(delay)
                raise AssertionError("unreachable")  # pragma: no cover
        finally:
            self._watchdog.remove(call)
            call.detach()

    def _late(self, call: Call, error: UserError, force: bool = False) -> UserError:
        """``error``, or the deadline's own error when the call's time is up (or ``force``) and no answer came."""
        if not (force or call.over()) or isinstance(error, PlatformRefused):
            return error
        spent = time.monotonic() - call.started
        log.info("platform %s: gave up after %.1fs (deadline %.1fs): %s", call.op, spent, call.budget, error.detail)
        return unreachable(call.op, "deadline {:.1f}s passed ({:.1f}s spent); last: {}".format(
            call.budget, spent, error.detail), after=call.budget)

    def _exchange(self, op: str, what: str, budget: Optional[float]) -> Tuple[float, float]:
        """Start an exchange on the current call's clock; its (connect, read) socket timeouts.

        Raises ``_Retry`` when no time is left for it.
        """
        call = current()
        if call is None:  # pragma: no cover - every exchange runs inside _with_retries
            return self.timeout
        left = call.exchange(budget)
        if left <= 0.01:
            raise _Retry(unreachable(op, f"{what}: no time left before the deadline"))
        return (min(self.timeout[0], left), min(self.timeout[1], left))

    def _send(self, method: str, path: str, op: str, *, auth: bool = True, json: Any = None,
              data: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None, stream: bool = False,
              budget: Optional[float] = None, ok: Tuple[int, ...] = ()) -> requests.Response:
        """One exchange (plus one re-login on 401). Returns a 2xx response (or one whose status is in ``ok``).

        The exchange (request, answer and the caller's reading of the body) has ``budget``
        seconds (default: what is left of the call). Raises ``_Retry`` for what may pass
        (no answer, the exchange's deadline, 429/502/503/504) and ``PlatformRefused`` for
        any other HTTP error.
        """
        relogged = False
        while True:
            hdrs = dict(headers or {})
            token = None
            if auth:
                token = self._token or self._login_once(op)
                hdrs["Authorization"] = "Bearer " + token
            timeout = self._exchange(op, f"{method} {path}", budget)
            try:
                resp = self.http.request(method, self._url(path), json=json, data=data, headers=hdrs,
                                         stream=stream, timeout=timeout, allow_redirects=False)
            except requests.exceptions.RequestException as e:
                raise _Retry(unreachable(op, f"{method} {path}: {_why(e)}")) from None
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
            raise _Retry(unreachable(op, f"body cut short after {total} bytes: {_why(e)}")) from None
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
                    raise _Retry(unreachable(op, f"package download cut after {total} bytes: {_why(e)}")) from None
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

    def _pacer(self, size: int) -> Callable[[int], None]:
        """After a transfer's headers: the call may now take ``transfer_deadline(size)`` in all, and
        ``pace(done)`` gives the next block its deadline: at most ``deadline`` seconds behind ``min_rate``."""
        call = current()
        start = time.monotonic()
        if call is not None:
            call.extend(self.transfer_deadline(size))

        def pace(done: int) -> None:
            if call is not None:
                call.pace(start + self.deadline + min(done + BLOCK, max(size, done)) / self.min_rate)

        return pace

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
                    err = answer.get("error") if isinstance(answer.get("error"), dict) else {}
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


def _why(e: BaseException) -> str:
    """An exception for the log, noting when the watchdog cut the exchange at its deadline."""
    call = current()
    cut = " (cut at the exchange's deadline)" if call is not None and call.cut else ""
    return f"{type(e).__name__}: {e}{cut}"


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
