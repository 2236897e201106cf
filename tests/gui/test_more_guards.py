"""The 更多 menu's guards over a real site (simulator + emulator), with scripted dialogs.

系统恢复: the dialog verifies the chosen backup in a worker and shows its time, note and
what it holds next to what is here now and after the restore, and what is kept from here;
确定 is enabled only when the core allows the restore; a refusal and a file that does not
verify are shown in the dialog and change nothing. 系统初始化 during a formal exam with
unreported data is refused at once, before any confirmation (issue 12 items 1 and 4).
"""

import hashlib
import io
import os

import pytest

from kd.core import labels, model
from kd.core.backup import result_label
from tests.support.env import SITE
from tests.support.results import pairs, result_package
from tests.support.sites import main_window
from tests.support.ui import pump_until

pytestmark = pytest.mark.gui

PASSWORD = "guards-2026"


@pytest.fixture
def site(tmp_path, gui_root, scripted):
    with main_window(tmp_path, gui_root, scripted, PASSWORD, load=True) as site:
        yield site


def tree_digest(data_dir):
    """SHA-256 of every file a restore may replace."""
    out = {}
    for item in ("db", "spool", "rooms", "audit.log"):
        base = os.path.join(data_dir, item)
        paths = [base] if os.path.isfile(base) else [os.path.join(d, n) for d, _, ns in os.walk(base) for n in ns]
        for full in paths:
            with open(full, "rb") as f:
                out[os.path.relpath(full, data_dir)] = hashlib.sha256(f.read()).hexdigest()
    return out


def start_session(ctx, session):
    for room, sid in pairs(ctx):
        if sid == session:
            ctx.stores.runtime.update(model.ROOM_SESSIONS, model.rs_key(room, sid),
                                      {"started_at": "2026-06-13T09:00:00+08:00"})


def receive(core, room, session):
    data = result_package(core.ctx, room, session)
    sha = hashlib.sha256(data).hexdigest()
    core.recovery.receive(room, session, io.BytesIO(data), sha, len(data), "lan", "admin")
    return sha


def open_restore(gui_root, shell, scripted, path, phase):
    scripted.plan("open_file", path)
    shell.more.invoke("系统恢复")
    dialog = shell.more.restore_dialog
    assert dialog is not None and dialog.phase == "checking"  # the preview runs in a worker
    assert str(dialog.ok.cget("state")) == "disabled"
    pump_until(gui_root, lambda: dialog.phase != "checking", 30, "the preview")
    assert dialog.phase == phase, dialog.status.cget("text")
    return dialog


def cells(dialog):
    return {row[0]: row[1:] for row in dialog.table.cells()}


def test_restore_dialog_shows_the_backup_next_to_what_is_here_and_keeps_the_results(site, gui_root, scripted,
                                                                                     tmp_path):
    env, core, shell = site
    session = pairs(env.ctx)[0][1]
    start_session(env.ctx, session)
    path = core.system.backup(str(tmp_path / "usb"), "考中备份", "admin")
    room = pairs(env.ctx)[0][0]
    sha = receive(core, room, session)  # recovered after the backup

    dialog = open_restore(gui_root, shell, scripted, path, "ready")
    assert str(dialog.ok.cget("state")) == "normal"
    head = dialog.backup_label.cget("text")
    assert "考中备份" in head and labels.shown(dialog.preview["created_at"]) in head
    shown = cells(dialog)
    assert list(shown) == ["考点代码", "考试模式", "考试名称", "考场数", "已注册考场", "已开考（考场·场次）",
                           "已回收结果", "已上报结果", "冲突结果包"]
    assert shown["考点代码"] == [SITE, SITE, SITE] and shown["考试模式"] == ["正式考试"] * 3
    assert shown["已回收结果"] == ["0", "1", "1"]  # backup | here now | after the restore
    assert shown["考场数"] == ["2", "2", "2"]
    kept = dialog.kept_label.cget("text")
    assert "保留本机已回收" in kept and result_label(room, session) in kept and "保留本机当前的账号和密码" in kept

    dialog.ok.invoke()
    assert dialog.phase == "restoring" and shell.busy
    pump_until(gui_root, lambda: shell.ends, 30, "restart after the restore")
    assert shell.ends == [True] and not dialog.winfo_exists()
    kind, title, text, _ = scripted.messages[-1]
    assert title == "需要重新启动" and "系统恢复完成" in text and "保留本机已回收" in text
    doc = env.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(room, session))
    assert doc["result"]["sha256"] == sha and env.ctx.spool.verify(sha)
    scripted.check()
    assert not scripted.errors


def test_restore_dialog_shows_a_refusal_and_a_bad_file_and_changes_nothing(site, gui_root, scripted, tmp_path):
    env, core, shell = site
    path = core.system.backup(str(tmp_path / "usb"), "考前备份", "admin")
    room, session = pairs(env.ctx)[0]
    start_session(env.ctx, session)  # the rooms started after the backup
    before = tree_digest(env.ctx.data_dir)

    dialog = open_restore(gui_root, shell, scripted, path, "refused")
    assert str(dialog.ok.cget("state")) == "disabled"
    status = dialog.status.cget("text")
    assert "不能恢复该备份" in status and "尚未开考" in status and result_label(room, session) in status
    assert cells(dialog)["已开考（考场·场次）"][:2] == ["0", "2"]
    dialog.ok.invoke()  # disabled: nothing happens
    assert dialog.phase == "refused"

    # another file: not a backup at all
    bad = tmp_path / "not-a-backup.bak"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    scripted.plan("open_file", str(bad))
    dialog.choose.invoke()
    pump_until(gui_root, lambda: dialog.phase != "checking", 30, "the second preview")
    assert dialog.phase == "failed" and "系统备份文件" in dialog.status.cget("text")
    assert dialog.table.cells() == [] and str(dialog.ok.cget("state")) == "disabled"

    dialog.cancel.invoke()
    assert not dialog.winfo_exists()
    assert tree_digest(env.ctx.data_dir) == before and not shell.ends
    scripted.check()
    assert not scripted.errors


def test_initialize_during_a_formal_exam_is_refused_before_any_confirmation(site, gui_root, scripted):
    env, core, shell = site
    room, session = pairs(env.ctx)[0]
    start_session(env.ctx, session)
    shell.more.invoke("系统初始化")
    pump_until(gui_root, lambda: scripted.messages, 10, "the refusal")
    kind, title, text, detail = scripted.messages[-1]
    assert (kind, title) == ("warning", "不能初始化")
    assert "禁止初始化" in text and result_label(room, session) in text and "考后上报" in detail
    assert scripted.count("confirm") == 0 and scripted.count("ask_text") == 0
    assert env.ctx.site_code() == SITE and not shell.ends and not shell.busy

    # once no room is in its exam any more, the confirmations are asked again
    for r, s in pairs(env.ctx):
        if s == session:
            env.ctx.stores.runtime.update(model.ROOM_SESSIONS, model.rs_key(r, s), {"started_at": None})
    scripted.plan("confirm", False)
    shell.more.invoke("系统初始化")
    pump_until(gui_root, lambda: scripted.count("confirm") == 1, 10, "the first confirmation")
    assert env.ctx.site_code() == SITE
    scripted.check()
