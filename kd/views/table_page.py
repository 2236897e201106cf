"""The layout the five 考前 step pages share (screens.md §3.1-§4.2), built once.

A step page subclasses ``TablePage`` and declares what differs:

- ``_build_header()``: what stands above the table (``heading`` text, the 机考锁校时
  block, the 封场检测 button row); nothing by default;
- the table: ``columns`` (``(key, heading, width)``) and ``table_height``, packed to take
  the page's height (``table_pady`` above it); a page without a table (封场检测)
  overrides ``_build_body()``;
- ``_build_footer()``: the rows under the table; ``bar(above)`` adds one (a full-width
  row), ``buttons(bar, left=..., right=...)`` fills it with the manual's buttons: ``left``
  from the left edge, ``right`` against the right edge, each list in the order shown;
- ``note``: the 说明 line at the bottom (info colour, wrapped to the page's width).

Rendering: ``snapshot()`` is ``core.<service>.view()`` (the step service's typed view,
kd/core/snapshots.py); ``render(view)`` fills the table with ``row(item)`` for each of
``rows_of(view)``, then calls ``render_rest(view)`` for the rest of the page.

Online and 手工导入 (screens.md §3.1/§3.3/§4.2): a page that downloads from the platform
declares ``import_title`` / ``import_types``, ``importer()`` (the core call that imports
a chosen file, made on the Tk thread, run in a worker) and ``imported_note`` (the
notification after a download or an import succeeded; ``imported(result)`` then checks
the step marks again). ``online(fn, button)`` runs the download; when the
platform cannot be reached or refuses, the import dialog opens (``fallback_import``).
``_on_import`` is the 手工导入 button (``import_button``).

``text_bar(above, right=...)`` is a row with a text at the left (a count, a status) and
the buttons at the right. The page's ``_build`` runs the parts in this order, so every
step page keeps the same paddings.
"""

from typing import Any, Callable, Dict, List, Sequence, Tuple

import ttkbootstrap as ttk

from kd.views.base import Page
from kd.views.step_common import auto_wrap, fallback_import
from kd.views.widgets import Column, Table

#: a button of ``buttons``: (text, bootstyle, command) or (text, bootstyle, command, width)
ButtonSpec = Tuple[Any, ...]
#: the wrap width of the 说明 line before the page knows its own width
NOTE_WRAP = 760


class TablePage(Page):
    #: the core service whose ``view()`` the page shows ("loading", "registration"...)
    service = ""
    #: a line above the table ("场次明细：")
    heading = ""
    columns: Sequence[Column] = ()
    table_height = 12
    #: the room above the table, in pixels
    table_pady = 0
    #: the 说明 line at the bottom ("" for none)
    note = ""
    #: 手工导入: the file chooser's title and file types, and what a success says
    import_title = ""
    import_types: Sequence[Tuple[str, str]] = ()
    imported_note = ""

    def _build(self) -> None:
        if self.heading:
            ttk.Label(self, text=self.heading).pack(anchor="w")
        self._build_header()
        self._build_body()
        self._build_footer()
        if self.note:
            self.note_label = ttk.Label(self, text=self.note, bootstyle="info", wraplength=NOTE_WRAP)
            self.note_label.pack(anchor="w", pady=(6, 0))
            auto_wrap(self.note_label, self)

    # -- the parts a page fills ------------------------------------------------------------
    def _build_header(self) -> None:
        """Widgets above the table (none by default)."""

    def _build_body(self) -> None:
        """The table of ``columns``, taking the page's height."""
        self.table = Table(self, self.columns, height=self.table_height)
        self.table.pack(fill="both", expand=True, pady=(self.table_pady, 0))

    def _build_footer(self) -> None:
        """Rows under the table (none by default)."""

    # -- snapshot / render -----------------------------------------------------------------
    def snapshot(self) -> Any:
        """The step service's typed view (worker thread)."""
        return getattr(self.core, self.service).view()

    def render(self, snap: Any) -> None:
        self.table.set_rows([self.row(item) for item in self.rows_of(snap)])
        self.render_rest(snap)

    def rows_of(self, snap: Any) -> Sequence[Any]:
        """The items of ``snap`` the table shows, one row each."""
        return ()

    def row(self, item: Any) -> Dict[str, Any]:
        """One table row (display values by column key; extra keys are kept for ``selected()``)."""
        raise NotImplementedError

    def render_rest(self, snap: Any) -> None:
        """Everything but the table (Tk thread)."""

    # -- helpers ---------------------------------------------------------------------------
    def text_bar(self, above: int, right: Sequence[ButtonSpec] = ()) -> Tuple[ttk.Label, List[ttk.Button]]:
        """A row with a text at the left and ``right``'s buttons: the label and the buttons."""
        row = self.bar(above)
        text = ttk.Label(row, text="")
        text.pack(side="left")
        return text, self.buttons(row, right=right)

    def bar(self, above: int, below: int = 0) -> ttk.Frame:
        """A full-width row under what is there (``above`` / ``below``: its room, in pixels)."""
        row = ttk.Frame(self)
        row.pack(fill="x", pady=(above, below))
        return row

    def buttons(self, bar: ttk.Frame, left: Sequence[ButtonSpec] = (),
                right: Sequence[ButtonSpec] = ()) -> List[ttk.Button]:
        """The buttons of ``left`` (from the left edge) then of ``right`` (ending at the right edge).

        Each list is in the order shown, 6 pixels apart; returns the buttons in the order given.
        """
        made = []
        for index, spec in enumerate(left):
            made.append(_button(bar, spec))
            made[-1].pack(side="left", padx=(6 if index else 0, 0))
        shown: List[ttk.Button] = []
        for index, spec in enumerate(reversed(right)):  # made and packed from the right edge
            shown.insert(0, _button(bar, spec))
            shown[0].pack(side="right", padx=(0, 6 if index else 0))
        return made + shown

    # -- online, and 手工导入 -------------------------------------------------------------
    def importer(self) -> Callable[[str], Any]:
        """The core call that imports a chosen file (made on the Tk thread, run in a worker)."""
        raise NotImplementedError

    def imported(self, result: Any) -> None:
        """After a download or an import succeeded (Tk thread): say so, check the marks again."""
        self.shell.notify(self.imported_note)
        self.shell.refresh_steps()

    def online(self, fn: Callable[[], Any], button: Any) -> None:
        """A download in a worker; refused or unreachable, the 手工导入 dialog opens instead."""
        importer = self.importer()
        self.run(fn, self.imported, button=button,
                 on_user_error=lambda exc: fallback_import(self, exc, self.import_title, self.import_types, importer,
                                                           self.imported, button=button))

    def _on_import(self) -> None:
        """手工导入: choose the file, then import it in a worker (the button disabled meanwhile)."""
        importer = self.importer()
        path = self.shell.dialogs.open_file(self.import_title, self.import_types)
        if path:
            self.run(lambda: importer(path), self.imported, button=self.import_button)


def _button(bar: ttk.Frame, spec: ButtonSpec) -> ttk.Button:
    text, style, command = spec[:3]
    options = {"width": spec[3]} if len(spec) > 3 else {}
    return ttk.Button(bar, text=text, bootstyle=style, command=command, **options)
