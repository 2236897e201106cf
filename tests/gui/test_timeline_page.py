"""考中 → 时间线, the title bar's 告警 N and the marked 考场管理 rows, on a real main window.

Real parts: the platform simulator, the dongle emulator, a loaded and authorized site
(3 rooms, 2 sessions, session 1 in 30 minutes) and its core; the site's wall clock is a
``ShiftedWall`` the test moves. The test plays the site's ticker: it calls
``core.timeline.tick()`` (a view never does), which opens real alarms (封场检测 not passed at
T-20, rooms not started at T+5); their hub events reach the window through its loop.
"""

import datetime

import pytest

from kd.core import names
from kd.formats.timeutil import parse_time
from kd.views.shell import Shell
from tests.integration.live_helpers import authorized_env, room_codes
from tests.support.clocks import ShiftedWall
from tests.support.ui import pump_until

pytestmark = pytest.mark.gui


@pytest.fixture
def site(tmp_path, gui_root, scripted):
    from kd.core.services import Core

    wall = ShiftedWall()
    env = authorized_env(tmp_path, clock=wall, rooms=3, sessions=2, candidates=3)
    core = Core(env.ctx).start()
    core.verification.verify_online("1", "admin")
    shell = Shell(gui_root, core, dialogs=scripted, user="admin", log_path="/var/log/kd-test.log",
                  on_exit=lambda restart: None, browser=lambda url: None)
    env.wall = wall
    yield env, core, shell
    shell.close()
    core.stop()
    env.close()


def move_to(env, minutes_from_start):
    start = parse_time(next(s for s in env.ctx.manifest()["sessions"] if s["id"] == "1")["start"])
    env.wall.offset += start + datetime.timedelta(minutes=minutes_from_start) - env.ctx.now()


def labels_of(page):
    return [row[0] for row in page.table.cells()]


def test_timeline_page_lists_the_items_and_the_alarms(site, gui_root):
    env, core, shell = site
    assert ("考中", "时间线", "kd.views.timeline:TimelinePage") in __import__("kd.views.pages").views.pages.NAVIGATION
    shell.show("时间线")
    page = shell.current
    expected = [i.label for i in core.timeline.timeline("1").items]
    assert expected
    pump_until(gui_root, lambda: labels_of(page) == expected, what="the items of session 1")
    assert shell.alarms.text == "" and page.alarm.cget("text") == ""

    move_to(env, -20)  # 封场检测 not passed at T-20: the site's tick opens an alarm
    changes = core.timeline.tick()
    assert [c.alarm.key for c in changes if c.opened] == ["-/seal/-"]
    pump_until(gui_root, lambda: shell.alarms.text == "告警 1", what="告警 1 in the title bar")
    assert any(kind == "danger" and "告警" in text for kind, text in shell.notes)
    pump_until(gui_root, lambda: page.alarm.cget("text").startswith("告警 1："), what="the alarm above the table")
    seal = next(iid for iid in page.table.tree.get_children()
                if page.table.tree.item(iid, "values")[1] and "overdue" in page.table.tree.item(iid, "tags"))
    assert "逾期" in page.table.tree.item(seal, "values")


def test_open_alarm_marks_the_monitoring_row(site, gui_root):
    env, core, shell = site
    codes = room_codes(env)
    shell.show("考场管理")
    page = shell.current
    pump_until(gui_root, lambda: len(page.table.cells()) == len(codes) + 1, what="rooms")
    core.verification.start_permit(codes[0], "1")
    core.monitor.heartbeat(codes[0], {"session_id": "1", "started": True, "ended": False,
                                      "logged_in": 1, "in_exam": 1})
    move_to(env, 5)  # 开考 + 5: the other rooms have not started
    opened = {c.alarm.room for c in core.timeline.tick() if c.opened and c.alarm.room}
    assert opened == set(codes[1:])
    count = core.timeline.open_count()
    pump_until(gui_root, lambda: shell.alarms.text == "告警 {}".format(count), what="the count")
    # 时间线 reads the same count as the title bar: one item 逾期, one alarm per room not started
    assert count >= len(opened) >= 2
    shell.show("时间线")
    timeline = shell.current
    late = sum(1 for i in core.timeline.timeline("1").items if i.state.value == "overdue")
    pump_until(gui_root, lambda: "{} 项逾期，{} 条告警（".format(late, count) in timeline.hint.cget("text"),
               what="逾期 and 告警 under the table")
    shell.show("考场管理")

    def tags():
        tree = page.table.tree
        return {tree.item(i, "values")[0]: tree.item(i, "tags") for i in tree.get_children()}

    pump_until(gui_root, lambda: all("alarm" in tags().get(c, ()) for c in codes[1:]), what="marked rows")
    assert "alarm" not in tags()[codes[0]]
    # the room starts: its alarm closes, its mark goes, the count follows
    core.verification.start_permit(codes[1], "1")
    core.monitor.heartbeat(codes[1], {"session_id": "1", "started": True, "ended": False,
                                      "logged_in": 1, "in_exam": 1})
    closed = [c.alarm.key for c in core.timeline.tick() if not c.opened]
    assert "1/started/{}".format(codes[1]) in closed
    pump_until(gui_root, lambda: "alarm" not in tags()[codes[1]] and shell.alarms.text == "告警 {}".format(
        core.timeline.open_count()), what="mark and count after the close")
    assert names.ALARM_CLOSED in page.events
