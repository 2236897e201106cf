"""考前 step 1 导入考务 (screens.md §3.1): load the site package, its rooms, detail and door sheets.

The table is the manual's: 考场代码 | 场次数 | 数据载入时间 | 是否通过校验 | 校验通过的时间 |
查看详情 (查看) | 门贴座次表 (打开); a click on 查看 opens the room's detail (sessions and
candidates by seat, ``core.loading.room_detail``, and 时钟偏差: the room's proctor clock
against the site's, ``core.clock_skew``: ``+300 秒（±0.1）`` / ``未知``), a click on 打开 writes the room's
door sticker / seating chart (``core.loading.print_door_sheet``) and opens it in the
browser (``shell.open_url``). The buttons below the table do the same for the selected
room. The footer shows 考场数据包发布时间, the load time (手工导入时间 after a manual
import) and the 校验通过 time, with 载入 (``core.loading.load_online``) and 手工导入
(``core.loading.import_zip``); a failed download opens the .zip import dialog.
"""

import tkinter.font as tkfont
from typing import Any, Callable, Dict, List, Sequence

import ttkbootstrap as ttk

from kd.core import names as n
from kd.core.clockskew import shown as shown_skew
from kd.core.labels import mark, shown
from kd.core.snapshots import LoadingRow, LoadingSnapshot
from kd.views.base import Page
from kd.views.dialogs import ZIP_TYPES, center_on
from kd.views.step_common import InfoLine, actor
from kd.views.table_page import TablePage
from kd.views.widgets import Table

COLUMNS = [("code", "考场代码", 110), ("session_count", "场次数", 60), ("loaded_at", "数据载入时间", 150),
           ("verified", "是否通过校验", 100), ("verified_at", "校验通过的时间", 150), ("detail", "查看详情", 80),
           ("door", "门贴座次表", 90)]
NOTE = "说明：考场注册与考试授权两个操作无先后顺序限制。"
ZIP_TITLE = "手工导入考场数据包（.zip）"


class LoadPage(TablePage):
    title = "导入考务"
    events = frozenset({n.PACKAGE_LOADED, n.SYSTEM_INITIALIZED, n.SYSTEM_RESTORED, n.SYSTEM_CONVERTED_TO_FORMAL})

    service = "loading"
    columns = COLUMNS
    note = NOTE
    import_title, import_types = ZIP_TITLE, ZIP_TYPES
    imported_note = "考场数据载入成功，已通过校验。"

    # -- build ---------------------------------------------------------------------------
    def _build_body(self) -> None:
        super()._build_body()
        self.table.tree.bind("<ButtonRelease-1>", self._on_click, add="+")
        self.table.tree.bind("<Double-1>", lambda e: self._on_detail(), add="+")

    def _build_footer(self) -> None:
        row = self.bar(6)
        self.detail_button, self.door_button, self.load_button, self.import_button = self.buttons(
            row, left=[("查看详情", "secondary-outline", self._on_detail),
                       ("门贴座次表", "secondary-outline", self._on_door)],
            right=[("载入", "primary", self._on_load, 8), ("手工导入", "secondary", self._on_import)])
        self.empty = ttk.Label(row, text="", bootstyle="secondary")
        self.empty.pack(side="left", padx=(12, 0))
        self.info = InfoLine(self, [("publish", "考场数据包发布时间"), ("loaded", "数据载入时间"),
                                    ("verified", "校验通过")])
        self.info.pack(anchor="w", pady=(8, 0))

    # -- snapshot / render ---------------------------------------------------------------
    def rows_of(self, snap: LoadingSnapshot) -> Sequence[LoadingRow]:
        return snap.rooms

    def row(self, room: LoadingRow) -> Dict[str, Any]:
        return {"code": room.code, "session_count": room.session_count, "loaded_at": shown(room.loaded_at),
                "verified": mark(room.verified), "verified_at": shown(room.verified_at), "detail": "查看",
                "door": "打开"}

    def render_rest(self, snap: LoadingSnapshot) -> None:
        self.info.set_label("loaded", "手工导入时间" if snap.source == "manual" else "数据载入时间")
        self.info.set("publish", shown(snap.publish_time) or "未载入")
        self.info.set("loaded", shown(snap.loaded_at))
        self.info.set("verified", shown(snap.verified_at))
        self.empty.configure(text="" if snap.loaded else "尚未导入考务：请点击“载入”从监控平台下载考场数据。")

    # -- actions -------------------------------------------------------------------------
    def importer(self) -> Callable[[str], Any]:
        who = actor(self.shell)
        return lambda path: self.core.loading.import_zip(path, who)

    def _on_load(self) -> None:
        who = actor(self.shell)
        self.online(lambda: self.core.loading.load_online(who), self.load_button)

    def _selected_code(self) -> Any:
        row = self.table.selected()
        if row is None:
            self.shell.notify("请先在表格中选择一个考场。", kind="warning")
            return None
        return row["code"]

    def _on_click(self, event: Any) -> None:
        tree = self.table.tree
        iid = tree.identify_row(event.y)
        column = tree.identify_column(event.x)
        if not iid or not iid.startswith("r") or not column:
            return
        key = COLUMNS[int(column[1:]) - 1][0]
        if key not in ("detail", "door"):
            return
        tree.selection_set(iid)
        (self._on_detail if key == "detail" else self._on_door)()

    def _on_detail(self) -> None:
        code = self._selected_code()
        if code is None:
            return
        self.run(lambda: room_detail(self.core, code), self._show_detail)

    def _show_detail(self, detail: Dict[str, Any]) -> None:
        self.detail_window = RoomDetail(self, detail, on_door=self._open_door)

    def _on_door(self) -> None:
        code = self._selected_code()
        if code is not None:
            self._open_door(code)

    def _open_door(self, code: str) -> None:
        self.run(lambda: self.core.loading.print_door_sheet(code), self.shell.open_url, button=self.door_button)


def room_detail(core: Any, code: str) -> Dict[str, Any]:
    """The room's detail (``core.loading.room_detail``) with ``clock_skew``, its 时钟偏差 as shown
    (``kd.core.clockskew.shown`` of ``core.clock_skew``'s estimate: ``未知`` without one); for a worker."""
    detail = dict(core.loading.room_detail(code))
    skew = getattr(core, "clock_skew", None)
    detail["clock_skew"] = shown_skew(skew.estimate(code) if skew is not None else None)
    return detail


DETAIL_COLUMNS = [("session", "场次", 100), ("seat", "座位号", 60), ("ticket", "准考证号", 130), ("name", "姓名", 80),
                  ("subject", "科目", 200)]


def session_lines(sessions: Sequence[Dict[str, Any]]) -> List[str]:
    """考场详情's 场次: ``场次：第一场次 2026-12-01 09:00（60 分钟，6 人）`` then one line per further
    session, the label indented under it (``场次：无`` without one)."""
    texts = ["{} {}（{} 分钟，{} 人）".format(s["name"], shown(s["start"]), s["duration_min"], len(s["candidates"]))
             for s in sessions]
    return ["{}{}".format("场次：" if i == 0 else "　　　", t) for i, t in enumerate(texts)] or ["场次：无"]


class RoomDetail(ttk.Toplevel):
    """查看详情: a room's sessions and candidates by seat (rendered from ``room_detail``)."""

    def __init__(self, page: Page, detail: Dict[str, Any], on_door: Any) -> None:
        super().__init__(master=page, title="考场详情 - {}".format(detail["code"]))
        self.transient(page.winfo_toplevel())
        self.withdraw()  # shown centred once built
        self.detail = detail
        head = "考场代码：{}    考场名称：{}    座位数：{}".format(
            detail["code"], detail.get("name") or "", detail.get("seats") or "")
        ttk.Label(self, text=head).pack(anchor="w", padx=10, pady=(10, 4))
        #: 时钟偏差: the proctor machine's clock minus the site's (from its heartbeats)
        self.clock_label = ttk.Label(self, text="时钟偏差：{}".format(detail.get("clock_skew") or shown_skew(None)))
        self.clock_label.pack(anchor="w", padx=10, pady=(0, 4))
        #: 场次: one line per session (``session_lines``), never wrapped inside one
        self.sessions_label = ttk.Label(self, text="\n".join(session_lines(detail["sessions"])), justify="left")
        self.sessions_label.pack(anchor="w", padx=10)
        self.table = Table(self, DETAIL_COLUMNS, height=14)
        self.table.pack(fill="both", expand=True, padx=10, pady=6)
        rows = []
        for session in detail["sessions"]:
            for cand in session["candidates"]:
                rows.append({"session": session["name"], "seat": cand["seat"], "ticket": cand["ticket"],
                             "name": cand["name"], "subject": cand.get("subject_name") or cand.get("subject") or ""})
        self.table.set_rows(rows)
        self._fit_columns(rows)
        buttons = ttk.Frame(self)
        buttons.pack(fill="x", padx=10, pady=(0, 10))
        self.close_button = ttk.Button(buttons, text="关闭", bootstyle="secondary", command=self.destroy)
        self.close_button.pack(side="right")
        self.door_button = ttk.Button(buttons, text="门贴座次表", bootstyle="primary",
                                      command=lambda: on_door(detail["code"]))
        self.door_button.pack(side="right", padx=(0, 6))
        self.bind("<Escape>", lambda e: self.destroy())
        center_on(self, page)
        self.deiconify()

    def _fit_columns(self, rows: List[Dict[str, Any]]) -> None:
        """Widen a column to its longest text (subject names vary in length)."""
        font = tkfont.nametofont("TkDefaultFont")
        for key, heading, width in DETAIL_COLUMNS:
            texts = [heading] + [str(r.get(key, "")) for r in rows]
            need = max(font.measure(t) for t in texts) + 16
            if need > width:
                self.table.tree.column(key, width=need)

