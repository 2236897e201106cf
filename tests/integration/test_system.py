"""System management (§6) with the real store, the platform simulator and the dongle emulator.

Backup → restore round trip into a fresh data folder; tampered backups refused with
nothing replaced; a failure and a crash during the swap; 系统初始化 / exit refused in a
formal exam with unreported data; 模考转正考.
"""

import base64
import datetime
import hashlib
import io
import json
import os
import shutil
import zipfile

import pytest

from kd.app import open_context
from kd.core import model
from kd.core.accounts import LoginFailed, PasswordChangeRequired, default_account
from kd.core.backup import result_label
from kd.core.loading import LoadingService
from kd.core.system import BackupError, RestoreError, SystemRefused, SystemService, finish_interrupted_restore
from kd.errors import FormatError, LockError, ResultConflict, StoreError
from kd.events import EventHub
from kd.formats import backup as bak
from kd.formats.signing import canonical_json
from kd.lock.coreport import DonglePort
from kd.lock.driver import LockDriver
from kd.lock.emulator import LockEmulator
from kd.site import open_site
from kd.store import datafolder as folder_mod
from kd.store.database import open_stores
from tests.support.env import SITE, make_env
from tests.support.external import external_folder, remove_external
from tests.support.results import result_package

ACTOR = "tester"  # not an account: passes require_changed


@pytest.fixture
def env(tmp_path):
    e = make_env(tmp_path, rooms=3, sessions=2, candidates=5, room_kb=4)
    LoadingService(e.ctx).load_online(ACTOR)
    yield e
    e.close()


@pytest.fixture
def mock_env(tmp_path):
    e = make_env(tmp_path, rooms=3, sessions=2, candidates=5, room_kb=4, mode=model.MOCK)
    LoadingService(e.ctx).load_online(ACTOR)
    yield e
    e.close()


def pairs(ctx):
    return sorted((d["room"], d["session"]) for d in ctx.stores.runtime.all(model.ROOM_SESSIONS))


def put_result(ctx, room, session, data, *, uploaded=False):
    """A recovered result as the results helper stores it: spool file first, then the record."""
    sha = hashlib.sha256(data).hexdigest()
    ctx.spool.put(io.BytesIO(data), sha, len(data))
    key = model.rs_key(room, session)
    doc = ctx.stores.runtime.get(model.ROOM_SESSIONS, key) or {"room": room, "session": session}
    doc.update(started_at="2026-06-13T09:00:00+08:00", ended_at="2026-06-13T10:30:00+08:00",
               result={"sha256": sha, "size": len(data), "received_at": "2026-06-13T10:35:00+08:00",
                       "source": "manual", "counts": {}},
               upload={"receipt": "cmVjZWlwdA==", "uploaded_at": "2026-06-13T11:00:00+08:00"} if uploaded else None)
    ctx.stores.runtime.put(model.ROOM_SESSIONS, key, doc)
    return sha


def tree_digest(data_dir):
    """SHA-256 of every file that a restore may replace (db, spool, rooms, audit.log)."""
    out = {}
    for item in folder_mod.ITEMS:
        base = os.path.join(data_dir, item)
        if os.path.isfile(base):
            out[item] = hashlib.sha256(open(base, "rb").read()).hexdigest()
        for folder, _dirs, files in os.walk(base):
            for name in files:
                full = os.path.join(folder, name)
                out[os.path.relpath(full, data_dir)] = hashlib.sha256(open(full, "rb").read()).hexdigest()
    return out


def room_files(data_dir):
    folder = os.path.join(data_dir, "rooms")
    return {n: open(os.path.join(folder, n), "rb").read() for n in os.listdir(folder)}


def no_leftovers(data_dir):
    names = set(os.listdir(data_dir))
    return not names & {folder_mod.TX_DIR, folder_mod.JOURNAL, ".restore-staging", ".restore-old"}


def dump(ctx):
    return {name: {t: sorted(map(canonical_json, db.all(t))) for t in db.tables()}
            for name, db in zip(("settings", "exam", "runtime"), ctx.stores)}


def rewrite(src, dst, changes):
    """Copy a zip, replacing the named members' bytes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, changes.get(info.filename, zin.read(info.filename)))
    return dst


def read_zip(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


@pytest.fixture
def other_dongle(tmp_path):
    """A second, genuine-looking dongle (another identity) to forge signatures with."""
    emu = LockEmulator(str(tmp_path / "otherlock"))
    url = emu.start_tcp()
    driver = LockDriver(url, EventHub(), keepalive=None).start(wait=True)
    yield DonglePort(driver)
    driver.stop()
    emu.stop()


# -- backup and restore ----------------------------------------------------------------------
def test_backup_restore_round_trip_on_a_fresh_data_dir(env, tmp_path):
    ctx = env.ctx
    room, session = pairs(ctx)[0]
    sha = put_result(ctx, room, session, b"result package bytes " * 100)
    svc = SystemService(ctx)
    audit_before = list(ctx.audit.entries())  # the backup holds the log as it was when it started
    path = svc.backup(str(tmp_path / "usb"), "考前备份", ACTOR)
    assert os.path.basename(path).startswith("系统备份({})_".format(SITE)) and path.endswith(".bak")
    assert not [n for n in os.listdir(tmp_path / "usb") if n.endswith(".part")]
    members = set(read_zip(path))
    assert {"db/settings.json", "db/exam.json", "db/runtime.json", "audit.log", "manifest.json",
            "signature.json", "spool/{}.dat".format(sha)} <= members
    assert sum(n.startswith("rooms/") for n in members) == 3
    manifest = json.loads(read_zip(path)["manifest.json"])
    assert manifest["site_code"] == SITE and manifest["note"] == "考前备份"
    assert manifest["lock"]["id"] == ctx.dongle.lock_id()
    expected = dump(ctx)
    rooms_before = room_files(ctx.data_dir)

    fresh = str(tmp_path / "fresh")
    ctx2 = open_context(fresh, dongle=DonglePort(env.driver), trusted=env.trusted)
    try:
        out = SystemService(ctx2).restore(path, ACTOR)
        assert out["restart_required"] is True and out["site_code"] == SITE and out["note"] == "考前备份"
        assert ctx2.site_code() == SITE  # the context was switched to the restored files
    finally:
        ctx2.stores.close()
    assert no_leftovers(fresh)

    # "restart": a new context over the restored folder holds exactly the backed-up state
    assert not finish_interrupted_restore(fresh)
    ctx3 = open_context(fresh)
    try:
        assert dump(ctx3) == expected
        assert ctx3.spool.list() == [sha] and ctx3.spool.verify(sha)
        assert room_files(fresh) == rooms_before
        entries = list(ctx3.audit.entries())
        assert ctx3.audit.verify() is None
        assert entries[:len(audit_before)] == audit_before and entries[-1]["action"] == "system.restored"
    finally:
        ctx3.stores.close()


def test_backup_refusals(env, tmp_path):
    svc = SystemService(env.ctx)
    with pytest.raises(PasswordChangeRequired):
        svc.backup(str(tmp_path / "usb"), "", "admin")  # the default admin has not changed 888 yet
    blocker = tmp_path / "afile"
    blocker.write_bytes(b"x")
    with pytest.raises(BackupError):
        svc.backup(str(blocker), "", ACTOR)
    with pytest.raises(SystemRefused):
        svc.backup(str(tmp_path / "usb"), "x" * 201, ACTOR)
    env.ctx.stores.exam.clear()
    with pytest.raises(SystemRefused) as e:
        svc.backup(str(tmp_path / "usb"), "", ACTOR)
    assert "尚未导入考务" in str(e.value)
    assert not os.path.exists(tmp_path / "usb") or not os.listdir(tmp_path / "usb")


def _forge(path, out, other, kind):
    """A tampered copy of the backup ``path`` of the given ``kind``."""
    z = read_zip(path)
    manifest = json.loads(z["manifest.json"])
    room_member = next(n for n in z if n.startswith("rooms/"))
    if kind == "flip_member_byte":  # raw bit flip inside a member's data in the file
        raw = bytearray(open(path, "rb").read())
        at = raw.find(z[next(n for n in z if n.startswith("spool/"))])  # stored, not compressed
        assert at > 0
        raw[at + 10] ^= 0x01
        open(out, "wb").write(bytes(raw))
        return out
    if kind == "replace_member":  # consistent zip, member changed, manifest untouched
        return rewrite(path, out, {room_member: z[room_member][:-1] + b"!"})
    if kind == "edit_manifest":  # the note changed, signature record untouched
        manifest["note"] = "改过的备注"
        return rewrite(path, out, {"manifest.json": canonical_json(manifest).encode()})
    if kind == "extra_member":
        with zipfile.ZipFile(rewrite(path, out, {}), "a") as zf:
            zf.writestr("rooms/evil.dat", b"evil")
        return out
    # the attacker changes a member and recomputes the manifest and its hash
    data = z[room_member][:-1] + b"!"
    for m in manifest["members"]:
        if m["name"] == room_member:
            m["sha256"] = hashlib.sha256(data).hexdigest()
    changes = {room_member: data}
    if kind in ("other_dongle_same_key_claim", "other_dongle_own_key", "other_dongle_everything"):
        signer = other
    else:  # "rehash_only": no dongle at all, the old signature kept
        signer = None
    if kind in ("other_dongle_own_key", "other_dongle_everything"):
        key = base64.b64encode(signer.driver.info.public_key).decode()
        manifest["lock"] = {"id": signer.lock_id(), "public_key": key}
    if kind == "other_dongle_everything":  # also rewrite the package inside to name the forger's dongle
        exam = json.loads(z["db/exam.json"])
        for doc in exam["package"].values():
            if doc.get("_key") == "manifest":
                doc["lock"] = manifest["lock"]
        body = json.dumps(exam, ensure_ascii=False, separators=(",", ":")).encode()
        changes["db/exam.json"] = body
        for m in manifest["members"]:
            if m["name"] == "db/exam.json":
                m.update(size=len(body), sha256=hashlib.sha256(body).hexdigest())
    raw = canonical_json(manifest).encode()
    digest = hashlib.sha256(raw).digest()
    changes["manifest.json"] = raw
    if signer is None:
        sig = json.loads(z["signature.json"])
        sig["manifest_sha256"] = digest.hex()
        changes["signature.json"] = canonical_json(sig).encode()
    else:
        changes["signature.json"] = bak.seal_bytes(digest, bak.Seal(*signer.sign(digest)))
    return rewrite(path, out, changes)


@pytest.mark.parametrize("kind,why", [
    ("flip_member_byte", "无法读取"),  # zip CRC
    ("replace_member", "SHA-256 不符"),
    ("edit_manifest", "签名记录与 manifest.json 不符"),
    ("extra_member", "清单之外的成员"),
    ("rehash_only", "机考锁签名无效"),
    ("other_dongle_same_key_claim", "机考锁签名无效"),
    ("other_dongle_own_key", "考务数据包与签名所用的机考锁不符"),
    ("other_dongle_everything", "不是该备份所属考点的机考锁"),
])
def test_tampered_backup_is_refused_and_nothing_replaced(env, tmp_path, other_dongle, kind, why):
    ctx = env.ctx
    room, session = pairs(ctx)[0]
    put_result(ctx, room, session, b"a result " * 50)
    path = SystemService(ctx).backup(str(tmp_path / "usb"), "n", ACTOR)
    forged = _forge(path, str(tmp_path / "forged.bak"), other_dongle, kind)
    ctx.stores.runtime.put("marker", "after-backup", {"x": 1})
    before = tree_digest(ctx.data_dir)
    with pytest.raises((FormatError, LockError)) as e:
        SystemService(ctx).restore(forged, ACTOR)
    assert why in str(e.value)
    assert isinstance(e.value, LockError if kind == "other_dongle_everything" else FormatError)
    assert tree_digest(ctx.data_dir) == before and no_leftovers(ctx.data_dir)
    assert ctx.stores.runtime.get("marker", "after-backup") == {"x": 1}
    # the genuine backup still restores
    SystemService(ctx).restore(path, ACTOR)
    assert ctx.stores.runtime.get("marker", "after-backup") is None


def test_restore_refused_for_another_site(env, tmp_path):
    ctx = env.ctx
    svc = SystemService(ctx)
    path = svc.backup(str(tmp_path / "usb"), "", ACTOR)
    ctx.stores.settings.update(model.SETTINGS, model.SITE, {"site_code": "99999"})
    before = tree_digest(ctx.data_dir)
    with pytest.raises(SystemRefused) as e:
        svc.restore(path, ACTOR)
    assert "99999" in str(e.value) and tree_digest(ctx.data_dir) == before
    preview = svc.restore_preview(path, ACTOR)
    assert preview["allowed"] is False and "99999" in preview["refusal"]["cause"]
    ctx.stores.settings.update(model.SETTINGS, model.SITE, {"site_code": SITE})
    assert svc.restore(path, ACTOR)["restart_required"]


def test_failure_during_the_swap_leaves_the_old_data(env, tmp_path, monkeypatch):
    ctx = env.ctx
    svc = SystemService(ctx)
    path = svc.backup(str(tmp_path / "usb"), "", ACTOR)
    ctx.stores.runtime.put("marker", "after-backup", {"x": 1})
    before = tree_digest(ctx.data_dir)
    real, calls = folder_mod._move, []

    def failing_move(src, dst):
        calls.append((src, dst))
        if len(calls) == 3:  # db swapped already; the spool's move fails
            raise PermissionError(13, "held by antivirus", src)
        real(src, dst)

    monkeypatch.setattr(folder_mod, "_move", failing_move)
    with pytest.raises(RestoreError) as e:
        svc.restore(path, ACTOR)
    assert "原有数据保持不变" in str(e.value) and calls[2][0].endswith("spool")  # then the roll-back's moves
    assert tree_digest(ctx.data_dir) == before and no_leftovers(ctx.data_dir)
    assert ctx.stores.runtime.get("marker", "after-backup") == {"x": 1}
    ctx.stores.runtime.put("marker", "still-writable", {"y": 2})  # the live stores still work
    monkeypatch.setattr(folder_mod, "_move", real)
    svc.restore(path, ACTOR)
    assert ctx.stores.runtime.get("marker", "after-backup") is None


def test_crash_during_the_swap_is_finished_at_the_next_start(env, tmp_path, monkeypatch):
    ctx = env.ctx
    svc = SystemService(ctx)
    path = svc.backup(str(tmp_path / "usb"), "", ACTOR)
    expected = dump(ctx)
    ctx.stores.runtime.put("marker", "after-backup", {"x": 1})
    crashed = str(tmp_path / "crashed")
    real, calls = folder_mod._move, []

    def crash_after_two(src, dst):
        calls.append(src)
        if len(calls) == 3:  # the disk as a power cut would leave it: db swapped, spool not
            shutil.copytree(ctx.data_dir, crashed, ignore=shutil.ignore_patterns("kaodian.lock"))
            raise OSError("power cut")
        real(src, dst)

    monkeypatch.setattr(folder_mod, "_move", crash_after_two)
    with pytest.raises(RestoreError):
        svc.restore(path, ACTOR)
    assert os.path.exists(os.path.join(crashed, folder_mod.JOURNAL))
    assert finish_interrupted_restore(crashed) is True
    assert no_leftovers(crashed)
    after = open_context(crashed)
    try:
        assert dump(after) == expected and after.stores.runtime.get("marker", "after-backup") is None
        assert after.audit.verify() is None
    finally:
        after.stores.close()


# -- 系统恢复 keeps what is here (issue 12 item 1) ------------------------------------------------
def start_room(ctx, room, session):
    ctx.stores.runtime.update(model.ROOM_SESSIONS, model.rs_key(room, session),
                              {"started_at": "2026-06-13T09:00:00+08:00"})


def receive(core, room, session, salt=b""):
    """A room's result package received as the LAN handler does (spool, check, record)."""
    data = result_package(core.ctx, room, session, salt=salt)
    sha = hashlib.sha256(data).hexdigest()
    core.recovery.receive(room, session, io.BytesIO(data), sha, len(data), "lan", ACTOR)
    return sha


def restart(env):
    """What the relaunched process does: close the site, open it again over the same folder."""
    env.site.close()
    env.site = open_site(env.data_dir, hub=env.hub, platform=env.client, dongle=DonglePort(env.driver), gate=False)
    env._stops.append(env.site.close)
    env.ctx, env.core = env.site.ctx, env.site.core
    return env.core


def results_here(ctx):
    return {model.rs_key(d["room"], d["session"]): (d["result"], d.get("upload"))
            for d in ctx.stores.runtime.all(model.ROOM_SESSIONS) if d.get("result")}


def test_restore_of_an_older_backup_mid_exam_keeps_results_receipts_and_the_password(env, tmp_path):
    """The issue's scenario with fewer rooms: results recovered and uploaded after the backup, one room in its exam."""
    core, ctx = env.core, env.ctx
    core.accounts.change_password("admin", "888", "before-2026")
    session = pairs(ctx)[0][1]
    rooms = [r for r, s in pairs(ctx) if s == session]
    for room in rooms:
        start_room(ctx, room, session)
    path = core.system.backup(str(tmp_path / "usb"), "考中备份", "admin")
    recovered = rooms[:-1]
    shas = [receive(core, room, session) for room in recovered]
    usb = external_folder(tmp_path)
    try:
        core.upload.backup_external(usb, "admin")
        assert len(core.upload.upload(session, "admin")["uploaded"]) == len(recovered)
    finally:
        remove_external(usb)
    core.accounts.change_password("admin", "before-2026", "after-2026")
    kept = results_here(ctx)
    external = ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL)
    assert len(kept) == len(recovered) and all(upload for _, upload in kept.values())

    # the preview verifies, compares and changes nothing
    before, audit_before = tree_digest(ctx.data_dir), list(ctx.audit.entries())
    preview = core.system.restore_preview(path, "admin")
    assert tree_digest(ctx.data_dir) == before and list(ctx.audit.entries()) == audit_before
    assert no_leftovers(ctx.data_dir)
    assert preview["allowed"] is True and preview["refusal"] is None and preview["note"] == "考中备份"
    assert preview["backup"]["results_recovered"] == 0 and preview["backup"]["rooms_started"] == len(rooms)
    assert preview["current"]["results_recovered"] == len(recovered) == preview["current"]["results_uploaded"]
    assert preview["after"]["results_recovered"] == len(recovered) == preview["after"]["results_uploaded"]
    assert [(r["room"], r["uploaded"]) for r in preview["kept"]["results"]] == [(r, True) for r in recovered]
    assert preview["kept"]["files"] == len(recovered) and preview["kept"]["accounts"] == ["admin"]
    assert any("保留本机已回收" in line for line in preview["lines"])

    out = core.system.restore(path, "admin")
    assert out["restart_required"] and out["accounts_kept"] == ["admin"]
    assert [r["room"] for r in out["kept"]["results"]] == recovered
    core = restart(env)
    ctx = env.ctx
    # the results, their files and receipts are still here
    assert results_here(ctx) == kept
    assert all(ctx.spool.verify(sha) for sha in shas)
    assert ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL) == external  # the copy on the USB drive
    rows = {r["room"]: r for r in core.recovery.snapshot(session)["rows"]}
    assert all(rows[r]["situation"] == "已回收" and rows[r]["report"] == "上报成功" for r in recovered)
    assert rows[rooms[-1]]["situation"] == "未回收"
    # the system still knows the exam runs: exit and 初始化 stay refused
    allowed, reason = core.system.exit_allowed()
    assert not allowed and "{}：考试已开始".format(result_label(rooms[-1], session)) in reason
    with pytest.raises(SystemRefused):
        core.system.initialize(SITE, "admin")
    # the administrator's password is the one they logged in with
    assert core.accounts.login("admin", "after-2026")["must_change"] is False
    with pytest.raises(LoginFailed):
        core.accounts.login("admin", "before-2026")
    entry = [e for e in ctx.audit.entries() if e["action"] == "system.restored"][-1]
    assert entry["details"]["accounts_kept"] == ["admin"]
    assert entry["details"]["kept"]["results"] == [model.rs_key(r, session) for r in recovered]
    assert ctx.audit.verify() is None


def test_restore_keeps_a_result_not_uploaded_and_a_receipt_the_backup_lacks(env, tmp_path):
    ctx = env.ctx
    svc = SystemService(ctx)
    (r1, s1), (r2, s2) = pairs(ctx)[:2]
    sha1 = put_result(ctx, r1, s1, b"first, recovered before the backup")
    path = svc.backup(str(tmp_path / "usb"), "", ACTOR)
    put_result(ctx, r1, s1, b"first, recovered before the backup", uploaded=True)
    sha2 = put_result(ctx, r2, s2, b"second, recovered after the backup")
    kept = results_here(ctx)
    out = svc.restore(path, ACTOR)
    assert [(r["room"], r["session"]) for r in out["kept"]["results"]] == [(r2, s2)]
    assert [(r["room"], r["session"]) for r in out["kept"]["receipts"]] == [(r1, s1)]
    assert results_here(ctx) == kept and ctx.spool.verify(sha1) and ctx.spool.verify(sha2)
    allowed, reason = svc.exit_allowed()
    assert not allowed and "{}：已回收，未上报".format(result_label(r2, s2)) in reason


def test_restore_keeps_both_results_when_the_backup_holds_another(env, tmp_path):
    """Conflicts are kept visibly in result_conflicts, never silently dropped."""
    core, ctx = env.core, env.ctx
    (r1, s1), (r2, s2), (r3, s3) = pairs(ctx)[:3]
    old1 = put_result(ctx, r1, s1, b"room 1 as the backup has it")
    old2 = put_result(ctx, r2, s2, b"room 2 as the backup has it")
    path = core.system.backup(str(tmp_path / "usb"), "", ACTOR)
    new1 = put_result(ctx, r1, s1, b"room 1 here, uploaded", uploaded=True)  # a diverged history
    new2 = put_result(ctx, r2, s2, b"room 2 here, not uploaded")
    kept3 = receive(core, r3, s3)
    refused3 = hashlib.sha256(result_package(ctx, r3, s3, salt=b"other")).hexdigest()
    with pytest.raises(ResultConflict):
        receive(core, r3, s3, salt=b"other")  # a conflict recorded here, after the backup

    preview = core.system.restore_preview(path, ACTOR)
    assert preview["allowed"] and {(c["room"], c["other_from"]) for c in preview["kept"]["conflicts"]} == {
        (r1, "backup"), (r2, "here")}
    out = core.system.restore(path, ACTOR)
    assert out["kept"]["conflict_records"] == 1
    here = results_here(ctx)
    assert here[model.rs_key(r1, s1)][0]["sha256"] == new1 and here[model.rs_key(r1, s1)][1]  # the uploaded one
    assert here[model.rs_key(r2, s2)][0]["sha256"] == old2  # neither uploaded: the backup's
    assert here[model.rs_key(r3, s3)][0]["sha256"] == kept3
    conflicts = {(c["room"], c["sha256"]): c for c in core.recovery.conflicts()}
    assert set(conflicts) == {(r1, old1), (r2, new2), (r3, refused3)}
    assert conflicts[(r1, old1)]["origin"] == "restore" and conflicts[(r1, old1)]["kept_sha256"] == new1
    assert conflicts[(r2, new2)]["held_by"] == "here"
    for sha in (old1, old2, new1, new2, kept3, refused3):
        assert ctx.spool.verify(sha)
    rows = {(r["room"], r["session"]): r for r in core.recovery.snapshot()["rows"]}
    assert {rows[p]["situation"] for p in ((r1, s1), (r2, s2), (r3, s3))} == {"已回收（有冲突）"}
    assert any("两个都保留" in line for line in out["lines"])


def test_restore_refused_while_a_started_room_is_unknown_to_the_backup(env, tmp_path):
    ctx = env.ctx
    svc = SystemService(ctx)
    path = svc.backup(str(tmp_path / "usb"), "考前备份", ACTOR)
    (r1, s1) = pairs(ctx)[0]
    start_room(ctx, r1, s1)
    before = tree_digest(ctx.data_dir)
    with pytest.raises(SystemRefused) as e:
        svc.restore(path, ACTOR)
    assert "正在考试的考场在该备份中尚未开考" in e.value.cause and result_label(r1, s1) in e.value.cause
    assert tree_digest(ctx.data_dir) == before and no_leftovers(ctx.data_dir)
    preview = svc.restore_preview(path, ACTOR)
    assert preview["allowed"] is False and result_label(r1, s1) in preview["refusal"]["cause"]
    # a new PC (nothing here) restores the same backup: the manual's use of 系统恢复
    fresh = open_context(str(tmp_path / "fresh"), dongle=DonglePort(env.driver), trusted=env.trusted)
    try:
        assert SystemService(fresh).restore(path, ACTOR)["restart_required"]
    finally:
        fresh.stores.close()


def test_a_mock_backup_is_refused_over_a_formal_exam_that_ran(env, tmp_path):
    ctx = env.ctx
    svc = SystemService(ctx)
    (r1, s1) = pairs(ctx)[0]
    start_room(ctx, r1, s1)
    ctx.stores.settings.update(model.SETTINGS, model.SITE, {"mode": model.MOCK})
    path = svc.backup(str(tmp_path / "usb"), "", ACTOR)
    ctx.stores.settings.update(model.SETTINGS, model.SITE, {"mode": model.FORMAL})
    with pytest.raises(SystemRefused) as e:
        svc.restore(path, ACTOR)
    assert "模拟考试的备份" in e.value.cause and ctx.mode() == model.FORMAL


def test_restore_refused_naming_results_of_another_exam(env, tmp_path):
    ctx = env.ctx
    svc = SystemService(ctx)
    path = svc.backup(str(tmp_path / "usb"), "", ACTOR)
    manifest = ctx.manifest()
    ctx.stores.exam.put(model.PACKAGE, model.MANIFEST, dict(manifest, exam_name="另一次考试"))  # another exam here
    (r1, s1) = pairs(ctx)[0]
    put_result(ctx, r1, s1, b"a result of the other exam", uploaded=True)
    before = tree_digest(ctx.data_dir)
    with pytest.raises(SystemRefused) as e:
        svc.restore(path, ACTOR)
    assert "另一次考试" in e.value.cause and result_label(r1, s1) in e.value.cause
    assert tree_digest(ctx.data_dir) == before


def test_restore_names_a_damaged_result_file_here_and_keeps_its_record(env, tmp_path):
    ctx = env.ctx
    svc = SystemService(ctx)
    path = svc.backup(str(tmp_path / "usb"), "", ACTOR)
    (r1, s1) = pairs(ctx)[0]
    sha = put_result(ctx, r1, s1, b"recovered after the backup, then damaged on disk")
    with open(ctx.spool.path(sha), "r+b") as f:
        f.write(b"X")
    preview = svc.restore_preview(path, ACTOR)
    assert len(preview["warnings"]) == 1 and result_label(r1, s1) in preview["warnings"][0]
    out = svc.restore(path, ACTOR)
    assert out["warnings"] and "重新回收" in out["warnings"][0]
    assert results_here(ctx)[model.rs_key(r1, s1)][0]["sha256"] == sha and not ctx.spool.has(sha)


def test_restore_keeps_outbox_reports_and_reported_times(env, tmp_path):
    core, ctx = env.core, env.ctx
    sent = core.outbox.enqueue("room_status", {"rooms": 1})
    path = core.system.backup(str(tmp_path / "usb"), "", ACTOR)
    ctx.stores.runtime.update(model.OUTBOX, sent["id"], {"state": "sent", "sent_at": "2026-06-13T09:01:00+08:00"})
    later = core.outbox.enqueue("session_started", {"session_id": "x"})
    sid = ctx.stores.runtime.all(model.SESSIONS)[0]["id"]
    ctx.stores.runtime.update(model.SESSIONS, sid, {"started_reported_at": "2026-06-13T09:02:00+08:00"})
    core.system.restore(path, ACTOR)
    assert ctx.stores.runtime.get(model.OUTBOX, sent["id"])["state"] == "sent"
    assert ctx.stores.runtime.get(model.OUTBOX, later["id"])["state"] == "pending"
    assert ctx.stores.runtime.get(model.SESSIONS, sid)["started_reported_at"] == "2026-06-13T09:02:00+08:00"


# -- 系统初始化, exit, 模考转正考 ---------------------------------------------------------------------
def test_init_and_exit_refused_in_a_formal_exam_until_every_result_is_uploaded(env, tmp_path):
    ctx = env.ctx
    svc = SystemService(ctx)
    assert svc.exit_allowed() == (True, "")
    (r1, s1), (r2, s2) = pairs(ctx)[:2]
    put_result(ctx, r1, s1, b"first")
    ctx.stores.runtime.update(model.ROOM_SESSIONS, model.rs_key(r2, s2), {"started_at": "2026-06-13T09:00:00+08:00"})
    allowed, reason = svc.exit_allowed()
    assert not allowed and "考试数据尚未上报" in reason and "禁止退出" in reason
    allowed, reason = svc.initialize_allowed()
    assert not allowed and "考试数据尚未上报，禁止初始化" in reason
    with pytest.raises(SystemRefused) as e:
        svc.initialize(SITE, ACTOR)
    assert "考试数据尚未上报，禁止初始化" in str(e.value)
    put_result(ctx, r1, s1, b"first", uploaded=True)
    assert not svc.exit_allowed()[0]  # the started room is not recovered yet
    put_result(ctx, r2, s2, b"second", uploaded=True)
    assert svc.exit_allowed() == (True, "") and svc.initialize_allowed() == (True, "")
    assert ctx.site_code() == SITE and ctx.manifest()

    ctx.stores.settings.put(model.ACCOUNTS, "admin", dict(default_account(), must_change=False, hash="ab" * 32))
    with pytest.raises(SystemRefused):
        svc.initialize("11004", ACTOR)
    out = svc.initialize(SITE, ACTOR)
    assert out["restart_required"] and out["site_code_cleared"] == SITE
    assert ctx.site_code() is None and ctx.manifest() is None and ctx.site()["trusted_keys"]
    assert "platform_password" not in ctx.site()
    assert ctx.stores.runtime.tables() == [] and ctx.spool.list() == []
    assert os.listdir(os.path.join(ctx.data_dir, "rooms")) == []
    assert ctx.stores.settings.get(model.ACCOUNTS, "admin")["hash"] == "ab" * 32  # passwords kept
    assert [e["action"] for e in ctx.audit.entries()][-1] == "system.initialized"


def test_init_allowed_in_mock_mode_with_unreported_results_and_needs_the_code(mock_env):
    ctx = mock_env.ctx
    svc = SystemService(ctx)
    room, session = pairs(ctx)[0]
    put_result(ctx, room, session, b"mock result")
    assert svc.exit_allowed() == (True, "")
    with pytest.raises(PasswordChangeRequired):
        svc.initialize(SITE, "admin")
    with pytest.raises(SystemRefused):
        svc.initialize("", ACTOR)
    svc.initialize(SITE, ACTOR)
    assert ctx.site_code() is None and ctx.spool.list() == []


def test_to_formal_clears_mock_exam_data_and_keeps_site_and_accounts(mock_env, tmp_path):
    ctx = mock_env.ctx
    svc = SystemService(ctx)
    room, session = pairs(ctx)[0]
    put_result(ctx, room, session, b"mock result")
    ctx.stores.runtime.put(model.CHECKS, model.SEAL, {"passed": True})
    with pytest.raises(PasswordChangeRequired):
        svc.to_formal("admin")  # admin still has 888
    ctx.stores.settings.put(model.ACCOUNTS, "admin", dict(default_account(), must_change=False, hash="cd" * 32))
    site_before = ctx.site()
    out = svc.to_formal(ACTOR)
    assert out["mode"] == model.FORMAL and out["results"] == 1
    assert ctx.mode() == model.FORMAL and ctx.site() == dict(site_before, mode=model.FORMAL)
    assert ctx.manifest() is None and ctx.stores.runtime.tables() == [] and ctx.spool.list() == []
    assert os.listdir(os.path.join(ctx.data_dir, "rooms")) == []
    assert ctx.stores.settings.get(model.ACCOUNTS, "admin")["hash"] == "cd" * 32
    with pytest.raises(SystemRefused):
        svc.to_formal(ACTOR)  # already formal
    snap = svc.snapshot()
    assert snap["mode"] == model.FORMAL and snap["package_loaded"] is False and snap["exit_allowed"] is True


def test_a_stale_store_reference_cannot_overwrite_the_restored_data(env, tmp_path):
    ctx = env.ctx
    svc = SystemService(ctx)
    path = svc.backup(str(tmp_path / "usb"), "", ACTOR)
    stale = ctx.stores.runtime  # e.g. a thread that fetched the store before the restore
    stale.put("marker", "before-restore", {"x": 1})
    svc.restore(path, ACTOR)
    with pytest.raises(StoreError):
        stale.put("marker", "stale-write", {"x": 2})
    check = open_stores(ctx.data_dir)
    try:
        assert check.runtime.get("marker", "stale-write") is None
        assert check.runtime.get("marker", "before-restore") is None
        assert check.exam.get(model.PACKAGE, model.MANIFEST) == ctx.manifest()
    finally:
        check.close()
    ctx.stores.runtime.put("marker", "after-restore", {"x": 3})  # the context's new stores work


def test_restore_keeps_the_incidents_and_extra_time_recorded_after_the_backup(env, tmp_path):
    """考场情况记录 and 补时 here are kept like the results: a restore of an older backup loses none."""
    core, ctx = env.core, env.ctx
    room, session = pairs(ctx)[0]
    start_room(ctx, room, session)
    early = core.incidents.add(room=room, session=session, category="其他", start=ctx.now(), end=None,
                               description="备份前记录", actor=ACTOR)
    path = core.system.backup(str(tmp_path / "usb"), "考中备份", ACTOR)
    now = ctx.now()
    added = core.incidents.add(room=room, session=session, category="设备故障", start=now,
                               end=now + datetime.timedelta(minutes=9), description="考生机蓝屏", actor=ACTOR)
    grant = core.extra_time.grant(room, session, 9, actor=ACTOR, reason="设备故障", incident_ids=[added["id"]])
    expected = core.extra_time.expected_end(room, session)
    preview = core.system.restore_preview(path, ACTOR)
    assert preview["kept"]["incidents"] >= 1 and preview["kept"]["grants"] == 1
    assert any("考场情况记录" in line and "补时记录 1 条" in line for line in preview["lines"])
    core.system.restore(path, ACTOR)
    core = restart(env)
    assert core.incidents.get(added["id"]) == added and core.incidents.get(early["id"])["id"] == early["id"]
    assert core.extra_time.grants() == [grant]
    assert core.extra_time.expected_end(room, session) == expected
    entry = [e for e in env.ctx.audit.entries() if e["action"] == "system.restored"][-1]
    assert entry["details"]["kept"]["grants"] == 1
