"""Shared set-up of the 考前 step page tests (tests/gui/test_steps_*.py).

``StepSite(root, env, page_class)`` builds one step page on a real, guarded Tk root over a
real ``Core`` (platform simulator + dongle emulator from tests/support/env.py), with a
``FakeShell`` (scripted dialogs) whose loop listens to the page's events, as the main
window routes them. A ``UserError`` that reaches the loop's ``report`` becomes a
scripted dialog; anything else fails the test at ``close()``. ``clipped(table)`` lists
the cells whose text does not fit their column.
"""

import gc
import os
import tkinter.font as tkfont
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest

from kd.core.services import Core
from kd.platform.signer import write_offline_files
from tests.support.ui import FakeShell, pump_until

#: the padding a Treeview cell needs besides its text (pixels)
CELL_PAD = 8


@pytest.fixture(autouse=True)
def main_thread_gc():
    """A fresh ttkbootstrap style for each root; the test's Tk objects collected on the main thread.

    ttkbootstrap keeps one ``Style`` per process (``Style.instance``) bound to the first
    root's interpreter, and ``Window.destroy`` does not reset it (it sets an instance
    attribute): the next root would style its widgets through a deleted interpreter and
    crash. And widgets sit in reference cycles (page ↔ shell ↔ runner); left to the
    cyclic GC they may be freed in whatever thread allocates next (a simulator or worker
    thread), and Tcl aborts ("Tcl_AsyncDelete: async handler deleted by the wrong
    thread"). Autouse, this is set up before ``gui_root`` and torn down after it.
    """
    from ttkbootstrap.style import Style  # noqa: PLC0415

    Style.instance = None
    yield
    Style.instance = None
    gc.collect()


class StepSite:
    def __init__(self, root: Any, env: Any, page_class: Any, dialogs: Any, app: Any = None,
                 start_core: bool = False, size: str = "1024x700") -> None:
        self.root = root
        self.env = env
        self.core = Core(env.ctx)
        if start_core:
            self.core.start()
        self.shell = FakeShell(root, self.core, dialogs=dialogs, app=app)
        self.dialogs = self.shell.dialogs
        root.geometry(size)
        self.page = page_class(root, self.shell)
        self.page.pack(fill="both", expand=True)
        self.listener = self.shell.loop.listen(env.hub.subscribe(self.page.events), self.page.on_event)
        self.page.refresh()
        pump_until(root, lambda: self.page.last is not None, what="the first render")

    def until(self, predicate: Any, what: str = "", timeout: float = 15.0) -> Any:
        return pump_until(self.root, predicate, timeout=timeout, what=what)

    def idle(self) -> None:
        """Wait until no work of the page's loop is pending."""
        self.until(lambda: self.shell.loop.idle() and not self.page._refreshing, "the loop to be idle")

    def close(self) -> None:
        """Tear down; fails when a callback raised anything (a UserError must become a dialog)."""
        self.listener.close()
        self.page.destroy()
        self.shell.close()
        self.core.stop()
        self.shell.check()


@contextmanager
def step_site(env: Any, root: Any, page_class: Any, dialogs: Any,
              prepare: Optional[Callable[[Any], Any]] = None, **kw: Any) -> Iterator[StepSite]:
    """A ``StepSite`` over ``env`` (after ``prepare(env)``); closes the site, then the env."""
    try:
        if prepare is not None:
            prepare(env)
        site = StepSite(root, env, page_class, dialogs, **kw)
        try:
            yield site
        finally:
            site.close()
    finally:
        env.close()


def headings(table: Any) -> List[str]:
    return [table.tree.heading(key, "text") for key, _, _ in table.columns]


def clipped(table: Any) -> List[Tuple[str, str, int, int]]:
    """(column, text, text width, column width) for every heading or cell that does not fit."""
    table.update_idletasks()
    body = tkfont.nametofont("TkDefaultFont")
    head = tkfont.nametofont("TkHeadingFont")
    out = []
    for index, (key, heading, _) in enumerate(table.columns):
        width = int(table.tree.column(key, "width"))
        texts = [(heading, head)] + [(row[index], body) for row in table.cells()]
        for text, font in texts:
            need = font.measure(str(text)) + CELL_PAD
            if need > width:
                out.append((key, str(text), need, width))
    return out


def offline_file(env: Any, kind: str, suffix: str, session: Optional[str] = None) -> str:
    """A file the platform hands out for manual import (.zip package, .PTQ, .KDV)."""
    out = os.path.join(env.root, "offline-{}-{}".format(kind, session or "all"))
    paths = write_offline_files(env.sim.data, out, [kind], [session] if session else None)
    return next(p for p in paths if p.endswith(suffix))
