"""Closing a test's Tk roots so that nothing of them outlives the test (see tests/conftest.py).

``close_tk_root(root)`` (the ``tk_root`` and ``gui_root`` fixtures): run the root's
pending idle work (a ttk ``<<ThemeChanged>>`` round left behind would fire as a Tcl
background error in the next event loop of this thread, against a destroyed
application), destroy it, then ``drop_ttkbootstrap_state()``.

``drop_ttkbootstrap_state()``: forget what ttkbootstrap keeps per process, which holds
the roots it was made for: its ``Style`` (the theme's images) and the subscribers of its
``Publisher`` (one per tk widget made while ttkbootstrap is imported, each holding its
widget and so the root; only a ``ttkbootstrap.Window`` unsubscribes destroyed widgets, a
plain ``tkinter.Tk`` never does). Call it only when no root is in use.

``free_tk_roots()`` (tests/conftest.py, after every GUI test, on the Tk thread, once
pytest let go of the test's fixtures and locals): drop ttkbootstrap's state and a
failure's traceback, collect, then release every root that is destroyed but still alive
(the Python callbacks its Tcl interpreter still holds, which tkinter names by id and
function name, each hold their widget: ``destroy()`` leaves some, class and ``all``
bindings for one, more on Python 3.8) and collect again. So every root a test made, the
fixtures' and those product code made itself (``kd.views.fatal``, ``main.main()``), is
freed here and not later by whichever thread runs the next collection.
"""

import gc
import sys
from typing import Any


def close_tk_root(root: Any) -> None:
    """Run ``root``'s pending idle work, destroy it, drop ttkbootstrap's state."""
    import tkinter  # noqa: PLC0415 - only GUI tests have a Tk root

    try:
        root.update_idletasks()
    except tkinter.TclError:
        pass
    try:
        root.destroy()
    except tkinter.TclError:
        pass
    drop_ttkbootstrap_state()


def drop_ttkbootstrap_state() -> None:
    """Forget ttkbootstrap's per-process Style and Publisher subscribers (no root may be in use)."""
    style = sys.modules.get("ttkbootstrap.style")
    if style is not None:
        style.Style.instance = None  # bound to the root it was made for
    publisher = sys.modules.get("ttkbootstrap.publisher")
    if publisher is not None:
        publisher.Publisher.clear_subscribers()


def free_tk_roots() -> None:
    """After a GUI test: free every Tk root it left, here on the Tk thread (see the module docstring)."""
    if "tkinter" not in sys.modules:
        return
    drop_ttkbootstrap_state()
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if getattr(sys, name, None) is not None:  # a failure's traceback holds the test's frames
            setattr(sys, name, None)
    gc.collect()
    release_destroyed_roots()  # in a call of its own: no reference to a root is left in this frame
    gc.collect()


def release_destroyed_roots() -> None:
    """``release_callbacks`` of every Tk root still alive whose application was destroyed."""
    import tkinter  # noqa: PLC0415

    for obj in gc.get_objects():
        if isinstance(obj, tkinter.Tk):
            try:
                obj.tk.call("winfo", "exists", ".")
            except tkinter.TclError:  # "application has been destroyed"
                release_callbacks(obj)
            except RuntimeError:  # another thread's interpreter: not ours to touch
                pass


def release_callbacks(root: Any) -> None:
    """Delete the Python callbacks the destroyed ``root``'s Tcl interpreter still holds."""
    import tkinter  # noqa: PLC0415

    try:
        for name in root.tk.splitlist(root.tk.call("info", "commands")):
            if name[:1].isdigit():  # tkinter's own: repr(id(function)) + function name
                root.tk.deletecommand(name)
    except tkinter.TclError:
        pass
