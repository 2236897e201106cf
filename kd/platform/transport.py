"""The platform client's plumbing: one ``requests.Session``, total deadlines, bounded retries, the errors.

``Transport`` is the base of ``kd.platform.client.PlatformClient``: ``_with_retries`` runs
one call on its own clock (``kd.platform.watchdog``: the call's deadline, each
exchange's deadline, the watchdog that cuts a socket past it) with exponential backoff;
``_send`` does one exchange (a re-login on 401, ``Retry`` for "no answer" and
429/502/503/504, ``PlatformRefused`` for other HTTP errors); ``_json`` / ``_read_capped``
read a body with a size cap; ``_pacer`` gives a transfer its pace. The rules (which calls
are retried, every deadline, the error texts) are in the docstring of
``kd.platform.client`` and docs/platform-api.md §1.2.
"""

import datetime
import json as jsonlib
import logging
import threading
import time
from typing import Any, Callable, ContextManager, Dict, Optional, Tuple

import requests

from kd.errors import PlatformRefused, PlatformUnreachable, UserError
from kd.formats.signing import TrustedKeys
from kd.formats.timeutil import CST
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


def now_cst() -> datetime.datetime:
    return datetime.datetime.now(CST)


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


class Retry(Exception):
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
    error.status = status
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


class Transport(ContextManager["Transport"]):
    """One site's ``requests.Session`` to the platform: deadlines, retries, login, capped reads.

    ``kd.platform.client.PlatformClient`` adds the API calls (see the docstring there)."""

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
        """Run ``fn`` as one call of ``budget`` seconds (default ``deadline``) until it does not raise ``Retry``.

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
                    except Retry as r:
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

        Raises ``Retry`` when no time is left for it.
        """
        call = current()
        if call is None:  # pragma: no cover - every exchange runs inside _with_retries
            return self.timeout
        left = call.exchange(budget)
        if left <= 0.01:
            raise Retry(unreachable(op, f"{what}: no time left before the deadline"))
        return (min(self.timeout[0], left), min(self.timeout[1], left))

    def _send(self, method: str, path: str, op: str, *, auth: bool = True, json: Any = None,
              data: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None, stream: bool = False,
              budget: Optional[float] = None, ok: Tuple[int, ...] = ()) -> requests.Response:
        """One exchange (plus one re-login on 401). Returns a 2xx response (or one whose status is in ``ok``).

        The exchange (request, answer and the caller's reading of the body) has ``budget``
        seconds (default: what is left of the call). Raises ``Retry`` for what may pass
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
                raise Retry(unreachable(op, f"{method} {path}: {failure_text(e)}")) from None
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
                raise Retry(unreachable(op, f"{method} {path}: error body lost: {e}")) from None
            finally:
                resp.close()
            error = refused(op, resp.status_code, message, f"{method} {path}: HTTP {resp.status_code} {code}")
            if resp.status_code in RETRY_STATUSES:
                try:
                    retry_after = float(resp.headers.get("Retry-After", "0"))
                except ValueError:
                    retry_after = 0.0
                raise Retry(error, retry_after)
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
        """The whole body, at most ``cap`` bytes; a body cut short is a ``Retry``."""
        parts = []
        total = 0
        try:
            for block in resp.iter_content(BLOCK):
                total += len(block)
                if total > cap:
                    raise refused(op, resp.status_code, f"平台返回的内容过大（超过 {cap} 字节）")
                parts.append(block)
        except requests.exceptions.RequestException as e:
            raise Retry(unreachable(op, f"body cut short after {total} bytes: {failure_text(e)}")) from None
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

    # -- login and pacing --------------------------------------------------------------

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


def failure_text(e: BaseException) -> str:
    """An exception for the log, noting when the watchdog cut the exchange at its deadline."""
    call = current()
    cut = " (cut at the exchange's deadline)" if call is not None and call.cut else ""
    return f"{type(e).__name__}: {e}{cut}"
