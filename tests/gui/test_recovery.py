"""数据回收 (§5.1) on a real Tk window over a real core and the platform simulator.

Result packages are real (``kd.formats.result.build_result`` from the loaded package);
one arrives as the LAN service delivers it (``core.recovery.receive``), others through
回收 with a scripted file dialog. Hub events reach the page through the shell's loop.
"""

import hashlib
import io
import re

import pytest

from kd.views.recovery import RecoveryPage
from tests.integration.live_helpers import loaded_env
from tests.support.results import pairs, result_package, write_package
from tests.support.sites import page_site
from tests.support.ui import pump_until

pytestmark = pytest.mark.gui


@pytest.fixture
def site(tmp_path, gui_root, scripted):
    gui_root.geometry("1024x700")
    with page_site(loaded_env(tmp_path, rooms=3, sessions=2, candidates=5), gui_root, scripted, RecoveryPage,
                   listen=True) as site:
        site[2].refresh()
        yield site


def table(page):
    cells = page.table.cells()
    return {(r[0], r[1]): r for r in cells[:-1]}, cells[-1]


def test_rows_online_and_manual_recovery_and_conflict(site, gui_root, scripted, tmp_path):
    env, core, page, shell = site
    every = pairs(env.ctx)
    pump_until(gui_root, lambda: len(page.table.cells()) == len(every) + 1, what="every room and session")
    assert page.table.headings() == ["考场编号", "场次", "考生人数", "参考人数", "缺考人数", "回收人数", "未回收人数",
                                     "考场情况", "状态上报"]
    rows, total = table(page)
    assert set(rows) == set(every) and page.session_box.get() == "全部"
    assert all(r[7] == "未回收" and r[8] == "无数据" for r in rows.values())
    assert total[0] == "人数统计" and total[2] == str(5 * len(every)) and total[5] == "0"

    # online: the proctor machine's 上报 reaches the core; the table follows the hub event
    (room, session) = every[0]
    data = result_package(env.ctx, room, session, absent=1)
    core.recovery.receive(room, session, io.BytesIO(data), hashlib.sha256(data).hexdigest(), len(data), "lan",
                          "proctor-" + room)
    pump_until(gui_root, lambda: table(page)[0][(room, session)][7] == "查看", what="online result shown")
    row = table(page)[0][(room, session)]
    assert row[2:7] == ["5", "4", "1", "4", "0"] and row[8] == "未上报"

    # 回收 by hand
    (room2, session2) = every[1]
    path = write_package(str(tmp_path), env.ctx, room2, session2, absent=2)
    scripted.plan("open_file", path)
    page.recover_button.invoke()
    pump_until(gui_root, lambda: table(page)[0][(room2, session2)][7] == "查看", what="manual result shown")
    assert table(page)[0][(room2, session2)][2:7] == ["5", "3", "2", "3", "0"]
    assert any("已回收考场 {}".format(room2) in text for _, text in shell.notes)
    total = table(page)[1]
    assert total[3] == "7" and total[4] == "3" and total[7] == "已回收 2/{}".format(len(every))

    # another package for the same room and session: refused, both hashes shown, old one kept
    kept = hashlib.sha256(open(path, "rb").read()).hexdigest()
    other = write_package(str(tmp_path), env.ctx, room2, session2, absent=2, salt=b"other answers")
    refused = hashlib.sha256(open(other, "rb").read()).hexdigest()
    scripted.plan("open_file", other)
    page.recover_button.invoke()
    pump_until(gui_root, lambda: scripted.messages, what="the conflict dialog")
    kind, title, text, detail = scripted.messages[-1]
    assert kind == "warning" and title == "结果包冲突" and room2 in text
    assert kept in detail and refused in detail
    pump_until(gui_root, lambda: table(page)[0][(room2, session2)][7] == "查看（有冲突）", what="conflict marked")
    assert "conflict" in page.table.tree.item(_iid(page, room2, session2), "tags")
    assert room2 in page.hint.cget("text")
    assert env.ctx.stores.runtime.get("room_sessions", "{}|{}".format(room2, session2))["result"]["sha256"] == kept
    assert not scripted.errors
    scripted.check()


def _iid(page, room, session):
    for iid in page.table.tree.get_children():
        values = page.table.tree.item(iid, "values")
        if str(values[0]) == room and str(values[1]) == session:
            return iid
    raise AssertionError("no row {} {}".format(room, session))


def test_two_subjects_columns_and_view(site, gui_root, scripted, tmp_path):
    env, core, page, shell = site
    sessions = env.ctx.manifest()["sessions"]
    two = next(s for s in sessions if len(s["subjects"]) == 2)
    pump_until(gui_root, lambda: len(page.table.cells()) > 1, what="rows")
    every = [p for p in pairs(env.ctx) if p[1] == two["id"]]
    room, session = every[0]
    scripted.plan("open_file", write_package(str(tmp_path), env.ctx, room, session, absent=1))
    page.recover_button.invoke()
    pump_until(gui_root, lambda: table(page)[0][(room, session)][7] == "查看", what="recovered")

    page.session_box.current(1 + sessions.index(two))
    page.session_box.event_generate("<<ComboboxSelected>>")
    pump_until(gui_root, lambda: "科目1/科目2" in page.table.headings()[2], what="per-subject columns")
    assert page.table.headings()[2:7] == ["{}(科目1/科目2)".format(h) for h in
                                          ("考生人数", "参考人数", "缺考人数", "回收人数", "未回收人数")]
    rows, total = table(page)
    assert set(rows) == set(every)
    per_subject = {}
    for c in env.ctx.manifest()["candidates"]:
        if c["room"] == room and c["session"] == session:
            per_subject[c["subject"]] = per_subject.get(c["subject"], 0) + 1
    assert rows[(room, session)][2] == "/".join(str(per_subject.get(code, 0)) for code in two["subjects"])
    assert all(re.fullmatch(r"\d+/\d+", cell) for cell in rows[(room, session)][2:7])
    assert re.fullmatch(r"\d+/\d+", total[2])

    # 查看 in the 考场情况 column: the room's candidates from the recovered package
    tree = page.table.tree
    iid = _iid(page, room, session)
    tree.see(iid)
    gui_root.update()
    x, y, w, h = tree.bbox(iid, "situation")
    tree.event_generate("<ButtonRelease-1>", x=x + w // 2, y=y + h // 2)
    pump_until(gui_root, lambda: page.detail_window is not None and page.detail_window.table.cells(),
               what="the detail window")
    cells = page.detail_window.table.cells()
    assert len(cells) == 5 and sorted(r[4] for r in cells) == ["参考"] * 4 + ["缺考"]
    names = {s["code"]: s["name"] for s in env.ctx.manifest()["subjects"]}  # the subjects' names, not codes
    assert {r[3] for r in cells} == {names[code] for code in two["subjects"]}
    page.detail_window.close_button.invoke()

    # back to 全部: single-subject headings again
    page.session_box.current(0)
    page.session_box.event_generate("<<ComboboxSelected>>")
    pump_until(gui_root, lambda: page.table.headings()[2] == "考生人数", what="plain columns")
    scripted.check()
