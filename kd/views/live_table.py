"""A ``Table`` that refreshes in place, for the live tables (考场监控, 数据回收).

``LiveTable(parent, columns, key=("room",))`` is a ``kd.views.widgets.Table`` whose
``set_rows(rows, total)`` keeps the tree items when the rows are the same ones as last
time (same identities, by ``key``, in the same order) and only rewrites the cells that
changed (``tree.item(iid, values=...)``); otherwise it rebuilds like ``Table``. Rows are
dicts of display values (the page formats them); extra keys are kept for ``selected()``,
and ``_tags`` (a tuple of tree tags, e.g. ``("off",)``) colours a row.

``set_columns(columns)`` replaces the columns (the 科目1/科目2 headings of 数据回收) and
clears the rows. Column widths are at least the heading's text width, so a narrow
window shows a horizontal scroll bar instead of clipping a heading.
"""

import tkinter as tk
import tkinter.font as tkfont
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from kd.views.widgets import Column, Table, _cell

#: horizontal room around a heading's text (padding and the separator)
PAD = 14


class LiveTable(Table):
    def __init__(self, parent: tk.Misc, columns: Sequence[Column], key: Sequence[str] = ("room",),
                 height: int = 12, **kw: Any) -> None:
        super().__init__(parent, columns, height=height, **kw)
        self.key = tuple(key)
        self._ids: List[Tuple[Any, ...]] = []
        self._shown: List[Tuple[str, ...]] = []
        self._total: Optional[Tuple[str, ...]] = None
        self._fit()

    # -- columns ---------------------------------------------------------------------------
    def _fit(self) -> None:
        """Each column at least as wide as its heading (no clipped heading)."""
        try:
            font = tkfont.nametofont("TkHeadingFont")
        except tk.TclError:
            font = tkfont.nametofont("TkDefaultFont")
        for key, heading, width in self.columns:
            need = font.measure(heading) + PAD
            self.tree.column(key, width=max(width, need), minwidth=need, stretch=True)

    def set_columns(self, columns: Sequence[Column]) -> None:
        """Replace the columns (headings and widths); the rows are cleared."""
        self.columns = list(columns)
        self.tree.delete(*self.tree.get_children())
        self.tree.configure(columns=[c[0] for c in self.columns], displaycolumns="#all")
        for key, heading, _width in self.columns:
            self.tree.heading(key, text=heading)
            self.tree.column(key, anchor="center")
        self._fit()
        self._rows, self._ids, self._shown, self._total = [], [], [], None

    def headings(self) -> List[str]:
        return [self.tree.heading(key, "text") for key, _, _ in self.columns]

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
