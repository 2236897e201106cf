"""授权验证 (§4.2) and the start permit, with the platform simulator and the dongle emulator."""

import datetime
import os

import pytest

from kd.core import model
from kd.core.loading import LoadingService
from kd.core.verification import VerificationService
from kd.errors import FormatError, LockError, PermitRefused, PlatformError, UserError
from kd.platform.signer import write_offline_files
from tests.integration.live_helpers import authorize, loaded_env, register, room_codes, session_ids, sync


@pytest.fixture
def env(tmp_path):
    # session "1" starts in 30 minutes: a sync now is within the hour before it
    e = loaded_env(tmp_path, first_start_in=30)
    yield e
    e.close()


def session_doc(env, sid="1"):
    return env.ctx.stores.runtime.get(model.SESSIONS, sid)


def kdv(env, sid="1"):
    out = os.path.join(env.root, "offline")
    paths = write_offline_files(env.sim.data, out, ["verification"], sessions=[sid])
    return next(p for p in paths if p.endswith(".KDV"))


def test_verify_online_then_permit(env):
    codes = room_codes(env)
    register(env, codes[:2])
    authorize(env)
    service = VerificationService(env.ctx)
    with pytest.raises(PermitRefused) as refused:
        service.start_permit(codes[0], "1")
    assert "授权验证" in refused.value.cause
    sync(env)
    row = service.verify_online("1", "admin")
    assert row["verified"] and row["verification_source"] == "online"
    doc = session_doc(env)
    assert doc["verified_at"] and doc["verification"] and abs(doc["lock_clock_skew_s"]) < 120
    assert doc["lock_synced_at"]
    permit = service.start_permit(codes[0], "1")
    assert permit["room"] == codes[0] and permit["session"] == "1" and permit["verified_at"] == doc["verified_at"]
    # not for an unregistered room, an unknown room or another (unverified) session
    with pytest.raises(PermitRefused, match="未在考点注册"):
        service.start_permit(codes[2], "1")
    with pytest.raises(PermitRefused):
        service.start_permit("99999999", "1")
    with pytest.raises(PermitRefused, match="授权验证"):
        service.start_permit(codes[0], "2")
    snap = service.snapshot()
    assert [r["verified"] for r in snap["sessions"]] == [True, False] and snap["current"] == "1"
    assert any(e["action"] == "session.verified" for e in env.ctx.audit.entries())


def test_unauthorized_session_is_refused_first(env):
    sync(env)
    service = VerificationService(env.ctx)
    with pytest.raises(UserError, match="考试授权"):
        service.verify_online("1", "admin")
    with pytest.raises(UserError, match="没有场次"):
        service.verify_online("nope", "admin")
    authorize(env, ["1"])
    register(env, room_codes(env)[:1])
    with pytest.raises(PermitRefused, match="授权验证"):
        service.start_permit(room_codes(env)[0], "1")
    assert session_doc(env)["verified_at"] is None


def test_no_sync_ticket_is_refused(env):
    authorize(env)
    assert not env.driver.get_ticket()  # a fresh dongle was never synced
    with pytest.raises(LockError, match="校时"):
        VerificationService(env.ctx).verify_online("1", "admin")
    assert session_doc(env)["verified_at"] is None


def test_sync_outside_the_hour_before_the_start_is_refused(env):
    authorize(env)
    sync(env)
    # session 2 starts hours later: a sync now is not within its hour
    with pytest.raises(FormatError, match="校时"):
        VerificationService(env.ctx).verify_online("2", "admin")
    assert session_doc(env, "2")["verified_at"] is None
    # a narrower window refuses session 1 too (its start is 30 minutes away)
    strict = VerificationService(env.ctx, sync_window=datetime.timedelta(minutes=20))
    with pytest.raises(FormatError, match="20 分钟"):
        strict.verify_online("1", "admin")


def test_dongle_clock_drift_is_refused(env):
    authorize(env)
    sync(env)
    env.emulator.dongle.set_clock_offset(150)  # 2.5 minutes fast
    service = VerificationService(env.ctx)
    with pytest.raises(LockError, match="相差") as e:
        service.verify_online("1", "admin")
    assert "偏快" in e.value.cause
    env.emulator.dongle.set_clock_offset(-150)
    with pytest.raises(LockError, match="偏慢"):
        service.verify_online("1", "admin")
    assert session_doc(env)["verified_at"] is None
    env.emulator.dongle.set_clock_offset(30)  # within 2 minutes
    assert service.verify_online("1", "admin")["verified"]


def test_wrong_dongle_is_refused(env):
    authorize(env)
    sync(env)
    manifest = env.ctx.manifest()
    manifest["lock"]["id"] = "L999999"
    env.ctx.stores.exam.put(model.PACKAGE, model.MANIFEST, manifest)
    with pytest.raises(LockError):
        VerificationService(env.ctx).verify_online("1", "admin")
    assert session_doc(env)["verified_at"] is None


def test_import_kdv_offline_and_tampered(env):
    authorize(env)
    sync(env)
    path = kdv(env)
    env.sim.faults.set(refuse="close")
    service = VerificationService(env.ctx)
    with pytest.raises(PlatformError) as unreachable:
        service.verify_online("1", "admin")
    assert ".KDV" in unreachable.value.remedy
    # the file of another session is refused
    with pytest.raises(FormatError):
        service.import_verification(kdv(env, "2"), "1", "admin")
    # a tampered file is refused
    data = open(path, "rb").read()
    bad = os.path.join(env.root, "bad.KDV")
    with open(bad, "wb") as f:
        middle = len(data) // 2
        f.write(data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1:])
    with pytest.raises(FormatError):
        service.import_verification(bad, "1", "admin")
    with pytest.raises(UserError, match="无法读取"):
        service.import_verification(os.path.join(env.root, "missing.KDV"), "1", "admin")
    assert session_doc(env)["verified_at"] is None
    row = service.import_verification(path, "1", "admin")
    assert row["verified"] and row["verification_source"] == "manual"


def test_sync_state_reports_the_ticket_and_the_hour_per_session(env):
    svc = VerificationService(env.ctx)
    sessions = LoadingService(env.ctx).sessions()
    before = svc.sync_state(sessions)
    assert before["attached"] and before["ticket"] is None and "尚未校时" in before["problem"]
    sync(env)
    after = svc.sync_state(sessions)
    assert after["problem"] == "" and after["ticket"]["lock_id"] == after["expected"] == after["lock_id"]
    first = session_ids(env)[0]
    assert after["for_session"][first] is True  # the demo's first session starts within the hour
