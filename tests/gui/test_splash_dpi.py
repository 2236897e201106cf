"""The one-file exe's splash closes when the login window is painted; the window follows the display scaling.

The splash itself is the bootloader's (only in a frozen build: benchmarks/startup.py
times it on the real binary); here ``kd.views.splash`` gets a recorder standing for the
``pyi_splash`` module and the real start flow paints the real login window on the
display. The display-scaling test opens the real root window (``make_window``) with
``KD_UI_SCALE`` set, as a 125 % Windows display would set it from the system DPI.
"""

import pytest

from kd.views import dpi, hooks, splash
from tests.support.tkroot import close_tk_root
from tests.support.ui import pump_until


class Splash:
    """What ``pyi_splash`` offers: ``is_alive()`` and ``close()``; notes what was on screen at close."""

    def __init__(self, root=None):
        self.root = root
        self.alive = True
        self.closed_with = None

    def is_alive(self):
        return self.alive

    def close(self):
        assert self.alive, "closed twice"
        self.alive = False
        self.closed_with = self.root.winfo_viewable() if self.root is not None else None


@pytest.fixture
def observers():
    before = {name: list(fns) for name, fns in hooks._observers.items()}
    yield
    splash.close()
    assert {name: fns for name, fns in hooks._observers.items() if fns} == {n: f for n, f in before.items() if f}


def test_the_splash_closes_once_the_login_window_is_drawn(gui_root, observers):
    from kd.views.login import LoginScreen
    from kd.views.loop import TkLoop

    shown = Splash(gui_root)
    splash.install(shown)
    loop = TkLoop(gui_root)
    screen = LoginScreen(gui_root, loop, None, lambda result: None)
    screen.pack(fill="both", expand=True)
    hooks.fire(hooks.PAINTED, gui_root, "login")
    assert shown.alive, "closed before the window was drawn"
    pump_until(gui_root, lambda: not shown.alive, 10, "the splash closed")
    assert shown.closed_with, "the login window was not on screen when the splash closed"
    hooks.fire(hooks.PAINTED, gui_root, "ready")  # later screens: nothing more to close
    gui_root.update()
    loop.close()


def test_a_start_failures_message_box_closes_the_splash_first(gui_root, observers):
    shown = Splash()
    splash.install(shown)
    hooks.fire(hooks.FATAL, gui_root)
    assert not shown.alive


def test_a_command_closes_it_at_once_and_closing_again_is_harmless(observers):
    shown = Splash()
    close = splash.install(shown)
    close()
    close()
    assert not shown.alive


def test_from_source_there_is_no_splash_and_no_observer(observers):
    before = {name: len(fns) for name, fns in hooks._observers.items()}
    splash.install()  # not frozen: nothing to close
    assert {name: len(fns) for name, fns in hooks._observers.items()} == before


def test_the_window_follows_the_display_scaling(gui_root, monkeypatch):
    from ttkbootstrap.style import Style

    from kd.views.start import make_window

    before = float(gui_root.tk.call("tk", "scaling"))  # Tk keeps it per display, for every later root
    close_tk_root(gui_root)  # one root at a time: make_window builds the real one
    monkeypatch.setenv(dpi.SCALE_ENV, "1.25")
    Style.instance = None
    root = make_window()
    try:
        root.update_idletasks()
        assert float(root.tk.call("tk", "scaling")) == pytest.approx(dpi.BASE_SCALING * 1.25, rel=1e-3)
        sw, sh = root.winfo_screenwidth(), root.winfo_screenheight()
        assert root.minsize() == (min(1250, sw), min(825, sh - 50))
        width, height = (int(n) for n in root.geometry().split("+")[0].split("x"))
        assert (width, height) == (min(round(1366 * 1.25), sw), min(960, max(600, sh - 50)))
    finally:
        root.tk.call("tk", "scaling", before)  # the next test's root gets the display's own scaling back
        close_tk_root(root)
