"""A ``Table`` that refreshes in place, for the live tables (考场监控, 数据回收).

``LiveTable(parent, columns, key=("room",))`` is a ``kd.views.widgets.Table`` whose
``set_rows(rows, total)`` keeps the tree items when the rows are the same ones as last
time (same identities, by ``key``, in the same order) and only rewrites the cells that
changed (``tree.item(iid, values=...)``); otherwise it rebuilds like ``Table``. Rows are
dicts of display values (the page formats them); extra keys are kept for ``selected()``,
and ``_tags`` (a tuple of tree tags, e.g. ``("off",)``) colours a row.

``SessionPicker(parent, on_pick, width, everything=None)`` is the live pages' 场次 selector
(see its docstring).

``set_columns(columns)`` replaces the columns (the 科目1/科目2 headings of 数据回收) and
clears the rows. The manual's headings are long (考场数据导入状态, 是否与考场连接 ...) and a
Treeview heading has one line, so the table draws its own two-line header on a canvas
above the rows: a heading may carry ``"\n"`` where it breaks (the tree's own headings,
hidden, keep the text without it, for ``headings()``). Each column is at least as wide
as its widest heading line, so nothing is clipped; a narrow window scrolls sideways and
the header follows.
"""

import tkinter as tk
import tkinter.font as tkfont
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import ttkbootstrap as ttk

from kd.views.widgets import Column, Table, _cell

#: horizontal room around a heading's text (padding and the separator)
PAD = 12


def one_line(heading: str) -> str:
    return heading.replace("\n", "")


class LiveTable(Table):
    def __init__(self, parent: tk.Misc, columns: Sequence[Column], key: Sequence[str] = ("room",),
                 height: int = 12, **kw: Any) -> None:
        super().__init__(parent, [(k, one_line(h), w) for k, h, w in columns], height=height, **kw)
        self.columns = list(columns)
        self.key = tuple(key)
        self._ids: List[Tuple[Any, ...]] = []
        self._shown: List[Tuple[str, ...]] = []
        self._total: Optional[Tuple[str, ...]] = None
        self._draw_after: Optional[str] = None
        self.heading_font = tkfont.nametofont("TkHeadingFont")
        line = self.heading_font.metrics("linespace")
        style = ttk.Style()
        self._bg = style.lookup("Treeview.Heading", "background") or "#f0f0f0"
        self._fg = style.lookup("Treeview.Heading", "foreground") or "#000000"
        self.header = tk.Canvas(self, height=2 * line + 8, highlightthickness=0, background=self._bg)
        self.tree.configure(show="")
        for child in self.grid_slaves():
            info = child.grid_info()
            child.grid(row=int(info["row"]) + 1)
        self.header.grid(row=0, column=0, sticky="ew")
        self.rowconfigure(0, weight=0)
        self.rowconfigure(1, weight=1)
        xbar = self.grid_slaves(row=2, column=0)
        self._xset = xbar[0].set if xbar else None
        self.tree.configure(xscrollcommand=self._on_xscroll)
        self.tree.bind("<Configure>", lambda _e: self._schedule_draw(), add="+")
        self._fit()

    # -- columns ---------------------------------------------------------------------------
    def _fit(self) -> None:
        """Each column at least as wide as its widest heading line (no clipped heading)."""
        font = self.heading_font
        for key, heading, width in self.columns:
            need = max(font.measure(part) for part in heading.split("\n")) + PAD
            self.tree.column(key, width=max(width, need), minwidth=need, stretch=True)
        self._schedule_draw()

    def set_columns(self, columns: Sequence[Column]) -> None:
        """Replace the columns (headings and widths); the rows are cleared."""
        self.columns = list(columns)
        self.tree.delete(*self.tree.get_children())
        self.tree.configure(columns=[c[0] for c in self.columns], displaycolumns="#all")
        for key, heading, _width in self.columns:
            self.tree.heading(key, text=one_line(heading))
            self.tree.column(key, anchor="center")
        self._fit()
        self._rows, self._ids, self._shown, self._total = [], [], [], None

    def headings(self) -> List[str]:
        return [self.tree.heading(key, "text") for key, _, _ in self.columns]

    def _on_xscroll(self, first: str, last: str) -> None:
        if self._xset is not None:
            self._xset(first, last)
        self._schedule_draw()

    def _schedule_draw(self) -> None:
        if self._draw_after is None:
            self._draw_after = self.after_idle(self._draw)

    def _draw(self) -> None:
        """The two-line header, aligned with the tree's columns and horizontal scroll."""
        self._draw_after = None
        if not self.winfo_exists():
            return
        canvas = self.header
        canvas.delete("all")
        widths = [int(self.tree.column(key, "width")) for key, _, _ in self.columns]
        total = sum(widths)
        first = float(self.tree.xview()[0]) if total else 0.0
        x = -first * total
        height = int(canvas.cget("height"))
        for (_key, heading, _w), width in zip(self.columns, widths):
            canvas.create_text(x + width / 2, height / 2, text=heading, justify="center", font=self.heading_font,
                               fill=self._fg)
            canvas.create_line(x + width - 1, 4, x + width - 1, height - 4, fill="#c8c8c8")
            x += width
        canvas.create_line(0, height - 1, max(x, canvas.winfo_width()), height - 1, fill="#c8c8c8")

    # -- rows ------------------------------------------------------------------------------
    def set_rows(self, rows: Iterable[Dict[str, Any]], total: Optional[Dict[str, Any]] = None) -> None:
        """Show ``rows`` and the totals row; in place when the row identities did not change."""
        rows = list(rows)
        keys = [k for k, _, _ in self.columns]
        ids = [tuple(r.get(k) for k in self.key) for r in rows]
        shown = [tuple(_cell(r.get(k)) for k in keys) + (tuple(r.get("_tags") or ()),) for r in rows]
        total_shown = tuple(_cell(total.get(k)) for k in keys) if total is not None else None
        same = ids == self._ids and (total_shown is None) == (self._total is None) and len(
            self.tree.get_children()) == len(ids) + (0 if total_shown is None else 1)
        item = self.tree.item
        if not same:
            super().set_rows(rows, total)
            for index, values in enumerate(shown):
                if values[-1]:
                    item("r{}".format(index), tags=values[-1])
        else:
            # straight to Tcl: ttk's option formatting costs more than the change itself
            call, path = self.tree.tk.call, self.tree._w
            for index, values in enumerate(shown):
                before = self._shown[index]
                if values == before:
                    continue
                iid = "r{}".format(index)
                if values[:-1] != before[:-1]:
                    call(path, "item", iid, "-values", values[:-1])
                if values[-1] != before[-1]:
                    call(path, "item", iid, "-tags", values[-1])
            if total_shown is not None and total_shown != self._total:
                item("total", values=total_shown)
            self._rows = rows
        self._ids, self._shown, self._total = ids, shown, total_shown


class SessionPicker(ttk.Combobox):
    """The 场次 selector of 考场管理 and 数据回收.

    ``show(sessions, chosen)`` fills it from a snapshot's sessions (``{"id", "name"}``) when
    they changed and selects ``chosen``; picking an entry calls ``on_pick(session_id)``.
    ``everything`` is a first entry for all sessions (数据回收's 全部), whose id is None.
    """

    def __init__(self, parent: tk.Misc, on_pick: Callable[[Optional[str]], None], width: int,
                 everything: Optional[str] = None) -> None:
        super().__init__(parent, state="readonly", width=width, values=[everything] if everything else [])
        self._head: List[Optional[str]] = [None] if everything else []
        self._names: List[str] = [everything] if everything else []
        self._ids: List[Optional[str]] = list(self._head)
        self._on_pick = on_pick
        if everything:
            self.current(0)
        self.bind("<<ComboboxSelected>>", self._picked)

    def _picked(self, _event: Any = None) -> None:
        index = self.current()
        if 0 <= index < len(self._ids):
            self._on_pick(self._ids[index])

    def show(self, sessions: Sequence[Dict[str, Any]], chosen: Optional[str]) -> None:
        ids = self._head + [s["id"] for s in sessions]
        if ids != self._ids:
            self._ids = ids
            self.configure(values=self._names + [s.get("name") or s["id"] for s in sessions])
        if chosen in ids and self.current() != ids.index(chosen):
            self.current(ids.index(chosen))
