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
        day.proctors()
        page = day.show("考场注册")
        assert len(day.cells(page)) >= 3
        day.wait(lambda: any("已注册" in n[1] or "注册" in n[1] for n in shell.notes), "registered notice")

        day.authorize()
        day.seal()
        day.verify()
        day.results()
        tool = day.upload()
        assert tool is not None
        scripted.check()
        assert not scripted.errors
        ok, reason = day.core.system.exit_allowed()
        assert ok, reason
    finally:
        day.close()
