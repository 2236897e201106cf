"""考场管理 after a 补时 grant (issue 15), on a real Tk window over a real core: the granted room's
是否结束考试 reads 否（补时）, the line under the table gives its expected end, and the grant's hub
event re-renders the page at once (the refresh timer is set to hours here, so only the event can)."""

import pytest

from kd.core.livesnapshots import extra_time_line
from tests.gui.test_monitor import beat, by_room, permit, site  # noqa: F401 - ``site`` is the fixture
from tests.integration.live_helpers import room_codes
from tests.support.ui import pump_until

pytestmark = pytest.mark.gui


def test_a_grant_shows_the_rooms_expected_end_at_once(site, gui_root):  # noqa: F811
    env, core, page, _clock, _shell = site
    codes = room_codes(env)
    permit(core, codes[0], codes[1])
    beat(core, codes[0], logged_in=4, in_exam=4)
    beat(core, codes[1], logged_in=4, in_exam=4)
    pump_until(gui_root, lambda: len(page.table.cells()) > 2 and by_room(page)[0][codes[0]][10] == "4",
               what="the started rooms")
    page.stop_timer()
    page.refresh_ms = 3600 * 1000  # from here on only hub events refresh the page
    page.start_timer()
    pump_until(gui_root, lambda: page.last is not None and page.timer_running, what="the slow timer")
    assert page.extra.cget("text") == "" and by_room(page)[0][codes[1]][5] == "否"
    grant = core.extra_time.grant(codes[1], "1", 10, actor="admin", reason="网络中断 10 分钟")
    pump_until(gui_root, lambda: by_room(page)[0][codes[1]][5] == "否（补时）", what="the granted room's cell")
    rows, _total = by_room(page)
    assert rows[codes[0]][5] == "否"
    text = str(page.extra.cget("text"))
    assert text == extra_time_line(core.monitor.view("1").rows)
    assert text.startswith("补时：考场 {} 10 分钟，预计 ".format(codes[1])) and grant["expected_end"][11:16] in text
