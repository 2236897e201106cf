"""考中 → 考场管理: the live monitoring table of manual §4.3.

One row per room of the chosen session: 考场编号 | 注册IP | 考场数据导入状态 | 考试授权状态 |
授权验证状态 | 是否结束考试 | 是否已上报数据 | 是否与考场连接 | 考生人数 | 已登录 | 考试中,
then the 人数统计 totals row (counts of rooms for the yes/no columns as ``n/rooms``, sums
for the people). Footer: 场次名称 selector, 开考时间, 考场状态上报 成功 <time>.

A room whose start was 未经许可开考 (the ``MonitorRow``'s ``unpermitted`` flag: the page
decides on the core's typed view, ``core.monitor.view``, never on a label) is painted
red: the row gets the tag ``unpermitted`` (white on ``ALARM_BG``), its 考试中 cell reads
``<n>（未经许可开考）`` (``row_cell``), and a red line under the table names the rooms. A
room lost (``MonitorRow.lost``: not connected and its session not ended) gets the tag
``off`` (red text); a room that ended the session and went away gets ``done`` (grey
text): a finished room is no alarm. A room with an open timeline alarm of the shown session
(``core.timeline.open_alarms()``, ``Alarm.room``: late to start, lost...) gets the tag ``alarm``
(dark red on amber, distinct from the lost room's red text; 未经许可开考 stays first).
A room with 补时 (``MonitorRow.extra_time_min``) not ended reads ``否（补时）`` in 是否结束考试,
and a line under the table gives each such room's expected end (``extra_time_line``:
``补时：考场 R1 10 分钟，预计 2026-12-01 11:10 结束``); a grant (``extra_time.granted``) re-renders
at once.
考场情况记录… (or a double click on a room) opens 考中 → 考场情况 (kd.views.incidents) on
that room and session. 开考时间 and 考场状态上报's time read as
``kd.core.labels.shown`` (``2026-12-01 17:35``).

Everything comes from ``core.monitor.view(session_id)`` (a worker). Heartbeats live
in memory and are no hub events, so while the page is shown it refreshes on a timer
(``REFRESH_MS``, the shell loop's ``every`` timer owned by the page: cancelled when the
page is unmapped or destroyed) as well as after the hub events in ``events``. ``render``
updates the rows in place (``LiveTable``) when the rooms are the same, so a refresh of
100 rooms is cheap.
"""

import logging
from typing import AbstractSet, Any, Dict, FrozenSet, List, Optional, Tuple

import ttkbootstrap as ttk

from kd.core import names as n
from kd.core.labels import UNPERMITTED_LABEL, shown
from kd.core.livesnapshots import EXTRA_TIME_MARK, MonitorRow, MonitorSnapshot, cell_text, extra_time_line
from kd.core.monitor import COLUMNS
from kd.views.live_table import LiveTable
from kd.views.livepage import INCIDENTS_PAGE, LivePage

log = logging.getLogger(__name__)

#: the refresh period while the page is shown (heartbeats are not hub events)
REFRESH_MS = 2000

#: column widths (px, at least the heading's width: see LiveTable)
WIDTHS = {"room": 80, "ip": 112, "in_exam": 124}
#: where the long headings break (the header has two lines)
BREAKS = {"data_imported": "考场数据\n导入状态", "authorized": "考试授权\n状态", "verified": "授权验证\n状态",
          "ended": "是否结束\n考试", "reported": "是否已上报\n数据", "connected": "是否与考场\n连接"}
OK_COLOUR, BAD_COLOUR, DONE_COLOUR = "#2e7d32", "#c0392b", "#7f8c8d"
#: the background of a 未经许可开考 row (its text is white)
ALARM_BG, ALARM_FG = "#c0392b", "#ffffff"
#: a room with an open timeline alarm (tag ``alarm``)
MARK_BG, MARK_FG = "#ffe08a", "#8e1b10"
BOOL_KEYS = ("data_imported", "authorized", "verified", "ended", "reported", "connected")
COUNT_KEYS = ("candidates", "logged_in", "in_exam")


def row_cell(row: MonitorRow, key: str) -> str:
    """A cell as shown; 考试中 of a 未经许可开考 room says so (``<n>（未经许可开考）``), 是否结束考试
    of a room with 补时 not ended reads ``否（补时）``."""
    text = cell_text(key, getattr(row, key))
    if key == "in_exam" and row.unpermitted:
        return "{}（{}）".format(text, UNPERMITTED_LABEL)
    if key == "ended" and not row.ended and row.extra_time_min > 0:
        return "{}（{}）".format(text, EXTRA_TIME_MARK)
    return text


def format_rows(snap: MonitorSnapshot, alarm_rooms: AbstractSet[str] = frozenset(),
                ) -> Tuple[List[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """The snapshot's rows and totals as the table shows them (display strings); the rooms of
    ``alarm_rooms`` (an open timeline alarm) are marked."""
    rows = []
    for r in snap.rows:
        shown: Dict[str, Any] = {key: row_cell(r, key) for key, _ in COLUMNS}
        if r.unpermitted:
            shown["_tags"] = ("unpermitted",)
        elif r.room in alarm_rooms:
            shown["_tags"] = ("alarm",)
        elif r.lost:
            shown["_tags"] = ("off",)
        elif not r.connected:
            shown["_tags"] = ("done",)
        rows.append(shown)
    totals = snap.totals or {}
    if not rows:
        return rows, None
    rooms = totals.get("rooms", len(rows))
    total: Dict[str, Any] = {"room": totals.get("room", "人数统计"), "ip": ""}
    for key in BOOL_KEYS:
        total[key] = "{}/{}".format(totals.get(key, 0), rooms)
    for key in COUNT_KEYS:
        total[key] = str(totals.get(key, 0))
    return rows, total


def alarm_text(snap: MonitorSnapshot) -> str:
    """The red line under the table: the rooms whose start was 未经许可开考 ("" when none)."""
    rooms = [r.room for r in snap.rows if r.unpermitted]
    if not rooms:
        return ""
    return "{}：考场 {}（开考时考点机未给予开考许可，请立即核实）".format(UNPERMITTED_LABEL, "、".join(rooms))


def show_time(value: Optional[str]) -> str:
    """An ISO time as the manual shows it: ``2026-11-26 09:00`` (``kd.core.labels.shown``)."""
    return shown(value)


class MonitorPage(LivePage):
    title = "考场管理"
    refresh_ms = REFRESH_MS
    events = frozenset({n.ALARM_OPENED, n.ALARM_CLOSED,
                        n.PACKAGE_LOADED, n.ROOM_REGISTERED, n.REGISTRATION_REVOKED, n.REGISTRATION_RESTORED,
                        n.ROOM_DATA_IMPORTED, n.SESSION_AUTHORIZED, n.SESSION_VERIFIED, n.ROOM_STARTED,
                        n.ROOM_STARTED_UNPERMITTED, n.ROOM_ENDED, n.RESULTS_RECEIVED, n.RESULTS_UPLOADED,
                        n.SESSION_STARTED, n.SESSION_ENDED, n.OUTBOX_SENT, n.OUTBOX_FAILED, n.SYSTEM_INITIALIZED,
                        n.SYSTEM_RESTORED, n.SYSTEM_CONVERTED_TO_FORMAL, n.EXTRA_TIME_GRANTED})

    def _build(self) -> None:
        self._session_id: Optional[str] = None
        self._timer: Any = None
        self._build_table()
        self._build_footer()
        self.watch_visibility()

    def _build_table(self) -> None:
        columns = [(key, BREAKS.get(key, label), WIDTHS.get(key, 60)) for key, label in COLUMNS]
        self.table = LiveTable(self, columns, key=("room",), height=16)
        self.table.tree.tag_configure("off", foreground=BAD_COLOUR)
        self.table.tree.tag_configure("done", foreground=DONE_COLOUR)
        self.table.tree.tag_configure("unpermitted", foreground=ALARM_FG, background=ALARM_BG)
        self.table.tree.tag_configure("alarm", foreground=MARK_FG, background=MARK_BG)
        self.table.pack(side="top", fill="both", expand=True)
        self.hint = ttk.Label(self, text="", bootstyle="secondary")
        self.hint.pack(side="top", anchor="w", pady=(4, 0))
        self.alarm = ttk.Label(self, text="", foreground=BAD_COLOUR)
        self.alarm.pack(side="top", anchor="w")
        self.extra = ttk.Label(self, text="", wraplength=900, justify="left")
        self.extra.pack(side="top", anchor="w")

    def _build_footer(self) -> None:
        foot = self.session_footer()
        ttk.Label(foot, text="开考时间：").pack(side="left", padx=(16, 0))
        self.start_label = ttk.Label(foot, text="")
        self.start_label.pack(side="left")
        ttk.Label(foot, text="考场状态上报：").pack(side="left", padx=(16, 0))
        self.report_label = ttk.Label(foot, text="")
        self.report_label.pack(side="left")
        self.incidents_button = ttk.Button(foot, text="考场情况记录…", bootstyle="warning-outline",
                                           command=self.open_incidents)
        self.incidents_button.pack(side="right")
        self.table.tree.bind("<Double-1>", lambda e: self.open_incidents(), add="+")

    def open_incidents(self) -> None:
        """考场情况 (kd.views.incidents) of the selected room (none: every room) in the shown session."""
        row = self.table.selected()
        session = ((self.last[0].session or {}) if self.last else {}).get("id")
        self.shell.show(INCIDENTS_PAGE)
        open_for = getattr(getattr(self.shell, "current", None), "open_for", None)
        if open_for is not None:
            open_for(session, row.get("room") if row else None)

    # -- the core (worker) -----------------------------------------------------------------
    def snapshot(self) -> Tuple[MonitorSnapshot, FrozenSet[str]]:
        """The monitor's view and the rooms of its session with an open timeline alarm."""
        snap = self.monitor_view()
        session = (snap.session or {}).get("id")
        timeline = getattr(self.core, "timeline", None)
        alarms = timeline.open_alarms() if timeline is not None else ()
        return snap, frozenset(a.room for a in alarms if a.room and a.session in (None, session))

    # -- rendering (Tk) --------------------------------------------------------------------
    def render(self, view: Tuple[MonitorSnapshot, FrozenSet[str]]) -> None:
        snap, alarm_rooms = view
        rows, total = format_rows(snap, alarm_rooms)
        self.table.set_rows(rows, total)
        session = snap.session or {}
        sessions = list(snap.sessions)
        self.session_box.show(sessions, session.get("id"))
        _set(self.start_label, show_time(session.get("start")))
        report = snap.status_report or {}
        _set(self.report_label, report.get("label") or "")
        state = report.get("state")
        _set(self.report_label, OK_COLOUR if state == "sent" else (BAD_COLOUR if state == "failed" else ""),
             "foreground")
        if not sessions:
            _set(self.hint, "尚未导入考务，没有可监控的考场。")
        else:
            totals = snap.totals or {}
            _set(self.hint, "共 {} 个考场，{} 个与考场连接（每 {} 秒刷新）".format(
                totals.get("rooms", len(rows)), totals.get("connected", 0), REFRESH_MS // 1000))
        _set(self.alarm, alarm_text(snap))
        _set(self.extra, extra_time_line(snap.rows))


def _set(widget: Any, value: str, option: str = "text") -> None:
    """Configure ``option`` only when it changes (a redundant configure redraws)."""
    if str(widget.cget(option)) != value:
        widget.configure(**{option: value})
