"""Small signed platform documents: build (platform side) and load (site side).

Each document is a kd-signed/1 envelope (``kd/formats/signing.py``) whose body is a JSON
object with ``format_version`` 1 and the fields below (times: ISO 8601 with offset, see
``kd/formats/timeutil.py``). docs/formats.md §3 is the reference.

- ``session_authorization``: 考试授权 (``.PTQ``): site_code, session_id, session_name,
  start, duration_min, valid_from, valid_until, issued_at, auth_id.
- ``authorization_verification``: 授权验证 (``.KDV``): site_code, session_id, lock_id,
  valid_from, valid_until, issued_at, nonce.
- ``sync_ticket``: 机考锁校时凭证: lock_id, site_code, server_time, valid_until.
- ``upload_receipt``: 上报回执: site_code, session_id, room_code, file_id, sha256, size,
  received_at.

Loading verifies, in this order: the envelope (size, kind, trusted key id, signature),
``format_version``, field types, the site code binding, the session (and lock, file)
binding when the caller names one, and the validity window against the caller's ``now``
(``valid_from - skew <= now < valid_until + skew``). Nothing reads the clock: ``now`` is a
timezone-aware ``datetime`` given by the caller, so tests control time.
"""

import datetime
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generic, Mapping, Optional, Tuple, TypeVar

from kd.errors import FormatError
from kd.formats.schema import Check
from kd.formats.signing import Signer, TrustedKeys, verify_document
from kd.formats.timeutil import format_time, human_time, require_aware

FORMAT_VERSION = 1

KIND_AUTHORIZATION = "session_authorization"
KIND_VERIFICATION = "authorization_verification"
KIND_SYNC_TICKET = "sync_ticket"
KIND_RECEIPT = "upload_receipt"

WHAT_AUTHORIZATION = "考试授权文件"
WHAT_VERIFICATION = "授权验证文件"
WHAT_SYNC_TICKET = "机考锁校时凭证"
WHAT_RECEIPT = "上报回执"

REMEDY_AUTHORIZATION = (
    "请重新从监控平台下载本场次的考试授权；如无法下载，请用“手工导入”选择监控平台提供的正确授权文件（.PTQ）。"
)
REMEDY_VERIFICATION = (
    "请重新从监控平台下载本场次的授权验证；如无法下载，请用“手工导入”选择监控平台提供的正确授权验证文件（.KDV）。"
)
REMEDY_SYNC_TICKET = (
    "请在开考前一小时内，在联网电脑上打开监控平台的校时页面为机考锁校时，"
    "看到“校时授权成功!”后再插回考点机重试。"
)
REMEDY_RECEIPT = "上报可能未被监控平台确认，请重新上报（续报）；如问题持续，请联系技术服务单位。"

ZERO = datetime.timedelta(0)
SYNC_WINDOW = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Signed:
    """What every loaded document keeps: its verified body and the exact signed bytes."""

    body: Dict[str, Any]
    raw: bytes


@dataclass(frozen=True)
class SessionDocument(Signed):
    """A document the platform issues for one session of one site, valid in a window."""

    site_code: str
    session_id: str
    valid_from: datetime.datetime
    valid_until: datetime.datetime
    issued_at: datetime.datetime


@dataclass(frozen=True)
class SessionAuthorization(SessionDocument):
    """考试授权 for one session of one site."""

    session_name: str
    start: datetime.datetime
    duration_min: int
    auth_id: str


@dataclass(frozen=True)
class AuthorizationVerification(SessionDocument):
    """授权验证 data for one session, bound to the site's dongle."""

    lock_id: str
    nonce: str


@dataclass(frozen=True)
class SyncTicket(Signed):
    """The platform's record that it set a dongle's clock (校时) at ``server_time``."""

    lock_id: str
    site_code: str
    server_time: datetime.datetime
    valid_until: datetime.datetime


@dataclass(frozen=True)
class UploadReceipt(Signed):
    """The platform's signed acknowledgement of one uploaded result file."""

    site_code: str
    session_id: str
    room_code: str
    file_id: str
    sha256: str
    size: int
    received_at: datetime.datetime


# -- one table per document kind ------------------------------------------------------

FieldCheck = Callable[[Check, Any, str], Any]
D = TypeVar("D")


def _bounded_text(limit: int) -> FieldCheck:
    return lambda check, value, field: check.text(value, field, max_chars=limit)


def _int_range(low: int, high: int) -> FieldCheck:
    return lambda check, value, field: check.integer(value, field, low, high)


_TIME: FieldCheck = Check.time


@dataclass(frozen=True)
class _Kind(Generic[D]):
    """One document kind: its fields (in the order they are checked), bindings and window.

    ``binds``: (field, refusal text with the file's and the expected value) checked when the
    caller names an expected value; ``window``: the (from, until) fields checked against
    ``now``, or None. Times are ISO text in the body and ``datetime`` in the document.
    """

    kind: str
    what: str
    remedy: str
    doc: Callable[..., D]
    fields: Tuple[Tuple[str, FieldCheck], ...]
    binds: Tuple[Tuple[str, str], ...]
    window: Optional[Tuple[str, str]] = None

    def checked(self, check: Check, body: Mapping[str, Any]) -> Dict[str, Any]:
        return {field: read(check, body.get(field), field) for field, read in self.fields}

    def build(self, signer: Signer, **values: Any) -> bytes:
        """The signed bytes; refuses what ``load`` would refuse, as ``ValueError`` (a caller's bug)."""
        body: Dict[str, Any] = {"format_version": FORMAT_VERSION}
        for field, read in self.fields:
            body[field] = format_time(values[field]) if read is _TIME else values[field]
        try:
            self.checked(Check(self.what, ""), body)
        except FormatError as e:
            raise ValueError(e.cause) from None
        return signer.sign_document(self.kind, body)

    def load(self, data: bytes, trusted: TrustedKeys, now: Optional[datetime.datetime],
             skew: datetime.timedelta = ZERO, **expected: Any) -> D:
        """Verify in the module's order; ``expected``: the bound fields' values (None: not checked)."""
        check = Check(self.what, self.remedy)
        if not isinstance(data, (bytes, bytearray)):
            raise check.refuse("内容不是字节数据")
        try:
            body = verify_document(bytes(data), self.kind, trusted, check.what)
        except FormatError as e:
            raise FormatError(e.cause, check.remedy, detail=e.detail) from None
        check.integer(body.get("format_version"), "format_version", FORMAT_VERSION, FORMAT_VERSION)
        values = self.checked(check, body)
        for field, refusal in self.binds:
            want = expected.get(field)
            if want is not None and body[field] != want:
                raise check.refuse(refusal.format(body[field], want))
        if self.window is not None:
            _window(check, now, values[self.window[0]], values[self.window[1]], skew)
        return self.doc(body=body, raw=bytes(data), **values)


def _window(check: Check, moment: Optional[datetime.datetime], valid_from: datetime.datetime,
            valid_until: datetime.datetime, skew: datetime.timedelta) -> None:
    now = require_aware(moment)
    if valid_until <= valid_from:
        raise check.refuse("有效期无效（结束时间不晚于开始时间）")
    if now < valid_from - skew:
        raise check.refuse(f"尚未生效（生效时间 {human_time(valid_from)}，当前时间 {human_time(now)}）")
    if now >= valid_until + skew:
        raise check.refuse(f"已过期（有效期至 {human_time(valid_until)}，当前时间 {human_time(now)}）")


def _mismatch(label: str) -> str:
    return label + "不符（文件为 {}，应为 {}）"


SITE_BIND = ("site_code", _mismatch("考点代码"))
SESSION_BIND = ("session_id", _mismatch("场次"))
LOCK_BIND = ("lock_id", _mismatch("机考锁编号"))

AUTHORIZATION: _Kind[SessionAuthorization] = _Kind(
    KIND_AUTHORIZATION, WHAT_AUTHORIZATION, REMEDY_AUTHORIZATION, SessionAuthorization,
    fields=(("site_code", Check.code), ("session_id", Check.code), ("session_name", Check.text),
            ("duration_min", _int_range(1, 24 * 60)), ("auth_id", Check.code),
            ("start", _TIME), ("valid_from", _TIME), ("valid_until", _TIME), ("issued_at", _TIME)),
    binds=(SITE_BIND, SESSION_BIND), window=("valid_from", "valid_until"))

VERIFICATION: _Kind[AuthorizationVerification] = _Kind(
    KIND_VERIFICATION, WHAT_VERIFICATION, REMEDY_VERIFICATION, AuthorizationVerification,
    fields=(("site_code", Check.code), ("session_id", Check.code), ("lock_id", Check.code), ("nonce", Check.code),
            ("valid_from", _TIME), ("valid_until", _TIME), ("issued_at", _TIME)),
    binds=(SITE_BIND, SESSION_BIND, LOCK_BIND), window=("valid_from", "valid_until"))

SYNC_TICKET: _Kind[SyncTicket] = _Kind(
    KIND_SYNC_TICKET, WHAT_SYNC_TICKET, REMEDY_SYNC_TICKET, SyncTicket,
    fields=(("lock_id", Check.code), ("site_code", Check.code), ("server_time", _TIME), ("valid_until", _TIME)),
    binds=(LOCK_BIND, SITE_BIND), window=("server_time", "valid_until"))

RECEIPT: _Kind[UploadReceipt] = _Kind(
    KIND_RECEIPT, WHAT_RECEIPT, REMEDY_RECEIPT, UploadReceipt,
    fields=(("site_code", Check.code), ("session_id", Check.code), ("room_code", Check.code),
            ("file_id", _bounded_text(128)), ("sha256", Check.sha256), ("size", _int_range(0, 2 ** 53)),
            ("received_at", _TIME)),
    binds=(SITE_BIND, SESSION_BIND, ("room_code", _mismatch("考场代码")), ("file_id", _mismatch("文件编号")),
           ("sha256", _mismatch("文件摘要（SHA-256）")), ("size", "文件大小不符（回执为 {} 字节，应为 {} 字节）")))


# -- 考试授权 (.PTQ) -------------------------------------------------------------------

def build_session_authorization(signer: Signer, *, site_code: str, session_id: str, session_name: str,
                                start: datetime.datetime, duration_min: int, valid_from: datetime.datetime,
                                valid_until: datetime.datetime, issued_at: datetime.datetime,
                                auth_id: Optional[str] = None) -> bytes:
    """The signed ``.PTQ`` bytes."""
    return AUTHORIZATION.build(signer, site_code=site_code, session_id=session_id, session_name=session_name,
                               start=start, duration_min=duration_min, valid_from=valid_from,
                               valid_until=valid_until, issued_at=issued_at, auth_id=auth_id or secrets.token_hex(8))


def load_session_authorization(data: bytes, trusted: TrustedKeys, site_code: str, now: datetime.datetime,
                               session_id: Optional[str] = None,
                               skew: datetime.timedelta = ZERO) -> SessionAuthorization:
    """Verify a ``.PTQ``: signature, site, session (when given), validity at ``now``."""
    return AUTHORIZATION.load(data, trusted, now, skew, site_code=site_code, session_id=session_id)


# -- 授权验证 ---------------------------------------------------------------------------

def build_authorization_verification(signer: Signer, *, site_code: str, session_id: str, lock_id: str,
                                     valid_from: datetime.datetime, valid_until: datetime.datetime,
                                     issued_at: datetime.datetime, nonce: Optional[str] = None) -> bytes:
    """The signed verification bytes (``nonce``: 32 hex chars, random when omitted)."""
    return VERIFICATION.build(signer, site_code=site_code, session_id=session_id, lock_id=lock_id,
                              valid_from=valid_from, valid_until=valid_until, issued_at=issued_at,
                              nonce=nonce or secrets.token_hex(16))


def load_authorization_verification(data: bytes, trusted: TrustedKeys, site_code: str, now: datetime.datetime,
                                    session_id: Optional[str] = None, lock_id: Optional[str] = None,
                                    skew: datetime.timedelta = ZERO) -> AuthorizationVerification:
    """Verify 授权验证 data: signature, site, session and lock (when given), validity."""
    return VERIFICATION.load(data, trusted, now, skew, site_code=site_code, session_id=session_id, lock_id=lock_id)


# -- 校时 (dongle sync ticket) ---------------------------------------------------------

def build_sync_ticket(signer: Signer, *, lock_id: str, site_code: str, server_time: datetime.datetime,
                      valid_until: datetime.datetime) -> bytes:
    """The signed sync ticket: the platform set ``lock_id``'s clock at ``server_time``."""
    return SYNC_TICKET.build(signer, lock_id=lock_id, site_code=site_code, server_time=server_time,
                             valid_until=valid_until)


def load_sync_ticket(data: bytes, trusted: TrustedKeys, now: datetime.datetime, lock_id: Optional[str] = None,
                     site_code: Optional[str] = None, skew: datetime.timedelta = ZERO) -> SyncTicket:
    """Verify a sync ticket: signature, lock and site (when given), ``server_time <= now < valid_until``.

    The dongle (emulator) calls it with its own lock id and the host clock before it sets
    its clock to ``server_time``; the core calls it with the site's lock id and code.
    """
    return SYNC_TICKET.load(data, trusted, now, skew, lock_id=lock_id, site_code=site_code)


def synced_for_session(ticket: SyncTicket, session_start: datetime.datetime,
                       window: datetime.timedelta = SYNC_WINDOW) -> bool:
    """True when the ticket's sync happened within ``window`` before ``session_start``."""
    require_aware(session_start, "session_start")
    return session_start - window <= ticket.server_time <= session_start


def require_sync_for_session(ticket: SyncTicket, session_start: datetime.datetime,
                             window: datetime.timedelta = SYNC_WINDOW) -> None:
    """``FormatError`` unless ``synced_for_session``: the rule before 授权验证 (DESIGN §5)."""
    if not synced_for_session(ticket, session_start, window):
        minutes = int(window.total_seconds() // 60)
        synced, start = human_time(ticket.server_time), human_time(session_start)
        raise FormatError(
            f"机考锁校时不符合要求：校时时间 {synced} 不在开考时间 {start} 前 {minutes} 分钟内",
            REMEDY_SYNC_TICKET,
            detail=f"sync at {ticket.server_time} not within {window} before {session_start}",
        )


# -- upload receipt --------------------------------------------------------------------

def build_upload_receipt(signer: Signer, *, site_code: str, session_id: str, room_code: str, file_id: str,
                         sha256: str, size: int, received_at: datetime.datetime) -> bytes:
    """The signed receipt the platform returns when an upload is complete."""
    return RECEIPT.build(signer, site_code=site_code, session_id=session_id, room_code=room_code, file_id=file_id,
                         sha256=sha256, size=size, received_at=received_at)


def load_upload_receipt(data: bytes, trusted: TrustedKeys, site_code: str, *, session_id: Optional[str] = None,
                        room_code: Optional[str] = None, file_id: Optional[str] = None,
                        sha256: Optional[str] = None, size: Optional[int] = None) -> UploadReceipt:
    """Verify a receipt: signature, site, and each of session/room/file/sha256/size given."""
    return RECEIPT.load(data, trusted, None, site_code=site_code, session_id=session_id, room_code=room_code,
                        file_id=file_id, sha256=sha256, size=size)
