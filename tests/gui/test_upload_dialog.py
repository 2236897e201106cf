"""数据上报 (§5.2): the two-step dialog and the upload tool over a real core and the platform simulator.

Step 2 is disabled until step 1 (backup to a temporary "USB" folder) succeeded; the
upload is cut by the simulator's ``drop_after`` fault and 续报 completes it; a session
with a room not recovered warns. Issue 16: 第一步 lists the completeness proof's failing
checks (an incident not decided) and asks; after the upload a session shows 上报完成 ✓
only when its proof verifies, else the failing check; 打印确认单 opens the 确认单. The
window is driven with ``.invoke()``; dialogs are scripted; the Tk-thread guard fails the
test if the progress callback touched Tk.
"""

import datetime
import hashlib
import io
import os
from pathlib import Path

import pytest

from kd.core.incidents import Category, Draft, Kind
from kd.core.labels import result_label
from kd.core.proofflow import PROOF_OK
from kd.errors import PlatformError
from kd.views.recovery import RecoveryPage
from tests.integration.live_helpers import loaded_env
from tests.support.external import external_folder, remove_external
from tests.support.results import pairs, result_package
from tests.support.sites import page_site
from tests.support.ui import pump_until

pytestmark = pytest.mark.gui


@pytest.fixture
def site(tmp_path, gui_root, scripted):
    with page_site(loaded_env(tmp_path, rooms=3, sessions=2, candidates=5), gui_root, scripted, RecoveryPage) as site:
        yield site


@pytest.fixture
def usb(tmp_path):
    """A folder on another volume than the data folder: 第一步 refuses the data folder's volume."""
    folder = external_folder(tmp_path)
    yield Path(folder)
    remove_external(folder)


def receive(env, core, room, session):
    data = result_package(env.ctx, room, session, absent=1, answer_kb=16)
    core.recovery.receive(room, session, io.BytesIO(data), hashlib.sha256(data).hexdigest(), len(data), "lan",
                          "proctor-" + room)
    return len(data)


def test_backup_then_upload_cut_and_resume(site, gui_root, scripted, usb):
    env, core, page, shell = site
    every = pairs(env.ctx)
    first, last = every[0][1], every[-1][1]
    sizes = {p: receive(env, core, *p) for p in every[:-1]}  # the last room of the last session is missing

    page.upload_button.invoke()
    dialog = page.upload_dialog
    pump_until(gui_root, lambda: dialog.last is not None, what="the dialog's snapshot")
    assert str(dialog.step2.cget("state")) == "disabled"  # 第二步 before 第一步

    scripted.plan("confirm", True).plan("choose_dir", str(usb))  # a room is not recovered: asked first
    dialog.step1.invoke()
    pump_until(gui_root, lambda: str(dialog.step2.cget("state")) == "normal", what="step 2 enabled")
    assert dialog.status.cget("text").startswith("备份完成!")
    methods = [m for m, _ in scripted.calls]
    assert methods[methods.index("confirm") + 1] == "choose_dir"
    [backup] = os.listdir(str(usb))
    assert len([n for n in os.listdir(str(usb / backup)) if n.endswith(".zip")]) == len(every) - 1

    fed, progress = [], shell.loop.progress  # what the loop hands the tool's bars
    shell.loop.progress = lambda handler, owner=None: progress(lambda items: (fed.extend(items), handler(items)), owner)
    dialog.step2.invoke()
    tool = dialog.tool
    pump_until(gui_root, lambda: len(tool.cells()) == 2, what="the upload tool's sessions")
    cells = tool.cells()
    rooms_first = sum(1 for p in every if p[1] == first)
    assert cells[0][1:3] == [str(rooms_first), str(rooms_first)] and cells[0][4:] == ["0", "全部未上报"]
    assert cells[0][3].endswith("KB")
    assert every[-1][0] in tool.warning.cget("text")
    assert str(tool.blocks[first]["resume"].cget("state")) == "disabled"

    # the line is cut mid-file (the client retries once, then gives up)
    env.sim.faults.set(drop_after=sizes[every[0]] // 3, drop_count=2)
    tool.blocks[first]["upload"].invoke()
    pump_until(gui_root, lambda: scripted.errors, timeout=20, what="the cut reported")
    assert isinstance(scripted.errors[0], PlatformError)
    pump_until(gui_root, lambda: str(tool.blocks[first]["resume"].cget("state")) == "normal", what="续报 enabled")
    assert "续报" in tool.blocks[first]["message"].cget("text")
    assert tool.cells()[0][5] == "全部未上报"

    env.sim.faults.clear()
    tool.blocks[first]["resume"].invoke()
    pump_until(gui_root, lambda: tool.cells()[0][5] == "全部已上报", timeout=20, what="续报 done")
    assert tool.cells()[0][4] == str(rooms_first)
    assert float(tool.blocks[first]["bar"].cget("value")) == 100.0 and fed  # the bars were fed
    committed = [u for u in env.sim.received()["uploads"] if u["state"] == "committed"]
    assert len(committed) == rooms_first

    # the session with a room not recovered: uploaded what there is, and says what is missing
    tool.blocks[last]["upload"].invoke()
    pump_until(gui_root, lambda: scripted.messages, timeout=20, what="the warning")
    kind, _title, _text, detail = scripted.messages[-1]
    assert kind == "warning" and every[-1][0] in detail
    pump_until(gui_root, lambda: tool.cells()[1][5] == "1个未上报", what="last session status")
    assert "还有1个考场未回收文件" in tool.blocks[last]["message"].cget("text")
    assert len(scripted.errors) == 1
    scripted.check()


def test_backup_to_a_missing_folder_keeps_step_2_disabled(site, gui_root, scripted, tmp_path):
    env, core, page, shell = site
    receive(env, core, *pairs(env.ctx)[0])
    page.upload_button.invoke()
    dialog = page.upload_dialog
    scripted.plan("confirm", True).plan("choose_dir", str(tmp_path / "no-such-usb"))  # the other rooms: asked
    dialog.step1.invoke()
    pump_until(gui_root, lambda: scripted.errors, what="the refusal")
    assert "不存在" in scripted.errors[0].cause
    pump_until(gui_root, lambda: dialog.last is not None and str(dialog.step1.cget("state")) == "normal",
               what="step 1 again")
    assert str(dialog.step2.cget("state")) == "disabled"
    assert dialog.status.cget("text").startswith("备份未完成")
    page.upload_button.invoke()  # a second 上报 brings the same dialog forward
    assert page.upload_dialog is dialog
    scripted.check()


def test_step_1_names_what_is_missing_and_asks(site, gui_root, scripted, usb):
    env, core, page, shell = site
    every = pairs(env.ctx)
    for p in every[:-2]:  # the last two rooms and sessions are not recovered yet
        receive(env, core, *p)
    page.upload_button.invoke()
    dialog = page.upload_dialog
    pump_until(gui_root, lambda: dialog.last is not None, what="the dialog's snapshot")

    # 取消: the question names the rooms and sessions left out; nothing is backed up
    scripted.plan("confirm", False)
    dialog.step1.invoke()
    pump_until(gui_root, lambda: scripted.count("confirm") == 1, what="the question")
    pump_until(gui_root, lambda: str(dialog.step1.cget("state")) == "normal", what="step 1 again")
    method, (title, text, detail) = scripted.calls[-1]
    assert (method, title) == ("confirm", "备份到外部存储")
    assert text == "有 2 个考场场次的考试结果不在本次备份中，确定继续备份吗？"
    for room, session in every[-2:]:
        assert result_label(room, session) in detail
    assert "尚未回收（2个）" in detail
    assert scripted.count("choose_dir") == 0 and os.listdir(str(usb)) == []
    assert core.upload.snapshot()["external"] is None
    assert str(dialog.step2.cget("state")) == "disabled"

    # 确定: then the folder, then the backup of what there is
    scripted.plan("confirm", True).plan("choose_dir", str(usb))
    dialog.step1.invoke()
    pump_until(gui_root, lambda: str(dialog.step2.cget("state")) == "normal", what="step 2 enabled")
    [backup] = os.listdir(str(usb))
    assert len([n for n in os.listdir(str(usb / backup)) if n.endswith(".zip")]) == len(every) - 2

    # every room recovered: 第一步 goes straight to the folder, no question
    for p in every[-2:]:
        receive(env, core, *p)
    scripted.plan("choose_dir", str(usb))
    dialog.step1.invoke()
    pump_until(gui_root, lambda: len(os.listdir(str(usb))) == 2, what="the second backup")
    pump_until(gui_root, lambda: str(dialog.step1.cget("state")) == "normal", what="step 1 done")
    assert scripted.count("confirm") == 2 and core.upload.backup_preview()["complete"] is True
    assert not scripted.errors
    scripted.check()


def test_step_1_lists_the_proof_checks_that_fail_and_the_tool_shows_a_verified_proof(site, gui_root, scripted, usb):
    """Issue 16: 第一步's look ahead names an incident not decided (room, what to do) and asks;
    once uploaded, a session shows 上报完成 ✓ only when its proof verifies, else the failing
    check; 打印确认单 opens the 确认单."""
    env, core, page, shell = site
    every = pairs(env.ctx)
    first = every[0][1]
    for p in every:
        receive(env, core, *p)
    room = every[0][0]
    start = env.ctx.now() - datetime.timedelta(minutes=5)
    (draft,) = core.incidents.store_drafts([Draft("outage|{}|{}|t".format(room, first), Kind.OUTAGE,
                                                  Category.NETWORK, room, first, start,
                                                  start + datetime.timedelta(minutes=2), "考场与考点机失去连接")])
    page.upload_button.invoke()
    dialog = page.upload_dialog
    pump_until(gui_root, lambda: dialog.last is not None, what="the dialog's snapshot")

    # 第一步: every room is recovered, but the proof's check of the incident fails: asked, named
    scripted.plan("confirm", True).plan("choose_dir", str(usb))
    dialog.step1.invoke()
    pump_until(gui_root, lambda: str(dialog.step2.cget("state")) == "normal", what="step 2 enabled")
    method, (title, text, detail) = next(c for c in scripted.calls if c[0] == "confirm")
    assert title == "备份到外部存储" and text.startswith("考点数据完整性检查有 1 项未通过")
    assert room in detail and draft["id"] in detail and "确认或驳回" in detail
    listed = dialog.checks.cget("text")
    assert listed.startswith("考点数据完整性检查") and room in listed and "确认或驳回" in listed

    # 第二步 with the incident still open: uploaded, but the proof fails naming it
    dialog.step2.invoke()
    tool = dialog.tool
    pump_until(gui_root, lambda: len(tool.cells()) == 2, what="the upload tool's sessions")
    assert tool.proof_text(first) == "" and str(tool.blocks[first]["sheet"].cget("state")) == "disabled"
    tool.blocks[first]["upload"].invoke()
    pump_until(gui_root, lambda: tool.cells()[0][5] == "全部已上报" and tool.proof_text(first), timeout=30,
               what="the upload and its proof")
    shown = tool.proof_text(first)
    assert shown.startswith("考点数据完整性证明未通过：") and "incidents" not in shown
    assert room in shown and PROOF_OK not in shown
    # 上报 stays open to build the proof again once the incident is decided
    pump_until(gui_root, lambda: str(tool.blocks[first]["upload"].cget("state")) == "normal", what="上报 again")

    core.incidents.confirm(draft["id"], "admin")
    tool.blocks[first]["upload"].invoke()
    pump_until(gui_root, lambda: tool.proof_text(first).startswith(PROOF_OK), timeout=30, what="上报完成 ✓")
    summary = core.upload.snapshot()["sessions"][0]["proof"]
    assert summary["ok"] and summary["sha256"][:16] in tool.proof_text(first)
    pump_until(gui_root, lambda: str(tool.blocks[first]["upload"].cget("state")) == "disabled", what="上报 done")

    # 打印确认单: written in a worker, opened like the door sheet
    tool.blocks[first]["sheet"].invoke()
    pump_until(gui_root, lambda: shell.urls, what="the 确认单 opened")
    assert os.path.basename(shell.urls[-1]).startswith("考点数据上报确认单(") and summary["sha256"] in open(
        shell.urls[-1], encoding="utf-8").read()
    assert not scripted.errors
    scripted.check()
    shell.check()
