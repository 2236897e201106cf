"""考前 step 1 导入考务 (§3.1) on a real Tk window over a real core, simulator and emulator.

考场详情 shows 时钟偏差: the room's proctor clock against the site's (``core.clock_skew``), or 未知.
"""

import datetime
import os

import pytest

from kd.core.labels import shown
from kd.core.states import Step
from kd.core.steps import step_marks
from kd.views.dialogs import ZIP_TYPES
from kd.views.step_load import LoadPage, RoomDetail
from tests.gui.steps_support import clipped, headings, main_thread_gc, offline_file, step_site
from tests.support.env import make_env

pytestmark = pytest.mark.gui
__all__ = ["main_thread_gc"]  # the autouse fixture of steps_support


@pytest.fixture
def site(tmp_path, gui_root, scripted):
    with step_site(make_env(tmp_path, rooms=3, sessions=2, candidates=5), gui_root, LoadPage, scripted) as s:
        yield s


def open_detail(site, index):
    """The 考场详情 window of the table's row ``index`` (查看), once it is open."""
    page = site.page
    page.detail_window = None
    page.table.select_index(index)
    page.detail_button.invoke()
    site.until(lambda: isinstance(getattr(page, "detail_window", None), RoomDetail), "the detail window")
    return page.detail_window


def test_load_online_fills_the_table_detail_and_door_sheet(site):
    page, core, env = site.page, site.core, site.env
    assert headings(page.table) == ["考场代码", "场次数", "数据载入时间", "是否通过校验", "校验通过的时间",
                                    "查看详情", "门贴座次表"]
    assert page.table.cells() == [] and page.info.text("publish") == "未载入"
    assert not step_marks(core).done(Step.LOAD)

    page.load_button.invoke()
    assert str(page.load_button.cget("state")) == "disabled"  # until the worker finished
    site.until(lambda: len(page.table.cells()) == 3, "the rooms")
    site.idle()
    manifest = env.ctx.manifest()
    meta = core.loading.snapshot()
    cells = page.table.cells()
    assert [row[0] for row in cells] == [r["code"] for r in manifest["rooms"]]
    for row in cells:
        assert row[1:] == ["2", shown(meta["loaded_at"]), "✓", shown(meta["verified_at"]), "查看", "打开"]
    assert page.info.text("publish") == shown(manifest["publish_time"])
    assert page.info.labels["loaded"].cget("text") == "数据载入时间："
    assert page.info.text("verified") == shown(meta["verified_at"])
    assert str(page.load_button.cget("state")) == "normal"
    assert step_marks(core).done(Step.LOAD)
    assert site.shell.steps_refreshed >= 1
    assert clipped(page.table) == []

    # 查看: the room's sessions and candidates by seat
    code = cells[1][0]
    detail = open_detail(site, 1)
    expected = core.loading.room_detail(code)
    want = [[s["name"], str(c["seat"]), c["ticket"], c["name"], c["subject_name"] or c["subject"]]
            for s in expected["sessions"] for c in s["candidates"]]
    assert detail.table.cells() == want and len(want) == 2 * 5
    assert clipped(detail.table) == []
    # 场次: one line per session, none wrapped inside (no "（1 分钟，6 / 人）")
    [label] = [w for w in detail.winfo_children() if str(w.winfo_class()).endswith("Label")
               and str(w.cget("text")).startswith("场次：")]
    lines = str(label.cget("text")).split("\n")
    assert len(lines) == len(expected["sessions"]) == 2 and str(label.cget("wraplength")) in ("0", "")
    for line, session in zip(lines, expected["sessions"]):
        assert session["name"] in line and line.endswith("（{} 分钟，{} 人）".format(
            session["duration_min"], len(session["candidates"])))
    # 门贴座次表 from the detail window, then by a click on the table's 打开 cell
    detail.door_button.invoke()
    site.until(lambda: site.shell.urls, "the door sheet")
    with open(site.shell.urls[0], encoding="utf-8") as f:
        assert code in f.read()
    detail.close_button.invoke()

    tree = page.table.tree
    site.root.update()
    x, y, w, h = tree.bbox("r2", "#7")
    tree.event_generate("<ButtonRelease-1>", x=x + w // 2, y=y + h // 2)
    site.until(lambda: len(site.shell.urls) == 2, "the second door sheet")
    assert os.path.basename(site.shell.urls[1]) == "门贴座次表-{}.html".format(cells[2][0])
    site.dialogs.check()


def test_platform_refusal_opens_the_zip_dialog_and_imports(site):
    page, env = site.page, site.env
    path = offline_file(env, "package", ".zip")
    env.sim.faults.set(refuse=503)
    site.dialogs.plan("open_file", None)  # first time: the user cancels; nothing changes
    page.load_button.invoke()
    site.until(lambda: site.dialogs.count("open_file") == 1, "the import dialog")
    site.idle()
    assert site.dialogs.calls[-1] == ("open_file", ("手工导入考场数据包（.zip）", ZIP_TYPES))
    kind, text = site.shell.notes[-1]
    assert kind == "warning" and "从监控平台载入考场数据失败" in text
    assert page.table.cells() == [] and site.dialogs.errors == []

    site.dialogs.plan("open_file", path)
    page.load_button.invoke()
    site.until(lambda: len(page.table.cells()) == 3, "the imported rooms")
    site.idle()
    assert page.info.labels["loaded"].cget("text") == "手工导入时间："
    assert all(row[3] == "✓" for row in page.table.cells())
    assert env.ctx.stores.exam.get("package", "meta")["source"] == "manual"
    site.dialogs.check()


def test_bad_zip_by_hand_shows_the_error_and_changes_nothing(site):
    page, env = site.page, site.env
    bad = os.path.join(env.root, "bad.zip")
    with open(bad, "wb") as f:
        f.write(b"PK not really a zip")
    site.dialogs.plan("open_file", bad)
    page.import_button.invoke()
    site.until(lambda: site.dialogs.errors, "the error dialog")
    site.idle()
    err = site.dialogs.errors[0]
    assert err.cause and err.remedy and ".zip" in err.remedy
    assert page.table.cells() == [] and env.ctx.manifest() is None
    # a non-platform error is no fallback: no second file dialog opened
    page.load_button.invoke()  # the platform works: loads
    site.until(lambda: len(page.table.cells()) == 3, "the rooms")
    site.idle()
    assert site.dialogs.count("open_file") == 1
    site.dialogs.check()


def test_the_detail_shows_the_rooms_clock_offset_or_unknown(site):
    page, core = site.page, site.core
    page.load_button.invoke()
    site.until(lambda: len(page.table.cells()) == 3, "the rooms")
    skewed, unknown = [row[0] for row in page.table.cells()][:2]
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
