"""考前 step 4 封场检测 (screens.md §3.4): may the site be sealed? Item by item, with remedies.

封场检测 runs ``core.seal.run`` (in a worker): each item (考场数据包已校验, 考场全部注册,
考场数据全部导入, 场次全部授权, 机考锁在位, 局域网服务运行, 磁盘剩余空间, 系统时间准确)
shows 通过 / 未通过 / 未检测 with its detail (wrapped, never clipped), and every failed
item its remedy (处理办法) under the detail. A passing check is reported to the
platform automatically (through the outbox); the page shows "上报成功" and the time
once the platform took it, and follows the outbox live. The manual's 系统备份 of
step 4 is the button at the top right: the window 考点系统备份 (请选择备份目录 with
选择, 备注, 备份 / 关闭; ``core.system.backup``).
"""

import tkinter as tk
from typing import Any, Dict, List

import ttkbootstrap as ttk

from kd.core import names as n
from kd.core.labels import shown
from kd.core.snapshots import SealSnapshot
from kd.core.states import CheckStatus
from kd.views.base import Page
from kd.views.dialogs import center_on
from kd.views.step_common import InfoLine, actor
from kd.views.table_page import TablePage
from kd.views.widgets import ui_font

#: (key, heading, width in characters); the 说明 column wraps its text
COLUMNS = [("label", "检测项目", 14), ("status", "检测结果", 9), ("detail", "说明", 0)]
WRAP = 600
#: how an item's result is shown, and its colour
MARKS = {CheckStatus.PASS: "✓ 通过", CheckStatus.FAIL: "✗ 未通过", CheckStatus.SKIPPED: "— 未检测"}
STYLES = {CheckStatus.PASS: "success", CheckStatus.FAIL: "danger"}


class SealPage(TablePage):
    title = "封场检测"
    service = "seal"
    events = frozenset({n.SEAL_CHECKED, n.OUTBOX_SENT, n.OUTBOX_FAILED, n.OUTBOX_DEFERRED, n.OUTBOX_RETRIED,
                        n.SYSTEM_INITIALIZED, n.SYSTEM_RESTORED, n.SYSTEM_BACKED_UP})

    # -- build ---------------------------------------------------------------------------
    def _build_header(self) -> None:
        top = self.bar(0, 6)
        (self.check_button,) = self.buttons(top, left=[("封场检测", "primary", self._on_check)])
        self.verdict = ttk.Label(top, text="", font=(ui_font(self), 11, "bold"))
        self.verdict.pack(side="left", padx=(12, 0))
        (self.backup_button,) = self.buttons(top, right=[("系统备份", "secondary", self._on_backup)])

    def _build_body(self) -> None:
        """The check's items as a grid (the 说明 column wraps), not a table."""
        self.items = ttk.Frame(self, padding=(0, 4))
        self.items.pack(fill="both", expand=True)
        self.items.columnconfigure(2, weight=1)
        for column, (_key, heading, width) in enumerate(COLUMNS):
            ttk.Label(self.items, text=heading, font=(ui_font(self), 10, "bold"), width=width).grid(
                row=0, column=column, sticky="w", padx=(0, 8))
        ttk.Separator(self.items).grid(row=1, column=0, columnspan=3, sticky="ew", pady=2)
        self.item_widgets: List[Any] = []
        self.wrap = WRAP
        self.items.bind("<Configure>", self._on_resize, add="+")
        self.item_rows: List[List[str]] = []

    def _build_footer(self) -> None:
        self.info = InfoLine(self, [("checked", "检测时间"), ("passed", "检测通过时间"), ("report", "上报状态")])
        self.info.pack(anchor="w", pady=(6, 0))

    # -- snapshot / render ---------------------------------------------------------------
    def render(self, snap: SealSnapshot) -> None:
        for widget in self.item_widgets:
            widget.destroy()
        self.item_widgets, self.item_rows = [], []
        for index, item in enumerate(snap.items):
            status = MARKS.get(item.status, item.status_label)
            remedy = "处理办法：{}".format(item.remedy) if item.remedy else ""
            cells = [ttk.Label(self.items, text=item.label),
                     ttk.Label(self.items, text=status, bootstyle=STYLES.get(item.status, "secondary"))]
            text = item.detail + ("\n" + remedy if remedy else "")
            style_kw = {"bootstyle": "danger"} if remedy else {}
            cells.append(ttk.Label(self.items, text=text, wraplength=self.wrap, justify="left", **style_kw))
            for column, widget in enumerate(cells):
                widget.grid(row=index + 2, column=column, sticky="nw", padx=(0, 8), pady=2)
            self.item_widgets.extend(cells)
            self.item_rows.append([item.label, status, item.detail, item.remedy])
        failed = [i for i in snap.items if i.status == CheckStatus.FAIL]
        if not snap.checked_at:
            self.verdict.configure(text="尚未进行封场检测", bootstyle="secondary")
        elif snap.passed:
            self.verdict.configure(text="封场检测通过，可以封场", bootstyle="success")
        else:
            self.verdict.configure(text="封场检测未通过：{} 项未通过".format(len(failed)), bootstyle="danger")
        self.info.set("checked", shown(snap.checked_at))
        self.info.set("passed", shown(snap.passed_at))
        self.info.set("report", snap.report_label)

    def _on_resize(self, event: Any) -> None:
        """The 说明 column takes the width the first two columns leave."""
        first = self.items.grid_bbox(0, 0, 1, 0)
        width = max(300, int(event.width) - (first[2] if first else 240) - 24)
        if width != self.wrap:
            self.wrap = width
            for widget in self.item_widgets[2::3]:
                widget.configure(wraplength=width)

    # -- actions -------------------------------------------------------------------------
    def _on_check(self) -> None:
        who = actor(self.shell)

        def done(result: Dict[str, Any]) -> None:
            self.shell.notify("封场检测通过。" if result.get("passed") else "封场检测未通过，请按提示处理。",
                              kind="info" if result.get("passed") else "warning")
            self.shell.refresh_steps()

        self.run(lambda: self.core.seal.run(who), done, button=self.check_button)

    def _on_backup(self) -> None:
        self.backup_window = BackupDialog(self)


class BackupDialog(ttk.Toplevel):
    """考点系统备份 (the manual's step 4 window): 请选择备份目录, 备注, 备份 / 关闭."""

    def __init__(self, page: Page) -> None:
        super().__init__(master=page, title="考点系统备份")
        self.transient(page.winfo_toplevel())
        self.withdraw()  # shown centred once built
        self.page = page
        self.path = ""
        frame = ttk.Frame(self, padding=12)
        frame.pack(fill="both", expand=True)
        ttk.Label(frame, text="请选择备份目录").grid(row=0, column=0, sticky="w")
        self.folder = ttk.Entry(frame, width=40)
        self.folder.grid(row=1, column=0, sticky="ew")
        self.choose_button = ttk.Button(frame, text="选择", bootstyle="secondary-outline", command=self._on_choose)
        self.choose_button.grid(row=1, column=1, padx=(6, 0))
        ttk.Label(frame, text="备注").grid(row=2, column=0, sticky="w", pady=(8, 0))
        self.note = tk.Text(frame, width=40, height=4)
        self.note.grid(row=3, column=0, columnspan=2, sticky="nsew")
        self.result = ttk.Label(frame, text="", bootstyle="success", wraplength=360)
        self.result.grid(row=4, column=0, columnspan=2, sticky="w", pady=(6, 0))
        buttons = ttk.Frame(frame)
        buttons.grid(row=5, column=0, columnspan=2, sticky="e", pady=(8, 0))
        self.backup_button = ttk.Button(buttons, text="备份", bootstyle="primary", command=self._on_backup)
        self.backup_button.pack(side="left")
        self.close_button = ttk.Button(buttons, text="关闭", bootstyle="secondary", command=self.destroy)
        self.close_button.pack(side="left", padx=(6, 0))
        frame.columnconfigure(0, weight=1)
        frame.rowconfigure(3, weight=1)
        self.bind("<Escape>", lambda e: self.destroy())
        center_on(self, page)
        self.deiconify()

    def _on_choose(self) -> None:
        folder = self.page.shell.dialogs.choose_dir("系统备份：请选择备份目录")
        if folder:
            self.folder.delete(0, "end")
            self.folder.insert(0, folder)

    def _on_backup(self) -> None:
        folder = self.folder.get().strip()
        if not folder:
            self._on_choose()
            folder = self.folder.get().strip()
            if not folder:
                return
        note = self.note.get("1.0", "end").strip()
        page, who = self.page, actor(self.page.shell)

        def done(path: str) -> None:
            self.path = path
            if self.winfo_exists():
                self.result.configure(text="备份完成：{}".format(path))
            page.shell.notify("系统备份完成：{}".format(path))
            warnings = getattr(path, "warnings", None)  # damaged result files left out (kd.core.backup)
            if warnings:
                page.shell.dialogs.warning("系统备份", "系统备份已完成，但有考试结果未能备份。", "\n".join(warnings))

        self.result.configure(text="正在备份…")
        page.run(lambda: page.core.system.backup(folder, note, who), done, button=self.backup_button,
                 on_user_error=self._failed)

    def _failed(self, exc: Any) -> None:
        if self.winfo_exists():
            self.result.configure(text="")
        self.page.shell.dialogs.error(exc)
