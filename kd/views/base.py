"""The shape of a screen: build widgets, ask the core in a worker, render a snapshot.

A page (one module per screen of the manual, STYLE habit 15) subclasses ``Page``:

- ``_build()`` makes its widgets (Tk thread, once);
- ``snapshot()`` reads core state (runs in a worker: no Tk here);
- ``render(snapshot)`` shows it (Tk thread; no business rule, no I/O);
- ``events``: hub event names after which the page refreshes itself;
- buttons call ``self.run(fn, on_done)``: ``fn`` runs in a worker, the button that
  started it stays disabled until it finished, a ``UserError`` becomes a dialog.

The page reaches everything through its ``shell`` (the main window, typed by
``kd.views.shellapi.ShellAPI``): ``shell.core`` (``kd.core.services.Core``),
``shell.loop`` (``kd.views.loop.TkLoop``: workers and timers), ``shell.dialogs``
(``Dialogs``), ``shell.notify(text)``, ``shell.app`` (the running ``kd.app.App`` or None:
only whether the page runs inside the app).
"""

import tkinter as tk
from typing import Any, Callable, FrozenSet, Optional

import ttkbootstrap as ttk

from kd.errors import UserError


class Page(ttk.Frame):
    #: the title shown above the page (the manual's label)
    title = ""
    #: hub events that make this page refresh
    events: FrozenSet[str] = frozenset()

    def __init__(self, parent: tk.Misc, shell: Any) -> None:
        super().__init__(parent, padding=8)
        self.shell = shell
        self.last: Any = None
        self._refreshing = False
        self._again = False
        self._build()

    @property
    def core(self) -> Any:
        return self.shell.core

    # -- to override -------------------------------------------------------------------
    def _build(self) -> None:
        raise NotImplementedError

    def snapshot(self) -> Any:
        """Core state for ``render`` (worker thread)."""
        return None

    def render(self, snapshot: Any) -> None:
        """Show ``snapshot`` (Tk thread)."""

    # -- helpers -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Take a new snapshot in a worker and render it; coalesces bursts of refreshes."""
        if self._refreshing:
            self._again = True
            return
        self._refreshing = True

        def done(snap: Any) -> None:
            self._refreshing = False
            self.last = snap
            if self.winfo_exists():
                self.render(snap)
            if self._again:
                self._again = False
                self.refresh()

        def failed(exc: BaseException) -> None:
            self._refreshing = False
            self._again = False
            raise exc

        self.shell.loop.submit(self.snapshot, done, failed)

    def on_event(self, event: Any) -> None:
        """Called on the Tk thread for every hub event in ``events``."""
        self.refresh()

    def run(self, fn: Callable[[], Any], on_done: Optional[Callable[[Any], None]] = None,
            button: Optional[tk.Widget] = None, on_user_error: Optional[Callable[[UserError], None]] = None) -> None:
        """Run ``fn`` in a worker; ``on_done(result)`` on the Tk thread, then refresh.

        ``on_user_error`` handles a ``UserError`` instead of the default dialog (used for
        the manual's fallbacks: a failed download opens the import dialog).
        """
        if button is not None:
            button.configure(state="disabled")

        def finish() -> None:
            if button is not None and button.winfo_exists():
                button.configure(state="normal")

        def done(result: Any) -> None:
            finish()
            if on_done is not None:
                on_done(result)
            self.refresh()

        def failed(exc: BaseException) -> None:
            finish()
            if isinstance(exc, UserError) and on_user_error is not None:
                on_user_error(exc)
                return
            raise exc

        self.shell.loop.submit(fn, done, failed)
