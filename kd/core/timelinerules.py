"""The rules of 考点时间线 (the exam-day timeline) as data: items, offsets, states and their labels.

Each ``Rule`` is one row of the timeline: what must be done (``id``, ``label``), when,
relative to an anchor, and who is alarmed when it is late. Offsets are whole minutes from
the anchor (negative: before it):

- ``Anchor.START``: the session's start ``T`` (``start`` of the package's session);
- ``Anchor.END``: the session's end ``E = T + duration_min`` (补时 moves it: a per-room rule
  takes each room's own expected end, the others the session's latest; ``kd.core.timelinebuild``);
- ``Anchor.FIRST_START``: the start of the day's first session (site-wide items: they
  belong to no session).

A rule's item is 未到 before ``opens``, 进行中 from ``opens`` until ``alarm``, 逾期 from
``alarm`` on while it is not done, 已完成 once done (whatever the time); ``due`` is the
deadline shown (``alarm`` >= ``due``: the grace before the alarm). ``per_room``: one alarm
per room that has not done it (开考, 结束), else one alarm for the item. The watch
``connected`` (考中连接) is the exception to the deadline rule: it is 进行中 from ``T``
while a room has not ended, 逾期 while a started room has sent no heartbeat for
``Rules.lost_after_s`` seconds (one ``room_lost`` alarm per such room), 已完成 when every
room has ended. Two more watches judge clocks against ``Rules.max_skew_s`` (60 s):
``skew`` (考场时钟偏差, per session: each room's proctor clock from its heartbeats,
``kd.core.clockskew``) is 逾期 from ``opens`` (T−60, the 校时 window) on while a room's
``|offset|`` exceeds it, with one ``clock_skew`` alarm per such room before ``T`` only;
``site_clock`` (考点机时钟, site-wide: this PC's clock against the platform's, measured by
the last 封场检测, and the dongle's, measured by 授权验证) is 逾期 with one ``clock_skew``
alarm while a measured difference exceeds it. The defaults are ``DEFAULT_RULES``
(docs/timeline.md has the table);
``Rules.replace`` gives a copy with other offsets (tests, a site that needs them).

This module imports nothing of the project: any layer may read it.
"""

import dataclasses
import enum
from typing import Dict, NamedTuple, Tuple


class ItemState(str, enum.Enum):
    """The state of a timeline item (its value is the code JSON carries)."""

    PENDING = "pending"  # 未到
    ACTIVE = "active"  # 进行中
    DONE = "done"  # 已完成
    OVERDUE = "overdue"  # 逾期


#: the state labels, in one table
STATE_LABELS: Dict[ItemState, str] = {ItemState.PENDING: "未到", ItemState.ACTIVE: "进行中",
                                      ItemState.DONE: "已完成", ItemState.OVERDUE: "逾期"}


class Anchor(str, enum.Enum):
    START = "start"
    END = "end"
    FIRST_START = "first_start"


class AlarmKind(str, enum.Enum):
    OVERDUE = "overdue"  # an item (or a room of a per-room item) passed its alarm time undone
    ROOM_LOST = "room_lost"  # a started room sent no heartbeat for lost_after_s during the exam
    CLOCK_SKEW = "clock_skew"  # a room's clock (before T) or the site's is off by more than max_skew_s


ALARM_KIND_LABELS: Dict[AlarmKind, str] = {AlarmKind.OVERDUE: "逾期", AlarmKind.ROOM_LOST: "考场失去连接",
                                           AlarmKind.CLOCK_SKEW: "时钟偏差"}


class Rule(NamedTuple):
    id: str
    label: str
    anchor: Anchor
    opens: int  # minutes from the anchor
    due: int
    alarm: int
    per_room: bool
    evidence: str  # the record that proves it (docs/storage.md, kd.core.model)


#: site-wide rules (their session is None)
SITE_ITEMS = ("package", "seal", "site_clock")
#: the rule ids ``kd.core.timeline`` knows how to judge
KNOWN = ("package", "seal", "site_clock", "clock", "skew", "rooms_ready", "verified", "started", "connected", "ended",
         "recovered", "backup", "uploaded")

DEFAULT_ITEMS: Tuple[Rule, ...] = (
    Rule("package", "考场数据包已校验（发布时间已核对）", Anchor.FIRST_START, -180, -60, -60, False,
         "exam package/meta.verified_at, publish_time"),
    Rule("seal", "封场检测通过", Anchor.FIRST_START, -120, -20, -20, False, "runtime checks/seal.passed_at"),
    Rule("site_clock", "考点机时钟（对照监控平台、机考锁）", Anchor.FIRST_START, -180, -20, -20, False,
         "runtime checks/seal clock item skew_s (this PC − platform), sessions/<id>.lock_clock_skew_s "
         "(dongle − this PC)"),
    Rule("clock", "机考锁校时（开考前一小时内）", Anchor.START, -60, 0, 0, False,
         "runtime sessions/<id>.lock_synced_at"),
    Rule("skew", "考场时钟偏差（监考机对照考点机）", Anchor.START, -60, 0, 0, True,
         "the heartbeats' clock and rtt_ms (memory, kd.core.clockskew)"),
    Rule("rooms_ready", "考场全部注册并导入考场数据", Anchor.START, -120, -30, -30, False,
         "runtime rooms/<code>.registered_at, data_imported_at"),
    Rule("verified", "授权验证完成", Anchor.START, -60, -15, -15, False, "runtime sessions/<id>.verified_at"),
    Rule("started", "全部考场开考", Anchor.START, -15, 0, 5, True,
         "runtime room_sessions/<room|id>.started_at"),
    Rule("connected", "考中考场连接", Anchor.START, 0, 0, 0, True,
         "the monitor's heartbeats (memory), room_sessions ended_at"),
    Rule("ended", "全部考场结束考试", Anchor.END, -15, 0, 15, True, "runtime room_sessions/<room|id>.ended_at"),
    Rule("recovered", "考场数据全部回收", Anchor.END, 0, 30, 30, False,
         "runtime room_sessions/<room|id>.result.received_at"),
    Rule("backup", "备份到外部存储", Anchor.END, 0, 45, 45, False,
         "runtime checks/external (valid, files with each room's result sha256), verified_at"),
    Rule("uploaded", "考后上报并取得平台回执", Anchor.END, 0, 60, 60, False,
         "runtime room_sessions/<room|id>.upload.uploaded_at, receipt"),
)


@dataclasses.dataclass(frozen=True)
class Rules:
    """The timeline's rules: its items in order, the room-lost threshold and the largest clock skew (seconds)."""

    items: Tuple[Rule, ...] = DEFAULT_ITEMS
    lost_after_s: float = 30.0
    max_skew_s: float = 60.0

    def __post_init__(self) -> None:
        for rule in self.items:
            if rule.id not in KNOWN:
                raise ValueError("unknown timeline rule {!r}".format(rule.id))
            if not rule.opens <= rule.due <= rule.alarm:
                raise ValueError("rule {}: opens <= due <= alarm must hold".format(rule.id))
        if self.lost_after_s <= 0:
            raise ValueError("lost_after_s must be > 0")
        if not self.max_skew_s > 0:
            raise ValueError("max_skew_s must be > 0")

    def replace(self, **offsets: Tuple[int, int, int]) -> "Rules":
        """A copy with ``id=(opens, due, alarm)`` for the rules named."""
        items = tuple(rule._replace(opens=offsets[rule.id][0], due=offsets[rule.id][1], alarm=offsets[rule.id][2])
                      if rule.id in offsets else rule for rule in self.items)
        return dataclasses.replace(self, items=items)


DEFAULT_RULES = Rules()
