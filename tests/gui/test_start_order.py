"""The start flow draws 考点端登录 before it starts the App: the worker that imports and
opens the site is submitted at Tk's first idle round after the screen was packed, not
while the window is still being laid out (issue 14: the login window's time)."""

import threading

import pytest

from kd.views.login import LoginScreen
from kd.views.start import StartFlow
from tests.support.ui import pump_until

pytestmark = pytest.mark.gui


class Refusing:
    """An app factory that notes when it is called and then refuses (the gate follows)."""

    def __init__(self):
        self.called = threading.Event()

    def __call__(self):
        self.called.set()
        raise RuntimeError("no app in this test")


def test_the_app_starts_after_the_login_is_laid_out(gui_root, scripted):
    factory = Refusing()
    flow = StartFlow(gui_root, factory, dialogs=scripted)
    try:
        flow.begin()
        assert isinstance(flow.screen, LoginScreen)
        assert not factory.called.is_set()  # nothing started before Tk's idle round
        pump_until(gui_root, factory.called.is_set, 20, "the app factory")
        pump_until(gui_root, lambda: not isinstance(flow.screen, LoginScreen), 20, "the refusal")
    finally:
        flow.close()


def test_closing_before_the_idle_round_starts_no_app(gui_root, scripted):
    factory = Refusing()
    flow = StartFlow(gui_root, factory, dialogs=scripted)
    flow.begin()
    flow.close()
    gui_root.update()  # the idle round the start was waiting for
    assert not factory.called.is_set()
