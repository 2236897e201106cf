"""考试授权 (§3.3): online per session, .PTQ import, refusals, and steps 2/3 in either order."""

import base64
import datetime
import os

import pytest

from kd.core import model
from kd.core.authorization import AuthorizationService
from kd.core.loading import LoadingService, NotLoaded
from kd.core.registration import RegistrationService
from kd.errors import FormatError, PlatformError, UserError
from kd.formats.documents import build_session_authorization
from kd.formats.timeutil import parse_time
from kd.platform.signer import write_offline_files
from tests.support.env import make_env


@pytest.fixture
def env(tmp_path):
    e = make_env(tmp_path, rooms=3, sessions=2, candidates=5, room_kb=4)
    yield e
    e.close()


def loaded(env):
    LoadingService(env.ctx).load_online("admin")
    return env


def ptq(env, session_id):
    paths = write_offline_files(env.sim.data, os.path.join(env.root, "ptq"), ["authorization"], [session_id])
    return next(p for p in paths if p.endswith(".PTQ"))


def forged_ptq(env, name, **changes):
    """A .PTQ signed by the platform key, with fields changed from the real session's."""
    session = dict(env.sim.data.session("1"))
    start = parse_time(session["start"])
    fields = dict(site_code="11003", session_id="1", session_name=session["name"], start=start,
                  duration_min=session["duration_min"], valid_from=start - datetime.timedelta(days=1),
                  valid_until=start + datetime.timedelta(hours=3), issued_at=env.ctx.now())
    fields.update(changes)
    path = os.path.join(env.root, name)
    with open(path, "wb") as f:
        f.write(build_session_authorization(env.sim.data.signer, **fields))
    return path


def sessions_state(env):
    return env.ctx.stores.runtime.all(model.SESSIONS)


def test_online_one_session_then_all(env):
    svc = AuthorizationService(loaded(env).ctx)
    snap = svc.snapshot()
    assert [r["authorized"] for r in snap["sessions"]] == [False, False] and not snap["all_authorized"]
    snap = svc.authorize_online("2", "admin")
    assert [r["authorized"] for r in snap["sessions"]] == [False, True]
    doc = env.ctx.stores.runtime.get(model.SESSIONS, "2")
    assert doc["authorization_source"] == "online"
    assert base64.b64decode(doc["authorization"]).startswith(b"{")
    snap = svc.authorize_online(None, "admin")
    assert snap["all_authorized"]
    row = snap["sessions"][0]
    assert row["name"] == "第一场次" and row["duration_min"] == 90 and not row["verified"]
    with pytest.raises(UserError):
        svc.authorize_online("9", "admin")


def test_platform_down_then_ptq_import(env):
    svc = AuthorizationService(loaded(env).ctx)
    path = ptq(env, "1")
    env.sim.faults.set(refuse=503)
    with pytest.raises(PlatformError) as info:
        svc.authorize_online(None, "admin")
    assert ".PTQ" in info.value.remedy
    assert not any(r["authorized"] for r in svc.snapshot()["sessions"])
    snap = svc.import_ptq(path, "admin")
    assert [r["authorized"] for r in snap["sessions"]] == [True, False]
    assert env.ctx.stores.runtime.get(model.SESSIONS, "1")["authorization_source"] == "manual"


def test_bad_ptq_refused_and_nothing_changes(env):
    svc = AuthorizationService(loaded(env).ctx)
    before = sessions_state(env)
    wrong_site = forged_ptq(env, "site.PTQ", site_code="11004")
    other_start = forged_ptq(env, "start.PTQ", start=parse_time(env.sim.data.session("1")["start"])
                             + datetime.timedelta(hours=1))
    other_length = forged_ptq(env, "len.PTQ", duration_min=60)
    unknown = forged_ptq(env, "unknown.PTQ", session_id="7")
    expired = forged_ptq(env, "old.PTQ", valid_until=env.ctx.now() - datetime.timedelta(minutes=10),
                         valid_from=env.ctx.now() - datetime.timedelta(days=1))
    tampered = os.path.join(env.root, "tampered.PTQ")
    with open(ptq(env, "1"), "rb") as f:
        data = f.read().replace(b"\xe7\xac\xac", b"\xe7\xac\xad", 1)
    with open(tampered, "wb") as f:
        f.write(data)
    for path, words in [(wrong_site, "考点代码"), (other_start, "开考时间"), (other_length, "考试时长"),
                        (unknown, "不在"), (expired, "过期"), (tampered, ""),
                        (os.path.join(env.root, "missing.PTQ"), "无法读取")]:
        with pytest.raises(FormatError) as info:
            svc.import_ptq(path, "admin")
        assert words in info.value.cause
    assert sessions_state(env) == before


def test_before_loading_refused(env):
    svc = AuthorizationService(env.ctx)
    with pytest.raises(NotLoaded):
        svc.authorize_online(None, "admin")
    with pytest.raises(NotLoaded):
        svc.import_ptq(ptq(env, "1"), "admin")
    assert svc.snapshot()["sessions"] == []


def test_reload_with_moved_session_voids_its_authorization(env):
    svc = AuthorizationService(loaded(env).ctx)
    svc.authorize_online(None, "admin")
    env.sim.republish_at(90)  # sessions move: a new package
    env.sim.data.config["publish_time"] = (env.ctx.now() + datetime.timedelta(minutes=1)).replace(
        microsecond=0).isoformat()
    LoadingService(env.ctx).load_online("admin")
    assert not any(r["authorized"] for r in svc.snapshot()["sessions"])
    assert svc.authorize_online(None, "admin")["all_authorized"]


def register_all(env):
    reg = RegistrationService(env.ctx)
    for i, room in enumerate(env.ctx.stores.runtime.all(model.ROOMS)):
        reg.register(room["code"], room["reg_code"], "10.0.0.{}".format(i + 1))
    return reg.snapshot()


def test_register_then_authorize(env):
    loaded(env)
    assert register_all(env)["unregistered"] == 0
    assert AuthorizationService(env.ctx).authorize_online(None, "admin")["all_authorized"]
    assert RegistrationService(env.ctx).snapshot()["registered"] == 3


def test_authorize_then_register(env):
    loaded(env)
    assert AuthorizationService(env.ctx).authorize_online(None, "admin")["all_authorized"]
    assert register_all(env)["unregistered"] == 0
    assert AuthorizationService(env.ctx).snapshot()["all_authorized"]
