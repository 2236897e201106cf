"""考场监控 (screens.md §4.3) and the automatic reports of §4.4.

``MonitorService(ctx, outbox)`` keeps the proctors' heartbeats in memory and persists only
transitions. ``heartbeat(room_code, state)`` takes what a proctor machine reports (the
LAN service calls it after authenticating the room)::

    {"session_id": "S1",        # the session the room is on (required)
     "started": bool,           # the room has started the session (开考)
     "ended": bool,             # the room has ended it (结束考试)
     "logged_in": int,          # candidates logged in (已登录)
     "in_exam": int}            # candidates answering (考试中)

A room's first ``started`` for a session sets ``started_at`` of ``runtime
room_sessions/<room|session>``. The start is *permitted* when the site granted the room
its start permit for the session (``permitted_at``, set by
``VerificationService.start_permit``) and the session is still verified; otherwise it is
未经许可开考: ``unpermitted_at`` is set too (the same time), audited once as
``room.started_unpermitted`` (``reason``: ``not_authorized``, ``not_verified`` or
``no_permit``) instead of ``room.started``, and every later heartbeat of that room and
session returns ``{"start": "unpermitted"}`` so the LAN reply can warn the proctor. The
room still counts as started (its candidates are answering: the 初始化/退出 guards and
the reports must see it). A later permit does not change a start already recorded.

``ended`` requires a start: the first ``ended`` sets ``ended_at`` only when the room's
start is recorded or the same heartbeat says ``started``; otherwise the heartbeat is
refused with ``StateRefused`` and changes nothing (not even the live counts), audited
once per room and session while the service runs (``room.end_refused``). A room is
connected while its last heartbeat is younger than ``missed`` (3) x ``interval`` (5 s);
the time comes from ``clock`` (monotonic seconds; tests pass their own).

``tick()`` (called periodically by the app, or by tests) enqueues the reports of §4.4 in
the outbox, each once per session (the time is kept in ``sessions/<id>``:
``started_reported_at``, ``ended_reported_at``): ``session_started`` when every room of
the session has started, ``session_ended`` when every room has ended (data: ``rooms``,
``at``, ``unpermitted``: the rooms whose start was 未经许可开考, in the package's order;
such rooms count as started, so the report is never held back but never a plain 开考
either); and a ``room_status`` report per session under way every ``status_every``
seconds (each room with ``unpermitted``, the totals with their count).

``snapshot(session_id)``: one row per room of the session with every column of §4.3 (考场
编号 | 注册IP | 考场数据导入状态 | 考试授权状态 | 授权验证状态 | 是否结束考试 | 是否已上报数据 |
是否与考场连接 | 考生人数 | 已登录 | 考试中), the 人数统计 totals and the footer (场次名称,
开考时间, 考场状态上报 state). Each row carries ``start`` (``None``, ``START_PERMITTED``,
``START_UNPERMITTED``), the flag ``unpermitted`` with ``unpermitted_at``, and the room's 补时
(``extra_time_min``, from ``room_sessions``) with its ``expected_end`` (the session's start +
duration + that 补时, ISO; what ``ExtraTimeService.expected_end`` says): views decide on
these, never on the text; ``row_cell(row, key)`` is a cell as shown (考试中 of an
unpermitted start reads ``"<n>（未经许可开考）"``).
"""

import datetime
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from kd.core import labels, lifecycle, model, names, records
from kd.core.context import Context
from kd.core.lifecycle import RoomSessionEvent
from kd.core.livesnapshots import MonitorRow, MonitorSnapshot, cell_text, report_view, row_cell  # noqa: F401
from kd.core.outbox import Outbox
from kd.core.records import JsonObject
from kd.core.states import StartKind
from kd.core.verification import current_session
from kd.errors import StateRefused, UserError
from kd.formats.timeutil import format_time, read_time

log = logging.getLogger(__name__)

ACTOR = "system"

#: (key, label) of the §4.3 columns, in the manual's order
COLUMNS: List[Tuple[str, str]] = [
    ("room", "考场编号"), ("ip", "注册IP"), ("data_imported", "考场数据导入状态"),
    ("authorized", "考试授权状态"), ("verified", "授权验证状态"), ("ended", "是否结束考试"),
    ("reported", "是否已上报数据"), ("connected", "是否与考场连接"), ("candidates", "考生人数"),
    ("logged_in", "已登录"), ("in_exam", "考试中"),
]
BOOL_LABELS = labels.MONITOR_BOOL_LABELS
TOTAL_LABEL = labels.TOTALS_LABEL
#: a row's ``start``: how its start was recorded (None: not started)
START_PERMITTED, START_UNPERMITTED = StartKind.PERMITTED.value, StartKind.UNPERMITTED.value
UNPERMITTED_LABEL = labels.UNPERMITTED_LABEL
#: the audit action of a session report enqueued
REPORTED = {"session_started": names.SESSION_STARTED, "session_ended": names.SESSION_ENDED}
#: ``reason`` of a ``room.started_unpermitted`` audit entry
NOT_AUTHORIZED, NOT_VERIFIED, NO_PERMIT = "not_authorized", "not_verified", "no_permit"


def unpermitted_reason(session_doc: Optional[records.Session], rs_doc: Optional[records.RoomSession]) -> Optional[str]:
    """Why a start now would be 未经许可开考 (a ``reason`` constant), None when it is permitted.

    Permitted: the room was granted its start permit for the session (``permitted_at``)
    and the session is authorized and verified now.
    """
    if not lifecycle.authorized(session_doc):
        return NOT_AUTHORIZED
    if not lifecycle.verified(session_doc):
        return NOT_VERIFIED
    if not lifecycle.permitted(rs_doc):
        return NO_PERMIT
    return None


class _Beat:
    __slots__ = ("at", "session", "logged_in", "in_exam", "started", "ended")

    def __init__(self, at: float, session: str, logged_in: int, in_exam: int, started: bool, ended: bool) -> None:
        self.at, self.session = at, session
        self.logged_in, self.in_exam = logged_in, in_exam
        self.started, self.ended = started, ended


def _count(state: Dict[str, Any], name: str) -> int:
    value = state.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100000:
        raise UserError("考场状态数据无效：{} 应为非负整数。".format(name), "请检查监考机的版本。",
                        detail="bad heartbeat field {}={!r}".format(name, value))
    return value


def _minutes(value: Any) -> int:
    """A record's whole minutes (``extra_time_min``); 0 when absent or not a count."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _scheduled_end(session: Dict[str, Any]) -> Optional[datetime.datetime]:
    """The session's start + duration (None when the package's fields are unreadable)."""
    try:
        return read_time(session.get("start")) + datetime.timedelta(minutes=int(session.get("duration_min") or 0))
    except (TypeError, ValueError):
        return None


def _plan_part(manifest: records.Manifest) -> JsonObject:
    """What the monitor needs of the stored manifest: rooms, sessions, candidates per (room, session)."""
    counts: Dict[Tuple[str, str], int] = {}
    for c in manifest.get("candidates") or []:
        pair = (c.get("room") or "", c.get("session") or "")
        counts[pair] = counts.get(pair, 0) + 1
    return {"rooms": manifest.get("rooms") or [], "sessions": manifest.get("sessions") or [],
            "counts": [[room, session, n] for (room, session), n in counts.items()]}


class MonitorService:
    """Live room state (in memory), its persisted transitions, the §4.3 table and §4.4 reports."""

    def __init__(self, ctx: Context, outbox: Outbox, *, interval: float = 5.0, missed: int = 3,
                 status_every: float = 60.0, clock: Optional[Callable[[], float]] = None) -> None:
        if interval <= 0 or missed < 1:
            raise ValueError("interval must be > 0 and missed >= 1")
        self.ctx = ctx
        self.outbox = outbox
        self.interval = float(interval)
        self.missed = int(missed)
        self.status_every = float(status_every)
        self.clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._beats: Dict[str, _Beat] = {}
        #: (room, session) pairs known to be persisted as started / ended
        self._started: set = set()
        self._ended: set = set()
        #: (room, session) pairs whose recorded start is 未经许可开考
        self._unpermitted: set = set()
        #: (room, session) pairs whose refused end is audited (once while the service runs)
        self._end_refused: set = set()
        self._loaded = False
        self._last_status: Dict[str, float] = {}
        #: session -> outbox id of its latest room_status report ("" when none)
        self._status_ids: Dict[str, str] = {}
        #: manifest_sha256 -> {"rooms": [...], "sessions": {...}, "counts": {(room, session): n}}
        self._plan_key: Optional[str] = None
        self._plan: Dict[str, Any] = {}
        self._generation = 0
        self._cache: Dict[str, Any] = {}
        ctx.hub.on("*", self._changed)

    # -- the package, cached per manifest ------------------------------------------------
    def _plan_now(self) -> JsonObject:
        meta = self.ctx.stores.exam.get(model.PACKAGE, model.PACKAGE_META) or {}
        key = "{}|{}".format(meta.get("manifest_sha256"), meta.get("loaded_at"))
        with self._lock:
            if key == self._plan_key:
                return self._plan
        manifest = self.ctx.manifest_view(_plan_part) or {}  # not a copy of every candidate
        counts: Dict[Tuple[str, str], int] = {(room, session): n for room, session, n in manifest.get("counts") or []}
        rooms_of: Dict[str, List[str]] = {}
        for room, session in counts:
            rooms_of.setdefault(session, []).append(room)
        order = [r["code"] for r in manifest.get("rooms") or []]
        index = {code: i for i, code in enumerate(order)}
        for session in rooms_of:
            rooms_of[session].sort(key=lambda code: (index.get(code, len(order)), code))
        plan = {"rooms": order, "sessions": {s["id"]: s for s in manifest.get("sessions") or []},
                "rooms_of": rooms_of, "counts": counts}
        with self._lock:
            self._plan_key, self._plan = key, plan
        return plan

    def _load_transitions(self) -> None:
        if self._loaded:
            return
        for doc in records.room_sessions(self.ctx.stores.runtime):
            pair = (doc["room"], doc["session"])
            if lifecycle.started(doc):
                self._started.add(pair)
            if lifecycle.start_unpermitted(doc):
                self._unpermitted.add(pair)
            if lifecycle.ended(doc):
                self._ended.add(pair)
        self._loaded = True

    # -- heartbeats ---------------------------------------------------------------------
    def heartbeat(self, room_code: str, state: JsonObject) -> JsonObject:
        """Take a room's heartbeat (see the module docstring); persist started/ended transitions.

        Returns ``{"start": None | START_PERMITTED | START_UNPERMITTED}``: how the room's
        start of the session is recorded. Raises ``UserError`` for a malformed state or a
        room/session not in the package, ``StateRefused`` for an ``ended`` without a start
        (nothing is taken of that heartbeat).
        """
        if not isinstance(state, dict):
            raise UserError("考场状态数据无效。", "请检查监考机的版本。", detail="heartbeat state {!r}".format(state))
        session = state.get("session_id")
        plan = self._plan_now()
        if not isinstance(session, str) or session not in plan["sessions"]:
            raise UserError("考场状态中的场次无效：{}".format(session), "请确认监考机已导入本考点当前的考场数据。")
        if room_code not in plan["rooms"]:
            raise UserError("没有考场 {}。".format(room_code), "请确认监考机已导入本考点的考场数据。")
        logged_in, in_exam = _count(state, "logged_in"), _count(state, "in_exam")
        ended = bool(state.get("ended"))
        started = bool(state.get("started"))
        pair = (room_code, session)
        with self._lock:
            self._load_transitions()
            orphan_end = ended and not started and pair not in self._started
        if orphan_end:
            self._refuse_end(room_code, session)
        with self._lock:
            self._beats[room_code] = _Beat(self.clock(), session, logged_in, in_exam, started or ended, ended)
            new_start = started and pair not in self._started
            new_end = ended and pair not in self._ended
        if new_start or new_end:
            self._persist(room_code, session, new_start, new_end)
        with self._lock:
            if pair not in self._started:
                return {"start": None}
            return {"start": START_UNPERMITTED if pair in self._unpermitted else START_PERMITTED}

    def _refuse_end(self, room: str, session: str) -> None:
        """An ``ended`` without a recorded start: audited once per pair, then ``StateRefused``."""
        pair = (room, session)
        if lifecycle.started(records.room_session(self.ctx.stores.runtime, room, session)):
            # recorded meanwhile (another connection of the room)
            with self._lock:
                self._started.add(pair)
            return
        with self._lock:
            first = pair not in self._end_refused
            self._end_refused.add(pair)
        if first:
            log.warning("room %s reported session %s ended without a start: refused", room, session)
            try:
                with self.ctx.lock:
                    self.ctx.record(room, names.ROOM_END_REFUSED, room_code=room, session_id=session)
            except BaseException:
                with self._lock:  # not audited: the next refusal tries again
                    self._end_refused.discard(pair)
                raise
        raise StateRefused(
            "考场 {} {}尚未开考（考点机没有该场次的开考记录），不能结束考试。".format(room, self.session_name(session)),
            "结束考试前须先开考：请监考机先获得开考许可并开考；如该考场确已开考，监考机应在同一心跳中报告已开考"
            "（started）和已结束（ended），考点机将记录其开考（未获许可的记为未经许可开考）。",
            detail="heartbeat ended without started for {}|{}".format(room, session))

    def _persist(self, room: str, session: str, started: bool, ended: bool) -> None:
        with self.ctx.lock:
            runtime = self.ctx.stores.runtime
            doc = records.room_session(runtime, room, session) or records.new_room_session(room, session)
            ids = {"room_code": room, "session_id": session}
            steps: List[lifecycle.Step] = []
            if started and not lifecycle.started(doc):
                reason = unpermitted_reason(records.session(runtime, session), doc)
                if reason is None:
                    steps.append(lifecycle.Step(RoomSessionEvent.START, names.ROOM_STARTED, ids))
                else:
                    log.warning("room %s started session %s without a permit (%s)", room, session, reason)
                    steps.append(lifecycle.Step(RoomSessionEvent.START_UNPERMITTED, names.ROOM_STARTED_UNPERMITTED,
                                                dict(ids, reason=reason)))
            if ended and (started or lifecycle.started(doc)) and not lifecycle.ended(doc):
                steps.append(lifecycle.Step(RoomSessionEvent.END, names.ROOM_ENDED, ids))
            if steps:
                doc = lifecycle.advance(self.ctx, doc, *steps, actor=room)
            with self._lock:
                if lifecycle.started(doc):
                    self._started.add((room, session))
                if lifecycle.start_unpermitted(doc):
                    self._unpermitted.add((room, session))
                if lifecycle.ended(doc):
                    self._ended.add((room, session))

    def session_name(self, session_id: str) -> str:
        """A session as the administrator reads it: its name in the package (第一场次), else ``场次 <id>``."""
        session = self._plan_now()["sessions"].get(session_id) or {}
        return session.get("name") or "场次 {}".format(session_id)

    def forget(self, room_code: str) -> None:
        """Drop a room's live state (its registration was revoked): it shows as not connected."""
        with self._lock:
            self._beats.pop(room_code, None)

    def connected(self, room_code: str) -> bool:
        with self._lock:
            beat = self._beats.get(room_code)
            return beat is not None and self.clock() - beat.at < self.interval * self.missed

    # -- the persisted state, cached until the next recorded change ------------------------
    def _changed(self, _event: Any) -> None:
        with self._lock:
            self._generation += 1

    def _persisted(self, session_id: str) -> Tuple[Dict[str, records.Room], Dict[str, records.RoomSession],
                                                   Optional[records.Session]]:
        """(rooms by code, room_sessions of the session by room, sessions/<id>), from the cache when valid.

        Every state change of the core is persisted and then published on the hub
        (``ctx.record``); any event drops the cache. The generation is read before the
        stores, so a change racing with the read is seen by the next call.
        """
        with self._lock:
            generation = self._generation
            cached = self._cache.get(session_id)
        if cached is not None and cached[0] == generation:
            return cached[1]
        runtime = self.ctx.stores.runtime
        rooms = {d["code"]: d for d in records.rooms(runtime)}
        rs = {d["room"]: d for d in records.room_sessions(runtime, session_id)}
        sdoc = records.session(runtime, session_id)
        value = (rooms, rs, sdoc)
        with self._lock:
            self._cache[session_id] = (generation, value)
        return value

    def invalidate(self) -> None:
        """Forget the cached persisted state (for writers that bypass ``ctx.record``)."""
        self._changed(None)

    # -- the table ----------------------------------------------------------------------
    def snapshot(self, session_id: Optional[str] = None) -> JsonObject:
        """The §4.3 table of ``session_id`` (default: the current session) as plain JSON
        (``view(session_id).as_dict()``); empty before loading."""
        return self.view(session_id).as_dict()

    def view(self, session_id: Optional[str] = None) -> MonitorSnapshot:
        """The §4.3 table of ``session_id`` (default: the current session); empty before loading
        (``kd.core.livesnapshots.MonitorSnapshot``: each row with its room-session ``state``).

        Raises ``UserError`` for a session not in the package.
        """
        plan = self._plan_now()
        sessions = plan["sessions"]
        if session_id is None:
            session_id = current_session(list(sessions.values()), self.ctx.now())
        if session_id is None:
            return MonitorSnapshot(session=None, sessions=(), columns=COLUMNS, rows=(), totals={}, status_report=None)
        if session_id not in sessions:
            raise UserError("没有场次 {}。".format(session_id), "请选择考场数据包中的场次。")
        rooms, rs, sdoc = self._persisted(session_id)
        authorized, verified = lifecycle.authorized(sdoc), lifecycle.verified(sdoc)
        scheduled_end = _scheduled_end(sessions[session_id])
        scheduled_iso = format_time(scheduled_end) if scheduled_end is not None else None  # once: most rooms'
        now = self.clock()
        limit = self.interval * self.missed
        counts = plan["counts"]
        with self._lock:
            beats = dict(self._beats)
        rows = []
        for code in plan["rooms_of"].get(session_id, []):
            room = rooms.get(code)
            record = rs.get(code)
            beat = beats.get(code)
            connected = beat is not None and now - beat.at < limit
            live = beat is not None and beat.session == session_id
            started = lifecycle.started(record)
            unpermitted = lifecycle.start_unpermitted(record)
            fields: Dict[str, Any] = dict(record or {})
            extra = _minutes(fields.get("extra_time_min"))
            rows.append(MonitorRow(
                room=code, ip=room["ip"] if room is not None else None,
                data_imported=bool(room is not None and room.get("data_imported_at")),
                authorized=authorized, verified=verified, started=started, ended=lifecycle.ended(record),
                reported=lifecycle.recovered(record), connected=connected,
                candidates=counts.get((code, session_id), 0),
                logged_in=beat.logged_in if beat is not None and live else 0,
                in_exam=beat.in_exam if beat is not None and live else 0,
                started_at=fields.get("started_at"), ended_at=fields.get("ended_at"),
                start=(StartKind.UNPERMITTED if unpermitted else StartKind.PERMITTED) if started else None,
                unpermitted=unpermitted, unpermitted_at=fields.get("unpermitted_at") if unpermitted else None,
                last_seen_s=round(now - beat.at, 1) if beat is not None else None,
                state=lifecycle.room_session_state(record),
                extra_time_min=extra, expected_end=scheduled_iso if not extra or scheduled_end is None
                else format_time(scheduled_end + datetime.timedelta(minutes=extra))))
        totals: Dict[str, Any] = {"room": TOTAL_LABEL, "rooms": len(rows)}
        for key in ("data_imported", "authorized", "verified", "started", "unpermitted", "ended", "reported",
                    "connected"):
            totals[key] = sum(1 for r in rows if getattr(r, key))
        for key in ("candidates", "logged_in", "in_exam"):
            totals[key] = sum(getattr(r, key) for r in rows)
        return self._snapshot_tail(session_id, sessions, sdoc, rows, totals)

    def _snapshot_tail(self, session_id: str, sessions: Dict[str, Any], sdoc: Optional[records.Session],
                       rows: List[MonitorRow], totals: Dict[str, Any]) -> MonitorSnapshot:
        rid = self._status_ids.get(session_id)
        if rid is None:
            latest = self.outbox.latest("room_status", session_id=session_id)
            rid = self._status_ids[session_id] = latest["id"] if latest else ""
        status = self.outbox.get(rid) if rid else None
        session = sessions[session_id]
        reported: Dict[str, Any] = dict(sdoc or {})
        return MonitorSnapshot(
            session={"id": session_id, "name": session.get("name"), "start": session.get("start"),
                     "duration_min": session.get("duration_min"),
                     "started_reported_at": reported.get("started_reported_at"),
                     "ended_reported_at": reported.get("ended_reported_at")},
            sessions=tuple({"id": s["id"], "name": s.get("name")} for s in sessions.values()),
            columns=COLUMNS, rows=tuple(rows), totals=totals, status_report=report_view(status))

    # -- automatic reports ----------------------------------------------------------------
    def tick(self) -> List[records.OutboxItem]:
        """Enqueue the §4.4 reports that are due; returns the enqueued outbox records."""
        plan = self._plan_now()
        out: List[records.OutboxItem] = []
        now = self.clock()
        for session_id, rooms in plan["rooms_of"].items():
            if not rooms:
                continue
            with self._lock:
                self._load_transitions()
                all_started = all((r, session_id) in self._started for r in rooms)
                all_ended = all((r, session_id) in self._ended for r in rooms)
                any_started = any((r, session_id) in self._started for r in rooms)
            if all_started:
                out.extend(self._once(session_id, "session_started", "started_reported_at", rooms))
            if all_ended:
                out.extend(self._once(session_id, "session_ended", "ended_reported_at", rooms))
            under_way = any_started and not all_ended
            last = self._last_status.get(session_id)
            if under_way and (last is None or now - last >= self.status_every):
                self._last_status[session_id] = now
                snap = self.view(session_id)
                report = self.outbox.enqueue("room_status", {
                    "rooms": [{k: getattr(r, k) for k in ("room", "started", "unpermitted", "ended", "reported",
                                                          "connected", "candidates", "logged_in", "in_exam")}
                              for r in snap.rows],
                    "totals": snap.totals}, session_id=session_id)
                self._status_ids[session_id] = report["id"]
                out.append(report)
        return out

    def _once(self, session_id: str, kind: str, field: str, rooms: List[str]) -> List[records.OutboxItem]:
        with self.ctx.lock:
            runtime = self.ctx.stores.runtime
            doc = runtime.get(model.SESSIONS, session_id) or {"id": session_id}
            if doc.get(field):
                return []
            stamp = "started_at" if kind == "session_started" else "ended_at"
            docs = {d["room"]: d for d in records.room_sessions(runtime, session_id) if d["room"] in rooms}
            times = [records.as_doc(d).get(stamp) for d in docs.values()]
            unpermitted = [r for r in rooms if lifecycle.start_unpermitted(docs.get(r))]
            report = self.outbox.enqueue(kind, {"rooms": len(rooms), "at": max((t for t in times if t), default=None),
                                                "unpermitted": unpermitted}, session_id=session_id)
            doc[field] = format_time(self.ctx.now())
            runtime.put(model.SESSIONS, session_id, doc)
            self.ctx.record(ACTOR, REPORTED[kind], session_id=session_id, outbox_id=report["id"],
                            unpermitted=unpermitted)
        return [report]
