"""考点时间线, the pure part: facts in, items and alarm conditions out (``kd.core.timeline``).

``SiteFacts`` / ``SessionFacts`` / ``RoomFacts`` are a typed snapshot of what the records
say (times parsed, nothing judged); ``build_timeline(facts, now, rules)`` gives one
``Item`` per rule (``kd.core.timelinerules``) and session (site-wide rules once), each with
its due time, state, completion time, evidence and the rooms still missing, and the
``AlarmCondition``s that hold at ``now``. No clock, no store, no lock: tested at every
offset with facts built by hand. The formats are in docs/timeline.md.

补时 moves a room's end: a room's expected end is ``E + RoomFacts.extra_time_min``
(``SessionFacts.room_end``). A per-room rule anchored at the end (``ended``) judges each
room against its own end (an alarm per room at its own end + the rule's ``alarm``); the
other end-anchored rules (``recovered``, ``backup``, ``uploaded``) and the watch
``connected`` (its ``closes_at``) use the session's latest expected end
(``SessionFacts.expected_end``). Those items list the rooms with 补时 (``Item.extra_time``).

Texts shared by the 时间线 page and ``main.py timeline``: ``skew_text`` (the measured
offsets of ``skew`` / ``site_clock``) and ``extra_time_text``.
"""

import dataclasses
import datetime
import functools
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from kd.core.clockskew import UNKNOWN, shown_offset
from kd.core.timelinerules import (
    DEFAULT_RULES,
    SITE_ITEMS,
    STATE_LABELS,
    AlarmKind,
    Anchor,
    ItemState,
    Rule,
    Rules,
)
from kd.formats.timeutil import format_time, human_time

NO = "-"


def _time(text: Any) -> Optional[datetime.datetime]:
    """An ISO time of a record, None when absent or unreadable (a record is evidence, not input)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _iso(moment: Optional[datetime.datetime]) -> Optional[str]:
    return format_time(moment) if moment is not None else None


# -- the facts ----------------------------------------------------------------------------------
class Skew(NamedTuple):
    """A measured clock difference an item shows (``Item.skew``).

    ``source``: a room code (``skew``: its proctor minus the site) or ``platform`` /
    ``dongle`` (``site_clock``: this PC minus that clock); ``offset_s`` None: not measured.
    """

    source: str
    offset_s: Optional[float]
    uncertainty_s: Optional[float] = None
    at: Optional[datetime.datetime] = None

    def as_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "offset_s": None if self.offset_s is None else round(self.offset_s, 3),
                "uncertainty_s": None if self.uncertainty_s is None else round(self.uncertainty_s, 3),
                "at": _iso(self.at), "shown": shown_offset(self.offset_s, self.uncertainty_s)}


@dataclasses.dataclass(frozen=True)
class RoomFacts:
    code: str
    registered_at: Optional[datetime.datetime] = None
    data_imported_at: Optional[datetime.datetime] = None
    started_at: Optional[datetime.datetime] = None
    ended_at: Optional[datetime.datetime] = None
    recovered_at: Optional[datetime.datetime] = None  # result.received_at
    backed_up: bool = False  # its result is in a valid external copy (checks/external)
    uploaded_at: Optional[datetime.datetime] = None  # upload.uploaded_at, with a receipt
    silent_s: Optional[float] = None  # seconds without a heartbeat (None: not known)
    extra_time_min: int = 0  # the 补时 granted to the room for the session (room_sessions extra_time_min)


@dataclasses.dataclass(frozen=True)
class SessionFacts:
    id: str
    name: str
    start: datetime.datetime
    duration_min: int
    rooms: Tuple[RoomFacts, ...] = ()
    lock_synced_at: Optional[datetime.datetime] = None
    verified_at: Optional[datetime.datetime] = None
    backup_at: Optional[datetime.datetime] = None  # checks/external.verified_at while valid

    @property
    def end(self) -> datetime.datetime:
        """The scheduled end E = T + duration."""
        return self.start + datetime.timedelta(minutes=self.duration_min)

    def room_end(self, room: RoomFacts) -> datetime.datetime:
        """The room's expected end: E plus its 补时."""
        found = self._ends[0].get(room.code)
        return found.expected_end if found is not None else self.end

    @property
    def expected_end(self) -> datetime.datetime:
        """The session's latest expected end (E when no room has 补时, or no rooms)."""
        return self._ends[1]

    def extra_time(self) -> Tuple["RoomEnd", ...]:
        """The rooms with 补时, in the session's order."""
        return self._ends[2]

    @functools.cached_property
    def _ends(self) -> Tuple[Dict[str, "RoomEnd"], datetime.datetime, Tuple["RoomEnd", ...]]:
        """(the rooms with 补时 by code, the latest expected end, those rooms in order): once per
        facts object (a build asks for them per item; frozen: the fields never change)."""
        end = self.end
        extra = tuple(RoomEnd(r.code, r.extra_time_min, end + datetime.timedelta(minutes=r.extra_time_min))
                      for r in self.rooms if r.extra_time_min > 0)
        return {e.room: e for e in extra}, max((e.expected_end for e in extra), default=end), extra


class RoomEnd(NamedTuple):
    """A room with 补时: its granted minutes (total) and its expected end."""

    room: str
    minutes: int
    expected_end: datetime.datetime

    def as_dict(self) -> Dict[str, Any]:
        return {"room": self.room, "minutes": self.minutes, "expected_end": _iso(self.expected_end)}


@dataclasses.dataclass(frozen=True)
class SiteFacts:
    sessions: Tuple[SessionFacts, ...] = ()
    publish_time: Optional[datetime.datetime] = None
    package_verified_at: Optional[datetime.datetime] = None
    seal_passed_at: Optional[datetime.datetime] = None  # the latest 封场检测 passed (its passed_at)
    platform_skew_s: Optional[float] = None  # this PC minus the platform (the last 封场检测 that measured it)
    platform_skew_at: Optional[datetime.datetime] = None  # that check's checked_at
    dongle_skew_s: Optional[float] = None  # this PC minus the dongle (the latest 授权验证's lock_clock_skew_s, negated)
    dongle_skew_at: Optional[datetime.datetime] = None  # that session's verified_at
    #: each room's proctor clock minus the site's (``Skew`` by room code; kd.core.clockskew); a room not
    #: in it is 未知. One entry per room, not per session: a room has one proctor machine
    room_skew: Mapping[str, Skew] = dataclasses.field(default_factory=dict)


# -- the timeline ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Item:
    session: Optional[str]
    id: str
    label: str
    opens_at: datetime.datetime
    due_at: datetime.datetime
    alarm_at: datetime.datetime
    state: ItemState
    completed_at: Optional[datetime.datetime]
    evidence: str
    rooms_left: Tuple[str, ...] = ()  # rooms that have not done it (lost rooms for ``connected``)
    closes_at: Optional[datetime.datetime] = None  # ``connected``: the session's end; ``skew``: T
    skew: Tuple[Skew, ...] = ()  # ``skew``: each room's estimate; ``site_clock``: platform, dongle
    extra_time: Tuple[RoomEnd, ...] = ()  # end-anchored items and ``connected``: the rooms with 补时

    def as_dict(self) -> Dict[str, Any]:
        return {"session": self.session, "id": self.id, "label": self.label, "opens_at": _iso(self.opens_at),
                "due_at": _iso(self.due_at), "alarm_at": _iso(self.alarm_at), "state": self.state.value,
                "state_label": STATE_LABELS[self.state], "completed_at": _iso(self.completed_at),
                "evidence": self.evidence, "rooms_left": list(self.rooms_left), "closes_at": _iso(self.closes_at),
                "skew": [s.as_dict() for s in self.skew], "extra_time": [e.as_dict() for e in self.extra_time]}


def alarm_key(session: Optional[str], item: str, room: Optional[str]) -> str:
    return "{}/{}/{}".format(session or NO, item, room or NO)


@dataclasses.dataclass(frozen=True)
class AlarmCondition:
    kind: AlarmKind
    session: Optional[str]
    item: str
    room: Optional[str]
    label: str  # what is late or lost, in Chinese

    @property
    def key(self) -> str:
        return alarm_key(self.session, self.item, self.room)


@dataclasses.dataclass(frozen=True)
class Timeline:
    at: datetime.datetime
    items: Tuple[Item, ...]
    conditions: Tuple[AlarmCondition, ...]

    def for_session(self, session_id: Optional[str]) -> "Timeline":
        """Site-wide items and those of ``session_id`` (every item when None)."""
        if session_id is None:
            return self
        return Timeline(self.at, tuple(i for i in self.items if i.session in (None, session_id)),
                        tuple(c for c in self.conditions if c.session in (None, session_id)))


def _anchor(rule: Rule, session: Optional[SessionFacts], first: datetime.datetime) -> datetime.datetime:
    if rule.anchor is Anchor.FIRST_START or session is None:
        return first
    return session.start if rule.anchor is Anchor.START else session.expected_end


def _rooms_done(rooms: Iterable[RoomFacts], when: Callable[[RoomFacts], Optional[datetime.datetime]]
                ) -> Tuple[Optional[datetime.datetime], Tuple[str, ...], bool]:
    """(the last room's time, the rooms without one, all done)."""
    left, last = [], None
    for room in rooms:
        moment = when(room)
        if moment is None:
            left.append(room.code)
        elif last is None or moment > last:
            last = moment
    return last, tuple(left), not left


def _ready(room: RoomFacts) -> Optional[datetime.datetime]:
    if room.registered_at is None or room.data_imported_at is None:
        return None
    return max(room.registered_at, room.data_imported_at)


def _judge(rule: Rule, site: SiteFacts, session: Optional[SessionFacts], opens: datetime.datetime,
           due: datetime.datetime) -> Tuple[bool, Optional[datetime.datetime], Tuple[str, ...]]:
    """(done, completed_at, rooms_left) of a deadline rule."""
    rooms = session.rooms if session is not None else ()
    if rule.id == "package":
        return site.package_verified_at is not None, site.package_verified_at, ()
    if rule.id == "seal":
        return site.seal_passed_at is not None, site.seal_passed_at, ()
    assert session is not None
    if rule.id == "clock":
        synced = session.lock_synced_at
        ok = synced is not None and opens <= synced <= due
        return ok, synced if ok else None, ()
    if rule.id == "verified":
        return session.verified_at is not None, session.verified_at, ()
    if rule.id == "backup":
        left = tuple(r.code for r in rooms if not r.backed_up)
        ok = not left and session.backup_at is not None
        return ok, session.backup_at if ok else None, left
    when: Dict[str, Callable[[RoomFacts], Optional[datetime.datetime]]] = {
        "rooms_ready": _ready, "started": lambda r: r.started_at, "ended": lambda r: r.ended_at,
        "recovered": lambda r: r.recovered_at, "uploaded": lambda r: r.uploaded_at}
    last, left, ok = _rooms_done(rooms, when[rule.id])
    return ok, last, left


def _session_label(session: Optional[SessionFacts]) -> str:
    return (session.name or "场次 {}".format(session.id)) if session is not None else "考点"


def _connected(rule: Rule, session: SessionFacts, now: datetime.datetime, rules: Rules, start: datetime.datetime
               ) -> Tuple[Item, List[AlarmCondition]]:
    """The watch 考中连接: lost rooms are those started, not ended, silent for lost_after_s; it
    closes at the session's latest expected end (补时 included)."""
    end = session.expected_end
    conditions: List[AlarmCondition] = []
    last, _, all_ended = _rooms_done(session.rooms, lambda r: r.ended_at)
    lost: List[str] = []
    if now >= start:
        for room in session.rooms:
            if room.started_at is not None and room.ended_at is None and room.silent_s is not None \
                    and room.silent_s >= rules.lost_after_s:
                lost.append(room.code)
                conditions.append(AlarmCondition(AlarmKind.ROOM_LOST, session.id, rule.id, room.code,
                                                 "{} 考场 {} 失去连接（{:.0f} 秒无心跳）".format(
                                                     _session_label(session), room.code, room.silent_s)))
    if all_ended and session.rooms:
        state, completed = ItemState.DONE, last
    elif lost:
        state, completed = ItemState.OVERDUE, None
    elif now < start:
        state, completed = ItemState.PENDING, None
    else:
        state, completed = ItemState.ACTIVE, None
    item = Item(session.id, rule.id, rule.label, start, start, start, state, completed, rule.evidence,
                tuple(lost), closes_at=end, extra_time=session.extra_time())
    return item, conditions


def _per_room_end(rule: Rule, facts: SiteFacts, session: SessionFacts, now: datetime.datetime
                  ) -> Tuple[Item, List[AlarmCondition]]:
    """A per-room rule anchored at the end (``ended``): each room judged against its own expected end.

    A room still to do it is late from its own end + ``rule.alarm``: one condition each. The
    item opens at the earliest room end + ``opens``; its ``due_at`` / ``alarm_at`` are the
    latest among the rooms still to do it (among every room once none is left).
    """
    end = session.end
    extra = {e.room: e.expected_end for e in session.extra_time()}  # most rooms have none: their end is E
    done, completed, left = _judge(rule, facts, session, end, end)
    scope = left or tuple(r.code for r in session.rooms)
    latest = max((extra.get(c, end) for c in scope), default=end) if extra else end
    earliest = min(extra.values()) if extra and len(extra) == len(session.rooms) else end
    opens = earliest + datetime.timedelta(minutes=rule.opens)
    due, alarm = (latest + datetime.timedelta(minutes=m) for m in (rule.due, rule.alarm))
    grace = datetime.timedelta(minutes=rule.alarm)
    if extra:
        late = [c for c in left if now >= extra.get(c, end) + grace]
    else:
        late = list(left) if now >= end + grace else []
    if done:
        state = ItemState.DONE
    elif late:
        state = ItemState.OVERDUE
    elif now < opens:
        state = ItemState.PENDING
    else:
        state = ItemState.ACTIVE
    where = _session_label(session)
    conditions = [AlarmCondition(AlarmKind.OVERDUE, session.id, rule.id, room,
                                 "{} 考场 {}：{}逾期".format(where, room, rule.label)) for room in late]
    return Item(session.id, rule.id, rule.label, opens, due, alarm, state, completed, rule.evidence, left,
                extra_time=session.extra_time()), conditions


def _over(offset: Optional[float], rules: Rules) -> bool:
    return offset is not None and abs(offset) > rules.max_skew_s


def _room_skew(rule: Rule, facts: SiteFacts, session: SessionFacts, now: datetime.datetime, rules: Rules,
               opens: datetime.datetime) -> Tuple[Item, List[AlarmCondition]]:
    """The watch 考场时钟偏差: rooms whose |offset| > max_skew_s; alarmed from ``opens`` until T only."""
    start = session.start
    skews = tuple(facts.room_skew.get(r.code) or Skew(r.code, None) for r in session.rooms)
    off = tuple(s.source for s in skews if _over(s.offset_s, rules))
    conditions: List[AlarmCondition] = []
    if now < opens:
        state = ItemState.PENDING
    elif off:
        state = ItemState.OVERDUE
        if now < start:
            conditions.extend(AlarmCondition(AlarmKind.CLOCK_SKEW, session.id, rule.id, s.source,
                                             "{} 考场 {} 监考机时钟偏差 {}，超过 {:.0f} 秒".format(
                                                 _session_label(session), s.source,
                                                 shown_offset(s.offset_s, s.uncertainty_s), rules.max_skew_s))
                              for s in skews if s.source in off)
    elif now < start:
        state = ItemState.ACTIVE
    else:
        state = ItemState.DONE
    return Item(session.id, rule.id, rule.label, opens, start, start, state, start if state is ItemState.DONE
                else None, rule.evidence, off, closes_at=start, skew=skews), conditions


def _site_clock(rule: Rule, facts: SiteFacts, now: datetime.datetime, rules: Rules, opens: datetime.datetime,
                due: datetime.datetime, alarm: datetime.datetime) -> Tuple[Item, List[AlarmCondition]]:
    """The watch 考点机时钟: 逾期 (one alarm) while a measured difference exceeds max_skew_s; 已完成 when
    measured and within it; else 未到 / 进行中 (no alarm for a clock not measured: 封场检测 and 授权验证
    have their own deadlines)."""
    skews = (Skew("platform", facts.platform_skew_s, None, facts.platform_skew_at),
             Skew("dongle", facts.dongle_skew_s, None, facts.dongle_skew_at))
    measured = [s for s in skews if s.offset_s is not None]
    off = [s for s in measured if _over(s.offset_s, rules)]
    conditions: List[AlarmCondition] = []
    completed = None
    if now < opens:
        state = ItemState.PENDING
    elif off:
        state = ItemState.OVERDUE
        names = {"platform": "监控平台", "dongle": "机考锁"}
        against = "，".join("对照{} {}".format(names[s.source], shown_offset(s.offset_s)) for s in off)
        conditions.append(AlarmCondition(AlarmKind.CLOCK_SKEW, None, rule.id, None,
                                         "考点：考点机时钟偏差超过 {:.0f} 秒（{}）".format(rules.max_skew_s, against)))
    elif measured:
        state = ItemState.DONE
        completed = max((s.at for s in measured if s.at is not None), default=None)
    else:
        state = ItemState.ACTIVE
    return Item(None, rule.id, rule.label, opens, due, alarm, state, completed, rule.evidence, (),
                skew=skews), conditions


def build_timeline(facts: SiteFacts, now: datetime.datetime, rules: Rules = DEFAULT_RULES) -> Timeline:
    """The timeline at ``now`` (timezone-aware) from ``facts`` under ``rules``; pure.

    Site-wide rules (``SITE_ITEMS``) first, once, anchored at the first session's start
    (none without sessions); then each session's rules in the rules' order, sessions by
    start time.
    """
    sessions = sorted(facts.sessions, key=lambda s: (s.start, s.id))
    items: List[Item] = []
    conditions: List[AlarmCondition] = []
    if not sessions:
        return Timeline(now, (), ())
    first = sessions[0].start
    scopes: List[Optional[SessionFacts]] = [None]
    scopes.extend(sessions)
    for session in scopes:
        for rule in rules.items:
            if (rule.id in SITE_ITEMS) != (session is None):
                continue
            base = _anchor(rule, session, first)
            opens, due, alarm = (base + datetime.timedelta(minutes=m) for m in (rule.opens, rule.due, rule.alarm))
            if session is not None and rule.per_room and rule.anchor is Anchor.END:
                item, more = _per_room_end(rule, facts, session, now)
                items.append(item)
                conditions.extend(more)
                continue
            if rule.id in ("connected", "skew", "site_clock"):
                if rule.id == "site_clock":
                    item, more = _site_clock(rule, facts, now, rules, opens, due, alarm)
                elif rule.id == "skew":
                    assert session is not None
                    item, more = _room_skew(rule, facts, session, now, rules, opens)
                else:
                    assert session is not None
                    item, more = _connected(rule, session, now, rules, opens)
                items.append(item)
                conditions.extend(more)
                continue
            done, completed, left = _judge(rule, facts, session, opens, due)
            if done:
                state = ItemState.DONE
            elif now < opens:
                state = ItemState.PENDING
            elif now < alarm:
                state = ItemState.ACTIVE
            else:
                state = ItemState.OVERDUE
            items.append(Item(session.id if session else None, rule.id, rule.label, opens, due, alarm, state,
                              completed, rule.evidence, left,
                              extra_time=session.extra_time() if session is not None and rule.anchor is Anchor.END
                              else ()))
            if state is ItemState.OVERDUE:
                where = _session_label(session)
                if rule.per_room and left:
                    conditions.extend(AlarmCondition(AlarmKind.OVERDUE, session.id if session else None, rule.id,
                                                     room, "{} 考场 {}：{}逾期".format(where, room, rule.label))
                                      for room in left)
                else:
                    conditions.append(AlarmCondition(AlarmKind.OVERDUE, session.id if session else None, rule.id,
                                                     None, "{}：{}逾期".format(where, rule.label)))
    return Timeline(now, tuple(items), tuple(conditions))


# -- texts (the 时间线 page, ``main.py timeline``) --------------------------------------------------
#: what a ``site_clock`` entry's source is called
CLOCK_NAMES = {"platform": "监控平台", "dongle": "机考锁"}
Moment = Union[str, datetime.datetime, None]


def skew_text(item_id: str, skews: Sequence[Tuple[str, Optional[float]]], off: Sequence[str]) -> str:
    """The measured offsets an item shows ("" when it has nothing to say).

    ``skews``: ``(source, offset_s)`` of ``Item.skew``; ``off``: the rooms over the limit
    (``rooms_left`` of ``skew``). ``skew``: ``时钟偏差考场：R1（+300 秒）、R2（-75 秒）`` while a
    room is off; ``site_clock``: ``监控平台 +2 秒，机考锁 -1 秒`` once one is measured (``未知`` for the
    other).
    """
    if item_id == "skew":
        offsets = dict(skews)
        return "时钟偏差考场：" + "、".join("{}（{}）".format(room, shown_offset(offsets.get(room)))
                                      for room in off) if off else ""
    if item_id == "site_clock":
        if all(offset is None for _source, offset in skews):
            return ""
        return "，".join("{} {}".format(CLOCK_NAMES.get(source, source),
                                       shown_offset(offset) if offset is not None else UNKNOWN)
                        for source, offset in skews)
    return ""


def extra_time_text(entries: Iterable[Tuple[str, int, Moment]]) -> str:
    """The rooms with 补时: ``补时：R2 至 2026-12-01 11:10（10 分钟）`` ("" when none).

    ``entries``: ``(room, minutes, expected end)`` (``Item.extra_time``; ISO text or datetime).
    """
    parts = ["{} 至 {}（{} 分钟）".format(room, human_time(end), minutes) for room, minutes, end in entries]
    return "补时：" + "、".join(parts) if parts else ""
