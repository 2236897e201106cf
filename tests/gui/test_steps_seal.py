"""考前 step 4 封场检测 (§3.4) on a real Tk window: items with remedies, the automatic report, 系统备份."""

import os

import pytest

from kd.core import labels
from kd.core.states import Step
from kd.core.steps import step_marks
from kd.views.step_seal import BackupDialog, SealPage
from tests.gui.steps_support import StepSite, main_thread_gc
from tests.integration.live_helpers import Listener, authorize, loaded_env, register

pytestmark = pytest.mark.gui
__all__ = ["main_thread_gc"]  # the autouse fixture of steps_support


@pytest.fixture
def site(tmp_path, gui_root, scripted):
    env = loaded_env(tmp_path, rooms=2, sessions=2, candidates=2)
    lan = Listener()
    env.ctx.lan = lan
    s = None
    try:
        s = StepSite(gui_root, env, SealPage, scripted, start_core=True)
        s.core.seal.min_free_bytes = 1  # the check of the disk is not this test's subject
        yield s
    finally:
        try:
            if s is not None:
                s.close()
        finally:
            lan.close()
            env.close()


def statuses(page):
    return {row[0]: row[1] for row in page.item_rows}


def test_failing_items_show_remedies_then_pass_and_report(site):
    page, env = site.page, site.env
    assert page.item_rows == [] and page.verdict.cget("text") == "尚未进行封场检测"
    assert not step_marks(site.core).done(Step.SEAL)

    page.check_button.invoke()
    site.until(lambda: page.item_rows, "the check items")
    site.idle()
    got = statuses(page)
    assert list(got) == ["考场数据包已校验", "考场全部注册", "考场数据全部导入", "场次全部授权", "机考锁在位",
                         "局域网服务运行", "考点信息表地址可连接", "磁盘剩余空间", "系统时间准确"]
    assert got["考场数据包已校验"] == "✓ 通过" and got["考场全部注册"] == "✗ 未通过"
    assert got["场次全部授权"] == "✗ 未通过" and got["机考锁在位"] == "✓ 通过"
    remedies = {row[0]: row[3] for row in page.item_rows}
    assert "注册码" in remedies["考场全部注册"] and ".PTQ" in remedies["场次全部授权"]
    assert remedies["考场数据包已校验"] == "" and remedies["机考锁在位"] == ""
    shown_text = [w.cget("text") for w in page.item_widgets]
    assert any(t.endswith("处理办法：" + remedies["考场全部注册"]) for t in shown_text)
    assert page.verdict.cget("text") == "封场检测未通过：3 项未通过"
    assert page.info.text("report") == "" and not step_marks(site.core).done(Step.SEAL)

    register(env)
    authorize(env)
    page.check_button.invoke()
    site.until(lambda: page.verdict.cget("text") == "封场检测通过，可以封场", "the passing check")
    assert all(row[3] == "" for row in page.item_rows)
    assert set(statuses(page).values()) == {"✓ 通过"}
    # the outbox delivers the report to the simulator; the page follows it live
    site.until(lambda: page.info.text("report").startswith("上报成功 "), "上报成功 and its time")
    sent = site.core.outbox.latest("seal_check")
    assert page.info.text("report") == "上报成功 {}".format(labels.shown(sent["sent_at"]))
    assert step_marks(site.core).done(Step.SEAL)
    assert all(w.winfo_width() > 1 for w in page.item_widgets)
    site.dialogs.check()


def test_system_backup_from_step_4(site, tmp_path):
    page, core = site.page, site.core
    folder = str(tmp_path / "backup")
    os.makedirs(folder)
    page.backup_button.invoke()
    dialog = page.backup_window
    assert isinstance(dialog, BackupDialog) and dialog.title() == "考点系统备份"
    site.dialogs.plan("choose_dir", folder)
    dialog.choose_button.invoke()
    assert dialog.folder.get() == folder
    dialog.note.insert("1.0", "封场前备份")
    # the initial password must be changed first: the core's refusal is shown as a dialog
    dialog.backup_button.invoke()
    site.until(lambda: site.dialogs.errors, "the refusal")
    assert "初始密码" in site.dialogs.errors[0].cause and os.listdir(folder) == []
    core.accounts.change_password("admin", "888", "Kaodian-2026")
    dialog.backup_button.invoke()
    site.until(lambda: dialog.path, "the backup file")
    assert os.path.dirname(dialog.path) == folder and dialog.path.endswith(".bak")
    assert dialog.result.cget("text") == "备份完成：{}".format(dialog.path)
    assert site.env.ctx.stores.runtime is not None
    dialog.close_button.invoke()
    site.dialogs.check()
