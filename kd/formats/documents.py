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
from typing import Any, Dict, Mapping, Optional

from kd.errors import FormatError
from kd.formats.schema import Check
from kd.formats.signing import Signer, TrustedKeys, verify_document
from kd.formats.timeutil import format_time, require_aware

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
class SessionAuthorization:
    """考试授权 for one session of one site."""

    site_code: str
    session_id: str
    session_name: str
    start: datetime.datetime
    duration_min: int
    valid_from: datetime.datetime
    valid_until: datetime.datetime
    issued_at: datetime.datetime
    auth_id: str
    body: Dict[str, Any]
    raw: bytes


@dataclass(frozen=True)
class AuthorizationVerification:
    """授权验证 data for one session, bound to the site's dongle."""

    site_code: str
    session_id: str
    lock_id: str
    valid_from: datetime.datetime
    valid_until: datetime.datetime
    issued_at: datetime.datetime
    nonce: str
    body: Dict[str, Any]
    raw: bytes


@dataclass(frozen=True)
class SyncTicket:
    """The platform's record that it set a dongle's clock (校时) at ``server_time``."""

    lock_id: str
    site_code: str
    server_time: datetime.datetime
    valid_until: datetime.datetime
    body: Dict[str, Any]
    raw: bytes


@dataclass(frozen=True)
class UploadReceipt:
    """The platform's signed acknowledgement of one uploaded result file."""

    site_code: str
    session_id: str
    room_code: str
    file_id: str
    sha256: str
    size: int
    received_at: datetime.datetime
    body: Dict[str, Any]
    raw: bytes


# -- shared steps ----------------------------------------------------------------------

def _open(data: bytes, kind: str, trusted: TrustedKeys, check: Check) -> Dict[str, Any]:
    if not isinstance(data, (bytes, bytearray)):
        raise check.refuse("内容不是字节数据")
    try:
        body = verify_document(bytes(data), kind, trusted, check.what)
    except FormatError as e:
        raise FormatError(e.cause, check.remedy, detail=e.detail) from None
    check.integer(body.get("format_version"), "format_version", FORMAT_VERSION, FORMAT_VERSION)
    return body


def _bind(check: Check, body: Mapping[str, Any], field: str, expected: Optional[str], label: str) -> None:
    if expected is not None and body[field] != expected:
        raise check.refuse(f"{label}不符（文件为 {body[field]}，应为 {expected}）")


def _window(check: Check, now: datetime.datetime, valid_from: datetime.datetime,
            valid_until: datetime.datetime, skew: datetime.timedelta) -> None:
    require_aware(now)
    if valid_until <= valid_from:
        raise check.refuse("有效期无效（结束时间不晚于开始时间）")
    if now < valid_from - skew:
        raise check.refuse(f"尚未生效（生效时间 {format_time(valid_from)}，当前时间 {format_time(now)}）")
    if now >= valid_until + skew:
        raise check.refuse(f"已过期（有效期至 {format_time(valid_until)}，当前时间 {format_time(now)}）")


def _for_builder(fields: Any, what: str, body: Mapping[str, Any]) -> None:
    """Builders refuse what loaders would refuse, as ``ValueError`` (a caller's bug)."""
    try:
        fields(Check(what, ""), body)
    except FormatError as e:
        raise ValueError(e.cause) from None


def _time(check: Check, body: Mapping[str, Any], field: str) -> datetime.datetime:
    return check.time(body.get(field), field)


# -- 考试授权 (.PTQ) -------------------------------------------------------------------

def build_session_authorization(signer: Signer, *, site_code: str, session_id: str, session_name: str,
                                start: datetime.datetime, duration_min: int, valid_from: datetime.datetime,
                                valid_until: datetime.datetime, issued_at: datetime.datetime,
                                auth_id: Optional[str] = None) -> bytes:
    """The signed ``.PTQ`` bytes."""
    body = {
        "format_version": FORMAT_VERSION,
        "site_code": site_code,
        "session_id": session_id,
        "session_name": session_name,
        "start": format_time(start),
        "duration_min": duration_min,
        "valid_from": format_time(valid_from),
        "valid_until": format_time(valid_until),
        "issued_at": format_time(issued_at),
        "auth_id": auth_id or secrets.token_hex(8),
    }
    _for_builder(_authorization_fields, WHAT_AUTHORIZATION, body)
    return signer.sign_document(KIND_AUTHORIZATION, body)


def _authorization_fields(check: Check, body: Mapping[str, Any]) -> None:
    check.code(body.get("site_code"), "site_code")
    check.code(body.get("session_id"), "session_id")
    check.text(body.get("session_name"), "session_name")
    check.integer(body.get("duration_min"), "duration_min", 1, 24 * 60)
    check.code(body.get("auth_id"), "auth_id")
    for field in ("start", "valid_from", "valid_until", "issued_at"):
        _time(check, body, field)


def load_session_authorization(data: bytes, trusted: TrustedKeys, site_code: str, now: datetime.datetime,
                               session_id: Optional[str] = None,
                               skew: datetime.timedelta = ZERO) -> SessionAuthorization:
    """Verify a ``.PTQ``: signature, site, session (when given), validity at ``now``."""
    check = Check(WHAT_AUTHORIZATION, REMEDY_AUTHORIZATION)
    body = _open(data, KIND_AUTHORIZATION, trusted, check)
    _authorization_fields(check, body)
    _bind(check, body, "site_code", site_code, "考点代码")
    _bind(check, body, "session_id", session_id, "场次")
    doc = SessionAuthorization(
        site_code=body["site_code"], session_id=body["session_id"], session_name=body["session_name"],
        start=_time(check, body, "start"), duration_min=body["duration_min"],
        valid_from=_time(check, body, "valid_from"), valid_until=_time(check, body, "valid_until"),
        issued_at=_time(check, body, "issued_at"), auth_id=body["auth_id"], body=body, raw=bytes(data))
    _window(check, now, doc.valid_from, doc.valid_until, skew)
    return doc


# -- 授权验证 ---------------------------------------------------------------------------

def build_authorization_verification(signer: Signer, *, site_code: str, session_id: str, lock_id: str,
                                     valid_from: datetime.datetime, valid_until: datetime.datetime,
                                     issued_at: datetime.datetime, nonce: Optional[str] = None) -> bytes:
    """The signed verification bytes (``nonce``: 32 hex chars, random when omitted)."""
    body = {
        "format_version": FORMAT_VERSION,
        "site_code": site_code,
        "session_id": session_id,
        "lock_id": lock_id,
        "valid_from": format_time(valid_from),
        "valid_until": format_time(valid_until),
        "issued_at": format_time(issued_at),
        "nonce": nonce or secrets.token_hex(16),
    }
    _for_builder(_verification_fields, WHAT_VERIFICATION, body)
    return signer.sign_document(KIND_VERIFICATION, body)


def _verification_fields(check: Check, body: Mapping[str, Any]) -> None:
    check.code(body.get("site_code"), "site_code")
    check.code(body.get("session_id"), "session_id")
    check.code(body.get("lock_id"), "lock_id")
    check.code(body.get("nonce"), "nonce")
    for field in ("valid_from", "valid_until", "issued_at"):
        _time(check, body, field)


def load_authorization_verification(data: bytes, trusted: TrustedKeys, site_code: str, now: datetime.datetime,
                                    session_id: Optional[str] = None, lock_id: Optional[str] = None,
                                    skew: datetime.timedelta = ZERO) -> AuthorizationVerification:
    """Verify 授权验证 data: signature, site, session and lock (when given), validity."""
    check = Check(WHAT_VERIFICATION, REMEDY_VERIFICATION)
    body = _open(data, KIND_VERIFICATION, trusted, check)
    _verification_fields(check, body)
    _bind(check, body, "site_code", site_code, "考点代码")
    _bind(check, body, "session_id", session_id, "场次")
    _bind(check, body, "lock_id", lock_id, "机考锁编号")
    doc = AuthorizationVerification(
        site_code=body["site_code"], session_id=body["session_id"], lock_id=body["lock_id"],
        valid_from=_time(check, body, "valid_from"), valid_until=_time(check, body, "valid_until"),
        issued_at=_time(check, body, "issued_at"), nonce=body["nonce"], body=body, raw=bytes(data))
    _window(check, now, doc.valid_from, doc.valid_until, skew)
    return doc


# -- 校时 (dongle sync ticket) ---------------------------------------------------------

def build_sync_ticket(signer: Signer, *, lock_id: str, site_code: str, server_time: datetime.datetime,
                      valid_until: datetime.datetime) -> bytes:
    """The signed sync ticket: the platform set ``lock_id``'s clock at ``server_time``."""
    body = {
        "format_version": FORMAT_VERSION,
        "lock_id": lock_id,
        "site_code": site_code,
        "server_time": format_time(server_time),
        "valid_until": format_time(valid_until),
    }
    _for_builder(_sync_fields, WHAT_SYNC_TICKET, body)
    return signer.sign_document(KIND_SYNC_TICKET, body)


def _sync_fields(check: Check, body: Mapping[str, Any]) -> None:
    check.code(body.get("lock_id"), "lock_id")
    check.code(body.get("site_code"), "site_code")
    _time(check, body, "server_time")
    _time(check, body, "valid_until")


def load_sync_ticket(data: bytes, trusted: TrustedKeys, now: datetime.datetime, lock_id: Optional[str] = None,
                     site_code: Optional[str] = None, skew: datetime.timedelta = ZERO) -> SyncTicket:
    """Verify a sync ticket: signature, lock and site (when given), ``server_time <= now < valid_until``.

    The dongle (emulator) calls it with its own lock id and the host clock before it sets
    its clock to ``server_time``; the core calls it with the site's lock id and code.
    """
    check = Check(WHAT_SYNC_TICKET, REMEDY_SYNC_TICKET)
    body = _open(data, KIND_SYNC_TICKET, trusted, check)
    _sync_fields(check, body)
    _bind(check, body, "lock_id", lock_id, "机考锁编号")
    _bind(check, body, "site_code", site_code, "考点代码")
    doc = SyncTicket(lock_id=body["lock_id"], site_code=body["site_code"],
                     server_time=_time(check, body, "server_time"), valid_until=_time(check, body, "valid_until"),
                     body=body, raw=bytes(data))
    _window(check, now, doc.server_time, doc.valid_until, skew)
    return doc


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
        synced, start = format_time(ticket.server_time), format_time(session_start)
        raise FormatError(
            f"机考锁校时不符合要求：校时时间 {synced} 不在开考时间 {start} 前 {minutes} 分钟内",
            REMEDY_SYNC_TICKET,
            detail=f"sync at {ticket.server_time} not within {window} before {session_start}",
        )


# -- upload receipt --------------------------------------------------------------------

def build_upload_receipt(signer: Signer, *, site_code: str, session_id: str, room_code: str, file_id: str,
                         sha256: str, size: int, received_at: datetime.datetime) -> bytes:
    """The signed receipt the platform returns when an upload is complete."""
    body = {
        "format_version": FORMAT_VERSION,
        "site_code": site_code,
        "session_id": session_id,
        "room_code": room_code,
        "file_id": file_id,
        "sha256": sha256,
        "size": size,
        "received_at": format_time(received_at),
    }
    _for_builder(_receipt_fields, WHAT_RECEIPT, body)
    return signer.sign_document(KIND_RECEIPT, body)


def _receipt_fields(check: Check, body: Mapping[str, Any]) -> None:
    check.code(body.get("site_code"), "site_code")
    check.code(body.get("session_id"), "session_id")
    check.code(body.get("room_code"), "room_code")
    check.text(body.get("file_id"), "file_id", max_chars=128)
    check.sha256(body.get("sha256"), "sha256")
    check.integer(body.get("size"), "size", 0, 2 ** 53)
    _time(check, body, "received_at")


def load_upload_receipt(data: bytes, trusted: TrustedKeys, site_code: str, *, session_id: Optional[str] = None,
                        room_code: Optional[str] = None, file_id: Optional[str] = None,
                        sha256: Optional[str] = None, size: Optional[int] = None) -> UploadReceipt:
    """Verify a receipt: signature, site, and each of session/room/file/sha256/size given."""
    check = Check(WHAT_RECEIPT, REMEDY_RECEIPT)
    body = _open(data, KIND_RECEIPT, trusted, check)
    _receipt_fields(check, body)
    _bind(check, body, "site_code", site_code, "考点代码")
    _bind(check, body, "session_id", session_id, "场次")
    _bind(check, body, "room_code", room_code, "考场代码")
    _bind(check, body, "file_id", file_id, "文件编号")
    _bind(check, body, "sha256", sha256, "文件摘要（SHA-256）")
    if size is not None and body["size"] != size:
        raise check.refuse("文件大小不符（回执为 {} 字节，应为 {} 字节）".format(body["size"], size))
    return UploadReceipt(site_code=body["site_code"], session_id=body["session_id"], room_code=body["room_code"],
                         file_id=body["file_id"], sha256=body["sha256"], size=body["size"],
                         received_at=_time(check, body, "received_at"), body=body, raw=bytes(data))
