"""GUI fixtures: a guarded ttkbootstrap root and scripted dialogs (see tests/support/ui.py).

``gui_root``: a real ``ttkbootstrap.Window`` on the (virtual) display with the Tk-thread
guard installed before any widget exists; the test fails when any other thread called
Tk. Without a display it skips, or fails under ``KD_REQUIRE_GUI=1`` (as ``tk_root``).
A fresh ttkbootstrap ``Style`` per root (its per-process instance outlives the root it was
made for); the root is closed by ``close_tk_root`` (its pending idle work first, so no
handler of it prints a Tcl background error into the next test) and freed by
``free_tk_roots()`` on the Tk thread once pytest let go of the test (tests/conftest.py,
tests/support/tkroot.py: widgets, images and the interpreter must not be freed by another
thread). ``KD_NO_TRAY=1``
is set so no tray icon starts. The window has a fixed size (1366x768) as
the real one has: without it, labels that wrap to their container's width can grow the
window without end.
"""

import os

import pytest

from tests.support.tkroot import close_tk_root
from tests.support.ui import ScriptedDialogs, install_tk_guard


@pytest.fixture
def gui_root(monkeypatch):
    monkeypatch.setenv("KD_NO_TRAY", "1")
    try:
        import tkinter

        import ttkbootstrap as ttk
    except ImportError as e:  # pragma: no cover - depends on the interpreter build
        _no_display("tkinter missing: {}".format(e))
    from ttkbootstrap.style import Style

    Style.instance = None  # ttkbootstrap's per-process Style is bound to the root it was made for
    try:
        root = ttk.Window(themename="cosmo")
    except tkinter.TclError as e:
        _no_display(str(e))
    guard = install_tk_guard(root)
    root.geometry("1366x768+0+0")  # a fixed size, as kd.views.start.fit_window gives the real window
    yield root
    close_tk_root(root)  # idle work, destroy, ttkbootstrap's state; freed after the test (tests/conftest.py)
    assert not guard.violations, "Tk called from other threads:\n" + "\n".join(
        "{} called tk.{}:\n{}".format(*v) for v in guard.violations)


@pytest.fixture
def scripted(gui_root):
    return ScriptedDialogs(gui_root)


def _no_display(reason):
    if os.environ.get("KD_REQUIRE_GUI") == "1":
        pytest.fail("KD_REQUIRE_GUI=1 but no display: " + reason, pytrace=False)
    pytest.skip("no display: " + reason)
