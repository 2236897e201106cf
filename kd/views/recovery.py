"""考后 → 数据回收: the result recovery table of manual §5.1, with 回收 and 上报.

Table: 考场编号 | 场次 | 考生人数 | 参考人数 | 缺考人数 | 回收人数 | 未回收人数 | 考场情况 |
状态上报, then 人数统计. When the chosen session has two subjects the count columns become
``考生人数`` over ``(科目1/科目2)`` ... and show ``a/b`` (the manual's layout); the columns are
rebuilt when that changes. The 人数统计 row is fixed under the scrolling rows
(``RecoveryTable``: always visible, aligned with the columns and their sideways scroll).
考场情况 shows 查看 for a recovered room: clicking it (or a double click on the row)
opens ``core.recovery.detail`` in a window centred on the main window (the session's
name, the subjects' names, the full SHA-256 in a field that can be selected and
copied). Footer: 场次 selector (全部 or one session), the 数据回收 status report,
buttons 回收 and 上报. Times read ``2026-12-01 17:35`` (``kd.core.labels.shown``).

- 回收: choose a result package (``RESULT_TYPES``) → ``core.recovery.import_package`` in
  a worker. A ``ResultConflict`` is shown with both full hashes (kept and refused, from
  ``core.recovery.conflicts()``); other ``UserError`` as a dialog.
- 上报: opens the two-step 数据上报 dialog (``kd.views.upload_dialog.UploadDialog``).

Results received online (``results.received``) refresh the table through ``events``.
"""

import logging
import tkinter as tk
import tkinter.font as tkfont
from typing import Any, Dict, List, Optional, Tuple

import ttkbootstrap as ttk

from kd.core import names as n
from kd.core.labels import RECOVERY_SOURCE_LABELS, label, result_label, session_label, shown
from kd.core.livesnapshots import RecoveryRow, RecoverySnapshot
from kd.core.loading import NotLoaded
from kd.core.recovery import COLUMNS, COUNT_KEYS
from kd.core.states import Situation
from kd.errors import ResultConflict, UserError
from kd.views.base import Page
from kd.views.dialogs import RESULT_TYPES, center_on
from kd.views.live_table import LiveTable, SessionPicker
from kd.views.widgets import Table, _cell, ui_font

log = logging.getLogger(__name__)

ALL = "全部"
VIEW = "查看"
WIDTHS = {"room": 100, "session": 50, "situation": 110, "report": 80}
OK_COLOUR, BAD_COLOUR = "#2e7d32", "#c0392b"


def columns_for(subject_labels: List[str]) -> List[Tuple[str, str, int]]:
    """The table's columns; with two subjects the counts are headed ``考生人数(科目1/科目2)``."""
    suffix = "\n({})".format("/".join(subject_labels)) if len(subject_labels) > 1 else ""
    out = []
    for key, heading in COLUMNS:
        text = heading + suffix if key in COUNT_KEYS else heading
        out.append((key, text, WIDTHS.get(key, 70)))
    return out


def format_rows(snap: RecoverySnapshot) -> Tuple[List[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """Rows and totals as shown (display strings); rows keep ``room``/``session`` ids for 查看."""
    multi = bool(snap.subject_columns)
    names = {s["id"]: s.get("name") or s["id"] for s in snap.sessions}
    rows = []
    for r in snap.rows:
        shown: Dict[str, Any] = {"room": r.room, "session": r.session, "session_id": r.session,
                                 "recovered": r.recovered, "report": label(r.report)}
        for key in COUNT_KEYS:
            shown[key] = _row_counts(r, key, multi)
        if r.situation == Situation.RECOVERED:
            shown["situation"] = VIEW
        elif r.situation == Situation.CONFLICT:  # recovered; another package for it was refused
            shown["situation"] = "{}（有冲突）".format(VIEW)
            shown["_tags"] = ("conflict",)
        else:
            shown["situation"] = label(r.situation)
        shown["session_name"] = names.get(r.session, r.session)
        rows.append(shown)
    if not rows:
        return rows, None
    totals = snap.totals or {}
    total: Dict[str, Any] = {"room": totals.get("label", "人数统计"), "session": ""}
    for key in COUNT_KEYS:
        total[key] = _counts(totals, key, multi)
    total["situation"] = "已回收 {}/{}".format(totals.get("recovered", 0), totals.get("rooms", len(rows)))
    total["report"] = "上报成功 {}".format(totals.get("reported", 0))
    return rows, total


def _counts(totals: Dict[str, Any], key: str, multi: bool) -> str:
    if multi:
        return "/".join(str(s.get(key, 0)) for s in totals.get("subjects") or [])
    return str(totals.get(key, 0))


def _row_counts(row: RecoveryRow, key: str, multi: bool) -> str:
    if multi:
        return "/".join(str(getattr(s, key)) for s in row.subjects)
    return str(getattr(row, key))


class RecoveryTable(LiveTable):
    """A ``LiveTable`` whose 人数统计 row stays under the rows, outside their scrolling.

    The totals are drawn on a canvas between the rows and the sideways scroll bar, at the
    columns' widths and scroll offset (redrawn with the two-line header). ``cells()``
    still ends with the totals row (what the user sees, for tests).
    """

    def __init__(self, parent: tk.Misc, columns: Any, **kw: Any) -> None:
        super().__init__(parent, columns, **kw)
        self._total_cells: Optional[List[str]] = None
        self.totals_font = (ui_font(self), 10, "bold")
        line = tkfont_linespace(self, self.totals_font)
        self.totals = tk.Canvas(self, height=line + 10, highlightthickness=0, background=self._bg)
        for child in self.grid_slaves(row=2):  # the sideways scroll bar goes under the totals
            child.grid(row=3)
        self.totals.grid(row=2, column=0, sticky="ew")

    def set_columns(self, columns: Any) -> None:
        super().set_columns(columns)
        self._total_cells = None
        self._schedule_draw()

    def set_rows(self, rows: Any, total: Optional[Dict[str, Any]] = None) -> None:
        super().set_rows(rows, None)
        cells = [_cell(total.get(k)) for k, _, _ in self.columns] if total is not None else None
        if cells != self._total_cells:
            self._total_cells = cells
            self._schedule_draw()

    def cells(self) -> List[List[str]]:
        out = super().cells()
        return out + [list(self._total_cells)] if self._total_cells is not None else out

    def totals_shown(self) -> List[str]:
        """The texts the totals row draws (empty before any row)."""
        return [self.totals.itemcget(i, "text") for i in self.totals.find_withtag("cell")]

    def _draw(self) -> None:
        super()._draw()
        if not self.winfo_exists():
            return
        canvas = self.totals
        canvas.delete("all")
        if self._total_cells is None:
            return
        widths = [int(self.tree.column(key, "width")) for key, _, _ in self.columns]
        whole = sum(widths)
        x = -float(self.tree.xview()[0]) * whole if whole else 0.0
        height = int(canvas.cget("height"))
        for text, width in zip(self._total_cells, widths):
            canvas.create_text(x + width / 2, height / 2, text=text, font=self.totals_font, fill=self._fg,
                               tags=("cell",))
            x += width
        canvas.create_line(0, 0, max(x, canvas.winfo_width()), 0, fill="#c8c8c8")


def tkfont_linespace(widget: tk.Misc, font: Any) -> int:
    return int(tkfont.Font(root=widget, font=font).metrics("linespace"))


class RecoveryPage(Page):
    title = "数据回收"
    events = frozenset({n.PACKAGE_LOADED, n.RESULTS_RECEIVED, n.RESULTS_CONFLICTED, n.RESULTS_UPLOADED,
                        n.RESULTS_ALL_RECOVERED, n.OUTBOX_SENT, n.OUTBOX_FAILED, n.SYSTEM_INITIALIZED,
                        n.SYSTEM_RESTORED})

    def _build(self) -> None:
        self._session_id: Optional[str] = None
        self._subjects: List[str] = []
        self.detail_window: Optional[DetailWindow] = None
        self.upload_dialog: Any = None
        self._build_table()
        self._build_footer()

    def _build_table(self) -> None:
        self.table = RecoveryTable(self, columns_for([]), key=("room", "session"), height=16)
        self.table.tree.tag_configure("conflict", foreground=BAD_COLOUR)
        self.table.pack(side="top", fill="both", expand=True)
        self.table.tree.bind("<ButtonRelease-1>", self._on_click, add="+")
        self.table.tree.bind("<Double-1>", self._on_double, add="+")
        self.hint = ttk.Label(self, text="", foreground=BAD_COLOUR, wraplength=760, justify="left")
        self.hint.pack(side="top", anchor="w", pady=(4, 0))

    def _build_footer(self) -> None:
        foot = ttk.Frame(self)
        foot.pack(side="bottom", fill="x", pady=(6, 0))
        ttk.Label(foot, text="场次：").pack(side="left")
        self.session_box = SessionPicker(foot, self.choose_session, width=14, everything=ALL)
        self.session_box.pack(side="left")
        self.report_label = ttk.Label(foot, text="")
        self.report_label.pack(side="left", padx=(16, 0))
        self.upload_button = ttk.Button(foot, text="上报", width=8, command=self._on_upload)
        self.upload_button.pack(side="right")
        self.recover_button = ttk.Button(foot, text="回收", width=8, command=self._on_recover)
        self.recover_button.pack(side="right", padx=(0, 8))

    # -- reacting --------------------------------------------------------------------------
    def choose_session(self, session_id: Optional[str]) -> None:
        """Show one session (None: 全部) and refresh."""
        self._session_id = session_id
        self.refresh()

    def _on_recover(self) -> None:
        path = self.shell.dialogs.open_file("回收：选择考场结果包", RESULT_TYPES)
        if not path:
            return
        actor = getattr(self.shell, "user", None) or "admin"
        recovery = self.core.recovery

        def work() -> Dict[str, Any]:
            try:
                return {"result": recovery.import_package(path, actor)}
            except ResultConflict as e:
                conflicts = recovery.conflicts()  # newest first: the one just refused
                return {"conflict": e, "record": conflicts[0] if conflicts else None}

        self.run(work, self._on_recovered, button=self.recover_button)

    def _on_recovered(self, outcome: Dict[str, Any]) -> None:
        if "conflict" in outcome:
            self.show_conflict(outcome["conflict"], outcome.get("record"))
            return
        res = outcome["result"]
        names = {s["id"]: s.get("name") for s in (self.last[0].sessions if self.last else ())}
        what = result_label(res["room"], res["session"], names)
        if res.get("duplicate"):
            self.shell.notify("{}的结果包已回收过，无需再次回收。".format(what))
        else:
            self.shell.notify("已回收{}的结果包。".format(what))

    def show_conflict(self, err: UserError, record: Optional[Dict[str, Any]]) -> None:
        """A refused package: the cause, then both full hashes (kept and refused)."""
        lines = [err.remedy]
        if record is not None:
            lines += ["", "保留的结果包校验值（SHA-256）：", record["kept_sha256"],
                      "被拒绝的结果包校验值（SHA-256）：", record["sha256"],
                      "同一结果包已被拒绝 {} 次。".format(record.get("times", 1))]
        self.shell.dialogs.warning("结果包冲突", err.cause, "\n".join(lines))

    def _on_upload(self) -> None:
        from kd.views.upload_dialog import UploadDialog  # noqa: PLC0415 - the dialog is opened rarely

        if self.upload_dialog is not None and self.upload_dialog.winfo_exists():
            self.upload_dialog.lift()
            return
        self.upload_dialog = UploadDialog(self, self.shell)

    def _on_click(self, event: Any) -> None:
        tree = self.table.tree
        if tree.identify_region(event.x, event.y) != "cell":
            return
        column = tree.identify_column(event.x)
        keys = [k for k, _, _ in self.table.columns]
        index = int(column[1:]) - 1 if column.startswith("#") and column[1:].isdigit() else -1
        if 0 <= index < len(keys) and keys[index] == "situation":
            self.view(tree.identify_row(event.y))

    def _on_double(self, event: Any) -> None:
        self.view(self.table.tree.identify_row(event.y))

    def view(self, iid: Optional[str] = None) -> None:
        """查看: the room's 考场情况 (the selected row when ``iid`` is None)."""
        if iid:
            self.table.tree.selection_set(iid)
        row = self.table.selected()
        if row is None or not row.get("recovered"):
            return
        room, session = row["room"], row["session_id"]
        self.run(lambda: self.core.recovery.detail(room, session), self._show_detail)

    def _show_detail(self, detail: Dict[str, Any]) -> None:
        if self.detail_window is not None and self.detail_window.winfo_exists():
            self.detail_window.destroy()
        self.detail_window = DetailWindow(self, detail)

    # -- the core (worker) -----------------------------------------------------------------
    def snapshot(self) -> Tuple[RecoverySnapshot, str]:
        """The typed view (``core.recovery.view``) and what keeps it empty ("" or the cause)."""
        try:
            return self.core.recovery.view(self._session_id), ""
        except NotLoaded as e:
            return EMPTY, e.cause
        except UserError:
            if self._session_id is None:
                raise
            return self.core.recovery.view(None), ""

    # -- rendering (Tk) --------------------------------------------------------------------
    def render(self, snapshot: Tuple[RecoverySnapshot, str]) -> None:
        snap, error = snapshot
        subjects = list(snap.subject_columns)
        if subjects != self._subjects:
            self._subjects = subjects
            self.table.set_columns(columns_for(subjects))
        rows, total = format_rows(snap)
        self.table.set_rows(rows, total)
        self.session_box.show(snap.sessions, snap.session)
        self._render_report(snap)
        if error:
            text = error
        elif snap.conflicts:
            names = {s["id"]: s.get("name") for s in snap.sessions}
            text = "有 {} 个结果包与已回收的结果不一致，已拒绝（原结果保留）：{}。点击“查看”了解详情。".format(
                len(snap.conflicts), "、".join(result_label(c["room"], c["session"], names)
                                            for c in snap.conflicts[:5]))
        else:
            text = ""
        if self.hint.cget("text") != text:
            self.hint.configure(text=text)

    def _render_report(self, snap: RecoverySnapshot) -> None:
        report = snap.recovery_report
        if not report:
            text, colour = ("全部考场已回收" if snap.all_recovered else ""), ""
        elif report.get("state") == "sent":
            text, colour = "回收状态上报：成功 {}".format(shown(report.get("sent_at"))), OK_COLOUR
        elif report.get("state") == "failed":
            text, colour = "回收状态上报：失败", BAD_COLOUR
        else:
            text, colour = "回收状态上报：等待上报", ""
        if self.report_label.cget("text") != text:
            self.report_label.configure(text=text, foreground=colour)


#: the table before any package is loaded
EMPTY = RecoverySnapshot(session=None, sessions=(), columns=(), subject_columns=(), rows=(), totals={}, conflicts=(),
                         all_recovered=False, recovery_report=None)


class DetailWindow(tk.Toplevel):
    """考场情况: the recovered package of one room and session, its candidates, refused packages."""

    COLUMNS = [("ticket", "准考证号", 150), ("name", "姓名", 90), ("seat", "座号", 50), ("subject", "科目", 140),
               ("status", "考试状态", 80), ("collected", "作答已回收", 90)]

    def __init__(self, parent: tk.Misc, detail: Dict[str, Any]) -> None:
        super().__init__(parent)
        self.withdraw()  # shown centred once built
        session = detail.get("session_name") or session_label(detail["session"])
        self.title("考场情况 — 考场 {} {}".format(detail["room"], session))
        self.transient(parent.winfo_toplevel())
        res = detail.get("result") or {}
        frame = ttk.Frame(self, padding=10)
        frame.pack(fill="both", expand=True)
        info = [
            "考场编号：{}    场次：{}".format(detail["room"], session),
            "回收时间：{}    方式：{}    大小：{} 字节".format(
                shown(res.get("received_at")), RECOVERY_SOURCE_LABELS.get(res.get("source", ""), res.get("source", "")),
                res.get("size", "")),
        ]
        self.info = ttk.Label(frame, text="\n".join(info), justify="left")
        self.info.pack(anchor="w")
        digest = str(res.get("sha256", ""))
        ttk.Label(frame, text="结果包校验值（SHA-256）：").pack(anchor="w", pady=(4, 0))
        #: the full hash, never clipped: a read-only field as wide as the hash (select and copy)
        self.sha = ttk.Entry(frame, width=len(digest) + 2 if digest else 66, font=("TkFixedFont", 9))
        self.sha.insert(0, digest)
        self.sha.configure(state="readonly")
        self.sha.pack(anchor="w", fill="x")
        self.table = Table(frame, self.COLUMNS, height=10)
        self.table.pack(fill="both", expand=True, pady=(8, 0))
        self.table.set_rows([dict(c, subject=c.get("subject_name") or c.get("subject"),
                                  collected="是" if c.get("collected") else "否") for c in detail["candidates"]])
        self._fit_subjects()
        conflicts = detail.get("conflicts") or []
        text = "\n".join("被拒绝的结果包：{}（{} 次，最近 {}）".format(c["sha256"], c.get("times", 1),
                                                           shown(c.get("last_at"))) for c in conflicts)
        self.conflicts = ttk.Label(frame, text=text, foreground=BAD_COLOUR, justify="left")
        self.conflicts.pack(anchor="w", pady=(6, 0))
        self.close_button = ttk.Button(frame, text="关闭", command=self.destroy, width=8)
        self.close_button.pack(anchor="e", pady=(8, 0))
        self.bind("<Escape>", lambda e: self.destroy())
        center_on(self, parent)
        self.deiconify()

    def _fit_subjects(self) -> None:
        """The 科目 column as wide as its longest subject name (names vary in length)."""
        font = tkfont.nametofont("TkDefaultFont")
        texts = ["科目"] + [str(r.get("subject") or "") for r in self.table.rows()]
        need = max(font.measure(t) for t in texts) + 16
        if need > int(self.table.tree.column("subject", "width")):
            self.table.tree.column("subject", width=need)
