"""The one message box ``main.py`` shows when the GUI cannot start at all.

A windowed exe has no console: a refusal before any window exists (data folder not
writable, another kaodian already running on this data folder, an internal error) would
otherwise end the process silently. ``show_fatal(text)`` opens a bare Tk error box with
the message (plain tkinter, no theme: nothing that could itself fail on a broken set-up)
and returns once the user closed it; it returns False when no window can be opened
(no display), so the caller can fall back to stderr. Watchers of ``kd.views.hooks.FATAL``
get the hidden root at idle time before the box waits for its answer (tests read and
close the box from there).
"""

import logging
from typing import Any, Callable, Optional

from kd.views import hooks

log = logging.getLogger(__name__)

TITLE = "考点管理系统"


def show_fatal(text: str, title: str = TITLE, *, on_shown: Optional[Callable[[Any], None]] = None) -> bool:
    """Show ``text`` in a modal error box and wait until it is closed.

    ``on_shown(root)``, then the ``hooks.FATAL`` watchers, are scheduled on the hidden
    root at idle time before the box opens (they may run before the box waits for its
    answer: act on the box from a timer, ``root.after``). Returns False when Tk cannot
    open a window.
    """
    try:
        import tkinter as tk  # noqa: PLC0415 - only when needed: the headless route never imports Tk
        from tkinter import messagebox  # noqa: PLC0415
    except ImportError as e:
        log.warning("no message box (tkinter missing: %s)", e)
        return False
    try:
        root = tk.Tk()
    except tk.TclError as e:
        log.warning("no message box (no display: %s)", e)
        return False
    try:
        root.withdraw()
        root.title(title)
        if on_shown is not None:
            root.after_idle(on_shown, root)
        root.after_idle(hooks.fire, hooks.FATAL, root)
        messagebox.showerror(title, text, master=root)
    finally:
        root.destroy()
    return True
