"""考点时间线: the exam day's deadlines, read from the records, and the alarms they raise.

Three parts:

- ``Facts`` (``SiteFacts`` / ``SessionFacts`` / ``RoomFacts``): a typed snapshot of what
  the records say — times parsed, nothing else judged. ``TimelineService.facts()``
  gathers it from the stores (exam ``package/meta``, the manifest's sessions; runtime
  ``rooms``, ``sessions``, ``room_sessions`` (with each room's 补时, ``extra_time_min``: the
  records' cache drops on ``extra_time.granted`` like on any hub event), ``checks/seal``,
  ``checks/external``) and
  from the monitor's live heartbeats (``silent_s``: seconds since a room's last heartbeat,
  or since this service started watching when it has sent none since) and from the
  rooms' clock-skew estimates (``skew``, a ``kd.core.clockskew.ClockSkew``: ``room_skew``).
- ``build_timeline(facts, now, rules)`` (``kd.core.timelinebuild``, re-exported here): pure.
  One ``Item`` per rule
  (``kd.core.timelinerules``) and session (site-wide rules once), each with its due time,
  state (``ItemState``), completion time, evidence and the rooms still missing; and the
  alarm conditions that hold at ``now`` (``AlarmCondition``: one per overdue item, per
  overdue room of a per-room item, per lost room).
- ``TimelineService``: ``timeline(session)`` builds it now; ``tick()`` compares the
  conditions with the open alarms and opens / closes alarms. An alarm is opened once
  (``alarm.opened``) and closed once (``alarm.closed``), each audited and published
  through ``ctx.record``, never once per tick; the open alarms persist in runtime
  ``checks/alarms`` (``{"open": {<key>: Alarm.as_dict()}}``), so a restart neither
  re-audits nor forgets them. ``kd.site`` calls ``tick()`` every ``tick_s`` (1 s) when
  it runs the ticks (the window, ``--headless``). The format of items, alarms and the record is in docs/timeline.md.

An alarm's key is ``<session or ->/<item>/<room or ->`` (``S1/started/R01``,
``-/seal/-``); its kind ``overdue`` or ``room_lost``.
"""

import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from kd.core import model, names, records
from kd.core.timelinebuild import (  # noqa: F401 - the timeline's public names, kept here for its callers
    NO,
    AlarmCondition,
    Item,
    RoomFacts,
    SessionFacts,
    SiteFacts,
    Skew,
    Timeline,
    _iso,
    _time,
    alarm_key,
    build_timeline,
)
from kd.core.timelinerules import (
    ALARM_KIND_LABELS,
    DEFAULT_RULES,
    AlarmKind,
    ItemState,
    Rules,
)
from kd.errors import UserError
from kd.formats.timeutil import format_time

log = logging.getLogger(__name__)

ACTOR = "system"
#: runtime checks/<ALARMS>: the open alarms
ALARMS = "alarms"


# -- alarms ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Alarm:
    key: str
    kind: AlarmKind
    session: Optional[str]
    item: str
    room: Optional[str]
    label: str
    opened_at: str  # ISO

    def as_dict(self) -> Dict[str, Any]:
        return {"key": self.key, "kind": self.kind.value, "kind_label": ALARM_KIND_LABELS[self.kind],
                "session": self.session, "item": self.item, "room": self.room, "label": self.label,
                "opened_at": self.opened_at}

    @classmethod
    def from_dict(cls, doc: Dict[str, Any]) -> "Alarm":
        return cls(key=doc["key"], kind=AlarmKind(doc["kind"]), session=doc.get("session"), item=doc["item"],
                   room=doc.get("room"), label=doc.get("label") or "", opened_at=doc.get("opened_at") or "")


@dataclasses.dataclass(frozen=True)
class AlarmChange:
    opened: bool  # False: closed
    alarm: Alarm
    at: str  # ISO


def _minutes(value: Any) -> int:
    """A record's whole minutes (``extra_time_min``); 0 when absent or not a count."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _manifest_sessions(manifest: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [dict(s) for s in manifest.get("sessions") or [] if isinstance(s, dict)]


class TimelineService:
    """The timeline of the loaded package and its alarms (module docstring).

    ``monitor``: the ``MonitorService`` whose heartbeats tell lost rooms (its ``view``
    rows: rooms of each session and ``last_seen_s``). ``clock``: monotonic seconds, the
    monitor's by default (so ``silent_s`` and the monitor's ``last_seen_s`` agree).
    ``skew``: the rooms' clock estimates (``ClockSkew``; None: every room 未知).
    """

    def __init__(self, ctx: Any, monitor: Any, *, rules: Rules = DEFAULT_RULES,
                 clock: Optional[Callable[[], float]] = None, skew: Any = None) -> None:
        self.ctx = ctx
        self.monitor = monitor
        self.skew = skew
        self.rules = rules
        self.clock = clock or getattr(monitor, "clock", None) or time.monotonic
        self._watch_since = self.clock()
        self._lock = threading.Lock()
        self._open: Optional[Dict[str, Alarm]] = None
        self._cache_lock = threading.Lock()
        self._generation = 0
        self._cache: Optional[Tuple[int, SiteFacts]] = None
        ctx.hub.on("*", self._changed)

    # -- facts --------------------------------------------------------------------------
    def _changed(self, _event: Any) -> None:
        with self._cache_lock:  # not ``_lock``: tick() records (publishes) while it holds that
            self._generation += 1

    def _recorded(self) -> SiteFacts:
        """The facts the stores hold (``silent_s`` None), cached until the next hub event.

        Every state change of the core is persisted, then published (``ctx.record``): any
        event drops the cache. The generation is read before the stores, so a change racing
        with the read is seen by the next call.
        """
        with self._cache_lock:
            generation = self._generation
            cached = self._cache
        if cached is not None and cached[0] == generation:
            return cached[1]
        ctx = self.ctx
        meta = ctx.stores.exam.get(model.PACKAGE, model.PACKAGE_META) or {}
        defs = ctx.manifest_view(_manifest_sessions) or []
        runtime = ctx.stores.runtime
        seal = runtime.get(model.CHECKS, model.SEAL) or {}
        external = runtime.get(model.CHECKS, model.EXTERNAL) or {}
        copies = set()
        if external.get("valid", True) and external.get("verified_at"):
            for entry in external.get("files") or []:
                copies.add((entry.get("room"), entry.get("session"), entry.get("sha256")))
        backup_at = _time(external.get("verified_at")) if copies else None
        rooms = {d["code"]: d for d in records.rooms(runtime)}
        platform_skew, platform_at = None, None
        for entry in seal.get("items") or []:
            value = entry.get("skew_s") if isinstance(entry, dict) and entry.get("id") == "clock" else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                platform_skew, platform_at = float(value), _time(seal.get("checked_at"))
        dongle: Tuple[Any, ...] = (None, None)  # (verified_at, this PC minus the dongle) of the latest 授权验证
        sessions: List[SessionFacts] = []
        for sdef in defs:
            sid, start = sdef.get("id"), _time(sdef.get("start"))
            if not isinstance(sid, str) or start is None:
                continue
            try:
                duration = int(sdef.get("duration_min") or 0)
            except (TypeError, ValueError):
                duration = 0
            rs = {d["room"]: records.as_doc(d) for d in records.room_sessions(runtime, sid)}
            sdoc = records.as_doc(records.session(runtime, sid) or {})
            lock_skew, verified = sdoc.get("lock_clock_skew_s"), _time(sdoc.get("verified_at"))
            if isinstance(lock_skew, (int, float)) and not isinstance(lock_skew, bool) and verified is not None \
                    and (dongle[0] is None or verified > dongle[0]):
                dongle = (verified, -float(lock_skew))
            room_facts = []
            for row in self.monitor.view(sid).rows:  # the session's rooms, in the package's order
                room: Dict[str, Any] = dict(rooms.get(row.room) or {})
                doc = rs.get(row.room) or {}
                result = doc.get("result") or {}
                upload = doc.get("upload") or {}
                room_facts.append(RoomFacts(
                    code=row.room, registered_at=_time(room.get("registered_at")),
                    data_imported_at=_time(room.get("data_imported_at")), started_at=_time(doc.get("started_at")),
                    ended_at=_time(doc.get("ended_at")), recovered_at=_time(result.get("received_at")),
                    backed_up=bool(result) and (row.room, sid, result.get("sha256")) in copies,
                    uploaded_at=_time(upload.get("uploaded_at")) if upload.get("receipt") else None,
                    extra_time_min=_minutes(doc.get("extra_time_min"))))
            sessions.append(SessionFacts(
                id=sid, name=str(sdef.get("name") or ""), start=start, duration_min=duration,
                rooms=tuple(room_facts), lock_synced_at=_time(sdoc.get("lock_synced_at")),
                verified_at=_time(sdoc.get("verified_at")), backup_at=backup_at))
        value = SiteFacts(sessions=tuple(sessions), publish_time=_time(meta.get("publish_time")),
                          package_verified_at=_time(meta.get("verified_at")),
                          seal_passed_at=_time(seal.get("passed_at")) if seal.get("passed") else None,
                          platform_skew_s=platform_skew, platform_skew_at=platform_at,
                          dongle_skew_s=dongle[1], dongle_skew_at=dongle[0])
        with self._cache_lock:
            self._cache = (generation, value)
        return value

    def invalidate(self) -> None:
        """Forget the cached records (for writers that bypass ``ctx.record``)."""
        self._changed(None)

    def facts(self) -> SiteFacts:
        """What the records and the live heartbeats say now (``SiteFacts``).

        The records are read once per change (``_recorded``); the heartbeats on every call:
        a session under way (a room started, not every room ended) asks the monitor for its
        rows' ``last_seen_s``, other sessions keep ``silent_s`` None (nothing to lose).
        """
        recorded = self._recorded()
        silent_never = self.clock() - self._watch_since
        estimates = self.skew.estimates() if self.skew is not None else {}
        sessions: List[SessionFacts] = []
        for session in recorded.sessions:
            if not any(r.started_at is not None and r.ended_at is None for r in session.rooms):
                sessions.append(session)
                continue
            seen = {row.room: row.last_seen_s for row in self.monitor.view(session.id).rows}
            rooms = tuple(dataclasses.replace(r, silent_s=seen[r.code] if seen.get(r.code) is not None
                                              else silent_never) for r in session.rooms)
            sessions.append(dataclasses.replace(session, rooms=rooms))
        room_skew = {room: Skew(room, e.offset_s, e.uncertainty_s, e.at) for room, e in estimates.items()}
        return dataclasses.replace(recorded, sessions=tuple(sessions), room_skew=room_skew)

    def timeline(self, session_id: Optional[str] = None) -> Timeline:
        """The timeline now (of ``session_id`` and the site-wide items; every session when None).

        Raises ``UserError`` for a session not in the loaded package.
        """
        facts = self.facts()
        if session_id is not None and session_id not in {s.id for s in facts.sessions}:
            raise UserError("没有场次 {}。".format(session_id), "请给出考场数据包中的场次编号（不给则列出全部场次）。")
        return build_timeline(facts, self.ctx.now(), self.rules).for_session(session_id)

    # -- alarms -------------------------------------------------------------------------
    def _load(self) -> Dict[str, Alarm]:
        if self._open is None:
            doc = self.ctx.stores.runtime.get(model.CHECKS, ALARMS) or {}
            self._open = {}
            for key, entry in (doc.get("open") or {}).items():
                try:
                    self._open[key] = Alarm.from_dict(entry)
                except (KeyError, ValueError, TypeError):
                    log.error("dropping an unreadable stored alarm %s: %r", key, entry)
        return self._open

    def open_alarms(self) -> Tuple[Alarm, ...]:
        """The open alarms, oldest first."""
        with self._lock:
            return tuple(sorted(self._load().values(), key=lambda a: (a.opened_at, a.key)))

    def open_count(self) -> int:
        with self._lock:
            return len(self._load())

    def tick(self) -> List[AlarmChange]:
        """Build the timeline now, open the alarms whose condition holds, close the others.

        Each change is persisted (``checks/alarms``) and recorded (``alarm.opened`` /
        ``alarm.closed``, actor ``system``) under the core lock (ticks are serialised by it);
        the events are published after the service's own lock is released, so a hub
        listener may call ``open_alarms()``. Returns the changes.
        """
        line = self.timeline()
        now = format_time(line.at)
        held = {c.key: c for c in line.conditions}
        changes: List[AlarmChange] = []
        with self.ctx.lock:
            with self._lock:
                current = self._load()
                opened = [Alarm(c.key, c.kind, c.session, c.item, c.room, c.label, now)
                          for key, c in held.items() if key not in current]
                closed = [a for key, a in current.items() if key not in held]
                if not opened and not closed:
                    return changes
                after = dict(current)
                for alarm in closed:
                    after.pop(alarm.key)
                for alarm in opened:
                    after[alarm.key] = alarm
                self.ctx.stores.runtime.put(model.CHECKS, ALARMS,
                                            {"open": {k: a.as_dict() for k, a in after.items()}, "changed_at": now})
                self._open = after
            # recorded outside ``_lock``: the hub's synchronous listeners may read the open alarms
            states = {(i.session, i.id): i.state for i in line.items}
            for alarm in closed:
                done = states.get((alarm.session, alarm.item)) is ItemState.DONE or alarm.kind is AlarmKind.ROOM_LOST
                log.info("alarm closed: %s (%s)", alarm.label, alarm.key)
                self.ctx.record(ACTOR, names.ALARM_CLOSED, key=alarm.key, kind=alarm.kind.value,
                                session_id=alarm.session, item=alarm.item, room_code=alarm.room, label=alarm.label,
                                opened_at=alarm.opened_at, resolved="completed" if done else "cleared",
                                open_alarms=len(after))
                changes.append(AlarmChange(False, alarm, now))
            for alarm in opened:
                log.info("alarm opened: %s (%s)", alarm.label, alarm.key)
                self.ctx.record(ACTOR, names.ALARM_OPENED, key=alarm.key, kind=alarm.kind.value,
                                session_id=alarm.session, item=alarm.item, room_code=alarm.room, label=alarm.label,
                                opened_at=alarm.opened_at, open_alarms=len(after))
                changes.append(AlarmChange(True, alarm, now))
        return changes

    # -- the JSON snapshot (CLI, control channel, the page) --------------------------------
    def snapshot(self, session_id: Optional[str] = None) -> Dict[str, Any]:
        """The timeline as JSON (ISO times): ``{"at", "items": [...], "alarms": [...], "open_alarms"}``."""
        line = self.timeline(session_id)
        alarms = [a.as_dict() for a in self.open_alarms() if session_id is None or a.session in (None, session_id)]
        return {"at": format_time(line.at), "session": session_id, "items": [i.as_dict() for i in line.items],
                "alarms": alarms, "open_alarms": self.open_count()}


def log_alarms(hub: Any, logger: Optional[logging.Logger] = None) -> None:
    """Log every alarm opened and closed (``--headless``: listeners on ``hub``)."""
    out = logger or log

    def listener(event: Any) -> None:
        data = event.data
        if event.name == names.ALARM_OPENED:
            out.warning("告警：%s（%s，当前未处理告警 %s 个）", data.get("label"), data.get("key"),
                        data.get("open_alarms"))
        else:
            out.warning("告警解除：%s（%s，当前未处理告警 %s 个）", data.get("label"), data.get("key"),
                        data.get("open_alarms"))

    hub.on(names.ALARM_OPENED, listener)
    hub.on(names.ALARM_CLOSED, listener)
