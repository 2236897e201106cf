"""What the five 考前 step pages show, as frozen dataclasses with enum states, and their ✓/✗.

Each step service's ``view()`` returns one of these (``snapshot()`` returns its
``as_dict()``: exactly the plain JSON it always returned, for the CLI's ``--json``, the
tests and the views that still read dicts):

==========================  ==========================================  ===================
service                     ``view()``                                  its rows
==========================  ==========================================  ===================
``core.loading``            ``LoadingSnapshot`` (导入考务 §3.1)          ``LoadingRow``
``core.registration``       ``RegistrationSnapshot`` (考场注册 §3.2)     ``RegistrationRow``
``core.authorization``      ``AuthorizationSnapshot`` (考试授权 §3.3)    ``SessionRow``
``core.seal``               ``SealSnapshot`` (封场检测 §3.4)             ``SealItem``
``core.verification``       ``VerificationSnapshot`` (授权验证 §4.2)     ``SessionRow``
==========================  ==========================================  ===================

A row's ``state`` is the enum a view decides on (``RegistrationState``, ``SessionState``,
``CheckStatus``); its label is ``kd.core.labels.label(row.state)``. ``StepMarks`` holds the
five steps' ✓/✗ with why (``kd.core.steps``). A field that holds a list in the dict holds
a tuple here (the dataclasses are frozen).
"""

import dataclasses
from enum import Enum
from typing import Any, ClassVar, Dict, Optional, Sequence, Tuple

from kd.core.lifecycle import session_state
from kd.core.records import JsonObject, Session, SessionDef
from kd.core.states import CheckStatus, RegistrationState, SessionState, Step


def plain(value: Any) -> Any:
    """``value`` as plain JSON: dataclasses by their ``as_dict()``, enums by their code, tuples as lists.

    The common cells (None, text, numbers) return first: a 100-room snapshot has ~2,000 of them.
    """
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.as_dict()  # type: ignore[attr-defined]
    return value


def fields_dict(obj: Any, skip: Sequence[str] = ()) -> JsonObject:
    return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name not in skip}


class JsonRecord:
    """A frozen dataclass whose ``as_dict()`` is its fields as plain JSON, but those in ``SKIP``."""

    SKIP: ClassVar[Tuple[str, ...]] = ()

    def as_dict(self) -> JsonObject:
        return fields_dict(self, skip=self.SKIP)


# -- 导入考务 ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LoadingRow(JsonRecord):
    code: str
    name: str
    session_count: int
    loaded_at: str
    verified: bool  # the room file is in place with its signed size
    verified_at: Optional[str]


@dataclasses.dataclass(frozen=True)
class LoadingSnapshot:
    loaded: bool
    columns: Tuple[str, ...]
    rooms: Tuple[LoadingRow, ...]
    site_code: Optional[str]
    exam_name: Optional[str]
    publish_time: Optional[str]
    loaded_at: Optional[str]
    verified_at: Optional[str]
    source: Optional[str]  # "online" | "manual"
    manifest_sha256: Optional[str] = None

    @property
    def all_verified(self) -> bool:
        """Loaded, with rooms, every room's file verified (the step's ✓)."""
        return self.loaded and bool(self.rooms) and all(r.verified for r in self.rooms)

    def as_dict(self) -> JsonObject:
        out = fields_dict(self, skip=() if self.loaded else ("manifest_sha256",))
        out["columns"] = list(self.columns)
        return out


# -- 考场注册 ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RegistrationRow(JsonRecord):
    code: str
    reg_code: str
    ip: Optional[str]
    registered: bool
    registered_at: Optional[str]
    data_imported: bool  # its proctor imported the loaded package's room data (封场检测)
    data_imported_at: Optional[str]
    note: str
    state: RegistrationState
    SKIP = ("state",)


@dataclasses.dataclass(frozen=True)
class RegistrationSnapshot(JsonRecord):
    columns: Tuple[str, ...]
    rooms: Tuple[RegistrationRow, ...]
    registered: int
    unregistered: int


# -- 考试授权 / 授权验证 -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SessionRow:
    """A session of the package with its authorization and verification (场次明细)."""

    id: str
    name: Optional[str]
    start: Optional[str]
    duration_min: Optional[int]
    state: SessionState  # its gate: loaded | authorized | verified
    authorized_at: Optional[str]
    authorization_source: Optional[str]
    verified_at: Optional[str]
    verification_source: Optional[str]
    lock_clock_skew_s: Optional[float]
    lock_synced_at: Optional[str]

    @property
    def authorized(self) -> bool:
        return self.state in (SessionState.AUTHORIZED, SessionState.VERIFIED)

    @property
    def verified(self) -> bool:
        return self.state == SessionState.VERIFIED

    def authorization_dict(self) -> JsonObject:
        """The row of ``AuthorizationService.snapshot()``."""
        return {"id": self.id, "name": self.name, "start": self.start, "duration_min": self.duration_min,
                "authorized": self.authorized, "authorized_at": self.authorized_at,
                "authorization_source": self.authorization_source, "verified": self.verified,
                "verified_at": self.verified_at}

    def as_dict(self) -> JsonObject:
        """The row of ``VerificationService.snapshot()``."""
        return {"id": self.id, "name": self.name, "start": self.start, "duration_min": self.duration_min,
                "authorized": self.authorized, "authorized_at": self.authorized_at, "verified": self.verified,
                "verified_at": self.verified_at, "verification_source": self.verification_source,
                "lock_clock_skew_s": self.lock_clock_skew_s, "lock_synced_at": self.lock_synced_at}


def session_row(definition: SessionDef, doc: Optional[Session]) -> SessionRow:
    """A package session (``definition``: ``id``, ``name``, ``start``, ``duration_min``) with its record."""
    record: Dict[str, Any] = dict(doc or {})
    return SessionRow(id=definition["id"], name=definition.get("name"), start=definition.get("start"),
                      duration_min=definition.get("duration_min"), state=session_state(doc),
                      authorized_at=record.get("authorized_at"),
                      authorization_source=record.get("authorization_source"),
                      verified_at=record.get("verified_at"), verification_source=record.get("verification_source"),
                      lock_clock_skew_s=record.get("lock_clock_skew_s"), lock_synced_at=record.get("lock_synced_at"))


@dataclasses.dataclass(frozen=True)
class AuthorizationSnapshot:
    columns: Tuple[str, ...]
    sessions: Tuple[SessionRow, ...]

    @property
    def all_authorized(self) -> bool:
        return bool(self.sessions) and all(s.authorized for s in self.sessions)

    def as_dict(self) -> JsonObject:
        return {"columns": list(self.columns), "sessions": [s.authorization_dict() for s in self.sessions],
                "all_authorized": self.all_authorized}


@dataclasses.dataclass(frozen=True)
class VerificationSnapshot(JsonRecord):
    sessions: Tuple[SessionRow, ...]
    current: Optional[str]  # the session to act on (kd.core.verification.current_session)
    lock_id: Optional[str]

    @property
    def current_row(self) -> Optional[SessionRow]:
        return next((s for s in self.sessions if s.id == self.current), None)


# -- 封场检测 ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SealItem(JsonRecord):
    id: str
    label: str
    status: CheckStatus
    status_label: str
    detail: str
    remedy: str


@dataclasses.dataclass(frozen=True)
class SealRoom(JsonRecord):
    room: str
    registered: bool
    data_imported: bool


@dataclasses.dataclass(frozen=True)
class SealReport(JsonRecord):
    """The delivery of the passing run's ``seal_check`` report (outbox state codes)."""

    state: str
    sent_at: Optional[str]
    last_error: Optional[str]
    created_at: Optional[str]


@dataclasses.dataclass(frozen=True)
class SealSnapshot:
    """The last 封场检测 (``checked`` False before any run: then no ``report_id``)."""

    items: Tuple[SealItem, ...]
    passed: bool
    checked_at: Optional[str]
    rooms: Tuple[SealRoom, ...]
    passed_at: Optional[str]
    report_id: Optional[str]
    report: Optional[SealReport]
    report_label: str
    checked: bool = True

    def as_dict(self) -> JsonObject:
        out = fields_dict(self, skip=("checked",) if self.checked else ("checked", "report_id"))
        return out


# -- the five steps' ✓/✗ -----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StepMark(JsonRecord):
    step: Step
    label: str  # 导入考务, 考场注册...
    done: bool
    why: str  # in Chinese: what makes it ✓, or what is missing


@dataclasses.dataclass(frozen=True)
class StepMarks:
    """The five 考前 steps in order."""

    marks: Tuple[StepMark, ...]

    def __getitem__(self, step: Step) -> StepMark:
        for mark in self.marks:
            if mark.step == step:
                return mark
        raise KeyError(step)

    def done(self, step: Step) -> bool:
        return self[step].done

    def as_dict(self) -> JsonObject:
        return {m.step.value: m.as_dict() for m in self.marks}
