"""考场管理 (§4.3) on a real Tk window over a real core, platform simulator and dongle emulator.

Heartbeats go through ``core.monitor.heartbeat`` as the LAN service sends them; the
monitor's clock is the test's, so a missed heartbeat is a moved clock, not a wait.
Hub events reach the page through the shell's loop. Session 1 is verified and its
rooms start after their permit (``core.verification.start_permit``, as the LAN ``permit``),
except where a test starts one without (未经许可开考: the row is painted red, checked on
the screen's pixels).
"""

import json
import os

import pytest

from kd.core.services import Core
from kd.views import monitor as monitor_view
from tests.integration.live_helpers import authorized_env, room_codes, session_ids
from tests.support.clocks import FakeMonotonic
from tests.support.ui import FakeShell, pump_until

pytestmark = pytest.mark.gui


@pytest.fixture
def site(tmp_path, gui_root, scripted, monkeypatch):
    monkeypatch.setattr(monitor_view, "REFRESH_MS", 100)
    env = authorized_env(tmp_path, rooms=3, sessions=2, candidates=5)
    core = Core(env.ctx).start()
    core.verification.verify_online("1", "admin")
    clock = FakeMonotonic()
    core.monitor.clock = clock
    shell = FakeShell(gui_root, core, dialogs=scripted)
    gui_root.geometry("1024x700")
    page = monitor_view.MonitorPage(gui_root, shell)
    listener = shell.loop.listen(env.hub.subscribe(page.events), page.on_event)
    page.pack(fill="both", expand=True)
    yield env, core, page, clock, shell
    listener.close()
    page.destroy()
    shell.close()
    core.stop()
    env.close()


def by_room(page):
    cells = page.table.cells()
    return {row[0]: row for row in cells[:-1]}, cells[-1]


def beat(core, room, session="1", started=True, ended=False, logged_in=0, in_exam=0):
    core.monitor.heartbeat(room, {"session_id": session, "started": started, "ended": ended,
                                  "logged_in": logged_in, "in_exam": in_exam})


def permit(core, *codes):
    for code in codes:
        core.verification.start_permit(code, "1")


def test_live_table_totals_disconnect_and_session_switch(site, gui_root, scripted):
    env, core, page, clock, _shell = site
    codes = room_codes(env)
    permit(core, *codes)
    headings = [page.table.tree.heading(k, "text") for k, _, _ in page.table.columns]
    assert headings == ["考场编号", "注册IP", "考场数据导入状态", "考试授权状态", "授权验证状态", "是否结束考试",
                        "是否已上报数据", "是否与考场连接", "考生人数", "已登录", "考试中"]
    pump_until(gui_root, lambda: len(page.table.cells()) == len(codes) + 1, what="the rooms of session 1")
    rows, total = by_room(page)
    assert set(rows) == set(codes)
    assert all(r[2] == "已导入" and r[3] == "已授权" and r[4] == "已验证" and r[7] == "否" for r in rows.values())
    assert rows[codes[0]][1] == "127.0.0.10"
    assert total[0] == "人数统计" and total[7] == "0/3"
    assert page.session_box.get() == env.ctx.manifest()["sessions"][0]["name"]
    assert page.start_label.cget("text") == monitor_view.show_time(env.ctx.manifest()["sessions"][0]["start"])
    assert page.timer_running

    # heartbeats are no hub events: the timer shows them
    beat(core, codes[0], logged_in=4, in_exam=3)
    beat(core, codes[1], logged_in=2, in_exam=1)
    pump_until(gui_root, lambda: by_room(page)[0][codes[0]][9] == "4", what="room 1 logged in")
    rows, total = by_room(page)
    assert rows[codes[0]][7] == "是" and rows[codes[0]][10] == "3"
    assert rows[codes[1]][7] == "是" and rows[codes[2]][7] == "否"
    assert total[7] == "2/3" and total[9] == "6" and total[10] == "4"
    assert total[8] == str(sum(int(r[8]) for r in rows.values()))
    assert "off" in page.table.tree.item("r2", "tags") and "off" not in page.table.tree.item("r0", "tags")
    assert not any("unpermitted" in page.table.tree.item(iid, "tags") for iid in page.table.tree.get_children())
    assert page.alarm.cget("text") == ""

    # the room ends: a persisted transition (a hub event) shows as 是否结束考试 是
    beat(core, codes[0], ended=True, logged_in=4, in_exam=0)
    pump_until(gui_root, lambda: by_room(page)[0][codes[0]][5] == "是", what="room 1 ended")

    # three missed heartbeats (15 s by the monitor's clock): not connected any more
    clock.now += 16
    beat(core, codes[1], logged_in=2, in_exam=2)
    pump_until(gui_root, lambda: by_room(page)[0][codes[0]][7] == "否", what="room 1 disconnected")
    rows, total = by_room(page)
    assert rows[codes[1]][7] == "是" and total[7] == "1/3"
    assert page.table.tree.item("r0", "tags") == ("done",)  # it ended: a finished room is no alarm (issue 14)

    # 场次名称: the second session
    second = session_ids(env)[1]
    page.session_box.current(1)
    page.session_box.event_generate("<<ComboboxSelected>>")
    pump_until(gui_root, lambda: page.start_label.cget("text") == monitor_view.show_time(
        env.ctx.manifest()["sessions"][1]["start"]),
               what="session 2 shown")
    rows, total = by_room(page)
    expected = {c["room"] for c in env.ctx.manifest()["candidates"] if c["session"] == second}
    assert set(rows) == expected
    assert all(r[9] == "0" and r[5] == "否" for r in rows.values())  # the beats were for session 1
    scripted.check()


def test_status_report_footer_and_timer_follows_visibility(site, gui_root):
    env, core, page, clock, shell = site
    codes = room_codes(env)
    permit(core, *codes)
    pump_until(gui_root, lambda: len(page.table.cells()) == len(codes) + 1, what="rooms")
    beat(core, codes[0], logged_in=1)
    core.monitor.tick()  # a session under way: a room_status report, sent by the outbox to the simulator
    pump_until(gui_root, lambda: page.report_label.cget("text").startswith("成功 "), what="report sent")
    assert "room_status" in json.dumps(env.sim.received()["reports"])
    page.pack_forget()
    pump_until(gui_root, lambda: not page.timer_running and not page._refreshing and shell.loop.idle(),
               what="timer stopped when hidden, the last refresh delivered")
    renders, render = [], page.render
    page.render = lambda snap: (renders.append(snap), render(snap))
    beat(core, codes[1], logged_in=5)
    clock.now += 1
    gui_root.update()
    assert renders == []  # hidden: no refresh
    page.pack(fill="both", expand=True)
    pump_until(gui_root, lambda: page.timer_running and by_room(page)[0][codes[1]][9] == "5", what="shown again")


def iid_of(page, code):
    return next((iid for iid in page.table.tree.get_children() if page.table.tree.item(iid, "values")[0] == code),
                None)


def tags_of(page, code):
    iid = iid_of(page, code)
    return tuple(page.table.tree.item(iid, "tags") or ()) if iid is not None else ()


def screen_pixels(left, top, width, height):
    """The screen's pixels in that rectangle as (r, g, b), read from the X server (python-xlib).

    pytest-xvfb's screen is 16 bits deep (RGB 565) unless configured otherwise; 24/32 are
    read too. Each channel is scaled back to 0..255.
    """
    from Xlib import X, display

    d = display.Display(os.environ.get("DISPLAY"))
    try:
        screen = d.screen()
        raw = screen.root.get_image(left, top, width, height, X.ZPixmap, 0xFFFFFFFF).data
        depth = screen.root_depth
    finally:
        d.close()
    if depth == 16:
        words = [raw[i] | raw[i + 1] << 8 for i in range(0, len(raw), 2)]
        return [((w >> 11) * 255 // 31, (w >> 5 & 63) * 255 // 63, (w & 31) * 255 // 31) for w in words]
    assert depth in (24, 32), "screen depth {}".format(depth)
    return [(raw[i + 2], raw[i + 1], raw[i]) for i in range(0, len(raw), 4)]


def red_share(gui_root, tree, iid):
    """The share of the row's pixels on the screen that are the alarm colour."""
    gui_root.update()
    x, y, w, h = tree.bbox(iid)
    pixels = screen_pixels(tree.winfo_rootx() + x, tree.winfo_rooty() + y, w, h)
    want = tuple(int(monitor_view.ALARM_BG[i:i + 2], 16) for i in (1, 3, 5))
    return sum(1 for p in pixels if all(abs(a - b) <= 10 for a, b in zip(p, want))) / max(1, len(pixels))


def test_unpermitted_start_is_painted_red(site, gui_root, scripted):
    env, core, page, _clock, _shell = site
    codes = room_codes(env)
    permit(core, codes[0])
    beat(core, codes[0], logged_in=4, in_exam=4)  # after its permit: a normal start
    beat(core, codes[1], logged_in=3, in_exam=2)  # never asked for its permit: 未经许可开考
    tree = page.table.tree
    pump_until(gui_root, lambda: "unpermitted" in tags_of(page, codes[1]), what="the unpermitted row tagged")
    pump_until(gui_root, lambda: by_room(page)[0][codes[0]][10] == "4", what="the permitted room's count")
    rows, _total = by_room(page)
    assert rows[codes[1]][10] == "2（未经许可开考）" and rows[codes[0]][10] == "4"
    assert tags_of(page, codes[0]) == ()
    assert str(tree.tag_configure("unpermitted", "background")) == monitor_view.ALARM_BG
    assert codes[1] in page.alarm.cget("text") and codes[0] not in page.alarm.cget("text")
    assert str(page.alarm.cget("foreground")) == monitor_view.BAD_COLOUR
    # on the screen: the unpermitted row is red, the permitted one is not
    assert red_share(gui_root, tree, iid_of(page, codes[1])) > 0.5
    assert red_share(gui_root, tree, iid_of(page, codes[0])) < 0.05
    # disconnected, it stays red (its start is what matters)
    _clock.now += 16
    beat(core, codes[0], logged_in=4, in_exam=4)
    pump_until(gui_root, lambda: by_room(page)[0][codes[1]][7] == "否", what="the unpermitted room disconnected")
    assert tags_of(page, codes[1]) == ("unpermitted",)
    scripted.check()
