"""Login and settings (screens.md §登录, §参数设置; manual §6.4 密码修改).

Accounts live in the settings DB, table ``accounts`` (``kd.core.model``), one document
per user::

    {"user", "salt" (hex, 16 random bytes), "iterations" (>= 600,000), "hash" (hex,
     PBKDF2-HMAC-SHA256 of the UTF-8 password), "must_change": bool, "failures": int,
     "locked_until": time|None, "changed_at": time|None}

Rules:

- The default account admin / 888 exists until its password is changed. Until then its
  document is implicit (``default_account()``: a fixed salt, since everyone knows 888,
  and ``must_change`` true; it is stored when it first records an attempt): ``login``
  answers ``must_change=True`` and ``require_changed`` refuses every other service call
  by that account until ``change_password`` replaced it.
- A new password has at least 6 characters and differs from 888 and from the old one.
- Failed logins back off exponentially: from the 3rd consecutive failure a user must wait
  ``2 ** (failures - 3)`` seconds (capped at 15 minutes) before the next attempt.
  ``failures`` and ``locked_until`` are persisted in the account document, so a restart
  does not reset them; a success resets them. A wrong old password in
  ``change_password`` counts as a failure too.
- **Record first, then check (fail closed).** An attempt on an account (one not refused
  by the back-off) is written to the settings DB as a failure -- ``failures + 1`` and the
  ``locked_until`` that follows -- *before* the password is hashed; only a right
  password then writes ``failures = 0``. So the back-off is durable before any answer,
  a kill between the two writes leaves one failure too many (never one too few), and
  when the settings DB cannot be written (full disk, unwritable data folder: the store
  raises ``StoreError``) the attempt is refused with ``LoginNotRecorded`` without looking
  at the password -- the right password too -- until a write succeeds again. While that
  lasts, unknown names get the same answer.
- An unknown user and a wrong password get the same answer (and cost the same hash);
  failures of unknown names are counted in memory only (nothing is stored for names
  that are not accounts).
- First login (系统设置): ``setup(site_code, mode, actor)``; the site code (4 to 10
  digits, e.g. 11003) is fixed afterwards, only 系统初始化 clears it; the mode is
  changed afterwards only by 模考转正考. The site code must be the one the plugged-in
  dongle was registered to (lock protocol ``SITE``, ``Dongle.site_code()``): another code
  is refused (``SetupRefused``), so a typo surfaces here and not as HTTP 401 at 载入;
  no dongle, or one registered to no site, is refused (``LockError``). A dongle too old
  to report its site (protocol revision 1) is accepted with a logged warning and
  ``dongle_site: null`` in the audit: refusing it would leave a site with such a dongle
  no way to set up at all, and the platform still refuses a wrong code at 载入.
"""

import base64
import binascii
import datetime
import hashlib
import hmac
import logging
import math
import re
import secrets
from typing import Any, Dict, List, Optional, Tuple, cast

from kd.core import model, names
from kd.core.context import Context
from kd.core.records import Account, JsonObject, as_doc
from kd.errors import StoreError, UserError
from kd.formats.timeutil import format_time, parse_time

log = logging.getLogger(__name__)

#: PBKDF2-HMAC-SHA256 work factor for new hashes (DESIGN.md §5: at least 600,000)
ITERATIONS = 600000
MIN_ITERATIONS = 600000
SALT_BYTES = 16
MIN_PASSWORD_CHARS = 6
MAX_PASSWORD_CHARS = 128

DEFAULT_USER = "admin"
DEFAULT_PASSWORD = "888"  # noqa: S105 - the documented initial password (screens.md §登录)
#: the default account's fixed salt and its hash of "888" at ``MIN_ITERATIONS``
DEFAULT_SALT = b"kaodian-default0"
DEFAULT_HASH = "b9711f030844bec87cb753f3df6ec9be3e85e267bd6130a01a195617870c8698"

#: failures allowed before the back-off starts, and its cap (seconds)
FREE_FAILURES = 2
MAX_BACKOFF_S = 15 * 60
_UNKNOWN_TRACKED = 256

SITE_CODE_RE = re.compile(r"[0-9]{4,10}", re.ASCII)
MODES = {model.FORMAL: model.FORMAL, model.MOCK: model.MOCK,
         model.MODE_LABELS[model.FORMAL]: model.FORMAL, model.MODE_LABELS[model.MOCK]: model.MOCK}


class LoginFailed(UserError):
    """Wrong user or password, or too many failures (wait ``wait_s`` seconds)."""

    def __init__(self, cause: str, remedy: str, wait_s: int = 0) -> None:
        super().__init__(cause, remedy)
        self.wait_s = wait_s


class LoginNotRecorded(LoginFailed):
    """The attempt could not be recorded (the settings DB cannot be written): refused, the
    right password too, until recording works again."""


class PasswordChangeRequired(UserError):
    """The account still has the default password: only 修改密码 is allowed."""


class PasswordRejected(UserError):
    """The new password breaks a rule (too short, 888, same as the old one, no match)."""


class SetupRefused(UserError):
    """系统设置 refused: bad site code or mode, or a site code already fixed."""


def hash_password(password: str, salt: bytes, iterations: int) -> str:
    """PBKDF2-HMAC-SHA256 of the UTF-8 password, as hex."""
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations).hex()


def backoff_seconds(failures: int) -> int:
    """How long a user waits after ``failures`` consecutive failures (0: no wait)."""
    if failures <= FREE_FAILURES:
        return 0
    exponent = failures - FREE_FAILURES - 1
    return MAX_BACKOFF_S if exponent >= 10 else min(MAX_BACKOFF_S, 2 ** exponent)


def wait_text(seconds: int) -> str:
    """Seconds as Chinese text: "8 秒", "2 分 8 秒", "15 分钟"."""
    seconds = max(1, int(seconds))
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return "{} 秒".format(rest)
    if not rest:
        return "{} 分钟".format(minutes)
    return "{} 分 {} 秒".format(minutes, rest)


def default_account() -> Account:
    """The document of admin / 888 as it exists until changed."""
    return {"user": DEFAULT_USER, "salt": DEFAULT_SALT.hex(), "iterations": MIN_ITERATIONS, "hash": DEFAULT_HASH,
            "must_change": True, "failures": 0, "locked_until": None, "changed_at": None}


class AccountService:
    """Accounts, login with back-off, password change, first-login settings."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # failures of names that are not accounts (so they are answered alike): name -> (n, until)
        self._unknown: Dict[str, Tuple[int, Optional[datetime.datetime]]] = {}
        # the last attempt on an account could not be recorded (refuse everyone alike until a write works)
        self._unrecorded = False

    # -- accounts ----------------------------------------------------------------------------
    def _account(self, user: str) -> Optional[Account]:
        doc = cast(Optional[Account], self.ctx.stores.settings.get(model.ACCOUNTS, user))
        if doc is None and user == DEFAULT_USER:
            return default_account()
        return doc

    def _check(self, doc: Optional[Account], password: str) -> bool:
        """Constant-time check of ``password`` against ``doc`` (a dummy hash for no doc)."""
        if doc is None:
            hash_password(password, b"\0" * SALT_BYTES, ITERATIONS)
            return False
        try:
            salt = binascii.unhexlify(doc["salt"])
            iterations = int(doc["iterations"])
            stored = str(doc["hash"])
        except (KeyError, TypeError, ValueError, binascii.Error):
            log.error("account %r has an unreadable password record", doc.get("user"))
            hash_password(password, b"\0" * SALT_BYTES, ITERATIONS)
            return False
        if iterations < MIN_ITERATIONS:
            log.error("account %r has a password hash below %d iterations; refused", doc.get("user"),
                      MIN_ITERATIONS)
            return False
        return hmac.compare_digest(hash_password(password, salt, iterations), stored)

    def _locked_for(self, user: str, doc: Optional[Account]) -> int:
        """Seconds ``user`` must still wait (0: may try now)."""
        if doc is not None:
            until = doc.get("locked_until")
            until_t = parse_time(until) if until else None
        else:
            until_t = self._unknown.get(user, (0, None))[1]
        if until_t is None:
            return 0
        left = (until_t - self.ctx.now()).total_seconds()
        return int(math.ceil(left)) if left > 0 else 0

    def _refuse_if_locked(self, user: str, doc: Optional[Account]) -> None:
        wait = self._locked_for(user, doc)
        if wait:
            raise LoginFailed("登录失败次数过多，暂时不能登录。", "请在 {} 后重试。".format(wait_text(wait)), wait)

    def _count_attempt(self, user: str, doc: Optional[Account], action: str) -> Tuple[int, int]:
        """Record this attempt as a failure before the password is checked: ``(failures, wait_s)``.

        For an account the count and its ``locked_until`` are written to the settings DB
        (``LoginNotRecorded`` when that fails); for an unknown name they are kept in memory.
        """
        now = self.ctx.now()
        if doc is not None:
            failures = int(doc.get("failures") or 0) + 1
        else:
            failures = self._unknown.pop(user, (0, None))[0] + 1
        wait = backoff_seconds(failures)
        until = now + datetime.timedelta(seconds=wait) if wait else None
        if doc is not None:
            self._write_account(user, _changed(doc, failures=failures,
                                               locked_until=format_time(until) if until else None), action)
        else:
            self._unknown[user] = (failures, until)
            while len(self._unknown) > _UNKNOWN_TRACKED:
                del self._unknown[next(iter(self._unknown))]
            if self._unrecorded:  # answered like an account while recording does not work
                raise _not_recorded()
        return failures, wait

    def _write_account(self, user: str, doc: Account, action: str) -> None:
        """Store an account's login record; ``LoginNotRecorded`` when the settings DB refuses."""
        try:
            self.ctx.stores.settings.put(model.ACCOUNTS, user, as_doc(doc))
        except StoreError as e:
            first = not self._unrecorded
            self._unrecorded = True
            if first:  # one log line and audit entry per outage, not per attempt
                log.error("login of %r refused: the attempt cannot be recorded (%s)", user, e.detail or e.cause)
                try:
                    self.ctx.record(user or "?", names.ACCOUNT_LOGIN_NOT_RECORDED, attempt=action, error=e.cause)
                except UserError as audit_error:
                    log.error("cannot audit the refused login either: %s", audit_error.detail or audit_error.cause)
            raise _not_recorded() from e
        if self._unrecorded:
            log.warning("login attempts are recorded again (%s)", action)
            self._unrecorded = False

    def _fail(self, user: str, failures: int, wait: int, action: str) -> LoginFailed:
        """Audit a failure already counted by ``_count_attempt`` and build the answer
        (修改密码 names the 原密码: the user is known there)."""
        self.ctx.record(user or "?", action, failures=failures, wait_s=wait)
        what = "原密码" if action == names.ACCOUNT_PASSWORD_CHANGE_FAILED else "账号或密码"
        if wait:
            return LoginFailed("{}错误，已连续失败 {} 次。".format(what, failures),
                               "请在 {} 后重试。".format(wait_text(wait)), wait)
        if action == names.ACCOUNT_PASSWORD_CHANGE_FAILED:
            return LoginFailed("原密码错误。", "请重新输入原密码（即当前登录使用的密码）。")
        return LoginFailed("账号或密码错误。", "请检查账号和密码后重新输入（默认账号 admin）。")

    # -- public ------------------------------------------------------------------------------
    def login(self, user: str, password: str) -> JsonObject:
        """Check a login; return ``{"user", "must_change"}``.

        Raises ``LoginFailed`` (the same text for an unknown user and a wrong password;
        with the time to wait once the back-off started) and ``LoginNotRecorded`` (a
        ``LoginFailed``: the attempt cannot be recorded, so it is refused unchecked).
        """
        user = (user or "").strip()
        with self.ctx.lock:
            doc = self._account(user)
            self._refuse_if_locked(user, doc)
            failures, wait = self._count_attempt(user, doc, names.ACCOUNT_LOGIN)
            if not self._check(doc, password or ""):
                raise self._fail(user, failures, wait, names.ACCOUNT_LOGIN_FAILED)
            assert doc is not None
            doc = _changed(doc, failures=0, locked_until=None)
            self._write_account(user, doc, names.ACCOUNT_LOGIN)
            must_change = bool(doc.get("must_change"))
            self.ctx.record(user, names.ACCOUNT_LOGIN, must_change=must_change)
            return {"user": user, "must_change": must_change}

    def must_change(self, user: str) -> bool:
        """True when ``user`` is an account that still has to replace its password."""
        doc = self._account(user)
        return bool(doc and doc.get("must_change"))

    def require_changed(self, user: str) -> None:
        """Refuse (``PasswordChangeRequired``) any call by an account that must change its password.

        Names that are not accounts (automatic actors such as ``lan:<room>``) pass.
        """
        if self.must_change(user):
            raise PasswordChangeRequired("账号 {} 仍在使用初始密码，请先修改密码。".format(user),
                                         "请使用“修改密码”设置新密码（至少 {} 位，不能是 888）。"
                                         .format(MIN_PASSWORD_CHARS))

    def change_password(self, user: str, old: str, new: str, confirm: Optional[str] = None) -> JsonObject:
        """修改密码: check ``old``, store a fresh salted hash of ``new``.

        Raises ``PasswordRejected`` (new password too short/long, 888, same as the old one,
        confirmation differs) before anything is checked, ``LoginFailed`` for a wrong old
        password or an unknown user (counted like a failed login, recorded first: see the
        module docstring; ``LoginNotRecorded`` when it cannot be), ``StoreError`` when the
        new password cannot be stored (it is not changed).
        """
        user = (user or "").strip()
        new = new or ""
        if confirm is not None and confirm != new:
            raise PasswordRejected("两次输入的新密码不一致。", "请重新输入新密码并确认。")
        if len(new) < MIN_PASSWORD_CHARS:
            raise PasswordRejected("新密码太短（至少 {} 位）。".format(MIN_PASSWORD_CHARS), "请设置一个更长的新密码。")
        if len(new) > MAX_PASSWORD_CHARS:
            raise PasswordRejected("新密码太长（至多 {} 位）。".format(MAX_PASSWORD_CHARS), "请设置一个较短的新密码。")
        if new == DEFAULT_PASSWORD or new == (old or ""):
            raise PasswordRejected("新密码不能是初始密码 888，也不能与原密码相同。", "请设置一个新的密码。")
        if new.strip() != new or any(ord(c) < 32 for c in new):
            raise PasswordRejected("新密码不能以空格开头或结尾，也不能含控制字符。", "请重新输入新密码。")
        with self.ctx.lock:
            doc = self._account(user)
            self._refuse_if_locked(user, doc)
            failures, wait = self._count_attempt(user, doc, "account.password_change")
            if not self._check(doc, old or ""):
                raise self._fail(user, failures, wait, names.ACCOUNT_PASSWORD_CHANGE_FAILED)
            assert doc is not None
            salt = secrets.token_bytes(SALT_BYTES)
            stored = {"user": user, "salt": salt.hex(), "iterations": ITERATIONS,
                      "hash": hash_password(new, salt, ITERATIONS), "must_change": False,
                      "failures": 0, "locked_until": None, "changed_at": format_time(self.ctx.now())}
            self.ctx.stores.settings.put(model.ACCOUNTS, user, stored)
            self.ctx.record(user, names.ACCOUNT_PASSWORD_CHANGED)
            return {"user": user, "must_change": False}

    # -- 系统设置 ------------------------------------------------------------------------------
    def needs_setup(self) -> bool:
        """True until the first login's 系统设置 stored a site code."""
        return not self.ctx.site_code()

    def setup(self, site_code: str, mode: str, actor: str, *, platform_url: Optional[str] = None,
              platform_password: Optional[str] = None, platform_keys: Optional[List[str]] = None) -> JsonObject:
        """系统设置: site code (4-10 digits, fixed afterwards) and mode (formal/mock or 正式考试/模拟考试).

        Calling it again with the same code may change the platform URL/password only.
        ``platform_keys`` (base64 Ed25519 public keys of the monitoring platform) are added
        to the trusted keys, in the settings and in the running context.
        The code must be the site the plugged-in dongle was registered to (see the module
        docstring). Raises ``SetupRefused`` (bad code or mode, another code than the fixed
        one, a mode change, a code that is not the dongle's site), ``LockError`` (no
        dongle, or one registered to no site), ``PasswordChangeRequired``.
        """
        code = (site_code or "").strip()
        if not SITE_CODE_RE.fullmatch(code):
            raise SetupRefused("考点代码格式错误：{!r}。".format((site_code or "")[:20]),
                               "考点代码是监控平台分配的 4 到 10 位数字，例如 11003。")
        chosen = MODES.get((mode or "").strip())
        if chosen is None:
            raise SetupRefused("考试模式无效：{!r}。".format((mode or "")[:20]), "请选择“正式考试”或“模拟考试”。")
        url = platform_url.strip() if platform_url else None
        if url is not None and not re.match(r"https?://[^\s/]+", url):
            raise SetupRefused("监控平台地址格式错误：{!r}。".format(url[:80]),
                               "请填写以 http:// 或 https:// 开头的地址。")
        keys = [_platform_key(k) for k in platform_keys or []]
        with self.ctx.lock:
            self.require_changed(actor)
            site = self.ctx.site()
            fixed = site.get("site_code")
            if fixed and fixed != code:
                raise SetupRefused("考点代码已设置为 {}，不能修改。".format(fixed),
                                   "如确需更换考点代码，请使用“系统初始化”（会清除全部考试数据）。")
            if fixed and site.get("mode", model.FORMAL) != chosen:
                label = model.MODE_LABELS.get(site.get("mode", model.FORMAL), "")
                raise SetupRefused("考试模式已设置为{}，不能在此修改。".format(label),
                                   "模拟考试结束后请使用“模考转正考”切换到正式考试。")
            dongle_site = self._dongle_site(code)
            new: Dict[str, Any] = dict(site)
            new.update(site_code=code, mode=chosen)
            if not fixed:
                new["configured_at"] = format_time(self.ctx.now())
            if url is not None:
                new["platform_url"] = url
            if platform_password is not None:
                new["platform_password"] = platform_password
            if keys:
                known = list(new.get("trusted_keys") or [])
                new["trusted_keys"] = known + [base64.b64encode(k).decode("ascii") for k in keys
                                               if base64.b64encode(k).decode("ascii") not in known]
            self.ctx.stores.settings.put(model.SETTINGS, model.SITE, new)
            for key in keys:
                self.ctx.trusted.add(key)
            self.ctx.record(actor, names.SYSTEM_SET_UP, site_code=code, mode=chosen,
                            platform_url=new.get("platform_url"), first=not fixed, platform_keys=len(keys),
                            dongle_site=dongle_site)
            return {"site_code": code, "mode": chosen, "mode_label": model.MODE_LABELS[chosen],
                    "platform_url": new.get("platform_url"), "dongle_site": dongle_site}

    def _dongle_site(self, code: str) -> Optional[str]:
        """The plugged-in dongle's registered site, which must be ``code``; None when the
        dongle cannot say (revision 1: logged, accepted). Raises ``SetupRefused`` for
        another site, ``LockError`` for no dongle or one registered to no site."""
        dongle = self.ctx.dongle_or_raise()
        registered = dongle.site_code()
        if registered is None:
            log.warning("系统设置: the dongle %s does not report the site it is registered to (older firmware); "
                        "site code %s accepted unchecked", dongle.lock_id(), code)
            return None
        if registered != code:
            raise SetupRefused("考点代码 {} 与机考锁登记的考点（{}）不一致。".format(code, registered),
                               "请核对考点代码，或插入本考点的机考锁。")
        return registered

    def snapshot(self) -> JsonObject:
        """Accounts (no hashes) and whether 系统设置 is still to do."""
        docs = {d["user"]: cast(Account, d) for d in self.ctx.stores.settings.all(model.ACCOUNTS) if "user" in d}
        docs.setdefault(DEFAULT_USER, default_account())
        rows: List[Dict[str, Any]] = []
        for user in sorted(docs):
            d = docs[user]
            rows.append({"user": user, "must_change": bool(d.get("must_change")), "failures": d.get("failures", 0),
                         "locked_for_s": self._locked_for(user, d), "changed_at": d.get("changed_at")})
        return {"accounts": rows, "needs_setup": self.needs_setup()}


def _changed(doc: Account, **changes: Any) -> Account:
    """A copy of an account's document with ``changes``."""
    new: Dict[str, Any] = dict(doc)
    new.update(changes)
    return cast(Account, new)


def _not_recorded() -> LoginNotRecorded:
    return LoginNotRecorded(
        "无法记录登录失败次数，已拒绝登录（设置数据库无法写入）。",
        "请检查磁盘空间（磁盘可能已满）和数据目录的写入权限，恢复后再登录；在此之前即使密码正确也不能登录。",
    )


def _platform_key(text: str) -> bytes:
    """A monitoring-platform public key given as base64; ``SetupRefused`` when it is not one."""
    try:
        raw = base64.b64decode(str(text).strip().encode("ascii"), validate=True)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 32:
        raise SetupRefused("监控平台公钥格式错误：{!r}。".format(str(text)[:60]),
                           "请填写监控平台提供的公钥（Base64 编码的 32 字节 Ed25519 公钥）。")
    return raw
