"""考场情况记录单 (kd.core.incidentsheet) over a real site: the package from the platform simulator,
the dongle emulator confirming a 补时 over 30 minutes, the file written into a real folder."""

import datetime
import html
import os

import pytest

from kd.core import incidentsheet
from kd.core.incidents import ACTOR, Category, Draft, Kind, recorder_label
from kd.errors import UserError
from tests.integration.live_helpers import authorized_env
from tests.support.fixtures import closed_after

env = closed_after(authorized_env)


def session_room(ctx, session="1"):
    return next(c["room"] for c in ctx.manifest()["candidates"] if c["session"] == session)


def test_the_sheet_of_a_room_shows_its_incidents_grants_and_signature_lines(env, tmp_path):
    ctx, core = env.ctx, env.core
    room = session_room(ctx)
    start = datetime.datetime(2026, 6, 13, 9, 10, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))
    tickets = [c for c in ctx.manifest()["candidates"] if c["room"] == room and c["session"] == "1"]
    hostile = '<script>alert("x")</script> & 停电'
    first = core.incidents.add(room=room, session="1", category="设备故障", start=start,
                               end=start + datetime.timedelta(minutes=20, seconds=10), description=hostile,
                               actor="admin")
    second = core.incidents.add(room=room, session="1", category="考生原因", start=start, end=None,
                                description="考生突发疾病", actor="admin", candidates=[tickets[0]["ticket"]])
    core.extra_time.grant(room, "1", 30, actor="admin", reason="停电", incident_ids=[first["id"]])
    core.extra_time.grant(room, "1", 5, actor="admin", reason="又停电", confirmed=True)
    other = next(c["room"] for c in ctx.manifest()["candidates"] if c["session"] == "1" and c["room"] != room)
    core.incidents.add(room=other, session="1", category="其他", start=start, end=None, description="别的考场",
                       actor="admin")

    path = incidentsheet.write_sheet(core, "1", room, str(tmp_path / "out"))
    assert os.path.isabs(path) and os.path.dirname(path) == str(tmp_path / "out")
    assert os.path.basename(path) == "考场情况记录单-1-{}.html".format(room)
    page = open(path, encoding="utf-8").read()
    assert "@page { size: A4" in page and page.count('<section class="page">') == 1
    assert "<script>" not in page and html.escape(hostile, quote=True) in page
    assert "考场情况记录单" in page and room in page and "11003" in page and "第一场次" in page
    assert "设备故障" in page and "考生原因" in page and "21 分钟" in page  # 20 min 10 s: a started minute counts
    assert "2026-06-13 09:10<br>至 09:30" in page and "至 未结束" in page
    assert tickets[0]["ticket"] in page and html.escape(tickets[0]["name"]) in page
    assert "人工记录" in page and "已确认" in page and "admin" in page
    assert "别的考场" not in page
    lock = ctx.manifest()["lock"]["id"]
    assert "机考锁 {} 已验证".format(lock) in page and "二次确认并验证机考锁" in page
    assert "考点管理员当场批准" in page and "补时 35 分钟" in page
    expected = core.extra_time.expected_end(room, "1")
    assert "补时后应结束于 <b>{}</b>".format(expected.strftime("%Y-%m-%d %H:%M")) in page
    session = ctx.manifest()["sessions"][0]
    assert datetime.datetime.fromisoformat(session["start"]).strftime("%Y-%m-%d %H:%M") in page
    assert "127.0.0." in page  # the proctor machine's registered IP
    for line in ("监考员（签名）", "考点主考（签名）", "日期："):
        assert line in page
    assert second["id"] in page

    # the default folder is DATA/print; the whole session: one page per room
    default = incidentsheet.write_sheet(core, "1", other)
    assert os.path.dirname(default) == os.path.join(os.path.abspath(env.data_dir), "print")
    whole = incidentsheet.write_session_sheets(core, "1", str(tmp_path / "out"))
    text = open(whole, encoding="utf-8").read()
    rooms = incidentsheet.session_rooms(core, "1")
    assert len(rooms) >= 2 and text.count('<section class="page">') == len(rooms)
    assert "别的考场" in text and text.count("<h1>考场情况记录单</h1>") == len(rooms)


def test_a_room_without_incidents_and_the_refusals(env, tmp_path):
    ctx, core = env.ctx, env.core
    room = session_room(ctx)
    page = open(incidentsheet.write_sheet(core, "1", room, str(tmp_path)), encoding="utf-8").read()
    assert "本场次本考场无情况记录" in page and "本场次本考场未补时" in page and "未开考" in page
    with pytest.raises(UserError, match="没有场次"):
        incidentsheet.write_sheet(core, "9", room, str(tmp_path))
    with pytest.raises(UserError, match="没有考场"):
        incidentsheet.write_sheet(core, "1", "nope", str(tmp_path))
    absent = next((r["code"] for r in ctx.manifest()["rooms"]
                   if not any(c["room"] == r["code"] and c["session"] == "2" for c in ctx.manifest()["candidates"])),
                  None)
    if absent is not None:
        with pytest.raises(UserError, match="没有考生"):
            incidentsheet.write_sheet(core, "2", absent, str(tmp_path))


def test_a_drafted_record_shows_its_recorder_as_the_page_does(env, tmp_path):
    ctx, core = env.ctx, env.core
    room = session_room(ctx)
    start = ctx.now() - datetime.timedelta(minutes=5)
    (draft,) = core.incidents.store_drafts([Draft("outage|{}|1|t".format(room), Kind.OUTAGE, Category.NETWORK, room,
                                                  "1", start, start + datetime.timedelta(minutes=2),
                                                  "考场 {} 与考点机失去连接".format(room))])
    assert draft["recorded_by"] == ACTOR
    page = open(incidentsheet.write_sheet(core, "1", room, str(tmp_path)), encoding="utf-8").read()
    assert "系统（" in page and "{}（".format(ACTOR) not in page  # 记录人 as 考中 → 考场情况 shows it
    assert recorder_label(ACTOR) == "系统" and recorder_label("admin") == "admin" and recorder_label(None) == ""
