"""演练 → 启动模拟考场 rehearses the whole day (issue 14, the drill's part).

- The menu's count prompt holds the site's room count; with the 30-room drill day all 30
  simulated proctors register (each from its own loopback address; before, 8 did and
  22 gave up with ``E_BUSY``), and their progress is shown while they run (the top
  bar's line, the 模拟考场进度 window), here while they wait for 开考时间;
- both sessions of the drill day through the UI: one 机考锁校时, 授权验证 of 第一场次,
  its results, then 授权验证 of 第二场次 passes and its results come in.
"""

import pytest

from kd.platform.demo import DRILL_DAY
from tests.support.day import ExamDay

pytestmark = pytest.mark.gui


def test_menu_drill_registers_every_room_and_shows_progress_live(gui_root, scripted, tmp_path):
    site = dict(DRILL_DAY, candidates=2, room_kb=4)
    day = ExamDay(gui_root, str(tmp_path / "data"), str(tmp_path), scripted, site=site, timeout=60.0)
    try:
        day.start()
        day.load()
        drill = day.shell.drill
        scripted.plan("ask_text", "30")
        drill.menu.invoke(drill.menu.index("启动模拟考场…"))
        day.wait(lambda: drill.simulation is not None, "the simulation started")
        asked = [args for name, args in scripted.calls if name == "ask_text"]
        assert asked and asked[-1][-1] == "30" and "共 30 个考场" in asked[-1][1]  # prefilled: the site's rooms
        core = day.core
        day.wait(lambda: sum(1 for r in core.registration.snapshot()["rooms"] if r.get("data_imported")) == 30,
                 "30 rooms registered", timeout=120)
        day.wait(lambda: "模拟 30/30 ·" in drill.status.cget("text"), "the live summary")
        assert drill.simulation is not None and drill.simulation.running()  # live, not at the end
        ips = {r["ip"] for r in core.registration.snapshot()["rooms"]}
        assert len(ips) == 30 and "127.0.0.1" not in ips
        drill.menu.invoke(drill.menu.index("模拟考场进度…"))
        window = day.wait(lambda: drill.window, "the progress window")
        day.wait(lambda: len(window.table.cells()) == 30 and all(c[2].startswith("等待开考（")
                                                                 for c in window.table.cells()),
                 "every room waiting for its start time")
        first = core.ctx.manifest()["sessions"][0]
        cells = window.table.cells()
        assert cells[0][1] == "127.0.0.2" and cells[0][3] == "第一场次"
        assert first["start"][:10] in cells[0][2] and "T" not in cells[0][2]  # 2026-12-01 17:35, not ISO
        assert "考试中 0" in drill.status.cget("text")  # nobody answers before 开考时间
        monitor = day.show("考场管理")
        rows = day.cells(monitor)
        assert len(rows) == 31 and all(r[-1] == "0" for r in rows[:-1])
        sim = drill.simulation
        drill.stop()
        day.wait(lambda: not sim.running(), "proctors stopped")
    finally:
        day.close()


def test_both_sessions_of_the_drill_day_through_the_ui(gui_root, scripted, tmp_path):
    site = dict(DRILL_DAY, rooms=3, candidates=3, room_kb=4)
    day = ExamDay(gui_root, str(tmp_path / "data"), str(tmp_path), scripted, site=site, speed=900.0)
    try:
        day.start()
        day.load()
        day.export_site_info()
        day.proctors()
        day.authorize()
        day.seal()
        core = day.core
        page = day.show("授权验证")
        page.sync_button.invoke()  # one sync, before the first session
        day.wait(lambda: scripted.count("info") and "机考锁校时" in scripted.texts(), "lock synced")

        def verify(index):
            page = day.show("授权验证")
            page.session.current(index)
            page.session.event_generate("<<ComboboxSelected>>")
            sid = page.selected_session()
            page.verify_button.invoke()
            day.wait(lambda: any(r["id"] == sid and r["verified"] for r in core.verification.snapshot()["sessions"]),
                     "session {} verified".format(sid))
            return sid

        def results_of(sid):
            return {r["room"] for r in core.recovery.snapshot()["rows"] if r["session"] == sid and r["recovered"]}

        first = verify(0)
        day.wait(lambda: len(results_of(first)) == 3, "第一场次's results", timeout=60)
        assert not results_of("2")  # 第二场次 waits for its 授权验证
        second = verify(1)
        assert second == "2" and not scripted.errors
        day.wait(lambda: len(results_of(second)) == 3, "第二场次's results", timeout=60)
        day.wait(lambda: core.recovery.all_recovered(), "every result")
        day.wait(lambda: day.shell.drill.simulation is None and day.shell.drill.report["ok"], "the proctors' day")
        assert day.shell.drill.report["uploads"] == 6
        tool = day.upload()
        assert len(tool.blocks) == 2
        scripted.check()
    finally:
        day.close()
