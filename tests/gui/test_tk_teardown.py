"""Nothing of a GUI test's Tk root outlives the test (tests/conftest.py, tests/support/tkroot.py).

Each test here leaves what a GUI test leaves behind (ttkbootstrap's per-process Style with
its images, tk widgets its Publisher subscribed, widgets in reference cycles, a theme
change whose ``<<ThemeChanged>>`` idle round is still pending), and the next one checks
that none of it is left: no other Tk root still exists, collected or not (one freed later
by a worker thread's garbage collection aborts the run, "Tcl_AsyncDelete: async handler
deleted by the wrong thread", or warns from ``Image.__del__``), and the first event loop
of the next root prints no Tcl background error of the destroyed one.
"""

import gc
import tkinter

import pytest

pytestmark = pytest.mark.gui


def other_roots(root):
    """The Tk roots other than ``root`` that the garbage collector still tracks."""
    return [o for o in gc.get_objects() if isinstance(o, tkinter.Tk) and o is not root]


def leave_things_behind(root):
    import ttkbootstrap as ttk

    style = ttk.Style()
    tkinter.Label(root, text="考点").pack()  # a tk widget: ttkbootstrap's Publisher keeps it (and so the root)
    ttk.Label(root, text="考点管理系统").pack()
    ttk.Checkbutton(root, text="启用").pack()  # a themed check box: drawn from the style's images
    ttk.Treeview(root).pack()
    root.update()
    style.theme_use("flatly")  # its <<ThemeChanged>> round runs when the loop is next idle


def assert_nothing_left(root, capfd):
    assert other_roots(root) == []
    root.update()  # this thread's first event loop since the previous root was destroyed
    root.update_idletasks()
    assert "application has been destroyed" not in capfd.readouterr().err


def test_a_plain_root_with_a_ttkbootstrap_theme(tk_root):
    import ttkbootstrap as ttk

    ttk.Style(theme="cosmo")
    leave_things_behind(tk_root)


def test_the_plain_root_is_gone_then_a_ttkbootstrap_window(capfd, gui_root):  # capfd first: it sees the setup
    assert_nothing_left(gui_root, capfd)
    leave_things_behind(gui_root)


def test_the_ttkbootstrap_window_is_gone(capfd, tk_root):
    assert_nothing_left(tk_root, capfd)
