"""The tray icon on Linux: pystray's xorg backend on Xvfb, docked in a real X system tray.

Before: ``pystray.Icon(..., "考点管理系统")`` raised ``UnicodeEncodeError('latin-1', …)``
(Xlib writes WM_NAME as ISO-8859-1), ``Tray.start()`` was False and the close button asked
to exit; and a click on the xorg icon never reached it (its window selected no
ButtonPress). The tray here is ``tests/support/xtray.XTray``: a real selection owner of
``_NET_SYSTEM_TRAY_S0`` that embeds the icon window it is asked to dock.
"""

import os
import sys

import pytest

from tests.support.sites import main_window, require_display
from tests.support.ui import pump_until

pytestmark = [pytest.mark.gui, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 only")]


@pytest.fixture
def pystray_xorg(monkeypatch):
    require_display()
    monkeypatch.setenv("PYSTRAY_BACKEND", "xorg")
    import pystray

    if not pystray.Icon.__module__.endswith("_xorg"):
        pytest.skip("pystray picked another backend at its first import: {}".format(pystray.Icon.__module__))
    return pystray


@pytest.fixture
def xtray(pystray_xorg):
    from tests.support.xtray import XTray

    tray = XTray()
    yield tray
    tray.close()


def _tray(shell, root):
    from kd.views.tray import Tray

    return Tray(shell.post, shell.show_window, shell.exit_system, root=root)


def _net_wm_name(tray):
    display, window = tray.icon._display, tray.icon._window
    prop = window.get_full_property(display.intern_atom("_NET_WM_NAME"), display.intern_atom("UTF8_STRING"))
    return bytes(prop.value).decode("utf-8") if prop is not None else None


def test_the_icon_starts_docks_and_the_close_button_hides_to_it(xtray, gui_root, scripted, tmp_path):
    with main_window(tmp_path, gui_root, scripted, "secret-1") as (_env, _core, shell):
        tray = _tray(shell, gui_root)
        assert tray.start(), "the xorg tray icon did not start"
        try:
            assert tray.backend == "xorg"
            assert xtray.wait_docked(10), "the icon asked no tray to dock it"
            pump_until(gui_root, tray.docked, 10, "the icon docked")
            assert _net_wm_name(tray) == "考点管理系统"
            shell.tray_available = tray.docked
            gui_root.update()
            shell.close_window()
            pump_until(gui_root, lambda: gui_root.state() == "withdrawn", 5, "the window hidden")
            assert not scripted.unplanned  # no question: it went to the tray

            xtray.click(xtray.docked[0], 1)  # left click: 显示主窗口
            pump_until(gui_root, lambda: gui_root.state() == "normal", 10, "the window shown again")

            xtray.click(xtray.docked[0], 3)  # right click: the menu
            menu = pump_until(gui_root, lambda: tray._popup, 10, "the tray menu")
            assert [menu.entrycget(i, "label") for i in range(2)] == ["显示主窗口", "退出系统"]
            menu.unpost()
            scripted.plan("confirm", False)
            menu.invoke(1)  # 退出系统 asks first (and is told no)
            pump_until(gui_root, lambda: not shell.busy and scripted.count("confirm"), 10, "the exit question")
            assert shell.ends == []
        finally:
            tray.stop()
        scripted.check()


def test_without_a_tray_on_the_desktop_the_close_button_asks_to_exit(pystray_xorg, gui_root, scripted, tmp_path):
    if os.environ.get("KD_TRAY_OWNER_PRESENT") == "1":  # pragma: no cover - a desktop session with a tray
        pytest.skip("this display has a system tray")
    with main_window(tmp_path, gui_root, scripted, "secret-1") as (_env, _core, shell):
        tray = _tray(shell, gui_root)
        assert tray.start()
        try:
            assert not tray.docked()  # nothing took it: hiding the window would lose it
            shell.tray_available = tray.docked
            scripted.plan("confirm", False)
            shell.close_window()
            pump_until(gui_root, lambda: scripted.count("confirm"), 10, "the exit question")
            assert gui_root.state() == "normal"
        finally:
            tray.stop()
        scripted.check()
