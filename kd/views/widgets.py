"""Small widgets every page uses: the manual's tables and fonts.

``Table(parent, columns)`` is a ``ttk.Treeview`` with scroll bars whose columns are
``(key, heading, width)``; ``set_rows(rows)`` replaces the content from a list of dicts
(missing keys show empty, True/False as the manual's ✓ / ✗ of ``kd.core.labels.mark``),
keeps the selection by the first column, and can end with a bold totals row (人数统计).
``ui_font()`` picks Microsoft YaHei where Windows has it and a CJK font elsewhere.

``NotOpened(parent, path, open_folder)``: what the user sees when no browser opened a
printed page (门贴座次表, 考点信息表: ``webbrowser.open`` returned False or raised): the
file's full path in a field that can be selected, 打开所在文件夹 (``open_folder(folder)``,
the caller runs it in a worker: ``open_folder`` below), 复制路径 (to the clipboard) and
关闭; centred on the main window.
"""

import logging
import os
import subprocess
import sys
import tkinter as tk
import tkinter.font as tkfont
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import ttkbootstrap as ttk

from kd.core import labels
from kd.views.dialogs import center_on

log = logging.getLogger(__name__)

Column = Tuple[str, str, int]

PREFERRED_FONTS = ("Microsoft YaHei UI", "Microsoft YaHei", "Noto Sans CJK SC", "Noto Sans SC",
                   "WenQuanYi Micro Hei", "SimHei")


def ui_font(root: tk.Misc) -> str:
    """The first installed font of ``PREFERRED_FONTS``, else Tk's default family."""
    families = set(tkfont.families(root))
    for name in PREFERRED_FONTS:
        if name in families:
            return name
    return tkfont.nametofont("TkDefaultFont").actual("family")


def apply_fonts(root: tk.Misc, size: int = 10) -> str:
    """Make every named Tk font use the CJK family; returns the family."""
    family = ui_font(root)
    for name in ("TkDefaultFont", "TkTextFont", "TkMenuFont", "TkHeadingFont", "TkCaptionFont",
                 "TkSmallCaptionFont", "TkIconFont", "TkTooltipFont"):
        try:
            tkfont.nametofont(name).configure(family=family, size=size)
        except tk.TclError:
            pass
    return family


class Table(ttk.Frame):
    def __init__(self, parent: tk.Misc, columns: Sequence[Column], height: int = 12, **kw: Any) -> None:
        super().__init__(parent, **kw)
        self.columns = list(columns)
        keys = [c[0] for c in self.columns]
        self.tree = ttk.Treeview(self, columns=keys, show="headings", height=height, selectmode="browse")
        for key, heading, width in self.columns:
            self.tree.heading(key, text=heading)
            self.tree.column(key, width=width, minwidth=40, stretch=True, anchor="center")
        ybar = ttk.Scrollbar(self, orient="vertical", command=self.tree.yview)
        xbar = ttk.Scrollbar(self, orient="horizontal", command=self.tree.xview)
        self.tree.configure(yscrollcommand=ybar.set, xscrollcommand=xbar.set)
        self.tree.grid(row=0, column=0, sticky="nsew")
        ybar.grid(row=0, column=1, sticky="ns")
        xbar.grid(row=1, column=0, sticky="ew")
        self.rowconfigure(0, weight=1)
        self.columnconfigure(0, weight=1)
        self.tree.tag_configure("total", font=(ui_font(self), 10, "bold"))
        self._rows: List[Dict[str, Any]] = []

    def set_rows(self, rows: Iterable[Dict[str, Any]], total: Optional[Dict[str, Any]] = None) -> None:
        """Show ``rows`` (and a 人数统计 ``total`` row); keeps the selected row by its first column."""
        keep = self.selected()
        first = self.columns[0][0]
        self._rows = list(rows)
        self.tree.delete(*self.tree.get_children())
        for index, row in enumerate(self._rows):
            values = [_cell(row.get(key)) for key, _, _ in self.columns]
            iid = self.tree.insert("", "end", iid="r{}".format(index), values=values)
            if keep is not None and row.get(first) == keep.get(first):
                self.tree.selection_set(iid)
        if total is not None:
            self.tree.insert("", "end", iid="total", values=[_cell(total.get(k)) for k, _, _ in self.columns],
                             tags=("total",))

    def rows(self) -> List[Dict[str, Any]]:
        return list(self._rows)

    def cells(self) -> List[List[str]]:
        """What the table shows, as text (tests check it)."""
        return [list(self.tree.item(iid, "values")) for iid in self.tree.get_children()]

    def selected(self) -> Optional[Dict[str, Any]]:
        chosen = self.tree.selection()
        if not chosen or not chosen[0].startswith("r"):
            return None
        index = int(chosen[0][1:])
        return self._rows[index] if index < len(self._rows) else None

    def select_index(self, index: int) -> None:
        iid = "r{}".format(index)
        self.tree.selection_set(iid)
        self.tree.see(iid)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return labels.mark(value)
    return str(value)


NOT_OPENED = "未能启动浏览器打开该文件。"
NOT_OPENED_HINT = ("文件已保存在下面的位置：请打开所在文件夹，双击该文件用浏览器打开后打印；"
                   "或复制路径粘贴到浏览器的地址栏。")


class NotOpened(tk.Toplevel):
    """No browser started for ``path``: say so, show the path, 打开所在文件夹 / 复制路径 / 关闭."""

    def __init__(self, parent: tk.Misc, path: str, open_folder: Any) -> None:
        super().__init__(parent.winfo_toplevel())
        self.withdraw()
        self.title("打开文件")
        self.resizable(False, False)
        self.path = path
        frame = ttk.Frame(self, padding=16)
        frame.pack(fill="both", expand=True)
        ttk.Label(frame, text=NOT_OPENED, font=("", 11, "bold"), bootstyle="warning").pack(anchor="w")
        ttk.Label(frame, text=NOT_OPENED_HINT, wraplength=520, justify="left").pack(anchor="w", pady=(6, 6))
        self.field = ttk.Entry(frame, width=min(90, max(50, len(path) + 2)))
        self.field.insert(0, path)
        self.field.configure(state="readonly")
        self.field.pack(fill="x")
        self.status = ttk.Label(frame, text="", bootstyle="secondary")
        self.status.pack(anchor="w", pady=(6, 0))
        bar = ttk.Frame(frame)
        bar.pack(fill="x", pady=(10, 0))
        self.close_button = ttk.Button(bar, text="关闭", bootstyle="secondary", width=8, command=self.destroy)
        self.close_button.pack(side="right")
        self.copy_button = ttk.Button(bar, text="复制路径", bootstyle="secondary", command=self.copy)
        self.copy_button.pack(side="right", padx=(0, 6))
        self.folder_button = ttk.Button(bar, text="打开所在文件夹", bootstyle="primary",
                                        command=lambda: open_folder(os.path.dirname(path)))
        self.folder_button.pack(side="right", padx=(0, 6))
        self.bind("<Escape>", lambda e: self.destroy())
        center_on(self, parent)
        self.deiconify()
        self.folder_button.focus_set()

    def copy(self) -> None:
        """The path to the clipboard."""
        self.clipboard_clear()
        self.clipboard_append(self.path)
        self.status.configure(text="路径已复制。")


def open_in_browser(browser: Callable[[str], Any], path: str) -> bool:
    """``browser(path)`` (call it in a worker); False when it returned False or raised (no browser started)."""
    try:
        return browser(path) is not False
    except Exception as e:  # noqa: BLE001 - webbrowser raises what the platform's launcher raised
        log.warning("the browser did not open %s: %r", path, e)
        return False


def open_folder(folder: str) -> bool:
    """Open ``folder`` in the system's file manager (call it in a worker); False when nothing started."""
    try:
        if sys.platform == "win32":
            os.startfile(folder)  # type: ignore[attr-defined]  # noqa: S606 - a folder of our data dir
            return True
        command = ["open", folder] if sys.platform == "darwin" else ["xdg-open", folder]
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # noqa: S603
                         stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        return True
    except OSError as e:
        log.warning("cannot open the folder %s: %s", folder, e)
        return False
