"""考中 → 时间线: the exam day's deadlines of one session and the open alarms (docs/timeline.md §4).

One table per session (the 场次名称 picker under it, as 考场管理's): one row per timeline
item of the chosen session and the site-wide items (``core.timeline.timeline(session)``):
项目 | 应完成时间 | 状态 | 完成时间 | 依据 / 未完成考场 (the rooms still missing while the item
is 进行中 or 逾期, 失去连接考场 for 考中考场连接; otherwise what proves it, ``EVIDENCE``, in Chinese;
the clock items show their measured offsets instead: ``skew`` ``时钟偏差考场：R1（+300 秒）``
while a room is off, ``site_clock`` ``监控平台 +2 秒，机考锁 -1 秒`` once measured; an item not done
whose rooms have 补时 adds ``；补时：R2 至 2026-12-01 11:10（10 分钟）``: ``item_detail``).
An overdue item's row has the tag ``overdue`` (red text), a done one ``done`` (grey). Above the table, in red, the open
alarms (``core.timeline.open_alarms()``, oldest first): ``告警 N：<label>（<opened at>）``,
one line each. Under the table, ``hint_text``: ``共 11 项，2 项逾期，3 条告警`` (the alarms counted
as the title bar's 告警 N: one item late in several rooms is one 逾期 and one alarm per room);
考场情况记录… opens the 考场情况 page (kd.views.incidents: the records drafted from these
alarms, 补时).

The page reads, it never judges nor ticks: ``tick()`` is the site's (kd.site). It
refreshes on the hub events ``alarm.opened`` / ``alarm.closed`` and the records' events
in ``events``, and every ``REFRESH_MS`` while shown (the shell loop's ``every`` timer,
owned by the page, stopped when it is unmapped). Times read as ``kd.core.labels.shown``.
The session the page shows by default is the monitor's current one (``core.monitor.view``).
"""

import dataclasses
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import ttkbootstrap as ttk

from kd.core import names as n
from kd.core.labels import shown
from kd.core.timelinebuild import extra_time_text, skew_text
from kd.core.timelinerules import STATE_LABELS, ItemState
from kd.views.live_table import LiveTable
from kd.views.livepage import INCIDENTS_PAGE, LivePage

log = logging.getLogger(__name__)

#: the refresh period while the page is shown (lost rooms and due times are no hub events)
REFRESH_MS = 3000
#: at most this many alarm lines above the table (then ``……另有 N 条``)
ALARM_LINES = 4

COLUMNS = [("label", "项目", 250), ("due", "应完成时间", 130), ("state", "状态", 60),
           ("completed", "完成时间", 130), ("detail", "依据 / 未完成考场", 330)]
#: what proves an item, as people read it (by item id; the record's path is docs/timeline.md's)
EVIDENCE = {"package": "考务数据包校验记录", "seal": "封场检测通过记录", "clock": "机考锁校时记录",
            "rooms_ready": "考场注册和考场数据导入记录", "verified": "授权验证记录", "started": "各考场开考记录",
            "connected": "考场心跳", "ended": "各考场结束考试记录", "recovered": "考场数据回收记录",
            "backup": "外部存储备份校验记录", "uploaded": "平台上报回执",
            "site_clock": "封场检测、授权验证的时钟比对记录", "skew": "监考机心跳中的时钟"}
BAD_COLOUR, DONE_COLOUR = "#c0392b", "#7f8c8d"


@dataclasses.dataclass(frozen=True)
class TimelineView:
    """What the page shows: the items of one session, the open alarms, the picker's sessions."""

    items: Tuple[Any, ...]
    alarms: Tuple[Any, ...]
    sessions: Tuple[Dict[str, Any], ...]
    session_id: Optional[str]


def item_detail(item: Any) -> str:
    """依据 / 未完成考场 of an item: the clocks' measured offsets (``skew``: the rooms off;
    ``site_clock``: 监控平台, 机考锁), the rooms still missing, else what proves it; then the rooms
    with 补时 and their expected ends (the end items, 考中考场连接)."""
    clocks = skew_text(item.id, [(s.source, s.offset_s) for s in item.skew], item.rooms_left)
    if clocks:
        detail = clocks
    elif item.rooms_left and item.state in (ItemState.ACTIVE, ItemState.OVERDUE):
        label = "失去连接考场：" if item.id == "connected" else "未完成考场："
        detail = label + "、".join(item.rooms_left)
    else:
        detail = EVIDENCE.get(item.id, item.evidence or "")
    extra = extra_time_text((e.room, e.minutes, e.expected_end) for e in item.extra_time)
    return "{}；{}".format(detail, extra) if extra and item.state is not ItemState.DONE else detail


def item_row(item: Any) -> Dict[str, Any]:
    """One table row of a timeline ``Item`` (display strings; ``_tags`` by its state)."""
    detail = item_detail(item)
    row: Dict[str, Any] = {"key": "{}/{}".format(item.session or "-", item.id), "label": item.label,
                           "due": shown(item.due_at), "state": STATE_LABELS.get(item.state, str(item.state)),
                           "completed": shown(item.completed_at) if item.state is ItemState.DONE else "",
                           "detail": detail}
    if item.state is ItemState.OVERDUE:
        row["_tags"] = ("overdue",)
    elif item.state is ItemState.DONE:
        row["_tags"] = ("done",)
    return row


def alarm_lines(alarms: Sequence[Any]) -> str:
    """The red lines above the table ("" when no alarm is open)."""
    if not alarms:
        return ""
    lines = ["告警 {}：".format(len(alarms))]
    for alarm in list(alarms)[:ALARM_LINES]:
        lines.append("· {}（{}）".format(alarm.label, shown(alarm.opened_at)))
    if len(alarms) > ALARM_LINES:
        lines.append("……另有 {} 条".format(len(alarms) - ALARM_LINES))
    return "\n".join(lines)


def hint_text(items: Sequence[Any], alarms: Sequence[Any]) -> str:
    """The line under the table: the items, how many overdue, and the open alarms as the title bar counts
    them (``共 11 项，2 项逾期，3 条告警``: an item late in several rooms raises one alarm per room)."""
    late = sum(1 for i in items if i.state is ItemState.OVERDUE)
    return "共 {} 项，{} 项逾期，{}（每 {} 秒刷新）".format(
        len(items), late, "{} 条告警".format(len(alarms)) if alarms else "无告警", REFRESH_MS // 1000)


class TimelinePage(LivePage):
    title = "时间线"
    refresh_ms = REFRESH_MS
    events = frozenset({n.ALARM_OPENED, n.ALARM_CLOSED, n.PACKAGE_LOADED, n.ROOM_REGISTERED,
                        n.ROOM_DATA_IMPORTED, n.SESSION_AUTHORIZED, n.SESSION_VERIFIED, n.ROOM_STARTED,
                        n.ROOM_ENDED, n.RESULTS_RECEIVED, n.RESULTS_UPLOADED, n.SESSION_STARTED,
                        n.SESSION_ENDED, n.SYSTEM_INITIALIZED, n.SYSTEM_RESTORED, n.EXTRA_TIME_GRANTED})

    def _build(self) -> None:
        self._session_id: Optional[str] = None
        self._timer: Any = None
        self.alarm = ttk.Label(self, text="", foreground=BAD_COLOUR, justify="left")
        self.alarm.pack(side="top", anchor="w")
        self.table = LiveTable(self, COLUMNS, key=("key",), height=14)
        self.table.tree.tag_configure("overdue", foreground=BAD_COLOUR)
        self.table.tree.tag_configure("done", foreground=DONE_COLOUR)
        self.table.pack(side="top", fill="both", expand=True, pady=(4, 0))
        self.hint = ttk.Label(self, text="", bootstyle="secondary")
        self.hint.pack(side="top", anchor="w", pady=(4, 0))
        foot = self.session_footer()
        self.incidents_button = ttk.Button(foot, text="考场情况记录…", bootstyle="warning-outline",
                                           command=lambda: self.shell.show(INCIDENTS_PAGE))
        self.incidents_button.pack(side="right")
        self.watch_visibility()

    # -- the core (worker) -----------------------------------------------------------------
    def snapshot(self) -> TimelineView:
        core = self.core
        mon = self.monitor_view()
        session = (mon.session or {}).get("id")
        items = core.timeline.timeline(session).items if session is not None else ()
        return TimelineView(tuple(items), tuple(core.timeline.open_alarms()), tuple(mon.sessions), session)

    # -- rendering (Tk) --------------------------------------------------------------------
    def render(self, view: TimelineView) -> None:
        rows: List[Dict[str, Any]] = [item_row(i) for i in view.items]
        self.table.set_rows(rows)
        self.session_box.show(list(view.sessions), view.session_id)
        _set(self.alarm, alarm_lines(view.alarms))
        if not view.sessions:
            _set(self.hint, "尚未导入考务，没有时间线。")
        else:
            _set(self.hint, hint_text(view.items, view.alarms))


def _set(widget: Any, value: str, option: str = "text") -> None:
    if str(widget.cget(option)) != value:
        widget.configure(**{option: value})
