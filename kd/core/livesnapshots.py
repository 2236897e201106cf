"""What 考场监控 (§4.3) and 数据回收 (§5.1) show, as frozen dataclasses with enum states.

``core.monitor.view(session_id)`` returns a ``MonitorSnapshot`` (rows: ``MonitorRow``, each
with its room-session ``state`` and how it ``start``-ed); ``core.recovery.view(session_id)``
a ``RecoverySnapshot`` (rows: ``RecoveryRow`` with ``situation: Situation`` and ``report:
ReportState``). Their ``snapshot()`` is ``view().as_dict()``: the plain JSON of before, the
rows' ``situation`` / ``report`` / ``source`` as their Chinese labels (``kd.core.labels``).
Views decide on the enums, never on the labels.

Display helpers of 考场监控: ``cell_text(key, value)``, ``row_cell(row, key)`` (考试中 of an
unpermitted start reads ``"<n>（未经许可开考）"``), ``report_view(outbox item)`` (its time as
``labels.shown``). ``MonitorRow.lost``: not connected and not ended, the rooms 考场管理
paints red (a room that ended its session and went away is no alarm). ``MonitorRow.extra_time_min``
and ``expected_end``: the room's 补时 and its expected end (``kd.core.extratime``);
``extra_time_line(rows)`` is the line 考场管理 and ``main.py monitor`` show for the rooms
with 补时 (``补时：考场 R1 10 分钟，预计 2026-12-01 11:10 结束``) and the 是否结束考试 cell of
such a room not ended reads ``否（补时）`` (``EXTRA_TIME_MARK``).
"""

import dataclasses
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, cast

from kd.core import labels, lifecycle
from kd.core.records import JsonObject, RoomSession, SessionDef
from kd.core.snapshots import fields_dict, plain
from kd.core.states import ReportState, RoomSessionState, Situation, StartKind

#: the outbox's delivered / refused states (kd.core.outbox)
_SENT, _FAILED = "sent", "failed"


# -- 考场监控 ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MonitorRow:
    room: str
    ip: Optional[str]
    data_imported: bool
    authorized: bool
    verified: bool
    started: bool
    ended: bool
    reported: bool  # its result is recovered (是否已上报数据)
    connected: bool
    candidates: int
    logged_in: int
    in_exam: int
    started_at: Optional[str]
    ended_at: Optional[str]
    start: Optional[StartKind]
    unpermitted: bool
    unpermitted_at: Optional[str]
    last_seen_s: Optional[float]
    state: RoomSessionState
    extra_time_min: int = 0  # the 补时 granted for the session (total minutes)
    expected_end: Optional[str] = None  # ISO: the session's end plus that 补时 (None: no valid start/duration)

    @property
    def lost(self) -> bool:
        """Not connected and not finished: an alarm (a room that ended the session may go away)."""
        return not self.connected and not self.ended

    def as_dict(self) -> JsonObject:
        return fields_dict(self, skip=("state",))


@dataclasses.dataclass(frozen=True)
class MonitorSnapshot:
    """One session's §4.3 table (``session`` None before loading: no rows)."""

    session: Optional[Dict[str, Any]]  # id, name, start, duration_min, started_reported_at, ended_reported_at
    sessions: Tuple[Dict[str, Any], ...]  # id, name
    columns: List[Tuple[str, str]]
    rows: Tuple[MonitorRow, ...]
    totals: Dict[str, Any]
    status_report: Optional[Dict[str, Any]]  # state, label, sent_at (考场状态上报)

    def as_dict(self) -> JsonObject:
        out = {"session": self.session, "sessions": list(self.sessions), "columns": self.columns,
               "rows": plain(self.rows), "totals": self.totals}
        if self.session is not None:
            out["status_report"] = self.status_report
        return out


def cell_text(key: str, value: Any) -> str:
    """A cell as the manual shows it (booleans as their Chinese labels)."""
    if key in labels.MONITOR_BOOL_LABELS:
        return labels.yes_no(key, value)
    return "" if value is None else str(value)


#: the 是否结束考试 cell of a room with 补时 that has not ended: ``否（补时）``
EXTRA_TIME_MARK = "补时"


def row_cell(row: Dict[str, Any], key: str) -> str:
    """A cell of a snapshot row as shown; 考试中 of a 未经许可开考 row says so, 是否结束考试 of a room
    with 补时 not ended reads ``否（补时）``."""
    text = cell_text(key, row.get(key))
    if key == "in_exam" and row.get("unpermitted"):
        return "{}（{}）".format(text, labels.UNPERMITTED_LABEL)
    if key == "ended" and not row.get("ended") and (row.get("extra_time_min") or 0) > 0:
        return "{}（{}）".format(text, EXTRA_TIME_MARK)
    return text


def extra_time_line(rows: Iterable[Any]) -> str:
    """The rooms with 补时 (``MonitorRow``s or their JSON), in the rows' order ("" when none):
    ``补时：考场 R1 10 分钟，预计 2026-12-01 11:10 结束；考场 R2 …``."""
    parts = []
    for row in rows:
        get = row.get if isinstance(row, Mapping) else (lambda k, r=row: getattr(r, k, None))
        minutes = get("extra_time_min") or 0
        if minutes > 0:
            end = labels.shown(get("expected_end"))
            parts.append("考场 {} {} 分钟，预计 {} 结束".format(get("room"), minutes, end))
    return "补时：" + "；".join(parts) if parts else ""


def report_view(report: Optional[Mapping[str, Any]]) -> JsonObject:
    """考场状态上报 of an outbox item: 成功 <time> / 等待上报 / 失败."""
    if report is None:
        return {"state": None, "label": "", "sent_at": None}
    if report["state"] == _SENT:
        return {"state": _SENT, "label": "成功 {}".format(labels.shown(report.get("sent_at"))),
                "sent_at": report.get("sent_at")}
    if report["state"] == _FAILED:
        return {"state": _FAILED, "label": "失败：{}".format(report.get("last_error") or ""), "sent_at": None}
    return {"state": report["state"], "label": "等待上报", "sent_at": None}


# -- 数据回收 ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SubjectCount:
    """One subject's counts in a row (科目1 / 科目2) or in the totals."""

    label: str
    code: str
    name: str
    candidates: int
    present: int
    absent: int
    collected: int
    not_collected: int

    def as_dict(self) -> JsonObject:
        return fields_dict(self)


@dataclasses.dataclass(frozen=True)
class RecoveryRow:
    room: str
    room_name: str
    session: str
    session_name: str
    candidates: int
    present: int
    absent: int
    collected: int
    not_collected: int
    situation: Situation
    report: ReportState
    source: Optional[str]  # "lan" | "manual"
    received_at: Optional[str]
    sha256: Optional[str]
    size: Optional[int]
    subjects: Tuple[SubjectCount, ...]

    @property
    def recovered(self) -> bool:
        return self.situation != Situation.NOT_RECOVERED

    def as_dict(self) -> JsonObject:
        return {"room": self.room, "room_name": self.room_name, "session": self.session,
                "session_name": self.session_name, "candidates": self.candidates, "present": self.present,
                "absent": self.absent, "collected": self.collected, "not_collected": self.not_collected,
                "recovered": self.recovered, "situation": labels.label(self.situation),
                "report": labels.label(self.report),
                "source": labels.RECOVERY_SOURCE_LABELS.get(self.source or "", None),
                "received_at": self.received_at, "sha256": self.sha256, "size": self.size,
                "subjects": plain(self.subjects)}


COUNT_KEYS = ("candidates", "present", "absent", "collected", "not_collected")


def recovery_row(room: str, room_name: str, session: SessionDef, doc: Dict[str, Any],
                 expected: Dict[str, int], subject_names: Dict[str, str], conflicted: bool) -> RecoveryRow:
    """A room's row of the §5.1 table: the package's candidates per subject (``expected``), the
    counts of its recovered result (``doc``: its room-session record) and its states."""
    res = doc.get("result")
    counts = (res or {}).get("counts") or {}
    got = {s["code"]: s for s in counts.get("subjects", [])}
    codes = list(session.get("subjects", [])) or sorted(expected)
    subjects = []
    for i, code in enumerate(codes):
        present, absent, collected = (got.get(code, {}).get(k, 0) for k in ("present", "absent", "collected"))
        candidates = expected.get(code, 0)
        subjects.append(SubjectCount(label="科目{}".format(i + 1), code=code, name=subject_names.get(code, code),
                                     candidates=candidates, present=present, absent=absent, collected=collected,
                                     not_collected=max(0, candidates - absent - collected)))
    candidates = sum(expected.values())
    absent, collected = counts.get("absent", 0), counts.get("collected", 0)
    if not res:
        situation, report = Situation.NOT_RECOVERED, ReportState.NO_DATA
    else:
        situation = Situation.CONFLICT if conflicted else Situation.RECOVERED
        report = ReportState.REPORTED if lifecycle.uploaded(cast(RoomSession, doc)) else ReportState.NOT_REPORTED
    return RecoveryRow(room=room, room_name=room_name, session=session["id"],
                       session_name=session.get("name", session["id"]), candidates=candidates,
                       present=counts.get("present", 0), absent=absent, collected=collected,
                       not_collected=max(0, candidates - absent - collected), situation=situation, report=report,
                       source=(res or {}).get("source"), received_at=(res or {}).get("received_at"),
                       sha256=(res or {}).get("sha256"), size=(res or {}).get("size"),
                       subjects=tuple(subjects) if len(codes) > 1 else ())


@dataclasses.dataclass(frozen=True)
class RecoverySnapshot:
    """The 数据回收 table of one session (``session``) or all (None)."""

    session: Optional[str]
    sessions: Tuple[Dict[str, Any], ...]  # id, name, subjects
    columns: Tuple[Tuple[str, str], ...]
    subject_columns: Tuple[str, ...]
    rows: Tuple[RecoveryRow, ...]
    totals: Dict[str, Any]
    conflicts: Tuple[Dict[str, Any], ...]
    all_recovered: bool
    recovery_report: Optional[Dict[str, Any]]

    def as_dict(self) -> JsonObject:
        return {"session": self.session, "sessions": list(self.sessions), "columns": [list(c) for c in self.columns],
                "subject_columns": list(self.subject_columns), "rows": plain(self.rows), "totals": self.totals,
                "conflicts": list(self.conflicts), "all_recovered": self.all_recovered,
                "recovery_report": self.recovery_report}
