"""The core's state enums: what a record, a check or a table row is in, as codes.

Each is a ``str`` enum (its value is the code the JSON snapshots and reports carry), so a
member equals its code and serialises as it. Their labels for people are in
``kd.core.labels`` (``label(member)``); the lifecycles that move between the session and
room-session states are in ``kd.core.lifecycle``. This module imports nothing of the
project, so that any module (``kd.core.model`` too) may use it.
"""

import enum


class SessionState(str, enum.Enum):
    """A session: its own gate, then its rooms' progress (``kd.core.lifecycle.session_state``)."""

    LOADED = "loaded"
    AUTHORIZED = "authorized"
    VERIFIED = "verified"
    STARTED = "started"
    ENDED = "ended"
    RECOVERED = "recovered"
    UPLOADED = "uploaded"


class SessionEvent(str, enum.Enum):
    AUTHORIZE = "authorize"  # 考试授权 stored (again)
    VERIFY = "verify"  # 授权验证 passed (again)
    VOID = "void"  # a newer package changed the session: its authorization and verification are void


class RoomSessionState(str, enum.Enum):
    """One room in one session (``kd.core.lifecycle.room_session_state``)."""

    PLANNED = "planned"
    PERMITTED = "permitted"
    STARTED = "started"
    STARTED_UNPERMITTED = "started_unpermitted"
    ENDED = "ended"
    RECOVERED = "recovered"
    UPLOADED = "uploaded"


class RoomSessionEvent(str, enum.Enum):
    PERMIT = "permit"  # the first start permit granted
    START = "start"  # the room started with a permit, the session verified
    START_UNPERMITTED = "start_unpermitted"  # 未经许可开考
    END = "end"
    RECOVER = "recover"  # its result package received
    UPLOAD = "upload"  # the platform's receipt kept


class StartKind(str, enum.Enum):
    """How a room's start of a session was recorded (考场监控 ``start``)."""

    PERMITTED = "permitted"
    UNPERMITTED = "unpermitted"


class RegistrationState(str, enum.Enum):
    """A room's registration (考场注册): not registered, registered, its room data imported."""

    UNREGISTERED = "unregistered"
    REGISTERED = "registered"
    DATA_IMPORTED = "data_imported"


class CheckStatus(str, enum.Enum):
    """An item of 封场检测."""

    PASS = "pass"  # noqa: S105 - not a password
    FAIL = "fail"
    SKIPPED = "skipped"


class Situation(str, enum.Enum):
    """考场情况 of a room's result (数据回收)."""

    NOT_RECOVERED = "not_recovered"
    RECOVERED = "recovered"
    CONFLICT = "conflict"  # recovered, and another package for it was refused


class ReportState(str, enum.Enum):
    """状态上报 of a room's result (数据回收): nothing to report, not yet uploaded, uploaded."""

    NO_DATA = "no_data"
    NOT_REPORTED = "not_reported"
    REPORTED = "reported"


class UploadStatus(str, enum.Enum):
    """上报状态 of a session (考后上报): none, some or all of its rooms uploaded."""

    NONE = "none"
    PARTLY = "partly"
    ALL = "all"


class Step(str, enum.Enum):
    """The five 考前 steps, in order."""

    LOAD = "load"  # 导入考务
    REGISTER = "register"  # 考场注册
    AUTHORIZE = "authorize"  # 考试授权
    SEAL = "seal"  # 封场检测
    VERIFY = "verify"  # 授权验证
