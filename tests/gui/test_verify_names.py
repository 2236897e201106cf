"""授权验证's 校时状态 names the session as the tables do (第一场次), not ``场次 1`` (issue 14)."""

import pytest

from kd.views.step_verify import VerifyPage
from tests.gui.steps_support import StepSite, main_thread_gc
from tests.integration.live_helpers import authorize, loaded_env, sync

pytestmark = pytest.mark.gui
__all__ = ["main_thread_gc"]  # the autouse fixture of steps_support


def test_sync_status_names_the_session(tmp_path, gui_root, scripted):
    env = loaded_env(tmp_path, rooms=1, sessions=2, candidates=1, first_start_in=30)
    try:
        authorize(env)
        site = StepSite(gui_root, env, VerifyPage, scripted)
        try:
            page = site.page
            sync(env)
            page.refresh()
            site.until(lambda: page.lock_info.text("synced") != "未校时", "the sync time")
            text = page.sync_status.cget("text")
            assert "已在第一场次开考前一小时内校时" in text and "场次 1" not in text, text
            page.session.current(1)
            page.session.event_generate("<<ComboboxSelected>>")
            site.root.update()
            text = page.sync_status.cget("text")
            assert "不在第二场次开考前一小时内" in text and "场次 2" not in text, text
        finally:
            site.close()
    finally:
        env.close()
