"""数据回收 (§5.1) and 考后上报 (§5.2) against the platform simulator over HTTP."""

import base64
import hashlib
import os
import threading
from pathlib import Path

import pytest

from kd.core import model
from kd.core.labels import result_label
from kd.core.upload import BackupRequired
from kd.errors import FormatError, IntegrityError, PlatformUnreachable, ResultConflict, UserError
from kd.formats.documents import load_upload_receipt
from tests.support.env import SITE
from tests.support.fixtures import closed_after
from tests.support.results import deliver, pairs, result_package, results_env

env = closed_after(lambda tmp_path: results_env(tmp_path, rooms=3, sessions=2, candidates=5, room_kb=4))


def rs(env, room, session):
    return env.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(room, session))


def recover_all(env, **kw):
    for room, session in pairs(env.ctx):
        deliver(env.recovery, room, session, result_package(env.ctx, room, session, **kw))


def audit_actions(env):
    return [e["action"] for e in env.ctx.audit.entries()]


# -- 数据回收 ---------------------------------------------------------------------------

def test_receive_records_after_spooling_and_duplicate_is_a_no_op(env):
    room, session = pairs(env.ctx)[0]
    data = result_package(env.ctx, room, session, absent=1, uncollected=1)
    sha = hashlib.sha256(data).hexdigest()
    got = deliver(env.recovery, room, session, data)
    assert got["duplicate"] is False and got["sha256"] == sha and got["source"] == "lan"
    assert got["counts"]["candidates"] == 5 and got["counts"]["absent"] == 1 and got["counts"]["collected"] == 3
    assert env.ctx.spool.has(sha) and env.ctx.spool.verify(sha)
    stored = rs(env, room, session)["result"]
    assert stored["sha256"] == sha and stored["size"] == len(data)
    entries = len(list(env.ctx.audit.entries()))
    again = deliver(env.recovery, room, session, data, source="manual")
    assert again["duplicate"] is True and again["received_at"] == stored["received_at"]
    assert rs(env, room, session)["result"] == stored
    assert len(list(env.ctx.audit.entries())) == entries  # nothing changed, nothing audited


def test_conflicting_hash_refused_old_kept_and_shown(env):
    room, session = pairs(env.ctx)[1]
    first = result_package(env.ctx, room, session)
    deliver(env.recovery, room, session, first)
    kept = rs(env, room, session)["result"]
    other = result_package(env.ctx, room, session, salt=b"different answers")
    with pytest.raises(ResultConflict) as err:
        deliver(env.recovery, room, session, other, source="manual")
    assert room in str(err.value)
    assert rs(env, room, session)["result"] == kept
    with pytest.raises(ResultConflict):  # again: still refused, counted once more
        deliver(env.recovery, room, session, other, source="manual")
    conflicts = env.recovery.conflicts()
    assert len(conflicts) == 1 and conflicts[0]["times"] == 2
    assert conflicts[0]["kept_sha256"] == kept["sha256"]
    assert conflicts[0]["sha256"] == hashlib.sha256(other).hexdigest()
    assert env.ctx.spool.has(conflicts[0]["sha256"])  # kept for inspection
    assert audit_actions(env).count("results.conflicted") == 2
    snap = env.recovery.snapshot(session)
    row = next(r for r in snap["rows"] if r["room"] == room)
    assert row["situation"] == "已回收（有冲突）" and snap["conflicts"][0]["room"] == room
    # the same package as the kept one is still a plain duplicate
    assert deliver(env.recovery, room, session, first)["duplicate"] is True


@pytest.mark.parametrize("claim", ["room", "session"])
def test_package_for_another_room_or_session_refused_without_trace(env, claim):
    (room, session), (room2, _s) = pairs(env.ctx)[0], pairs(env.ctx)[1]
    other_session = next(s for r, s in pairs(env.ctx) if s != session)
    data = result_package(env.ctx, room2, session) if claim == "room" else result_package(env.ctx, room, other_session)
    sha = hashlib.sha256(data).hexdigest()
    before = env.ctx.stores.runtime.all(model.ROOM_SESSIONS)
    with pytest.raises(FormatError, match="不符"):
        deliver(env.recovery, room, session, data)
    assert not env.ctx.spool.has(sha)
    assert env.ctx.stores.runtime.all(model.ROOM_SESSIONS) == before
    assert env.ctx.stores.runtime.all(model.RESULT_CONFLICTS) == []
    assert "results.received" not in audit_actions(env)


def test_wrong_site_and_wrong_candidates_refused(env):
    room, session = pairs(env.ctx)[0]
    strangers = ["X1", "X2", "X3", "X4", "X5"]
    for data, words in [(result_package(env.ctx, room, session, site="99999"), "考点代码不符"),
                        (result_package(env.ctx, room, session, tickets=strangers), "考生名单不符")]:
        with pytest.raises(FormatError, match=words):
            deliver(env.recovery, room, session, data)
        assert not env.ctx.spool.has(hashlib.sha256(data).hexdigest())
    assert rs(env, room, session)["result"] is None


def test_bytes_not_matching_the_announced_hash_or_size(env):
    room, session = pairs(env.ctx)[0]
    data = result_package(env.ctx, room, session)
    with pytest.raises(IntegrityError):
        deliver(env.recovery, room, session, data, sha=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(IntegrityError):
        deliver(env.recovery, room, session, data, size=len(data) + 10)
    with pytest.raises(UserError, match="没有考生安排"):
        deliver(env.recovery, "11003999", session, data)
    assert env.ctx.spool.list() == [] and rs(env, room, session)["result"] is None


def test_refused_package_does_not_remove_a_recovered_file(env):
    """A package already recovered for its room, sent again under another room's name."""
    (room, session), (room2, _s) = pairs(env.ctx)[0], pairs(env.ctx)[1]
    data = result_package(env.ctx, room, session)
    deliver(env.recovery, room, session, data)
    with pytest.raises(FormatError):
        deliver(env.recovery, room2, session, data)
    assert env.ctx.spool.has(hashlib.sha256(data).hexdigest())


def test_manual_import(env, tmp_path):
    room, session = pairs(env.ctx)[-1]
    path = tmp_path / "export.zip"
    path.write_bytes(result_package(env.ctx, room, session))
    got = env.recovery.import_package(str(path), "admin")
    assert (got["room"], got["session"], got["source"]) == (room, session, "manual")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all" * 20)
    with pytest.raises(FormatError):
        env.recovery.import_package(str(bad), "admin")
    with pytest.raises(UserError, match="无法读取"):
        env.recovery.import_package(str(tmp_path / "missing.zip"), "admin")


def test_recovery_status_enqueued_once_when_all_recovered(env):
    every = pairs(env.ctx)
    for room, session in every[:-1]:
        deliver(env.recovery, room, session, result_package(env.ctx, room, session))
    assert [i for i in env.outbox.items() if i["kind"] == "recovery_status"] == []
    assert env.recovery.snapshot()["all_recovered"] is False
    last = every[-1]
    deliver(env.recovery, last[0], last[1], result_package(env.ctx, *last))
    deliver(env.recovery, last[0], last[1], result_package(env.ctx, *last))  # duplicate: no second report
    reports = [i for i in env.outbox.items() if i["kind"] == "recovery_status"]
    assert len(reports) == 1
    sessions = reports[0]["data"]["sessions"]
    assert {s["session_id"]: (s["rooms"], s["recovered"]) for s in sessions} == {"1": (3, 3), "2": (3, 3)}
    assert env.ctx.stores.runtime.get(model.CHECKS, model.RECOVERY)["outbox_id"] == reports[0]["id"]
    assert env.outbox.deliver_once() >= 1
    got = [r for r in env.sim.received()["reports"] if r["report"]["kind"] == "recovery_status"]
    assert len(got) == 1
    snap = env.recovery.snapshot()
    assert snap["all_recovered"] and snap["recovery_report"]["state"] == "sent"


def test_snapshot_columns_subjects_and_totals(env):
    sessions = env.ctx.manifest()["sessions"]
    two = next(s for s in sessions if len(s["subjects"]) == 2)
    one = next(s for s in sessions if len(s["subjects"]) == 1)
    rooms = [r for r, s in pairs(env.ctx) if s == two["id"]]
    deliver(env.recovery, rooms[0], two["id"], result_package(env.ctx, rooms[0], two["id"], absent=2, uncollected=1))
    deliver(env.recovery, rooms[1], two["id"], result_package(env.ctx, rooms[1], two["id"], absent=0))
    snap = env.recovery.snapshot(two["id"])
    assert [c[1] for c in snap["columns"]] == ["考场编号", "场次", "考生人数", "参考人数", "缺考人数", "回收人数",
                                               "未回收人数", "考场情况", "状态上报"]
    assert snap["subject_columns"] == ["科目1", "科目2"]
    rows = {r["room"]: r for r in snap["rows"]}
    assert set(rows) == set(rooms)
    a, b, c = rows[rooms[0]], rows[rooms[1]], rows[rooms[2]]
    assert (a["candidates"], a["present"], a["absent"], a["collected"], a["not_collected"]) == (5, 3, 2, 2, 1)
    assert (b["present"], b["absent"], b["collected"], b["not_collected"]) == (5, 0, 5, 0)
    assert (c["recovered"], c["situation"], c["report"], c["not_collected"]) == (False, "未回收", "无数据", 5)
    assert a["report"] == "未上报" and a["situation"] == "已回收"
    for row in (a, b, c):
        assert [s["label"] for s in row["subjects"]] == ["科目1", "科目2"]
        assert sum(s["candidates"] for s in row["subjects"]) == row["candidates"]
        assert sum(s["collected"] for s in row["subjects"]) == row["collected"]
    t = snap["totals"]
    assert t["label"] == "人数统计"
    assert (t["rooms"], t["recovered"], t["not_recovered"]) == (3, 2, 1)
    assert (t["candidates"], t["present"], t["absent"], t["collected"], t["not_collected"]) == (15, 8, 2, 7, 6)
    assert [s["collected"] for s in t["subjects"]] == [
        sum(r["subjects"][i]["collected"] for r in snap["rows"]) for i in range(2)]
    single = env.recovery.snapshot(one["id"])
    assert single["subject_columns"] == [] and all(r["subjects"] == [] for r in single["rows"])
    everything = env.recovery.snapshot(None)
    assert len(everything["rows"]) == len(pairs(env.ctx)) and everything["totals"]["recovered"] == 2
    assert [s["id"] for s in everything["sessions"]] == [s["id"] for s in sessions]
    detail = env.recovery.detail(rooms[0], two["id"])
    assert [d["status"] for d in detail["candidates"]].count("缺考") == 2
    assert sum(1 for d in detail["candidates"] if d["collected"]) == 2
    with pytest.raises(UserError):
        env.recovery.snapshot("nope")


def test_concurrent_receives_of_every_room(env):
    errors = []

    def one(room, session):
        try:
            deliver(env.recovery, room, session, result_package(env.ctx, room, session))
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)
    threads = [threading.Thread(target=one, args=p) for p in pairs(env.ctx)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert env.recovery.all_recovered()
    assert len([i for i in env.outbox.items() if i["kind"] == "recovery_status"]) == 1


# -- 考后上报 ---------------------------------------------------------------------------

def test_backup_and_upload_refusals_before_anything(env, tmp_path, external_dir):
    with pytest.raises(UserError, match="尚无已回收"):
        env.upload.backup_external(external_dir, "admin")
    with pytest.raises(UserError, match="尚无已回收"):
        env.upload.upload(None, "admin")
    room, session = pairs(env.ctx)[0]
    deliver(env.recovery, room, session, result_package(env.ctx, room, session))
    with pytest.raises(BackupRequired):
        env.upload.upload(None, "admin")
    with pytest.raises(UserError, match="不存在"):
        env.upload.backup_external(str(tmp_path / "no-usb"), "admin")
    a_file = tmp_path / "file.txt"
    a_file.write_bytes(b"x")
    with pytest.raises(UserError, match="不是文件夹"):
        env.upload.backup_external(str(a_file), "admin")
    assert env.ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL) is None
    assert env.sim.received()["uploads"] == []


@pytest.mark.skipif(os.name == "nt" or (hasattr(os, "geteuid") and os.geteuid() == 0),
                    reason="permissions do not stop root")
def test_backup_to_a_read_only_folder_refused(env, external_dir):
    room, session = pairs(env.ctx)[0]
    deliver(env.recovery, room, session, result_package(env.ctx, room, session))
    usb = Path(external_dir) / "ro"
    usb.mkdir()
    usb.chmod(0o500)
    try:
        with pytest.raises(UserError, match="无法写入外部存储"):
            env.upload.backup_external(str(usb), "admin")
    finally:
        usb.chmod(0o700)
    assert env.ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL) is None


def test_backup_copies_verifies_and_a_damaged_copy_is_caught(env, external_dir):
    recover_all(env)
    usb = external_dir
    done = env.upload.backup_external(usb, "admin")
    assert len(done["files"]) == len(pairs(env.ctx))
    names = sorted(os.listdir(done["folder"]))
    assert "manifest.json" in names and len(names) == len(pairs(env.ctx)) + 1
    for f in done["files"]:
        with open(os.path.join(done["folder"], f["name"]), "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == f["sha256"]
    assert env.upload.snapshot()["backup_current"] is True
    env.upload.verify_external("admin")
    victim = os.path.join(done["folder"], done["files"][0]["name"])
    blob = bytearray(open(victim, "rb").read())
    blob[len(blob) // 2] ^= 0xFF
    with open(victim, "wb") as fh:
        fh.write(bytes(blob))
    with pytest.raises(UserError, match="校验失败"):
        env.upload.verify_external("admin")
    assert env.ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL)["valid"] is False
    with pytest.raises(BackupRequired):
        env.upload.upload(None, "admin")
    assert env.upload.backup_external(usb, "admin")["folder"] != done["folder"]
    assert env.upload.snapshot()["can_upload"] is True


def test_a_damaged_spool_file_is_named_and_the_other_results_backed_up(env, external_dir):
    """Bit rot in the spool is not the USB stick's fault: the rest is backed up (more in test_backup_damage.py)."""
    recover_all(env)
    room, session = pairs(env.ctx)[0]
    sha = rs(env, room, session)["result"]["sha256"]
    path = env.ctx.spool.path(sha)
    os.chmod(path, 0o600)
    blob = bytearray(open(path, "rb").read())
    blob[-30] ^= 0x01
    with open(path, "wb") as fh:
        fh.write(bytes(blob))
    done = env.upload.backup_external(external_dir, "admin")
    assert [(m["room"], m["session"]) for m in done["missing"]] == [(room, session)]
    assert len(done["files"]) == len(pairs(env.ctx)) - 1 and done["complete"] is False
    assert result_label(room, session) in done["warnings"][0]
    assert env.ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL)["valid"] is True
    with pytest.raises(BackupRequired, match="已损坏"):
        env.upload.upload(None, "admin")


def test_result_recovered_after_the_backup_needs_a_new_backup(env, external_dir):
    every = pairs(env.ctx)
    for room, session in every[:-1]:
        deliver(env.recovery, room, session, result_package(env.ctx, room, session))
    usb = external_dir
    env.upload.backup_external(usb, "admin")
    deliver(env.recovery, every[-1][0], every[-1][1], result_package(env.ctx, *every[-1]))
    with pytest.raises(BackupRequired, match=every[-1][0]):
        env.upload.upload(None, "admin")
    assert env.upload.snapshot()["not_backed_up"] == [{"room": every[-1][0], "session": every[-1][1]}]
    env.upload.backup_external(usb, "admin")
    last_session = every[-1][1]
    uploaded = env.upload.upload(last_session, "admin")["uploaded"]
    assert len(uploaded) == len([p for p in every if p[1] == last_session])


def test_upload_cut_resumes_with_verified_receipts(env, external_dir):
    recover_all(env, answer_kb=16)
    usb = external_dir
    env.upload.backup_external(usb, "admin")
    first_session = pairs(env.ctx)[0][1]
    snap = env.upload.snapshot()
    assert [r["status"] for r in snap["sessions"]] == ["全部未上报", "全部未上报"]
    size = rs(env, *pairs(env.ctx)[0])["result"]["size"]
    env.sim.faults.set(drop_after=size // 3, drop_count=2)  # the client retries once, then gives up
    seen = []
    with pytest.raises(PlatformUnreachable):
        env.upload.upload(first_session, "admin", progress=seen.append)
    assert all(rs(env, r, s)["upload"] is None for r, s in pairs(env.ctx))
    partial = env.sim.received()["uploads"]
    assert len(partial) == 1 and partial[0]["state"] == "open" and size // 3 <= partial[0]["offset"] < size
    assert "results.upload_interrupted" in audit_actions(env)
    assert env.upload.snapshot()["sessions"][0]["status"] == "全部未上报"
    env.sim.faults.clear()
    result = env.upload.upload(first_session, "admin", progress=seen.append)  # 续报
    assert len(result["uploaded"]) == 3 and result["already"] == 0 and result["warnings"] == []
    resumed = [r for r in env.sim.requests() if r["method"] == "PUT" and partial[0]["upload_id"] in r["path"]]
    assert any(r.get("offset") == partial[0]["offset"] for r in resumed), resumed
    assert seen and all(0 < p["sent"] <= p["size"] for p in seen)
    for room, session in pairs(env.ctx):
        if session != first_session:
            assert rs(env, room, session)["upload"] is None
            continue
        up = rs(env, room, session)["upload"]
        receipt = load_upload_receipt(base64.b64decode(up["receipt"]), env.trusted, SITE, session_id=session,
                                      room_code=room, sha256=rs(env, room, session)["result"]["sha256"],
                                      size=rs(env, room, session)["result"]["size"])
        assert receipt.file_id == up["file_id"]
    committed = [u for u in env.sim.received()["uploads"] if u["state"] == "committed"]
    assert len(committed) == 3
    rows = env.upload.snapshot()["sessions"]
    assert rows[0]["status"] == "全部已上报" and rows[0]["uploaded"] == 3 and rows[1]["status"] == "全部未上报"
    assert rows[0]["size"] == sum(rs(env, r, first_session)["result"]["size"] for r, s in pairs(env.ctx)
                                  if s == first_session)
    statuses = [i for i in env.outbox.items() if i["kind"] == "upload_status"]
    assert len(statuses) == 1 and statuses[0]["data"]["uploaded"] == 3
    assert len(statuses[0]["data"]["receipts"]) == 3
    assert env.recovery.snapshot(first_session)["totals"]["reported"] == 3
    again = env.upload.upload(first_session, "admin")
    assert again["uploaded"] == [] and again["already"] == 3


def test_upload_warns_of_rooms_not_recovered(env, external_dir):
    room, session = pairs(env.ctx)[0]
    deliver(env.recovery, room, session, result_package(env.ctx, room, session))
    usb = external_dir
    env.upload.backup_external(usb, "admin")
    result = env.upload.upload(session, "admin")
    assert len(result["uploaded"]) == 1
    assert len(result["not_recovered"]) == 2 and "尚未回收" in result["warnings"][0]
    assert env.upload.snapshot()["sessions"][0]["status"] == "2个未上报"


def test_upload_refused_when_platform_unreachable_keeps_nothing_half_done(env, external_dir):
    room, session = pairs(env.ctx)[0]
    deliver(env.recovery, room, session, result_package(env.ctx, room, session))
    usb = external_dir
    env.upload.backup_external(usb, "admin")
    env.sim.faults.set(refuse="close")
    with pytest.raises(PlatformUnreachable):
        env.upload.upload(None, "admin")
    assert rs(env, room, session)["upload"] is None
    assert [i for i in env.outbox.items() if i["kind"] == "upload_status"] == []


def test_second_upload_while_one_runs_is_refused(env, external_dir):
    room, session = pairs(env.ctx)[0]
    deliver(env.recovery, room, session, result_package(env.ctx, room, session, answer_kb=16))
    usb = external_dir
    env.upload.backup_external(usb, "admin")
    env.client.chunk_size = 32 * 1024  # progress is called after each chunk
    inside, release = threading.Event(), threading.Event()
    outcome = {}

    def hold(_step):
        inside.set()
        release.wait(30)

    def first():
        outcome["result"] = env.upload.upload(None, "admin", progress=hold)
    t = threading.Thread(target=first)
    t.start()
    try:
        assert inside.wait(30)
        with pytest.raises(UserError, match="正在备份或上报"):
            env.upload.upload(None, "admin")
        with pytest.raises(UserError, match="正在备份或上报"):
            env.upload.backup_external(usb, "admin")
    finally:
        release.set()
        t.join(30)
    assert len(outcome["result"]["uploaded"]) == 1


# -- 第一步 says beforehand what it would leave out ---------------------------------------------

def damage_spool_file(env, room, session):
    """Flip one byte of a recovered result's spool file (same size: only its hash tells)."""
    path = env.ctx.spool.path(rs(env, room, session)["result"]["sha256"])
    os.chmod(path, 0o600)
    blob = bytearray(open(path, "rb").read())
    blob[-30] ^= 0x01
    with open(path, "wb") as fh:
        fh.write(bytes(blob))


def test_backup_preview_names_rooms_not_recovered_and_damaged_files(env, external_dir):
    every = pairs(env.ctx)
    with pytest.raises(UserError, match="尚无已回收"):
        env.upload.backup_preview()
    for room, session in every[:-2]:
        deliver(env.recovery, room, session, result_package(env.ctx, room, session))
    damage_spool_file(env, *every[0])
    audit_before = len(audit_actions(env))

    preview = env.upload.backup_preview()
    assert (preview["recovered"], preview["expected"], preview["complete"]) == (len(every) - 2, len(every), False)
    assert [(p["room"], p["session"]) for p in preview["not_recovered"]] == every[-2:]
    assert [(d["room"], d["session"], d["problem"]) for d in preview["damaged"]] == [
        every[0] + ("SHA-256 不符（文件内容已损坏）",)]
    text = "\n".join(preview["lines"])
    for room, session in every[-2:] + every[:1]:
        assert result_label(room, session) in text
    assert "尚未回收（2个）" in text and "将备份其余 {} 个结果包".format(len(every) - 3) in text
    # the preview changed nothing: no backup recorded, nothing written to the stick, no audit line
    assert env.ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL) is None
    assert os.listdir(external_dir) == [] and len(audit_actions(env)) == audit_before
    # and it says what the backup then leaves out
    done = env.upload.backup_external(external_dir, "admin")
    assert [(m["room"], m["session"]) for m in done["missing"]] == every[:1]
    assert len(done["files"]) == len(every) - 3


def test_backup_preview_of_a_complete_set(env):
    recover_all(env)
    preview = env.upload.backup_preview()
    assert preview["complete"] is True and preview["lines"] == []
    assert preview["not_recovered"] == preview["damaged"] == [] and preview["recovered"] == len(pairs(env.ctx))


def test_recovery_view_carries_the_states_and_the_lifecycle(env):
    from kd.core import lifecycle
    from kd.core.states import ReportState, RoomSessionState, Situation

    (room, session), (room2, _), *_ = pairs(env.ctx)
    deliver(env.recovery, room, session, result_package(env.ctx, room, session))
    deliver(env.recovery, room2, session, result_package(env.ctx, room2, session))
    with pytest.raises(ResultConflict):
        deliver(env.recovery, room2, session, result_package(env.ctx, room2, session, salt=b"other"))
    view = env.recovery.view(session)
    assert view.as_dict() == env.recovery.snapshot(session)
    states = {r.room: (r.situation, r.report) for r in view.rows}
    assert states[room] == (Situation.RECOVERED, ReportState.NOT_REPORTED)
    assert states[room2] == (Situation.CONFLICT, ReportState.NOT_REPORTED)
    assert {s for r, (s, _) in states.items() if r not in (room, room2)} == {Situation.NOT_RECOVERED}
    # a result received by hand for a room that never reported its start: recovered, not started
    doc = rs(env, room, session)
    assert lifecycle.room_session_state(doc) == RoomSessionState.RECOVERED and not lifecycle.started(doc)
    assert "permitted_at" not in doc and doc["result"]["source"] == "lan"
