"""The whole exam day through the UI in drill mode, with simulated proctors (issue 7).

load → export site info → proctors register → authorize → seal check → lock sync +
verify → sessions run → results received → external backup → upload, checking the
tables at each step; at the end 退出系统 is allowed.
"""

import pytest

from tests.support.day import ExamDay

pytestmark = pytest.mark.gui


def test_exam_day_through_the_ui(gui_root, scripted, tmp_path):
    day = ExamDay(gui_root, str(tmp_path / "data"), str(tmp_path), scripted)
    try:
        day.start()
        shell = day.shell
        assert "考点管理系统" in gui_root.title() and "【" in gui_root.title()
        day.wait(lambda: shell.marks["导入考务"] is False and shell.marks["授权验证"] is False, "✗ marks")

        day.load()
        rows = day.cells()
        assert len(rows) == 3 and all(r[0] for r in rows)
        day.wait(lambda: shell.marks["导入考务"] is True, "导入考务 ✓")
        assert "导入考务 ✓" in shell.step_buttons["导入考务"].cget("text")

        day.export_site_info()
        assert any(p.endswith(".html") for p in day.opened) or day.shell.last_site_info.endswith(".KDINFO")
        day.proctors()
        page = day.show("考场注册")
        rows = day.cells(page)
        assert len(rows) == 3 and [r[2] for r in rows] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]  # one PC a room
        day.wait(lambda: any(n[1].startswith("考场 ") and "已注册" in n[1] for n in shell.notes), "registered notice")

        day.authorize()
        rows = day.cells()
        assert len(rows) == 2 and all("✓" in r or "已授权" in r for r in rows)
        day.seal()
        day.verify()
        rows = day.cells()
        assert len(rows) == 2 and all(r.count("✓") >= 2 for r in rows)
        assert all(shell.marks.values()), shell.marks
        assert [b.cget("text")[-1] for b in shell.step_buttons.values()] == ["✓"] * 5

        day.results()
        monitor = day.show("考场管理")
        totals = day.cells(monitor)[-1]
        assert totals[0] == "人数统计" and "3/3" in totals
        assert any("收到考场" in n[1] for n in shell.notes)

        tool = day.upload()
        assert len(tool.blocks) == 2
        recovery = day.show("数据回收")
        day.wait(lambda: day.cells(recovery) and "已回收 6/6" in day.cells(recovery)[-1], "recovered 6/6")
        assert any("上报成功" in cell for cell in day.cells(recovery)[-1])
        scripted.check()
        assert not scripted.errors
        ok, reason = day.core.system.exit_allowed()
        assert ok, reason
    finally:
        day.close()
