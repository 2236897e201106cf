"""Times and sessions as people read them (issue 14, texts): ``2026-12-01 17:35``, 第一场次.

``kd.core.labels.shown`` is the one formatter of every time a person reads; the printed
door sheet, the 授权验证 refusal, the exit rule's lines, the recovery and upload messages
never carry an ISO ``T..:..:..+08:00`` time or ``场次 1``. Over a real site (platform
simulator over HTTP, dongle emulator over ``socket://``).
"""

import datetime
import re

import pytest

from kd.core import labels, model
from kd.core.printing import door_sheet_html
from kd.core.verification import VerificationService
from kd.errors import FormatError, UserError
from kd.formats.timeutil import CST
from tests.integration.live_helpers import authorize, loaded_env, room_codes, sync

#: an ISO time as the records keep them: what no person should read
ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?([+-]\d{2}:\d{2}|Z)?")
#: a person's time
SHOWN = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")


def no_iso(text):
    assert not ISO.search(text), text
    assert not re.search(r"场次 ?\d", text), text


def test_shown_is_minutes_in_the_sites_zone():
    assert labels.shown("2026-12-01T17:35:00+08:00") == "2026-12-01 17:35"
    assert labels.shown("2026-12-01T17:35:59.123456+08:00") == "2026-12-01 17:35"
    assert labels.shown("2026-12-01T09:35:00Z") == "2026-12-01 17:35"  # UTC text, shown in CST
    assert labels.shown("2026-12-01T09:35:00+00:00") == "2026-12-01 17:35"
    utc = datetime.datetime(2026, 12, 1, 9, 35, tzinfo=datetime.timezone.utc)
    assert labels.shown(utc) == "2026-12-01 17:35"
    assert labels.shown(utc.astimezone(CST)) == "2026-12-01 17:35"
    assert labels.shown(datetime.datetime(2026, 12, 1, 17, 35)) == "2026-12-01 17:35"  # no zone: as it is
    assert labels.shown(None) == "" and labels.shown("") == ""
    assert labels.shown("未载入") == "未载入"  # not a time: unchanged


def test_sessions_are_named_as_the_tables_name_them():
    manifest = {"sessions": [{"id": "1", "name": "上午场"}, {"id": "2", "name": "第二场次"}]}
    assert labels.session_label("1", manifest) == "上午场"
    assert labels.session_label("2", {"2": "第二场次"}) == "第二场次"
    assert labels.session_label("2", {"2": {"id": "2", "name": "下午场"}}) == "下午场"
    assert labels.session_label("1", "上午场") == "上午场"
    assert [labels.session_label(s) for s in ("1", "2", "10", "11", "20", "23")] == [
        "第一场次", "第二场次", "第十场次", "第十一场次", "第二十场次", "第二十三场次"]
    assert labels.session_label("S1") == "场次 S1"
    assert labels.result_label("11003001", "1", manifest) == "考场 11003001 上午场"
    assert labels.session_names(manifest) == {"1": "上午场", "2": "第二场次"}
    assert labels.session_names(None) == {}


@pytest.fixture
def env(tmp_path):
    e = loaded_env(tmp_path, first_start_in=30)
    yield e
    e.close()


def test_the_printed_door_sheet_shows_people_times(env):
    code = room_codes(env)[0]
    detail = env.core.loading.room_detail(code)
    page = door_sheet_html(detail)
    no_iso(page)
    for session in detail["sessions"]:
        assert "<dd>{}</dd>".format(labels.shown(session["start"])) in page
        assert "开考 {}".format(labels.shown(session["start"])) in page
    path = env.core.loading.print_door_sheet(code)  # the file the browser opens
    with open(path, encoding="utf-8") as f:
        no_iso(f.read())


def test_the_verification_refusal_names_times_and_the_session(env):
    authorize(env)
    sync(env)
    names = labels.session_names(env.ctx.manifest())
    with pytest.raises(FormatError) as refused:  # session 2 starts hours later: not within its hour
        VerificationService(env.ctx).verify_online("2", "admin")
    text = refused.value.message
    no_iso(text)
    assert "机考锁校时不符合要求" in text and names["2"] in text and len(SHOWN.findall(text)) == 2
    start = next(s["start"] for s in env.ctx.manifest()["sessions"] if s["id"] == "2")
    assert labels.shown(start) in text


def test_core_messages_name_sessions_and_times_for_people(env):
    ctx = env.ctx
    manifest = ctx.manifest()
    room, sid = room_codes(env)[0], manifest["sessions"][0]["id"]
    name = manifest["sessions"][0]["name"]
    texts = []
    for call in (lambda: env.core.verification.start_permit(room, sid),  # not registered
                 lambda: env.core.recovery.detail(room, sid),  # not recovered
                 lambda: env.core.upload.upload(sid, "admin")):  # nothing recovered
        with pytest.raises(UserError) as refused:
            call()
        texts.append(refused.value.message)
    # the exit rule's lines: a room that started and was not recovered
    ctx.stores.runtime.put(model.ROOM_SESSIONS, model.rs_key(room, sid),
                           {"room": room, "session": sid, "state": "started",
                            "started_at": "2026-12-01T17:35:00+08:00"})
    lines = env.core.system.unreported()
    assert lines == ["考场 {} {}：考试已开始，数据未回收".format(room, name)]
    allowed, reason = env.core.system.exit_allowed()
    texts += lines + [reason]
    assert not allowed
    for text in texts:
        no_iso(text)
    assert "考场 {} {}尚未回收".format(room, name) in texts[1]
