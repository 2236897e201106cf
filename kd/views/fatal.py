"""The one message box ``main.py`` shows when the GUI cannot start at all.

A windowed exe has no console: a refusal before any window exists (data folder not
writable, another kaodian already running on this data folder, an internal error) would
otherwise end the process silently. ``show_fatal(text)`` opens a bare Tk error box with
the message (plain tkinter, no theme: nothing that could itself fail on a broken set-up)
and returns once the user closed it; it returns False when no window can be opened
(no display), so the caller can fall back to stderr.
"""

import logging
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)

TITLE = "考点管理系统"
#: tests: called like ``on_shown`` when the caller passes none (main.py passes none)
ON_SHOWN: Optional[Callable[[Any], None]] = None


def show_fatal(text: str, title: str = TITLE, *, on_shown: Optional[Callable[[Any], None]] = None) -> bool:
    """Show ``text`` in a modal error box and wait until it is closed.

    ``on_shown(root)`` (tests; default ``ON_SHOWN``) is scheduled on the hidden root
    at idle time before the box opens (it may run before the box waits for its answer:
    act on the box from a timer it sets, ``root.after``). Returns False when Tk cannot
    open a window.
    """
    on_shown = on_shown or ON_SHOWN
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
        messagebox.showerror(title, text, master=root)
    finally:
        root.destroy()
    return True
