"""考前 step 5 授权验证 (§4.1, §4.2) on a real Tk window: 校时 state, .KDV fallback, 机考锁校时
(``core.status.sync_lock`` over the dongle emulator and the platform simulator), online."""

import pytest

from kd.core.states import Step
from kd.core.steps import step_marks
from kd.views.dialogs import KDV_TYPES
from kd.views.step_verify import VerifyPage
from tests.gui.steps_support import StepSite, clipped, headings, main_thread_gc, offline_file
from tests.integration.live_helpers import authorize, loaded_env, sync

pytestmark = pytest.mark.gui
__all__ = ["main_thread_gc"]  # the autouse fixture of steps_support


def make_site(tmp_path, gui_root, scripted):
    # session "1" starts in 30 minutes: a sync now is within the hour before it
    env = loaded_env(tmp_path, rooms=2, sessions=2, candidates=2, first_start_in=30)
    authorize(env)
    try:
        return StepSite(gui_root, env, VerifyPage, scripted)
    except BaseException:
        env.close()
        raise


@pytest.fixture
def site(tmp_path, gui_root, scripted):
    s = make_site(tmp_path, gui_root, scripted)
    try:
        yield s
    finally:
        try:
            s.close()
        finally:
            s.env.close()


def test_sync_state_and_kdv_fallback(site):
    page, env = site.page, site.env
    lock_id = env.ctx.manifest()["lock"]["id"]
    assert headings(page.table) == ["场次", "场次名称", "开考时间", "考试时长", "考试授权状态", "授权验证状态",
                                    "验证时间", "验证方式"]
    assert page.selected_session() == "1"  # the current session is preselected
    assert [row[4:6] for row in page.table.cells()] == [["✓", "✗"], ["✓", "✗"]]
    assert page.lock_info.text("lock") == "{}（在位）".format(lock_id)
    assert page.lock_info.text("synced") == "未校时"
    assert "没有校时凭证" in page.sync_status.cget("text")
    assert "“校时授权成功!”才算校时完成" in page.hint.cget("text")
    assert not step_marks(site.core).done(Step.VERIFY)

    sync(env)  # 机考锁校时 on the internet PC
    page.refresh()
    site.until(lambda: page.lock_info.text("synced") != "未校时", "the sync time")
    assert "可以进行授权验证" in page.sync_status.cget("text")
    # session 2 starts hours later: the sync does not count for it, and verifying it is refused
    page.session.current(1)
    page.session.event_generate("<<ComboboxSelected>>")
    site.root.update()
    assert "不在第二场次开考前一小时内" in page.sync_status.cget("text")
    page.verify_button.invoke()
    site.until(lambda: site.dialogs.errors, "the refusal")
    assert "校时" in site.dialogs.errors[0].cause and site.dialogs.count("open_file") == 0

    # session 1 with the platform refusing: the .KDV dialog opens
    page.session.current(0)
    page.session.event_generate("<<ComboboxSelected>>")
    env.sim.faults.set(refuse=503)
    site.dialogs.plan("open_file", offline_file(env, "verification", ".KDV", session="1"))
    page.verify_button.invoke()
    site.until(lambda: page.table.cells()[0][5] == "✓", "session 1 verified")
    site.idle()
    row = page.table.cells()[0]
    assert row[7] == "手工导入" and row[6]
    assert ("open_file", ("手工导入授权验证文件（.KDV）", KDV_TYPES)) in site.dialogs.calls
    assert page.status.cget("text") == "授权验证状态：✓"
    assert page.selected_session() == "1"
    assert step_marks(site.core).done(Step.VERIFY)
    assert clipped(page.table) == []
    site.dialogs.check()


def test_sync_button_while_the_platform_is_reachable_then_verify_online(site):
    page, env = site.page, site.env
    site.until(lambda: page.sync_button.winfo_manager() == "pack", "the 机考锁校时 button (platform reachable)")
    env.hub.publish("net.status", ok=False)
    site.until(lambda: page.sync_button.winfo_manager() == "", "the button hidden while the platform is down")
    env.hub.publish("net.status", ok=True)
    site.until(lambda: page.sync_button.winfo_manager() == "pack", "the button back")

    page.sync_button.invoke()
    site.until(lambda: site.dialogs.messages, "the sync message")
    kind, title, text, _ = site.dialogs.messages[0]
    assert (kind, title) == ("info", "机考锁校时") and text.startswith("校时授权成功!\n服务器时间:")
    site.until(lambda: page.lock_info.text("synced") != "未校时", "the sync time")
    assert "可以进行授权验证" in page.sync_status.cget("text")

    page.verify_button.invoke()
    site.until(lambda: page.table.cells()[0][5] == "✓", "session 1 verified online")
    site.idle()
    assert page.table.cells()[0][7] == "联网验证"
    assert site.shell.notes[-1] == ("info", "授权验证成功。")
    site.dialogs.check()
