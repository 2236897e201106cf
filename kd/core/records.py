"""The persisted records as types: one ``TypedDict`` per document shape, its constructor, typed reads.

The JSON the stores hold is described in ``kd.core.model`` (which DB, table and key); this
module says the same in code, so that a field name is checked where it is used. Every
default record is spelled once, here: ``new_room(code, reg_code)``,
``new_session(session_id)``, ``new_room_session(room, session)``. A record's lifecycle
state is not stored: ``kd.core.lifecycle`` derives it from the record's timestamps.

Typed reads and writes of the runtime tables (``room(db, code)``, ``session(db, id)``,
``room_session(db, room, session)``, ``put_room_session(db, doc)``...) go through the
store (``kd.store.database.Database``), which copies documents in and out; a record
read here is the caller's own copy.

The stored format does not change: a record read from an older data folder may lack a
key that ``total=False`` marks optional, and unknown keys are kept as they are.
"""

from typing import Any, Dict, List, Optional, TypedDict, cast

from kd.core import model
from kd.store.database import Database


# -- settings DB ------------------------------------------------------------------------------
class SiteSettings(TypedDict, total=False):
    """``settings/site``: the site code, the mode and the platform (系统设置)."""

    site_code: str
    mode: str  # model.FORMAL | model.MOCK
    configured_at: str
    platform_url: str
    platform_password: str
    trusted_keys: List[str]  # base64 Ed25519 public keys
    drill: bool
    lan_address: str  # the address proctors are told (kd.core.status)
    lan_bind: bool  # bind the LAN service to lan_address at start
    service_unit: str  # the footer's 技术服务单位
    service_phone: str  # the footer's 服务电话


class Account(TypedDict, total=False):
    """``accounts/<user>`` (kd.core.accounts)."""

    user: str
    salt: str  # hex
    iterations: int
    hash: str  # hex PBKDF2-HMAC-SHA256
    must_change: bool
    failures: int
    locked_until: Optional[str]
    changed_at: Optional[str]


# -- exam DB ----------------------------------------------------------------------------------
class PackageMeta(TypedDict):
    """``package/meta``: when and how the loaded site package came in."""

    publish_time: str
    loaded_at: str
    source: str  # "online" | "manual"
    verified_at: str
    zip_sha256: str
    manifest_sha256: str


class LockDef(TypedDict):
    """The site's registered dongle named by the package (docs/formats.md §2.2.2)."""

    id: str
    public_key: str  # base64 of the raw 32-byte Ed25519 public key


class RoomDef(TypedDict, total=False):
    """A room of the package (§2.2.3; other fields are kept)."""

    code: str
    name: str
    seats: int


class SubjectDef(TypedDict, total=False):
    code: str
    name: str


class SessionDef(TypedDict, total=False):
    """A session of the package (§2.2.5)."""

    id: str
    name: str
    start: str
    duration_min: int
    subjects: List[str]


class Candidate(TypedDict, total=False):
    """An entry of ``candidates.json`` (§2.2.6; other fields, e.g. ``id_card``, are kept)."""

    ticket: str
    name: str
    room: str
    seat: int
    session: str
    subject: str


class Member(TypedDict):
    """A member of the package zip with its signed size and SHA-256 (§2.2.7)."""

    name: str
    size: int
    sha256: str


class Manifest(TypedDict, total=False):
    """``package/manifest``: the verified manifest of the loaded site package with its candidates.

    ``total=False``: code that reads a part of it (``Context.manifest_view``) gets a partial one.
    """

    format_version: int
    site_code: str
    exam_name: str
    publish_time: str
    lock: LockDef
    rooms: List[RoomDef]
    subjects: List[SubjectDef]
    sessions: List[SessionDef]
    candidate_count: int
    members: List[Member]
    candidates: List[Candidate]


# -- runtime DB -------------------------------------------------------------------------------
class Room(TypedDict):
    """``rooms/<room>``: a room's registration (考场注册) and its data import."""

    code: str
    reg_code: str
    ip: Optional[str]
    token: Optional[str]
    registered_at: Optional[str]
    data_sha256: Optional[str]
    data_imported_at: Optional[str]
    note: str


class _SessionKey(TypedDict):
    id: str


class Session(_SessionKey, total=False):
    """``sessions/<session>``: a session's authorization (考试授权), verification (授权验证) and reports."""

    authorized_at: Optional[str]
    authorization_source: Optional[str]  # "online" | "manual"
    authorization: Optional[str]  # base64 of the .PTQ bytes
    verified_at: Optional[str]
    verification_source: Optional[str]  # "online" | "manual"
    verification: Optional[str]  # base64 of the .KDV bytes
    lock_clock_skew_s: Optional[float]
    lock_synced_at: Optional[str]
    started_reported_at: Optional[str]  # the session_started report was enqueued
    ended_reported_at: Optional[str]  # the session_ended report was enqueued


class Result(TypedDict):
    """A recovered result package (``room_sessions/<room|session>.result``)."""

    sha256: str
    size: int
    received_at: str
    source: str  # "lan" | "manual"
    counts: Dict[str, Any]  # kd.formats.result.RoomResult.counts()
    created_at: Optional[str]
    actor: str


class Upload(TypedDict):
    """The platform's receipt of an uploaded result (``room_sessions/<room|session>.upload``)."""

    receipt: str  # base64 of the signed receipt
    uploaded_at: str
    file_id: str
    sha256: str
    size: int
    received_at: str


class _RoomSessionKeys(TypedDict):
    room: str
    session: str
    started_at: Optional[str]
    ended_at: Optional[str]
    result: Optional[Result]
    upload: Optional[Upload]


class RoomSession(_RoomSessionKeys, total=False):
    """``room_sessions/<room|session>``: one room's progress through one session."""

    permitted_at: Optional[str]  # the first start permit granted
    unpermitted_at: Optional[str]  # = started_at when the start was 未经许可开考
    extra_time_min: int  # 补时 granted in total (kd.core.extratime)
    expected_end: str  # the session's end + extra_time_min (kd.core.extratime)


class ResultConflict(TypedDict, total=False):
    """``result_conflicts/<room|session|sha256>``: a refused result package (or one a restore kept)."""

    room: str
    session: str
    sha256: str
    size: Optional[int]
    source: Optional[str]
    kept_sha256: Optional[str]
    first_at: str
    last_at: str
    times: int
    actor: str
    origin: str  # "restore" when a 系统恢复 found it
    held_by: str  # "backup" | "here"
    received_at: Optional[str]
    upload: Optional[Upload]


class OutboxItem(TypedDict):
    """``outbox/<id>``: a report to the platform and its delivery (kd.core.outbox)."""

    id: str
    kind: str
    data: Dict[str, Any]
    key: str
    session_id: Optional[str]
    room_code: Optional[str]
    created_at: str
    state: str  # kd.core.outbox PENDING | SENT | FAILED
    tries: int
    last_error: Optional[str]
    next_try_at: Optional[str]
    sent_at: Optional[str]
    failed_at: Optional[str]
    report_id: Optional[str]


class RecoveryCheck(TypedDict):
    """``checks/recovery``: every room of every session recovered; the report enqueued once."""

    completed_at: str
    outbox_id: str


# -- constructors -----------------------------------------------------------------------------
def new_room(code: str, reg_code: str) -> Room:
    """A room of a newly loaded package: its registration code, nothing registered yet."""
    return {"code": code, "reg_code": reg_code, "ip": None, "token": None, "registered_at": None,
            "data_sha256": None, "data_imported_at": None, "note": ""}


def new_session(session_id: str) -> Session:
    """A session of a newly loaded package: not authorized, not verified, nothing reported."""
    return {"id": session_id, "authorized_at": None, "authorization_source": None, "authorization": None,
            "verified_at": None, "verification_source": None, "verification": None,
            "lock_clock_skew_s": None, "started_reported_at": None, "ended_reported_at": None}


def new_room_session(room: str, session: str) -> RoomSession:
    """A room's record for a session it is planned for: not started, nothing recovered."""
    return {"room": room, "session": session, "started_at": None, "ended_at": None, "result": None,
            "upload": None}


def rs_key_of(doc: RoomSession) -> str:
    """The key of a room-session record (``model.rs_key``)."""
    return model.rs_key(doc["room"], doc["session"])


# -- typed reads and writes of the runtime DB -------------------------------------------------
def room(db: Database, code: str) -> Optional[Room]:
    return cast(Optional[Room], db.get(model.ROOMS, code))


def rooms(db: Database) -> List[Room]:
    return cast(List[Room], db.all(model.ROOMS))


def update_room(db: Database, code: str, changes: Dict[str, Any]) -> Room:
    return cast(Room, db.update(model.ROOMS, code, changes))


def session(db: Database, session_id: str) -> Optional[Session]:
    return cast(Optional[Session], db.get(model.SESSIONS, session_id))


def sessions(db: Database) -> List[Session]:
    return cast(List[Session], db.all(model.SESSIONS))


def put_session(db: Database, doc: Session) -> Session:
    return cast(Session, db.put(model.SESSIONS, doc["id"], cast(Dict[str, Any], doc)))


def room_session(db: Database, room_code: str, session_id: str) -> Optional[RoomSession]:
    return cast(Optional[RoomSession], db.get(model.ROOM_SESSIONS, model.rs_key(room_code, session_id)))


def room_sessions(db: Database, session_id: Optional[str] = None) -> List[RoomSession]:
    """Every room-session record, or those of one session."""
    if session_id is None:
        return cast(List[RoomSession], db.all(model.ROOM_SESSIONS))
    return cast(List[RoomSession], db.find(model.ROOM_SESSIONS, session=session_id))


def put_room_session(db: Database, doc: RoomSession) -> RoomSession:
    return cast(RoomSession, db.put(model.ROOM_SESSIONS, rs_key_of(doc), cast(Dict[str, Any], doc)))


def conflicts(db: Database) -> List[ResultConflict]:
    return cast(List[ResultConflict], db.all(model.RESULT_CONFLICTS))


def outbox_item(db: Database, item_id: str) -> Optional[OutboxItem]:
    return cast(Optional[OutboxItem], db.get(model.OUTBOX, item_id))


def outbox_items(db: Database) -> List[OutboxItem]:
    return cast(List[OutboxItem], db.all(model.OUTBOX))


#: a plain JSON object: what a snapshot, a report or a LAN message carries (not a stored record)
JsonObject = Dict[str, Any]


def as_doc(record: Any) -> Dict[str, Any]:
    """A typed record as the plain document the store takes (the same object)."""
    return cast(Dict[str, Any], record)
