"""考中 → 考场情况 (kd.views.incidents) on a real main window over a real site.

Real parts: the platform simulator, the dongle emulator, a loaded and authorized site
(3 rooms, 2 sessions) and its core, its wall clock (``ShiftedWall``) 70 minutes into the first
session (90 minutes long); the dialogs are scripted (tests/support/ui.py), the
登记情况 form is the real Toplevel, filled and its 确定 pressed. The monitor's monotonic clock
is a ``FakeMonotonic`` the test moves (a room falls silent without any wait). Drafts come
through ``core.incidents.store_drafts``, the path the site's tick takes.
"""

import datetime

import pytest

from kd.core.extratime import EXTRA_TIME
from kd.core.incidents import Category, Draft, Kind
from kd.errors import LockError, UserError
from kd.formats.timeutil import parse_time
from kd.views.incidents import COLUMNS, IncidentsPage
from kd.views.shell import Shell
from tests.integration.live_helpers import authorized_env
from tests.support.clocks import FakeMonotonic, ShiftedWall
from tests.support.ui import pump_until

pytestmark = pytest.mark.gui

LABEL = "考场情况"


@pytest.fixture
def site(tmp_path, gui_root, scripted):
    from kd.core.services import Core

    wall = ShiftedWall()
    env = authorized_env(tmp_path, clock=wall, rooms=3, sessions=2, candidates=3)
    core = Core(env.ctx).start()
    core.monitor.clock = FakeMonotonic()
    core.verification.verify_online("1", "admin")
    start = parse_time(next(s for s in env.ctx.manifest()["sessions"] if s["id"] == "1")["start"])
    wall.offset += start + datetime.timedelta(minutes=70) - env.ctx.now()  # 70 minutes into session 1 (90)
    shell = Shell(gui_root, core, dialogs=scripted, user="admin", log_path="/var/log/kd-test.log",
                  on_exit=lambda restart: None, browser=lambda url: None)
    yield env, core, shell
    shell.close()
    core.stop()
    env.close()


def rooms_of_session_1(env):
    return sorted({c["room"] for c in env.ctx.manifest()["candidates"] if c["session"] == "1"})


def open_page(shell, gui_root):
    shell.show(LABEL)
    page = shell.current
    assert isinstance(page, IncidentsPage)
    pump_until(gui_root, lambda: page.last is not None and page.last.session_id == "1", what="the page's view")
    return page


def column(page, key):
    index = [k for k, _, _ in COLUMNS].index(key)
    return [row[index] for row in page.table.cells()]


def select(page, gui_root, incident_id):
    pump_until(gui_root, lambda: incident_id in column(page, "id"), what="row {}".format(incident_id))
    page.table.select_index(column(page, "id").index(incident_id))
    gui_root.update()


def draft_outage(core, room, minutes):
    start = core.ctx.now() - datetime.timedelta(minutes=minutes + 1)
    (doc,) = core.incidents.store_drafts([Draft("outage|{}|1|t".format(room), Kind.OUTAGE, Category.NETWORK, room,
                                                "1", start, start + datetime.timedelta(minutes=minutes),
                                                "考场 {} 与考点机失去连接".format(room))])
    return doc


def page_on_a_draft(site, gui_root, minutes, confirmed=False):
    """The page open, a drafted outage of ``minutes`` in session 1's first room (``confirmed``: then
    confirmed by admin) and its row selected: ``(page, room, doc)``."""
    env, core, shell = site
    page = open_page(shell, gui_root)
    room = rooms_of_session_1(env)[0]
    doc = draft_outage(core, room, minutes)
    if confirmed:
        core.incidents.confirm(doc["id"], "admin")
    select(page, gui_root, doc["id"])
    return page, room, doc


def test_the_page_is_under_kaozhong_after_the_timeline_and_reachable_from_it(site, gui_root):
    from kd.views import pages

    _env, _core, shell = site
    labels = [(g, lb) for g, lb, _ in pages.NAVIGATION]
    assert labels.index(("考中", LABEL)) == labels.index(("考中", "时间线")) + 1
    assert [g for g, _ in labels] == sorted([g for g, _ in labels], key=["考前", "考中", "考后"].index)
    shell.show("时间线")
    shell.current.incidents_button.invoke()
    assert isinstance(shell.current, IncidentsPage)


def test_a_room_of_the_monitoring_table_opens_its_records(site, gui_root):
    env, core, shell = site
    room = rooms_of_session_1(env)[1]
    for code in rooms_of_session_1(env)[:2]:
        core.incidents.add(room=code, session="1", category="other", start=core.ctx.now(), end=None,
                           description="考场空调故障", actor="admin")
    shell.show("考场管理")
    monitor = shell.current
    pump_until(gui_root, lambda: room in [r[0] for r in monitor.table.cells()], what="the monitoring rows")
    monitor.table.select_index([r[0] for r in monitor.table.cells()].index(room))
    monitor.incidents_button.invoke()
    page = shell.current
    assert isinstance(page, IncidentsPage)
    pump_until(gui_root, lambda: page.room_box.get() == room and column(page, "room") == [room],
               what="only the room's records")


def test_register_an_incident_by_hand(site, gui_root, scripted):
    env, core, shell = site
    page = open_page(shell, gui_root)
    room = rooms_of_session_1(env)[0]
    assert page.table.cells() == []
    page.buttons["登记情况"].invoke()
    form = page.form
    assert form is not None and form.winfo_exists()
    # a bad time: a clear Chinese error, nothing stored, the form stays open
    form.fill(room=room, category=Category.DEVICE, start="2026-12-01 9点", end="", description="考生机蓝屏")
    form.ok_button.invoke()
    assert scripted.errors and "开始时间" in scripted.errors[-1].cause
    assert "YYYY-MM-DD HH:MM" in scripted.errors[-1].remedy
    # an end before the start: the core refuses, the form stays open
    form.fill(start="2026-12-01 09:20", end="2026-12-01 09:10")
    form.ok_button.invoke()
    pump_until(gui_root, lambda: len(scripted.errors) == 2, what="the core's refusal")
    assert "结束时间早于开始时间" in scripted.errors[-1].cause
    assert form.winfo_exists() and core.incidents.list("1") == []
    # a ticket not on the room's roster
    form.fill(end="2026-12-01 09:30", candidates="NOT-A-TICKET")
    form.ok_button.invoke()
    pump_until(gui_root, lambda: len(scripted.errors) == 3, what="the roster refusal")
    assert "不在考场" in scripted.errors[-1].cause and core.incidents.list("1") == []
    ticket = next(c["ticket"] for c in env.ctx.manifest()["candidates"] if c["room"] == room and c["session"] == "1")
    form.fill(candidates=ticket)
    form.ok_button.invoke()
    pump_until(gui_root, lambda: not form.winfo_exists(), what="the form closed after the record was stored")
    (doc,) = core.incidents.list("1")
    assert (doc["room"], doc["category"], doc["state"], doc["recorded_by"], doc["candidates"]) == (
        room, "device", "confirmed", "admin", [ticket])
    assert doc["start"].startswith("2026-12-01T09:20:00") and doc["end"].startswith("2026-12-01T09:30:00")
    pump_until(gui_root, lambda: column(page, "id") == [doc["id"]], what="the row")
    cells = dict(zip([k for k, _, _ in COLUMNS], page.table.cells()[0]))
    assert (cells["room"], cells["category"], cells["start"], cells["end"], cells["lost"], cells["state"],
            cells["source"], cells["recorded_by"]) == (room, "设备故障", "2026-12-01 09:20", "2026-12-01 09:30", "10",
                                                       "已确认", "手工", "admin")
    scripted.check()


def test_confirm_a_drafted_incident(site, gui_root, scripted):
    core = site[1]
    page, _room, doc = page_on_a_draft(site, gui_root, 12)
    assert column(page, "state") == ["待确认"] and column(page, "source") == ["自动"]
    assert "drafted" in page.table.tree.item(page.table.tree.get_children()[0], "tags")
    scripted.plan("confirm", False)  # 否: nothing changes
    page.buttons["确认"].invoke()
    assert core.incidents.get(doc["id"])["state"] == "drafted"
    scripted.plan("confirm", True)
    page.buttons["确认"].invoke()
    pump_until(gui_root, lambda: column(page, "state") == ["已确认"], what="the confirmed row")
    got = core.incidents.get(doc["id"])
    assert (got["state"], got["decided_by"]) == ("confirmed", "admin")
    question = [args for m, args in scripted.calls if m == "confirm"][-1]
    assert "确认考场情况记录 {}".format(doc["id"]) in question[1] and "已确认" in question[2]
    scripted.check()


def test_dismiss_asks_a_note(site, gui_root, scripted):
    core = site[1]
    page, _room, doc = page_on_a_draft(site, gui_root, 3)
    scripted.plan("ask_text", None)  # 取消
    page.buttons["驳回"].invoke()
    assert core.incidents.get(doc["id"])["state"] == "drafted"
    scripted.plan("ask_text", "网络设备检修，考试未受影响")
    page.buttons["驳回"].invoke()
    pump_until(gui_root, lambda: column(page, "state") == ["已驳回"], what="the dismissed row")
    assert core.incidents.get(doc["id"])["note"] == "网络设备检修，考试未受影响"
    assert "不再计入补时" in [args for m, args in scripted.calls if m == "ask_text"][-1][1]
    scripted.check()


def test_grant_extra_time_up_to_30_minutes(site, gui_root, scripted):
    core = site[1]
    page, room, doc = page_on_a_draft(site, gui_root, 12, confirmed=True)
    before = core.extra_time.expected_end(room, "1")
    scripted.plan("confirm", True)
    page.buttons["补时"].invoke()
    pump_until(gui_root, lambda: core.extra_time.grants(room=room), what="the grant")
    (grant,) = core.extra_time.grants(room=room)
    assert (grant["minutes"], grant["total_min"], grant["tier"], grant["incidents"], grant["granted_by"]) == (
        12, 12, "on_site", [doc["id"]], "admin")
    assert core.extra_time.expected_end(room, "1") == before + datetime.timedelta(minutes=12)
    (question,) = [args for m, args in scripted.calls if m == "confirm"]
    assert "补时 12 分钟" in question[1] and "30 分钟" in question[2]
    line = "补时：考场 {} 12 分钟".format(room)
    pump_until(gui_root, lambda: line in page.grants.cget("text"), what="the grant line")
    scripted.check()


def test_more_than_45_minutes_proposes_rescheduling_and_grants_nothing(site, gui_root, scripted):
    env, core, shell = site
    page = open_page(shell, gui_root)
    room = rooms_of_session_1(env)[0]
    start = core.ctx.now() - datetime.timedelta(minutes=60)
    core.incidents.add(room=room, session="1", category="network", start=start,
                       end=start + datetime.timedelta(minutes=50), description="全楼停电", actor="admin")
    page.choose_room(room)
    pump_until(gui_root, lambda: len(page.table.cells()) == 1, what="the room's row")
    page.buttons["补时"].invoke()
    pump_until(gui_root, lambda: scripted.messages, what="the rescheduling warning")
    kind, _title, text, detail = scripted.messages[-1]
    assert kind == "warning" and "45 分钟" in text and "改期重考" in detail
    assert scripted.count("confirm") == 0
    assert env.ctx.stores.runtime.all(EXTRA_TIME) == []
    scripted.check()


def test_over_30_needs_the_second_confirmation_and_the_dongle(site, gui_root, scripted):
    env, core, shell = site
    page = open_page(shell, gui_root)
    room, other = rooms_of_session_1(env)[:2]
    start = core.ctx.now() - datetime.timedelta(minutes=60)
    incs = [core.incidents.add(room=r, session="1", category="network", start=start,
                               end=start + datetime.timedelta(minutes=40), description="交换机故障", actor="admin")
            for r in (other, room)]
    # the dongle plugged in: 是 twice, granted with the dongle's evidence
    select(page, gui_root, incs[0]["id"])
    scripted.plan("confirm", True, True)
    page.buttons["补时"].invoke()
    pump_until(gui_root, lambda: core.extra_time.grants(room=other), what="the grant over 30")
    (grant,) = core.extra_time.grants(room=other)
    assert (grant["minutes"], grant["tier"]) == (40, "dongle") and grant["dongle"]["lock_id"]
    pump_until(gui_root, lambda: str(page.buttons["补时"].cget("state")) == "normal", what="补时 done")
    # 否 at the second question: nothing granted
    select(page, gui_root, incs[1]["id"])
    scripted.plan("confirm", True, False)
    page.buttons["补时"].invoke()
    pump_until(gui_root, lambda: scripted.count("confirm") == 4, what="the second question")
    assert core.extra_time.grants(room=room) == []
    env.driver.stop()  # the dongle pulled out
    scripted.plan("confirm", True, True)
    page.buttons["补时"].invoke()
    pump_until(gui_root, lambda: scripted.errors, what="the core's dongle refusal")
    assert isinstance(scripted.errors[-1], LockError) and core.extra_time.grants(room=room) == []
    second = [args for m, args in scripted.calls if m == "confirm"][-1]
    assert "二次确认" in second[1] and "机考锁" in second[2]
    scripted.check()


def test_a_stale_room_marked_ended_with_a_reason(site, gui_root, scripted):
    env, core, shell = site
    page = open_page(shell, gui_root)
    room = rooms_of_session_1(env)[0]
    core.verification.start_permit(room, "1")
    core.monitor.heartbeat(room, {"session_id": "1", "started": True, "ended": False, "logged_in": 1, "in_exam": 1})
    page.choose_room(room)
    pump_until(gui_root, lambda: page.room_box.get() == room, what="the room chosen")
    # still connected: the core refuses, after the reason and the confirmation
    scripted.plan("ask_text", "监考机损坏无法恢复")
    scripted.plan("confirm", True)
    page.buttons["标记已结束"].invoke()
    pump_until(gui_root, lambda: scripted.errors, what="the refusal")
    assert isinstance(scripted.errors[-1], UserError) and "仍与考点机连接" in scripted.errors[-1].cause
    core.monitor.clock.now += 16  # the proctor machine is gone
    scripted.plan("ask_text", "监考机损坏无法恢复")
    scripted.plan("confirm", False)  # 否 after reading what it changes: nothing
    page.buttons["标记已结束"].invoke()
    assert core.incidents.list("1") == []
    scripted.plan("ask_text", "监考机损坏无法恢复")
    scripted.plan("confirm", True)
    page.buttons["标记已结束"].invoke()
    pump_until(gui_root, lambda: core.incidents.list("1"), what="the stale-end record")
    (doc,) = core.incidents.list("1")
    assert (doc["kind"], doc["state"], doc["room"]) == ("stale_end", "confirmed", room)
    assert "监考机损坏无法恢复" in doc["description"]
    question = [args for m, args in scripted.calls if m == "confirm"][-1]
    assert "标记为已结束" in question[1] and "不可撤销" in question[2] and "监考机损坏无法恢复" in question[2]
    pump_until(gui_root, lambda: column(page, "source") == ["手工"], what="the row")
    scripted.check()


def test_print_opens_the_sheet(site, gui_root, scripted):
    env, core, shell = site
    pytest.importorskip("kd.core.incidentsheet")
    opened = []
    shell.browser = lambda url: opened.append(url) or True
    page = open_page(shell, gui_root)
    room = rooms_of_session_1(env)[0]
    page.choose_room(room)
    pump_until(gui_root, lambda: page.room_box.get() == room, what="the room chosen")
    page.buttons["打印记录单"].invoke()
    pump_until(gui_root, lambda: opened, what="the sheet opened")
    assert opened[0].endswith(".html") and room in opened[0]
    page.choose_room(None)  # no room: one sheet per room of the session
    pump_until(gui_root, lambda: page.room_box.current() == 0, what="every room")
    page.buttons["打印记录单"].invoke()
    pump_until(gui_root, lambda: len(opened) == 2, what="the session's sheets opened")
    assert opened[1].endswith(".html") and opened[1] != opened[0]
    scripted.check()


def test_a_room_not_in_the_chosen_session_shows_every_room(site, gui_root):
    env, core, shell = site
    room = rooms_of_session_1(env)[0]
    core.incidents.add(room=room, session="1", category="other", start=core.ctx.now(), end=None,
                       description="考场照明故障", actor="admin")
    page = open_page(shell, gui_root)
    pump_until(gui_root, lambda: column(page, "room") == [room], what="the record")
    page.choose_room("99999999")  # chosen in another session (or a package since replaced)
    pump_until(gui_root, lambda: page._room is None and page.last.room is None and column(page, "room") == [room],
               what="every room")
    assert page.room_box.current() == 0 and page._target_room() is None
