"""考场情况记录, the pure part: the codes (categories, states, kinds) and the drafting.

What the site saw (``Facts``) in, incident ``Draft``s out.

``draft(facts, rules)`` and the ``OutageTracker`` (the monitor's "seconds since the last
heartbeat" turned into outages) hold no store, lock or clock: ``kd.core.incidents`` gathers
the facts, stores the drafts and documents the rules (its docstring; docs/incidents.md).
"""

import datetime
import enum
import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

from kd.errors import UserError
from kd.formats.timeutil import format_time


class Category(str, enum.Enum):
    DEVICE = "device"  # 设备故障
    NETWORK = "network"  # 网络中断
    CANDIDATE = "candidate"  # 考生原因
    STAFF = "staff"  # 考务原因
    OTHER = "other"  # 其他


CATEGORY_LABELS: Dict[Category, str] = {
    Category.DEVICE: "设备故障", Category.NETWORK: "网络中断", Category.CANDIDATE: "考生原因",
    Category.STAFF: "考务原因", Category.OTHER: "其他",
}


class IncidentState(str, enum.Enum):
    DRAFTED = "drafted"  # 待确认
    CONFIRMED = "confirmed"  # 已确认
    DISMISSED = "dismissed"  # 已驳回


STATE_LABELS: Dict[IncidentState, str] = {
    IncidentState.DRAFTED: "待确认", IncidentState.CONFIRMED: "已确认", IncidentState.DISMISSED: "已驳回",
}


class IncidentEvent(str, enum.Enum):
    CONFIRM = "confirm"
    DISMISS = "dismiss"


class Kind(str, enum.Enum):
    """Where an incident comes from: by hand, or the fact it was drafted from."""

    MANUAL = "manual"
    OUTAGE = "outage"
    LATE_START = "late_start"
    UNPERMITTED = "unpermitted"
    NOT_ENDED = "not_ended"
    STALE_END = "stale_end"


_S, _E = IncidentState, IncidentEvent
TRANSITIONS: Dict[Tuple[IncidentState, IncidentEvent], IncidentState] = {
    (_S.DRAFTED, _E.CONFIRM): _S.CONFIRMED,
    (_S.DRAFTED, _E.DISMISS): _S.DISMISSED,
    (_S.CONFIRMED, _E.DISMISS): _S.DISMISSED,  # recorded by mistake
}
del _S, _E


def category_of(code: str) -> Category:
    """The ``Category`` of a code or of its label (设备故障…); ``UserError`` for anything else."""
    for category in Category:
        if code in (category.value, CATEGORY_LABELS[category]):
            return category
    raise UserError("没有情况类别“{}”。".format(code), "类别应为：{}。".format(
        "、".join("{}（{}）".format(CATEGORY_LABELS[c], c.value) for c in Category)))


# -- drafting: a pure function over facts -----------------------------------------------------
class DraftRules(NamedTuple):
    """When a fact becomes a draft (docs/incidents.md §2 gives the defaults)."""

    outage_s: float = 30.0
    late_start_min: float = 5.0
    not_ended_min: float = 15.0


class Outage(NamedTuple):
    """A room without heartbeats from ``start`` (its last heartbeat) to ``end`` (the next; None: still)."""

    room: str
    start: datetime.datetime
    end: Optional[datetime.datetime]


class SessionFact(NamedTuple):
    id: str
    start: datetime.datetime
    duration_min: int


class RoomFact(NamedTuple):
    """A room-session as recorded: its start, whether it was 未经许可开考, its end, its 补时."""

    room: str
    session: str
    started_at: Optional[datetime.datetime]
    unpermitted: bool
    ended_at: Optional[datetime.datetime]
    extra_min: int = 0


class Facts(NamedTuple):
    sessions: Sequence[SessionFact]
    rooms: Sequence[RoomFact]
    outages: Sequence[Outage]
    now: datetime.datetime


class Draft(NamedTuple):
    key: str
    kind: Kind
    category: Category
    room: str
    session: str
    start: datetime.datetime
    end: Optional[datetime.datetime]
    description: str


def _minutes(delta: datetime.timedelta) -> int:
    """Whole minutes, rounded up (a started minute counts)."""
    return max(0, int(math.ceil(delta.total_seconds() / 60.0 - 1e-9)))


DEFAULT_RULES = DraftRules()


def draft(facts: Facts, rules: DraftRules = DEFAULT_RULES) -> List[Draft]:
    """The drafts the facts call for (see the module docstring), in a stable order."""
    sessions = {s.id: s for s in facts.sessions}
    out: List[Draft] = []
    for rf in facts.rooms:
        s = sessions.get(rf.session)
        if s is None or rf.started_at is None:
            continue
        base = "{}|{}".format(rf.room, rf.session)
        late = rf.started_at - s.start
        if late.total_seconds() > rules.late_start_min * 60:
            out.append(Draft("late_start|" + base, Kind.LATE_START, Category.STAFF, rf.room, rf.session, s.start,
                             rf.started_at, "考场 {} 晚于开考时间 {} 分钟开考。".format(rf.room, _minutes(late))))
        if rf.unpermitted:
            out.append(Draft("unpermitted|" + base, Kind.UNPERMITTED, Category.STAFF, rf.room, rf.session,
                             rf.started_at, rf.started_at,
                             "考场 {} 未经许可开考（开考前未获得开考许可）。".format(rf.room)))
        end = s.start + datetime.timedelta(minutes=s.duration_min + rf.extra_min)
        if rf.ended_at is None and facts.now - end > datetime.timedelta(minutes=rules.not_ended_min):
            out.append(Draft("not_ended|" + base, Kind.NOT_ENDED, Category.DEVICE, rf.room, rf.session, end,
                             None, "考场 {} 在考试结束时间 {} 分钟后仍未结束考试。".format(
                                 rf.room, int(rules.not_ended_min))))
        for o in facts.outages:
            if o.room != rf.room or o.start < rf.started_at or (rf.ended_at is not None and o.start >= rf.ended_at):
                continue
            gap = (o.end or facts.now) - o.start
            if gap.total_seconds() <= rules.outage_s:
                continue
            text = "考场 {} 与考点机失去连接{}。".format(
                rf.room, "（仍未恢复）" if o.end is None else " {} 秒".format(int(round(gap.total_seconds()))))
            out.append(Draft("outage|{}|{}".format(base, format_time(o.start)), Kind.OUTAGE, Category.NETWORK,
                             rf.room, rf.session, o.start, o.end, text))
    return out


# -- the outage tracker: the monitor's "last seen" turned into outages ------------------------
class OutageTracker:
    """Outages per room, from each tick's time since the room's last heartbeat.

    ``observe(room, last_seen_s, now)``: ``last_seen_s`` seconds since the room's last
    heartbeat (None: never heard by this process), ``now`` the wall time. An outage opens
    when the gap exceeds ``threshold_s`` (its start: the last heartbeat's time, fixed
    then), and closes when a newer heartbeat is seen (its end: that heartbeat's time). A
    gap between two ticks' heartbeats longer than the threshold (ticks further apart than
    the gap) is an outage too. ``watched(rooms)``: the rooms this tick observed; the others
    (no session of theirs under way) are not watched until they are observed again, and that
    pause is no gap. ``outages()``: every outage seen, open ones with ``end`` None.
    """

    def __init__(self, threshold_s: float = 30.0) -> None:
        self.threshold_s = float(threshold_s)
        self._last: Dict[str, datetime.datetime] = {}
        self._open: Dict[str, datetime.datetime] = {}
        self._seen: List[Outage] = []

    def resume(self, room: str, start: datetime.datetime) -> None:
        """An outage stored open before a restart: it closes at the room's next heartbeat."""
        self._open.setdefault(room, start)

    def observe(self, room: str, last_seen_s: Optional[float], now: datetime.datetime) -> None:
        if last_seen_s is None:
            return
        beat = now - datetime.timedelta(seconds=last_seen_s)
        previous = self._last.get(room)
        fresh = previous is None or beat - previous > datetime.timedelta(seconds=0.5)  # a newer heartbeat
        start = self._open.get(room)
        if start is not None:
            if fresh and beat > start + datetime.timedelta(seconds=0.5):
                del self._open[room]
                self._seen.append(Outage(room, start, beat))
        elif previous is not None and fresh and (beat - previous).total_seconds() > self.threshold_s:
            self._seen.append(Outage(room, previous, beat))
        elif last_seen_s > self.threshold_s:
            self._open[room] = beat
        if previous is None or beat > previous:
            self._last[room] = beat

    def watched(self, rooms: Set[str]) -> None:
        """Only ``rooms`` were observed by this tick: every other room's last heartbeat is forgotten,
        so the time until it is observed again (no session of its under way: between two sessions)
        is no gap. Its open outage stays open (it closes at its next heartbeat)."""
        for room in [r for r in self._last if r not in rooms]:
            del self._last[room]

    def outages(self) -> List[Outage]:
        return list(self._seen) + [Outage(room, start, None) for room, start in self._open.items()]
