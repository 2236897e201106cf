"""考前 step 2 考场注册 (§3.2, §3.2.2) on a real Tk window: live registrations, revoke, export, restore."""

import os
import threading

import pytest

from kd.core import labels, model
from kd.core.states import Step
from kd.core.steps import step_marks
from kd.views.dialogs import KDINFO_TYPES
from kd.views.step_load import RoomDetail
from kd.views.step_register import OPERATIONS, RegisterPage
from tests.gui.steps_support import clipped, headings, main_thread_gc, step_site
from tests.support.env import make_env

pytestmark = pytest.mark.gui
__all__ = ["main_thread_gc"]  # the autouse fixture of steps_support


@pytest.fixture
def site(tmp_path, gui_root, scripted):
    env = make_env(tmp_path, rooms=3, sessions=2, candidates=3)
    with step_site(env, gui_root, RegisterPage, scripted, prepare=env_core_load) as s:
        yield s


def env_core_load(env):
    from kd.core.loading import LoadingService

    LoadingService(env.ctx).load_online("admin")


def proctor(site, code, ip, imported=False):
    """A proctor machine registers (and imports its room data) from another thread, as over the LAN."""
    core = site.core
    reg = site.env.ctx.stores.runtime.get(model.ROOMS, code)["reg_code"]

    def work():
        token = core.registration.register(code, reg, ip)["token"]
        if imported:
            core.registration.mark_data_imported(code, token, ip, core.loading.room_data_sha256(code))

    thread = threading.Thread(target=work, name="lan-handler")
    thread.start()
    thread.join()


def row_of(page, code):
    return next(r for r in page.table.cells() if r[0] == code)


def test_live_registration_and_revoke_with_confirmation(site):
    page, core = site.page, site.core
    codes = [r["code"] for r in site.env.ctx.manifest()["rooms"]]
    assert headings(page.table) == ["考场代码", "注册码", "注册IP", "封场检测", "备注", "操作"]
    regs = {r["code"]: r["reg_code"] for r in core.registration.snapshot()["rooms"]}
    assert page.table.cells() == [[c, regs[c], "", "", "", "查看考场"] for c in codes]
    assert page.counts.cget("text") == "已注册考场0个，未注册考场3个"
    assert not step_marks(core).done(Step.REGISTER)

    proctor(site, codes[0], "192.168.1.20")
    site.until(lambda: row_of(page, codes[0])[2] == "192.168.1.20", "the registered IP")
    assert row_of(page, codes[0]) == [codes[0], regs[codes[0]], "192.168.1.20", "✗", "监考机尚未导入考场数据",
                                      OPERATIONS]
    proctor(site, codes[0], "192.168.1.20", imported=True)
    proctor(site, codes[1], "192.168.1.21", imported=True)
    site.until(lambda: page.counts.cget("text") == "已注册考场2个，未注册考场1个", "the counts")
    site.idle()
    assert row_of(page, codes[0])[3:5] == ["✓", ""]
    assert clipped(page.table) == []

    # 撤销注册: declined, then confirmed
    page.table.select_index(0)
    site.dialogs.plan("confirm", False, True)
    page.revoke_button.invoke()
    site.idle()
    assert row_of(page, codes[0])[2] == "192.168.1.20"
    assert site.dialogs.calls[-1][1][:2] == ("撤销注册", "确认撤销考场 {} 的注册吗？".format(codes[0]))
    page.revoke_button.invoke()
    site.until(lambda: row_of(page, codes[0])[2] == "", "the revoked room")
    site.idle()
    assert core.registration.snapshot()["registered"] == 1
    assert page.counts.cget("text") == "已注册考场1个，未注册考场2个"
    # an unregistered room asks nothing
    page.revoke_button.invoke()
    assert site.shell.notes[-1][0] == "warning"
    # the rest register: step done
    proctor(site, codes[0], "192.168.1.20", imported=True)
    proctor(site, codes[2], "192.168.1.22", imported=True)
    site.until(lambda: page.counts.cget("text") == "已注册考场3个，未注册考场0个", "every room registered")
    assert step_marks(core).done(Step.REGISTER)
    # 查看考场
    page.table.select_index(2)
    page.view_button.invoke()
    site.until(lambda: isinstance(getattr(page, "detail_window", None), RoomDetail), "the room detail")
    assert page.detail_window.detail["code"] == codes[2] and len(page.detail_window.table.cells()) == 2 * 3
    site.dialogs.check()


def test_export_site_info_then_restore_registrations(site, tmp_path):
    page, core = site.page, site.core
    codes = [r["code"] for r in site.env.ctx.manifest()["rooms"]]
    proctor(site, codes[0], "192.168.1.20", imported=True)
    proctor(site, codes[1], "192.168.1.21")
    folder = str(tmp_path / "usb")
    os.makedirs(folder)
    site.dialogs.plan("choose_dir", folder)
    page.export_button.invoke()
    site.until(lambda: site.shell.urls, "the exported files")
    kdinfo = os.path.join(os.path.abspath(folder), "考点信息表(11003).KDINFO")
    assert ("info", "考点信息已导出：{}".format(kdinfo)) in site.shell.notes and os.path.isfile(kdinfo)
    [html] = site.shell.urls
    assert os.path.dirname(html) == os.path.abspath(folder)
    with open(html, encoding="utf-8") as f:
        sheet = f.read()
    assert all(code in sheet for code in codes)

    # lost registrations (as after a reinstall), then 恢复注册 from the KDINFO
    for code in codes[:2]:
        core.registration.revoke(code, "admin")
    site.until(lambda: page.counts.cget("text") == "已注册考场0个，未注册考场3个", "the revocations")
    site.dialogs.plan("open_file", kdinfo).plan("confirm", True)
    page.restore_button.invoke()
    site.until(lambda: page.counts.cget("text") == "已注册考场2个，未注册考场1个", "the restored rooms")
    assert site.dialogs.calls[-2] == ("open_file", ("恢复注册：选择考点信息备份文件", KDINFO_TYPES))
    method, (title, text, detail) = site.dialogs.calls[-1]
    assert (method, title, text) == ("confirm", "恢复注册", "确定用此文件恢复注册吗？")
    assert "将恢复注册（2个）" in detail and "不变（1个）" in detail and kdinfo in detail
    assert row_of(page, codes[0])[2] == "192.168.1.20" and row_of(page, codes[1])[2] == "192.168.1.21"

    # a tampered KDINFO is refused with its cause and remedy; nothing changes
    bad = str(tmp_path / "bad.KDINFO")
    with open(kdinfo, "rb") as f, open(bad, "wb") as out:
        out.write(f.read().replace(b"192.168.1.21", b"192.168.1.99"))
    site.dialogs.plan("open_file", bad)
    page.restore_button.invoke()
    site.until(lambda: site.dialogs.errors, "the refusal")
    site.idle()
    assert site.dialogs.errors[0].remedy
    assert row_of(page, codes[1])[2] == "192.168.1.21"
    site.dialogs.check()


def heartbeat(site, code):
    """The room's proctor sends a heartbeat (as the LAN service passes it on): it counts as connected."""
    session = site.env.ctx.manifest()["sessions"][0]["id"]
    thread = threading.Thread(target=site.core.monitor.heartbeat, args=(code, {"session_id": session}),
                              name="lan-handler")
    thread.start()
    thread.join()


def test_restore_of_an_early_kdinfo_shows_what_it_drops_and_asks(site, tmp_path):
    page, core = site.page, site.core
    codes = [r["code"] for r in site.env.ctx.manifest()["rooms"]]
    early = core.registration.export_site_info(str(tmp_path / "early"), "admin", "127.0.0.1")["kdinfo"]
    for i, code in enumerate(codes):
        proctor(site, code, "192.168.1.{}".format(20 + i), imported=True)
    site.until(lambda: page.counts.cget("text") == "已注册考场3个，未注册考场0个", "every room registered")
    registered = [row_of(page, c) for c in codes]

    # 取消: the question names the connected rooms and the export time; nothing changes
    heartbeat(site, codes[0])
    heartbeat(site, codes[1])
    site.dialogs.plan("open_file", early).plan("confirm", False)
    page.restore_button.invoke()
    site.until(lambda: site.dialogs.count("confirm") == 1, "the question")
    site.idle()
    method, (title, text, detail) = site.dialogs.calls[-1]
    assert (method, title) == ("confirm", "恢复注册")
    assert text == "恢复注册将使 2 个当前已连接的考场失去或改变注册，确定恢复吗？"
    created = core.registration.restore_preview(early)["created_at"]
    assert "文件导出时间：" + labels.shown(created) in detail
    assert "将失去注册（3个）" in detail
    assert "{}（当前已连接；注册IP 192.168.1.20）".format(codes[0]) in detail
    assert "{}（当前已连接；注册IP 192.168.1.21）".format(codes[1]) in detail
    assert "{}（注册IP 192.168.1.22）".format(codes[2]) in detail
    assert [row_of(page, c) for c in codes] == registered
    assert core.registration.snapshot()["registered"] == 3
    assert not [e for e in site.env.ctx.audit.entries() if e["action"] == "registration.restored"]

    # 确定: applied; the rooms are no longer registered, and no longer shown connected
    heartbeat(site, codes[0])
    heartbeat(site, codes[1])
    site.dialogs.plan("open_file", early).plan("confirm", True)
    page.restore_button.invoke()
    site.until(lambda: page.counts.cget("text") == "已注册考场0个，未注册考场3个", "the restored file applied")
    site.idle()
    assert site.dialogs.count("confirm") == 2 and not site.dialogs.errors
    assert all(row_of(page, c)[2] == "" for c in codes)
    assert not any(core.monitor.connected(c) for c in codes)
    site.dialogs.check()
