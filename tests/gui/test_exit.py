"""退出系统 from the main window of a running drill site (the real start flow, App and shell).

Exiting from 考场管理 while its table refreshes must end without an internal error: the
question 确定要退出考点管理系统吗？ is a modal box, so the Tk loop runs while it is open
(the page's timer keeps asking for snapshots), and whatever the loop still delivers
after the answer may ask for more work. The UI's workers in flight must end before the
services stop (a snapshot must never run against a closed site).
"""

import threading

import pytest

from kd.views import monitor as monitor_view
from kd.views.start import EXIT
from tests.support.day import ExamDay
from tests.support.ui import ScriptedDialogs, pump_until

pytestmark = pytest.mark.gui

SITE = {"rooms": 2, "sessions": 1, "candidates": 3, "room_kb": 4, "duration": 30, "first_start_in": 10, "gap": 5}


class ModalDialogs(ScriptedDialogs):
    """``confirm`` runs ``while_open()`` first, as a real modal box runs the Tk loop while it waits."""

    while_open = None

    def confirm(self, title, text, detail=""):
        if self.while_open is not None:
            self.while_open()
        return super().confirm(title, text, detail)


@pytest.fixture
def day(gui_root, tmp_path, monkeypatch):
    monkeypatch.setattr(monitor_view, "REFRESH_MS", 50)
    dialogs = ModalDialogs(gui_root)
    day = ExamDay(gui_root, str(tmp_path / "data"), str(tmp_path), dialogs, site=SITE)
    try:
        day.start()
        yield day
    finally:
        day.close()


def test_exit_from_the_monitor_while_it_refreshes_is_no_internal_error(day, gui_root):
    page = day.show("考场管理")
    computed = threading.Event()
    snapshot = page.snapshot

    def counted():
        snap = snapshot()
        computed.set()
        return snap

    page.snapshot = counted

    def while_open():
        # the box is open: a refresh is in flight and another one is asked for (the page's
        # timer), and the first one's snapshot is done before the user answers
        computed.clear()
        page.refresh()
        page.refresh()
        pump_until(gui_root, computed.is_set, 10, "a snapshot done while the box is open")

    day.dialogs.while_open = while_open
    day.dialogs.plan("confirm", True)
    day.shell.exit_system()
    pump_until(gui_root, lambda: day.flow.outcome == EXIT and day.shell.closed, 20, "the exit")
    assert not day.dialogs.errors, [(e.cause, e.remedy) for e in day.dialogs.errors]
    day.flow.close()
    assert not day.dialogs.errors, [(e.cause, e.remedy) for e in day.dialogs.errors]
    day.dialogs.check()


def test_the_workers_in_flight_end_before_the_services_stop(day, gui_root):
    page = day.show("考场管理")
    started, release, finished, stopping = (threading.Event() for _ in range(4))
    seen = {}
    snapshot = page.snapshot

    def held():
        started.set()
        release.wait(30)
        # still at work when the window closes: the services must not stop meanwhile (they
        # would within this bound if nothing waited for this worker)
        stopping.wait(1.0)
        try:
            return snapshot()
        finally:
            finished.set()

    page.snapshot = held
    app = day.flow.app
    stop = app.stop

    def recorded_stop():
        seen["worker ended before the services stopped"] = finished.is_set()
        stopping.set()
        stop()

    app.stop = recorded_stop
    page.refresh()
    pump_until(gui_root, started.is_set, 10, "a snapshot in a worker")
    day.dialogs.plan("confirm", True)
    day.shell.exit_system()
    pump_until(gui_root, lambda: day.flow.outcome == EXIT, 20, "the exit")
    release.set()
    day.flow.close()
    assert seen == {"worker ended before the services stopped": True}
    assert not day.dialogs.errors, [(e.cause, e.remedy) for e in day.dialogs.errors]
