"""考场情况记录: the register of incidents per session and room, drafted from what the site saw.

An incident is one record of ``runtime incidents/<id>`` (docs/incidents.md §1 gives the
format): a category (``Category``: 设备故障, 网络中断, 考生原因, 考务原因, 其他), a start and
an optional end, the affected candidates (tickets of the room's roster for the session,
optional), a description, who recorded it, and a state (``IncidentState``)::

    drafted ──confirm──▶ confirmed ──dismiss──▶ dismissed
       └──────dismiss───────────────────────────▲

``TRANSITIONS`` is the whole machine; ``IncidentService.confirm`` / ``dismiss`` go
through it and refuse (``StateRefused``) anything else. An incident the administrator
adds by hand (``add``) is ``confirmed`` at once: he wrote it.

**Drafting.** ``draft(facts, rules)`` is a pure function from what the site saw
(``Facts``: the sessions' schedule, each room-session's recorded start / 未经许可开考 / end,
the connection outages the ``OutageTracker`` observed, and the time now) to ``Draft``s,
each with a ``key`` that names the fact it comes from, so that drafting the same fact again
gives the same key (``DraftRules``: documented defaults):

- ``outage``: a room that had started (and not yet ended) went without a heartbeat for
  more than ``outage_s`` (30) seconds → 网络中断, from the last heartbeat before the gap
  to the first after it (no end while it lasts). Key ``outage|<room>|<session>|<start>``.
- ``late_start``: a room's recorded start more than ``late_start_min`` (5) minutes after
  the session's start → 考务原因, from the session's start to the room's.
- ``unpermitted``: a start recorded as 未经许可开考 → 考务原因, at that start.
- ``not_ended``: ``not_ended_min`` (15) minutes after the session's scheduled end (its
  start + duration + the room's approved 补时) a started room has not ended → 设备故障.

``IncidentService.tick()`` gathers the facts (the monitor's live view gives each room's
time since its last heartbeat; the runtime DB the room-sessions), drafts, and stores
each draft whose key is not stored yet (audited ``incident.drafted``). An outage
drafted while it lasts gets its end when the room is heard again (``incident.updated``,
only while the incident is still ``drafted``). The same outage is drafted once: the key
holds the outage's start, which the tracker fixes when it first sees the gap (and reads
back from the stored open drafts after a restart). A room never heard since this process
started is not an outage of this process (nothing is known of its last heartbeat).

**Stale room.** ``end_stale(room, session, reason, actor)``: the administrator marks a
started room whose proctor machine died as 已结束 (the room-session's ``END``, audited as
``room.ended`` with ``stale: true`` and the reason), records a confirmed 设备故障 incident
(``kind`` ``stale_end``), and calls ``on_room_ended(room, session)`` (the composition root
makes the monitor re-read the ended rooms, so the session can close and its
``session_ended`` report go out).

Times are ISO 8601 with offset (``kd.formats.timeutil.format_time``), from ``ctx.now()``.
Every change runs under ``ctx.lock``, is persisted before the call returns, and is recorded
(``ctx.record``: one audit line, one hub event; names in ``kd.core.names``).
"""

import datetime
import logging
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, cast

from kd.core import lifecycle, names, records
from kd.core.context import Context
from kd.core.incidentdraft import (  # noqa: F401 - the register's public names, kept here for its callers
    CATEGORY_LABELS,
    DEFAULT_RULES,
    STATE_LABELS,
    TRANSITIONS,
    Category,
    Draft,
    DraftRules,
    Facts,
    IncidentEvent,
    IncidentState,
    Kind,
    Outage,
    OutageTracker,
    RoomFact,
    SessionFact,
    _minutes,
    category_of,
    draft,
)
from kd.core.lifecycle import RoomSessionEvent
from kd.errors import StateRefused, UserError
from kd.formats.timeutil import format_time, read_time

log = logging.getLogger(__name__)

#: the runtime DB table of the incidents
INCIDENTS = "incidents"
ACTOR = "system"


def recorder_label(name: Optional[str]) -> str:
    """Who recorded or decided a record, as the page and the 记录单 show it: 系统 for ``ACTOR``."""
    return "系统" if name == ACTOR else name or ""


# -- facts from the stores --------------------------------------------------------------------
def _time(value: Any) -> Optional[datetime.datetime]:
    return read_time(value) if value else None


def session_facts(manifest: Optional[Dict[str, Any]]) -> List[SessionFact]:
    """The package's sessions with a readable start and duration."""
    out = []
    for s in (manifest or {}).get("sessions") or []:
        try:
            out.append(SessionFact(s["id"], read_time(s["start"]), int(s.get("duration_min") or 0)))
        except (KeyError, TypeError, ValueError, UserError):
            log.warning("session %r has no readable start/duration", s.get("id"))
    return out


def room_facts(docs: Iterable[records.RoomSession]) -> List[RoomFact]:
    out = []
    for doc in docs:
        fields = records.as_doc(doc)
        out.append(RoomFact(doc["room"], doc["session"], _time(fields.get("started_at")),
                            lifecycle.start_unpermitted(doc), _time(fields.get("ended_at")),
                            int(fields.get("extra_time_min") or 0)))
    return out


def _sessions_part(manifest: records.Manifest) -> Dict[str, Any]:
    return {"sessions": manifest.get("sessions") or []}


def _roster_part(manifest: records.Manifest) -> Dict[str, Any]:
    return {"roster": [[c.get("room"), c.get("session"), c.get("ticket")] for c in manifest.get("candidates") or []]}


# -- the service ------------------------------------------------------------------------------
class IncidentService:
    """The register: add by hand, draft from the facts, confirm, dismiss, end a stale room.

    ``monitor``: the site's ``MonitorService`` (its ``view(session)`` rows give each room's
    ``last_seen_s`` and ``connected``); ``on_room_ended(room, session)``: called after
    ``end_stale`` ended a room (the composition root lets the monitor see it).
    """

    def __init__(self, ctx: Context, monitor: Any, *, rules: DraftRules = DEFAULT_RULES,
                 on_room_ended: Optional[Callable[[str, str], None]] = None) -> None:
        self.ctx = ctx
        self.monitor = monitor
        self.rules = rules
        self.on_room_ended = on_room_ended
        self.tracker = OutageTracker(rules.outage_s)
        self._resumed = False

    # -- reads ---------------------------------------------------------------------------
    def get(self, incident_id: str) -> Dict[str, Any]:
        """One incident; ``UserError`` when there is none with this number."""
        doc = self.ctx.stores.runtime.get(INCIDENTS, str(incident_id))
        if doc is None:
            raise UserError("没有编号为 {} 的考场情况记录。".format(incident_id), "请用 incident list 查看记录的编号。")
        return doc

    def list(self, session: Optional[str] = None, room: Optional[str] = None,
             states: Optional[Iterable[IncidentState]] = None) -> List[Dict[str, Any]]:
        """Incidents (of ``session`` / ``room`` / in ``states`` when given), by start then number."""
        wanted = {IncidentState(s) for s in states} if states is not None else None
        docs = [d for d in self.ctx.stores.runtime.all(INCIDENTS)
                if (session is None or d["session"] == session) and (room is None or d["room"] == room)
                and (wanted is None or IncidentState(d["state"]) in wanted)]
        return sorted(docs, key=lambda d: (d["start"], int(d["id"])))

    def lost_minutes(self, doc: Dict[str, Any]) -> int:
        """The minutes an incident lasted, rounded up (an open one: until now)."""
        end = _time(doc.get("end")) or self.ctx.now()
        return _minutes(end - read_time(doc["start"]))

    # -- by hand -------------------------------------------------------------------------
    def add(self, *, room: str, session: str, category: str, start: datetime.datetime,
            end: Optional[datetime.datetime], description: str, actor: str,
            candidates: Sequence[str] = ()) -> Dict[str, Any]:
        """Record an incident by hand (``confirmed``). ``UserError``: a room or session not in the
        package, an end before the start, a ticket not on the room's roster for the session, no
        description."""
        cat = category_of(category)
        if not description.strip():
            raise UserError("情况说明不能为空。", "请写明发生了什么、如何处理。")
        if end is not None and end < start:
            raise UserError("结束时间早于开始时间。", "请检查输入的时间。")
        self.check_room_session(room, session)
        tickets = [t.strip() for t in candidates if t.strip()]
        if tickets:
            roster = {t for r, s, t in (self.ctx.manifest_view(_roster_part) or {}).get("roster", [])
                      if r == room and s == session}
            stray = [t for t in tickets if t not in roster]
            if stray:
                raise UserError("准考证号 {} 不在考场 {} 本场次的考生名单中。".format("、".join(stray), room),
                                "请核对准考证号（只能填写本考场本场次的考生）。")
        with self.ctx.lock:
            doc = self._insert(Kind.MANUAL, cat, room, session, start, end, description.strip(), actor,
                               IncidentState.CONFIRMED, tickets, None)
            self.ctx.record(actor, names.INCIDENT_RECORDED, incident_id=doc["id"], room_code=room,
                            session_id=session, category=cat.value)
        return doc

    def check_room_session(self, room: str, session: str) -> None:
        manifest = self.ctx.manifest_view(lambda m: {"rooms": [r.get("code") for r in m.get("rooms") or []],
                                                     "sessions": [s.get("id") for s in m.get("sessions") or []]})
        if manifest is None:
            raise UserError("尚未导入考务数据。", "请先导入考务。")
        if room not in manifest["rooms"]:
            raise UserError("没有考场 {}。".format(room), "请输入考场数据包中的考场编号。")
        if session not in manifest["sessions"]:
            raise UserError("没有场次 {}。".format(session), "请输入考场数据包中的场次编号。")

    def _insert(self, kind: Kind, category: Category, room: str, session: str, start: datetime.datetime,
                end: Optional[datetime.datetime], description: str, actor: str, state: IncidentState,
                candidates: List[str], key: Optional[str]) -> Dict[str, Any]:
        runtime = self.ctx.stores.runtime
        number = max((int(k) for k in runtime.items(INCIDENTS)), default=0) + 1
        doc: Dict[str, Any] = {
            "id": str(number), "kind": kind.value, "category": category.value, "room": room, "session": session,
            "start": format_time(start), "end": format_time(end) if end is not None else None,
            "candidates": candidates, "description": description, "recorded_by": actor,
            "recorded_at": format_time(self.ctx.now()), "state": state.value, "decided_by": None,
            "decided_at": None, "note": "", "draft_key": key}
        return runtime.put(INCIDENTS, doc["id"], doc)

    # -- confirm / dismiss ---------------------------------------------------------------
    def confirm(self, incident_id: str, actor: str, note: str = "") -> Dict[str, Any]:
        return self._advance(incident_id, IncidentEvent.CONFIRM, actor, note, names.INCIDENT_CONFIRMED)

    def dismiss(self, incident_id: str, actor: str, note: str = "") -> Dict[str, Any]:
        return self._advance(incident_id, IncidentEvent.DISMISS, actor, note, names.INCIDENT_DISMISSED)

    def _advance(self, incident_id: str, event: IncidentEvent, actor: str, note: str, action: str) -> Dict[str, Any]:
        with self.ctx.lock:
            doc = self.get(incident_id)
            before = IncidentState(doc["state"])
            after = TRANSITIONS.get((before, event))
            if after is None:
                raise StateRefused("考场情况记录 {} {}，不能{}。".format(
                    incident_id, STATE_LABELS[before], "确认" if event == IncidentEvent.CONFIRM else "驳回"),
                    "只有待确认的记录可以确认；待确认或已确认的记录可以驳回。")
            doc.update(state=after.value, decided_by=actor, decided_at=format_time(self.ctx.now()), note=note)
            doc = self.ctx.stores.runtime.put(INCIDENTS, doc["id"], doc)
            self.ctx.record(actor, action, incident_id=doc["id"], room_code=doc["room"], session_id=doc["session"],
                            note=note)
        return doc

    # -- drafting ------------------------------------------------------------------------
    def _resume(self) -> None:
        if self._resumed:
            return
        for d in self.ctx.stores.runtime.all(INCIDENTS):
            if d["kind"] == Kind.OUTAGE.value and d.get("end") is None and d["state"] == IncidentState.DRAFTED.value:
                self.tracker.resume(d["room"], read_time(d["start"]))
        self._resumed = True

    def facts(self) -> Facts:
        """What the site saw, now: the schedule, the room-sessions, the outages (after observing the monitor)."""
        self._resume()
        now = self.ctx.now()
        sessions = session_facts(self.ctx.manifest_view(_sessions_part))
        rooms = room_facts(records.room_sessions(self.ctx.stores.runtime))
        known = {s.id for s in sessions}  # a room-session of a session no longer in the package is not watched
        under_way = {r.session for r in rooms if r.started_at is not None and r.ended_at is None} & known
        seen = set()
        for sid in sorted(under_way):
            for row in self.monitor.view(sid).rows:
                if row.room not in seen:
                    seen.add(row.room)
                    self.tracker.observe(row.room, row.last_seen_s, now)
        self.tracker.watched(seen)  # between two of its sessions a room is not watched: no outage
        return Facts(sessions, rooms, self.tracker.outages(), now)

    def tick(self) -> List[Dict[str, Any]]:
        """Draft from the facts now; store the new drafts, close stored open outages. Returns the changed."""
        return self.store_drafts(draft(self.facts(), self.rules))

    def store_drafts(self, drafts: Iterable[Draft]) -> List[Dict[str, Any]]:
        """Store each draft whose key is new (idempotent); give a stored open draft its end."""
        changed = []
        with self.ctx.lock:
            runtime = self.ctx.stores.runtime
            by_key = {d["draft_key"]: d for d in runtime.all(INCIDENTS) if d.get("draft_key")}
            for d in drafts:
                old = by_key.get(d.key)
                if old is None:
                    doc = self._insert(d.kind, d.category, d.room, d.session, d.start, d.end, d.description, ACTOR,
                                       IncidentState.DRAFTED, [], d.key)
                    by_key[d.key] = doc
                    self.ctx.record(ACTOR, names.INCIDENT_DRAFTED, incident_id=doc["id"], kind=d.kind.value,
                                    room_code=d.room, session_id=d.session, start=doc["start"], end=doc["end"])
                    changed.append(doc)
                elif old.get("end") is None and d.end is not None and old["state"] == IncidentState.DRAFTED.value:
                    old.update(end=format_time(d.end), description=d.description)
                    doc = runtime.put(INCIDENTS, old["id"], old)
                    self.ctx.record(ACTOR, names.INCIDENT_UPDATED, incident_id=doc["id"], end=doc["end"])
                    changed.append(doc)
        return changed

    # -- a stale room --------------------------------------------------------------------
    def end_stale(self, room: str, session: str, reason: str, actor: str) -> Dict[str, Any]:
        """Mark a started room whose proctor machine is gone as 已结束 (see the module docstring).

        Returns the incident recorded. ``StateRefused``: the room has not started, has ended
        already, or is still connected; ``UserError``: no reason, no such room or session.
        """
        if not reason.strip():
            raise UserError("请填写将考场标记为已结束的原因。", "例如：监考机故障无法恢复。")
        self.check_room_session(room, session)
        if self.monitor.connected(room):
            raise StateRefused("考场 {} 仍与考点机连接。".format(room),
                               "请由监考机结束考试；只有失去连接的考场才能由考点标记为已结束。")
        with self.ctx.lock:
            runtime = self.ctx.stores.runtime
            doc = records.room_session(runtime, room, session)
            if not lifecycle.started(doc):
                raise StateRefused("考场 {} 本场次没有开考记录，不能标记为已结束。".format(room),
                                   "未开考的考场无需结束；如确有情况，请添加考场情况记录。")
            if lifecycle.ended(doc):
                raise StateRefused("考场 {} 本场次已经结束。".format(room), "无需再次标记。")
            now = self.ctx.now()
            incident = self._insert(Kind.STALE_END, Category.DEVICE, room, session, now, now,
                                    "考点标记考场 {} 已结束：{}".format(room, reason.strip()), actor,
                                    IncidentState.CONFIRMED, [], None)
            step = lifecycle.Step(RoomSessionEvent.END, names.ROOM_ENDED, {
                "room_code": room, "session_id": session, "stale": True, "reason": reason.strip(),
                "incident_id": incident["id"]})
            lifecycle.advance(self.ctx, cast(records.RoomSession, doc), step, actor=actor)
            self.ctx.record(actor, names.INCIDENT_RECORDED, incident_id=incident["id"], room_code=room,
                            session_id=session, category=Category.DEVICE.value)
        if self.on_room_ended is not None:
            self.on_room_ended(room, session)
        return incident


def label_of(doc: Dict[str, Any]) -> Dict[str, str]:
    """An incident's category and state as people read them."""
    return {"category": CATEGORY_LABELS[Category(doc["category"])], "state": STATE_LABELS[IncidentState(doc["state"])]}

