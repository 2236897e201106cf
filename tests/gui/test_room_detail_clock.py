"""考场详情 shows 时钟偏差: the room's proctor clock against the site's (``core.clock_skew``), or 未知."""

import datetime

import pytest

from kd.views.step_load import LoadPage, RoomDetail
from tests.gui.steps_support import main_thread_gc, step_site
from tests.support.env import make_env

pytestmark = pytest.mark.gui
__all__ = ["main_thread_gc"]  # the autouse fixture of steps_support


@pytest.fixture
def site(tmp_path, gui_root, scripted):
    with step_site(make_env(tmp_path, rooms=2, sessions=1, candidates=3), gui_root, LoadPage, scripted) as s:
        yield s


def open_detail(site, index):
    page = site.page
    page.detail_window = None
    page.table.select_index(index)
    page.detail_button.invoke()
    site.until(lambda: isinstance(getattr(page, "detail_window", None), RoomDetail), "the detail window")
    return page.detail_window


def test_the_detail_shows_the_rooms_clock_offset_or_unknown(site):
    page, core = site.page, site.core
    page.load_button.invoke()
    site.until(lambda: len(page.table.cells()) == 2, "the rooms")
    skewed, unknown = [row[0] for row in page.table.cells()]
    now = core.ctx.now()
    for i in range(3):  # three heartbeats of a proctor 5 minutes ahead, 200 ms round trips
        received = now + datetime.timedelta(seconds=5 * i)
        clock = received + datetime.timedelta(seconds=300 - 0.1)
        core.clock_skew.observe(skewed, clock.isoformat(timespec="milliseconds"), 200.0, received)
    detail = open_detail(site, 0)
    assert detail.detail["code"] == skewed
    assert detail.clock_label.cget("text") == "时钟偏差：+300 秒（±0.1）"
    detail.close_button.invoke()
    detail = open_detail(site, 1)
    assert detail.detail["code"] == unknown and detail.clock_label.cget("text") == "时钟偏差：未知"
    detail.close_button.invoke()
