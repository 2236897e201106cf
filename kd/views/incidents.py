"""考中 → 考场情况: the 考场情况记录 of one session, and 补时 (docs/incidents.md, docs/操作手册.md §4.3.2).

One row per incident of the chosen session (``core.incidents.list(session)``), filtered to
one room by the 考场 picker: 编号 | 考场 | 类别 | 开始 | 结束 | 丢失分钟 | 状态 | 来源 | 说明 |
记录人. 状态 is the core's label (待确认 / 已确认 / 已驳回); a 待确认 row has the tag ``drafted``
(amber), an 已驳回 one ``dismissed`` (grey). 来源: 自动 for a draft (``recorded_by`` is
``system``), 手工 otherwise. Under the table: the selected record in full (its affected
tickets, its lost minutes and whether they count toward 补时, ``counts_text``, the decision
and its note) and the 补时 granted in the session (one line per grant:
room, minutes, the expected end, whether the proctor machine acknowledged it).

Buttons (each writes through the core in a worker, ``Page.run``; the core refuses what its
rules refuse and its ``UserError`` is shown as it is):

- 登记情况: the form of ``kd.views.incident_form`` (a confirmed record, ``incidents.add``);
- 确认 (a 待确认 record): 是/否 with what it changes, then ``incidents.confirm``;
- 驳回: the note asked (确定/取消, the prompt says what it changes), then ``incidents.dismiss``;
- 补时 (the selected record's room, or the 考场 picker's): the proposal
  (``extra_time.proposal``) in a worker, then by its tier: nothing to grant (info); ≤ 30
  minutes in total, one 是/否 naming the minutes and the new expected end; 30–45, that and a
  second 是/否 asking for the dongle (``grant(confirmed=True)``: the core checks the dongle
  and its ``LockError`` is shown); over 45, the rescheduling proposal (a warning), nothing
  granted;
- 标记已结束 (a room whose proctor machine is gone): the reason asked, then 是/否 with what it
  changes, then ``incidents.end_stale``;
- 打印记录单: ``kd.core.incidentsheet.write_sheet`` for the room (the selected record's, or
  the 考场 picker's; neither: ``write_session_sheets``, one sheet per room of the session) in a
  worker, the file opened like the door sheet (``shell.open_url``: the no-browser window when
  none starts).

The page refreshes on the hub events in ``events`` (drafts come from the site's tick) and,
while shown, every ``REFRESH_MS`` (the lost minutes of an open incident grow).
"""

import dataclasses
import datetime
import logging
import tkinter.font as tkfont
from typing import Any, Dict, List, Optional, Sequence, Tuple

import ttkbootstrap as ttk

from kd.core import names as n
from kd.core.extratime import COUNTING_LABELS, Proposal, Tier, counting
from kd.core.incidents import CATEGORY_LABELS, STATE_LABELS, Category, IncidentState, recorder_label
from kd.core.labels import shown
from kd.errors import UserError
from kd.formats.timeutil import CST, SHOWN
from kd.views.incident_form import FormFields, IncidentForm, parse_fields
from kd.views.live_table import LiveTable
from kd.views.livepage import LivePage

log = logging.getLogger(__name__)

REFRESH_MS = 5000
ALL_ROOMS = "全部考场"
COLUMNS = [("id", "编号", 44), ("room", "考场", 80), ("category", "类别", 72), ("start", "开始", 118),
           ("end", "结束", 118), ("lost", "丢失\n分钟", 48), ("state", "状态", 58), ("source", "来源", 44),
           ("description", "说明", 250), ("recorded_by", "记录人", 60)]
DRAFT_BG, DRAFT_FG, DISMISSED_FG = "#fff3cd", "#7a4b00", "#7f8c8d"
TITLE = "考场情况记录"
EXTRA_TITLE = "补时"


@dataclasses.dataclass(frozen=True)
class IncidentsView:
    """What the page shows: the session's incidents (with their lost minutes), rooms and grants."""

    incidents: Tuple[Dict[str, Any], ...]
    rooms: Tuple[str, ...]
    grants: Tuple[Dict[str, Any], ...]
    sessions: Tuple[Dict[str, Any], ...]
    session_id: Optional[str]
    session_name: str
    now: str
    room: Optional[str] = None  # the room the table is filtered to (None: every room)


def incident_row(doc: Dict[str, Any]) -> Dict[str, Any]:
    """One table row of an incident record (display strings; the record itself under ``doc``)."""
    state = IncidentState(doc["state"])
    row: Dict[str, Any] = {
        "id": doc["id"], "room": doc["room"], "category": CATEGORY_LABELS[Category(doc["category"])],
        "start": shown(doc["start"]), "end": shown(doc.get("end")) or "未结束",
        "lost": str(doc.get("lost_min", "")), "state": STATE_LABELS[state],
        "source": "自动" if doc.get("recorded_by") == "system" else "手工",
        "description": " ".join(str(doc.get("description") or "").split()),
        "recorded_by": recorder_label(doc.get("recorded_by")),
        "doc": doc}
    if state is IncidentState.DRAFTED:
        row["_tags"] = ("drafted",)
    elif state is IncidentState.DISMISSED:
        row["_tags"] = ("dismissed",)
    return row


def counts_text(doc: Dict[str, Any], lost_kinds: Sequence[str]) -> str:
    """Whether the record counts toward the 补时 proposal, said for people (the core's rule:
    ``kd.core.extratime.counting``)."""
    return COUNTING_LABELS[counting(doc, lost_kinds)]


def detail_text(doc: Optional[Dict[str, Any]]) -> str:
    """The selected record in full, under the table ("" when none is selected)."""
    if doc is None:
        return ("选中一条记录可查看详情；确认、驳回针对选中的记录，"
                "补时、标记已结束、打印记录单针对选中记录的考场（或“考场”一栏选定的考场）。")
    text = " ".join(str(doc.get("description") or "").split()).rstrip("。")
    parts = ["记录 {}：{}".format(doc["id"], text)]
    parts.append("受影响考生：{}".format("、".join(doc.get("candidates") or []) or "全考场"))
    if doc.get("counts"):
        parts.append("丢失 {} 分钟，{}".format(doc.get("lost_min", 0), doc["counts"]))
    if doc.get("decided_by"):
        verb = "确认" if doc["state"] == IncidentState.CONFIRMED.value else "驳回"
        parts.append("{} 于 {} {}{}".format(doc["decided_by"], shown(doc.get("decided_at")), verb,
                                           "（{}）".format(doc["note"]) if doc.get("note") else ""))
    return "；".join(parts) + "。"


def grant_lines(grants: Sequence[Dict[str, Any]]) -> str:
    """The 补时 granted in the session, one line each ("" when none)."""
    lines = []
    for g in grants:
        lines.append("补时：考场 {} {} 分钟（合计 {} 分钟，预计结束 {}；{} {}；{}）".format(
            g["room"], g["minutes"], g["total_min"], shown(g["expected_end"]), g.get("granted_by") or "",
            "经二次确认并验证机考锁后批准" if g.get("tier") == Tier.DONGLE.value else "当场批准",
            "监考机已确认收到" if g.get("acked_at") else "等待监考机确认收到"))
    return "\n".join(lines)


def proposal_text(p: Proposal, scheduled_end: str, new_end: str) -> Tuple[str, str]:
    """The question and detail of a 补时 proposal with minutes to grant."""
    text = "为考场 {} 补时 {} 分钟？".format(p.room, p.proposed_min)
    detail = ("依据已确认的考场情况记录 {}：丢失 {} 分钟，已补时 {} 分钟。"
              "补时后本场次合计 {} 分钟，预计结束时间由 {} 改为 {}，并通过心跳发送给监考机。").format(
        "、".join(p.incidents) or "（无）", p.lost_min, p.granted_min, p.granted_min + p.proposed_min,
        scheduled_end, new_end)
    return text, detail


class IncidentsPage(LivePage):
    title = TITLE
    refresh_ms = REFRESH_MS
    events = frozenset({n.INCIDENT_RECORDED, n.INCIDENT_DRAFTED, n.INCIDENT_UPDATED, n.INCIDENT_CONFIRMED,
                        n.INCIDENT_DISMISSED, n.EXTRA_TIME_GRANTED, n.EXTRA_TIME_ACKNOWLEDGED, n.ROOM_ENDED,
                        n.PACKAGE_LOADED, n.SYSTEM_INITIALIZED, n.SYSTEM_RESTORED, n.SYSTEM_CONVERTED_TO_FORMAL})

    def _build(self) -> None:
        self._session_id: Optional[str] = None
        self._timer: Any = None
        self._room: Optional[str] = None
        self.form: Optional[IncidentForm] = None
        bar = ttk.Frame(self)
        bar.pack(side="top", fill="x", pady=(0, 6))
        specs = [("登记情况", "primary", self._on_add), ("确认", "success", self._on_confirm),
                 ("驳回", "secondary", self._on_dismiss), ("补时", "warning", self._on_extra_time),
                 ("标记已结束", "danger", self._on_end_stale), ("打印记录单", "info", self._on_print)]
        self.buttons: Dict[str, ttk.Button] = {}
        for index, (text, style, command) in enumerate(specs):
            button = ttk.Button(bar, text=text, bootstyle=style, command=command)
            button.pack(side="left", padx=(6 if index else 0, 0))
            self.buttons[text] = button
        self.table = LiveTable(self, COLUMNS, key=("id",), height=12)
        self.table.tree.tag_configure("drafted", background=DRAFT_BG, foreground=DRAFT_FG)
        self.table.tree.tag_configure("dismissed", foreground=DISMISSED_FG)
        font = tkfont.nametofont("TkDefaultFont")
        need = {"room": font.measure("11003007") + 16, "start": font.measure("2026-12-01 09:00") + 16}
        need["end"] = need["start"]
        for key, _heading, width in COLUMNS:  # only 说明 takes what a narrow window leaves: no time is cut
            if key == "description":
                self.table.tree.column(key, anchor="w", width=160, minwidth=120)
            else:
                width = max(width, need.get(key, 0), int(self.table.tree.column(key, "minwidth")))
                self.table.tree.column(key, stretch=False, width=width, minwidth=width)
        self.table.tree.bind("<<TreeviewSelect>>", lambda e: self._show_detail(), add="+")
        self.table.pack(side="top", fill="both", expand=True)
        self.hint = ttk.Label(self, text="", bootstyle="secondary")
        self.hint.pack(side="top", anchor="w", pady=(4, 0))
        self.detail = ttk.Label(self, text=detail_text(None), justify="left", wraplength=760)
        self.detail.pack(side="top", anchor="w", fill="x", pady=(4, 0))
        self.detail.bind("<Configure>", lambda e: self.detail.configure(wraplength=max(300, e.width - 8)), add="+")
        self.grants = ttk.Label(self, text="", bootstyle="success", justify="left")
        self.grants.pack(side="top", anchor="w", pady=(4, 0))
        foot = self.session_footer()
        ttk.Label(foot, text="考场：").pack(side="left", padx=(16, 0))
        self.room_box = ttk.Combobox(foot, state="readonly", width=10, values=[ALL_ROOMS])
        self.room_box.current(0)
        self.room_box.bind("<<ComboboxSelected>>", lambda e: self.choose_room(self._picked_room()))
        self.room_box.pack(side="left")
        self.watch_visibility()

    # -- the core (worker) -----------------------------------------------------------------
    def snapshot(self) -> IncidentsView:
        core = self.core
        mon = self.monitor_view()
        session = mon.session or {}
        sid = session.get("id")
        rooms = tuple(r.room for r in mon.rows)
        room = self._room if self._room in rooms else None  # a room not in this session: every room
        docs: List[Dict[str, Any]] = []
        grants: List[Dict[str, Any]] = []
        if sid is not None:
            for doc in core.incidents.list(session=sid, room=room):
                docs.append(dict(doc, lost_min=core.incidents.lost_minutes(doc),
                                 counts=counts_text(doc, core.extra_time.rules.lost_kinds)))
            grants = core.extra_time.grants(room=room, session=sid)
        return IncidentsView(tuple(docs), rooms, tuple(grants), tuple(mon.sessions), sid,
                             session.get("name") or (sid or ""), core.ctx.now().astimezone(CST).strftime(SHOWN), room)

    # -- rendering (Tk) --------------------------------------------------------------------
    def render(self, view: IncidentsView) -> None:
        self.table.set_rows([incident_row(d) for d in view.incidents])
        self.session_box.show(list(view.sessions), view.session_id)
        values = [ALL_ROOMS] + list(view.rooms)
        if list(self.room_box.cget("values")) != values:
            self.room_box.configure(values=values)
        if self._room not in view.rooms:  # the chosen room is not one of this session's
            self._room = None
        self.room_box.current(values.index(self._room) if self._room is not None else 0)
        drafted = sum(1 for d in view.incidents if d["state"] == IncidentState.DRAFTED.value)
        if not view.sessions:
            _set(self.hint, "尚未导入考务，没有考场情况记录。")
        else:
            _set(self.hint, "共 {} 条记录，{} 条待确认（自动记录须由考点管理员确认或驳回）".format(
                len(view.incidents), drafted))
        _set(self.grants, grant_lines(view.grants))
        self._show_detail()

    def _show_detail(self) -> None:
        row = self.table.selected()
        _set(self.detail, detail_text(row["doc"] if row else None))

    # -- choices ---------------------------------------------------------------------------
    def _picked_room(self) -> Optional[str]:
        index = self.room_box.current()
        return None if index <= 0 else str(self.room_box.cget("values")[index])

    def choose_room(self, room: Optional[str]) -> None:
        """Show the records of ``room`` (None: every room) and make it the room of 补时 / 标记已结束."""
        self._room = room
        self.refresh()

    def open_for(self, session_id: Optional[str], room: Optional[str]) -> None:
        """Show the records of ``room`` in ``session_id`` (考场管理's 考场情况记录… of a room)."""
        self._session_id, self._room = session_id, room
        self.refresh()

    def selected(self) -> Optional[Dict[str, Any]]:
        """The selected incident record, or None."""
        row = self.table.selected()
        return row["doc"] if row else None

    def _target_room(self) -> Optional[str]:
        doc = self.selected()
        return doc["room"] if doc else self._room

    def _session(self) -> Optional[Tuple[str, str]]:
        view = self.last
        if view is None or view.session_id is None:
            self.shell.dialogs.info(TITLE, "尚未导入考务。", "请先在“考务管理”导入考务数据。")
            return None
        return view.session_id, view.session_name

    def _room_or_say(self, action: str) -> Optional[str]:
        room = self._target_room()
        if room is None:
            self.shell.dialogs.info(TITLE, "请先选择考场。",
                                    "在表格中选中该考场的一条记录，或在下方“考场”一栏选择考场，再点“{}”。".format(action))
        return room

    def _chosen(self, action: str) -> Optional[Dict[str, Any]]:
        doc = self.selected()
        if doc is None:
            self.shell.dialogs.info(TITLE, "请先在表格中选中一条记录。", "再点“{}”。".format(action))
        return doc

    # -- 登记情况 --------------------------------------------------------------------------
    def _on_add(self) -> None:
        session = self._session()
        if session is None:
            return
        if self.form is not None and self.form.winfo_exists():
            self.form.lift()
            return
        view = self.last
        self.form = IncidentForm(self, view.rooms, self._target_room(), view.now,
                                 lambda fields: self._store(fields, session[0]), session_name=session[1])

    def _store(self, fields: FormFields, session: str) -> None:
        form = self.form
        try:
            kw = parse_fields(fields, CST)
        except UserError as e:
            self.shell.dialogs.error(e, TITLE)
            return
        core, actor = self.core, self.shell.user

        def added(doc: Dict[str, Any]) -> None:
            if form is not None and form.winfo_exists():
                form.close()
            self.shell.notify("已登记考场情况记录 {}（考场 {}）".format(doc["id"], doc["room"]), "success")

        self.run(lambda: core.incidents.add(session=session, actor=actor, **kw), added,
                 button=form.ok_button if form is not None else None,
                 on_user_error=lambda e: self.shell.dialogs.error(e, TITLE))

    # -- 确认 / 驳回 -----------------------------------------------------------------------
    def _on_confirm(self) -> None:
        doc = self._chosen("确认")
        if doc is None:
            return
        if doc["state"] != IncidentState.DRAFTED.value:
            label = STATE_LABELS[IncidentState(doc["state"])]
            self.shell.dialogs.info(TITLE, "记录 {} {}，无需确认。".format(doc["id"], label),
                                    "只有待确认的记录可以确认。")
            return
        after = "其中断时间计入补时建议。" if doc["kind"] == "outage" else "并写入考场情况记录单。"
        if not self.shell.dialogs.confirm(TITLE, "确认考场情况记录 {}？".format(doc["id"]),
                                          "{}。确认后记录的状态改为已确认，{}".format(_summary(doc), after)):
            return
        core, actor = self.core, self.shell.user
        self.run(lambda: core.incidents.confirm(doc["id"], actor), lambda d: self.shell.notify(
            "记录 {} 已确认".format(d["id"]), "success"), button=self.buttons["确认"])

    def _on_dismiss(self) -> None:
        doc = self._chosen("驳回")
        if doc is None:
            return
        if doc["state"] == IncidentState.DISMISSED.value:
            self.shell.dialogs.info(TITLE, "记录 {} 已驳回。".format(doc["id"]), "无需再次驳回。")
            return
        note = self.shell.dialogs.ask_text(TITLE, (
            "驳回考场情况记录 {}（{}）：驳回后它不再计入补时建议，记录保留并注明驳回。"
            "请填写驳回说明：").format(doc["id"], _summary(doc)))
        if note is None:
            return
        core, actor = self.core, self.shell.user
        self.run(lambda: core.incidents.dismiss(doc["id"], actor, note.strip()), lambda d: self.shell.notify(
            "记录 {} 已驳回".format(d["id"]), "success"), button=self.buttons["驳回"])

    # -- 补时 ------------------------------------------------------------------------------
    def _on_extra_time(self) -> None:
        session = self._session()
        room = self._room_or_say("补时") if session else None
        if session is None or room is None:
            return
        extra, sid = self.core.extra_time, session[0]

        def propose() -> Tuple[Proposal, str, str]:
            p = extra.proposal(room, sid)
            before = extra.expected_end(room, sid)
            return p, shown(before), shown(before + datetime.timedelta(minutes=p.proposed_min))

        self.shell.loop.submit(propose, lambda result: self._decide(*result), self._failed)

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, UserError):
            self.shell.dialogs.error(exc, EXTRA_TITLE)
            return
        raise exc

    def _decide(self, p: Proposal, before: str, after: str) -> None:
        dialogs = self.shell.dialogs
        if p.tier is Tier.RESCHEDULE:
            dialogs.warning(EXTRA_TITLE, "考场 {} 丢失 {} 分钟，补时合计将超过 45 分钟，不能补时。".format(
                p.room, p.lost_min), ("按规定应改期重考：已确认的考场情况记录 {}，已补时 {} 分钟。"
                                      "请保留考场情况记录单并报告上级考试机构；本系统不批准补时。").format(
                                          "、".join(p.incidents), p.granted_min))
            return
        if p.tier is Tier.NONE or p.proposed_min <= 0:
            dialogs.info(EXTRA_TITLE, "考场 {} 没有需要补的时间。".format(p.room),
                         ("补时依据已确认、已结束、针对全考场的网络中断和手工登记的记录"
                          "（丢失 {} 分钟，已补时 {} 分钟）。待确认的记录请先确认。").format(
                             p.lost_min, p.granted_min))
            return
        text, detail = proposal_text(p, before, after)
        if p.tier is Tier.ON_SITE:
            if not dialogs.confirm(EXTRA_TITLE, text, detail + " 合计不超过 30 分钟，由考点管理员当场批准。"):
                return
            confirmed = False
        else:
            if not dialogs.confirm(EXTRA_TITLE, text, detail + " 合计超过 30 分钟，还须二次确认并插入本考点的机考锁。"):
                return
            if not dialogs.confirm(EXTRA_TITLE, "二次确认：为考场 {} 补时 {} 分钟（合计 {} 分钟）。".format(
                    p.room, p.proposed_min, p.granted_min + p.proposed_min),
                    "请确认本考点的机考锁已插在考点机上，再点“是”：系统将验证机考锁并记录其编号和时间。"):
                return
            confirmed = True
        extra, actor = self.core.extra_time, self.shell.user
        reason = "考场情况记录 {}：丢失 {} 分钟".format("、".join(p.incidents), p.lost_min)
        self.run(lambda: extra.grant(p.room, p.session, p.proposed_min, actor=actor, reason=reason,
                                     confirmed=confirmed, incident_ids=p.incidents),
                 lambda g: self.shell.notify("考场 {} 已补时 {} 分钟，预计结束 {}".format(
                     g["room"], g["minutes"], shown(g["expected_end"])), "success"),
                 button=self.buttons["补时"], on_user_error=lambda e: self.shell.dialogs.error(e, EXTRA_TITLE))

    # -- 标记已结束 ------------------------------------------------------------------------
    def _on_end_stale(self) -> None:
        session = self._session()
        room = self._room_or_say("标记已结束") if session else None
        if session is None or room is None:
            return
        dialogs = self.shell.dialogs
        reason = dialogs.ask_text("标记已结束", "考场 {}（{}）的监考机已无法恢复？请填写标记为已结束的原因：".format(
            room, session[1]))
        if reason is None:
            return
        if not reason.strip():
            dialogs.error(UserError("请填写将考场标记为已结束的原因。", "例如：监考机故障无法恢复。"), "标记已结束")
            return
        if not dialogs.confirm("标记已结束", "将考场 {} 的{}标记为已结束？".format(room, session[1]),
                               "将记录该考场本场次结束考试（不可撤销），并登记一条已确认的设备故障记录（原因：{}）；"
                               "该考场不再计为未结束考场，本场次的考场全部结束后即可结束场次。只能对已失去连接的考场这样做。".format(reason.strip())):
            return
        core, actor, sid = self.core, self.shell.user, session[0]
        self.run(lambda: core.incidents.end_stale(room, sid, reason.strip(), actor),
                 lambda d: self.shell.notify("考场 {} 已标记为已结束".format(room), "success"),
                 button=self.buttons["标记已结束"], on_user_error=lambda e: self.shell.dialogs.error(e, "标记已结束"))

    # -- 打印记录单 ------------------------------------------------------------------------
    def _on_print(self) -> None:
        session = self._session()
        if session is None:
            return
        core, sid, room = self.core, session[0], self._target_room()
        self.run(lambda: write_sheet(core, sid, room), self.shell.open_url, button=self.buttons["打印记录单"])


def write_sheet(core: Any, session: str, room: Optional[str]) -> str:
    """The 考场情况记录单 of a room (None: one per room of the session) as an HTML file in the data
    folder (``kd.core.incidentsheet``); its path. Runs in a worker."""
    from kd.core import incidentsheet  # noqa: PLC0415 - only needed when printing

    if room is None:
        return str(incidentsheet.write_session_sheets(core, session))
    return str(incidentsheet.write_sheet(core, session, room))


def _summary(doc: Dict[str, Any]) -> str:
    return "考场 {}，{}，{} 至 {}".format(doc["room"], CATEGORY_LABELS[Category(doc["category"])], shown(doc["start"]),
                                      shown(doc.get("end")) or "未结束")


def _set(widget: Any, value: str, option: str = "text") -> None:
    if str(widget.cget(option)) != value:
        widget.configure(**{option: value})

