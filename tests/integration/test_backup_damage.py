"""A damaged spool file (bit rot, a truncated file) does not block 系统备份 or 第一步 备份到外部存储.

Real site (platform simulator, dongle emulator), real result packages recovered with the
real services, a real spool file damaged on disk. Each backup still completes with every
other result, names the damaged one (考场 X 第N场次) and says how to recover it again; 上报
stays refused for it; recovering the same package again replaces the damaged spool file
and the next backups are complete.
"""

import hashlib
import io
import logging
import os
import zipfile

import pytest

from kd.core import model
from kd.core.labels import result_label
from kd.core.system import SystemService
from kd.core.upload import BackupRequired
from kd.formats import backup as bak
from tests.support.fixtures import closed_after
from tests.support.results import deliver, pairs, results_env

ACTOR = "tester"  # not an account: passes require_changed


env = closed_after(lambda tmp_path: results_env(tmp_path, ACTOR, received=True, rooms=3, sessions=1,
                                                candidates=4, room_kb=4))


def damage(ctx, room, session, how):
    """Damage the spool file of a recovered result in place, as a failing disk would."""
    sha = ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(room, session))["result"]["sha256"]
    path = ctx.spool.path(sha)
    blob = bytearray(open(path, "rb").read())
    if how == "flip":
        blob[len(blob) // 2] ^= 0x40
    else:
        del blob[len(blob) // 3:]
    with open(path, "wb") as f:
        f.write(bytes(blob))
    assert not ctx.spool.verify(sha)
    return sha, path


def bak_members(path):
    with zipfile.ZipFile(path) as z:
        return set(z.namelist())


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_system_backup_completes_without_the_damaged_result_and_names_it(env, tmp_path, caplog, how):
    ctx = env.ctx
    room, session = pairs(ctx)[1]
    sha, spool_path = damage(ctx, room, session, how)
    caplog.set_level(logging.ERROR, logger="kd.core.backup")

    path = SystemService(ctx).backup(str(tmp_path / "usb"), "", ACTOR)

    assert os.path.isfile(path)
    with bak.BackupFile(path) as f:  # a valid backup: every member checks
        f.verify_all()
    members = bak_members(path)
    others = [ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(r, s))["result"]["sha256"]
              for r, s in pairs(ctx) if (r, s) != (room, session)]
    assert {"spool/{}.dat".format(o) for o in others} <= members
    assert "spool/{}.dat".format(sha) not in members
    assert [d["sha256"] for d in path.damaged] == [sha]
    label = result_label(room, session)
    assert path.damaged[0]["label"] == label and path.damaged[0]["path"] == spool_path
    text = "\n".join(path.warnings)
    assert label in text and "未能备份" in text
    assert "请在考场 {} 的监考机上重新“上报”".format(room) in text and "手工“回收”" in text
    assert not any(w in text for w in ("U 盘", "U盘", ".bak"))  # not the medium's fault
    assert any(r.levelno == logging.ERROR and spool_path in r.getMessage() for r in caplog.records)
    audit = [e for e in ctx.audit.entries() if e["action"] == "system.backed_up"][-1]
    assert audit["details"]["damaged"][0]["sha256"] == sha

    # recovering the same package again replaces the damaged file; the next backup is complete
    data = env.packages[(room, session)]
    again = deliver(env.recovery, room, session, data)
    assert again["duplicate"] is True and ctx.spool.verify(sha)
    second = SystemService(ctx).backup(str(tmp_path / "usb"), "", ACTOR)
    assert second.damaged == [] and second.warnings == []
    assert "spool/{}.dat".format(sha) in bak_members(second)


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_external_backup_copies_the_good_results_and_marks_the_damaged_one_missing(env, external_dir, tmp_path,
                                                                                     caplog, how):
    ctx = env.ctx
    room, session = pairs(ctx)[0]
    sha, spool_path = damage(ctx, room, session, how)
    caplog.set_level(logging.ERROR, logger="kd.core.upload")

    done = env.upload.backup_external(external_dir, "admin")

    assert done["complete"] is False
    assert [(m["room"], m["session"], m["sha256"]) for m in done["missing"]] == [(room, session, sha)]
    assert sorted((f["room"], f["session"]) for f in done["files"]) == sorted(
        p for p in pairs(ctx) if p != (room, session))
    copies = sorted(n for n in os.listdir(done["folder"]) if n.endswith(".zip"))
    assert len(copies) == len(pairs(ctx)) - 1 and not [n for n in os.listdir(done["folder"]) if ".tmp-" in n]
    with open(os.path.join(done["folder"], "manifest.json"), encoding="utf-8") as f:
        manifest = f.read()
    assert sha in manifest and '"missing"' in manifest
    label = result_label(room, session)
    text = "\n".join(done["warnings"])
    assert label in text and "请在考场 {} 的监考机上重新“上报”".format(room) in text
    assert any(r.levelno == logging.ERROR and spool_path in r.getMessage() for r in caplog.records)
    record = ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL)
    assert record["valid"] is True and record["missing"][0]["sha256"] == sha

    # 第二步 上报 stays refused for it, with the reason and the way out
    snap = env.upload.snapshot()
    assert snap["can_upload"] is False and [d["label"] for d in snap["damaged"]] == [label]
    assert "重新“上报”" in snap["damaged_remedy"]
    with pytest.raises(BackupRequired) as refused:
        env.upload.upload(None, "admin")
    assert label in refused.value.cause and "已损坏" in refused.value.cause
    assert "手工“回收”" in refused.value.remedy
    assert env.sim.received()["uploads"] == []

    # 回收 by hand with the exported package replaces the damaged spool file
    exported = tmp_path / "exported.zip"
    exported.write_bytes(env.packages[(room, session)])
    assert env.recovery.import_package(str(exported), "admin")["duplicate"] is True
    assert ctx.spool.verify(sha)
    again = env.upload.backup_external(external_dir, "admin")
    assert again["complete"] is True and again["missing"] == [] and again["warnings"] == []
    assert len(again["files"]) == len(pairs(ctx))
    snap = env.upload.snapshot()
    assert snap["can_upload"] is True and snap["damaged"] == []
    assert len(env.upload.upload(None, "admin")["uploaded"]) == len(pairs(ctx))


def test_spool_put_of_present_content_replaces_a_damaged_file_and_keeps_a_good_one(tmp_path, caplog):
    from kd.store.spool import Spool  # noqa: PLC0415

    spool = Spool(str(tmp_path / "spool"))
    data = os.urandom(200000)
    sha = hashlib.sha256(data).hexdigest()
    path = spool.put(io.BytesIO(data), sha, len(data))
    inode = os.stat(path).st_ino
    assert spool.put(io.BytesIO(b"never read"), sha) == path  # intact: a no-op, the stream is not read
    assert os.stat(path).st_ino == inode and spool.verify(sha)
    with open(path, "r+b") as f:
        f.truncate(1000)
    caplog.set_level(logging.ERROR, logger="kd.store.spool")
    assert spool.put(io.BytesIO(data), sha, len(data)) == path
    assert spool.verify(sha) and open(path, "rb").read() == data
    assert any(r.levelno == logging.ERROR and path in r.getMessage() for r in caplog.records)
    assert not [n for n in os.listdir(spool.folder) if ".part-" in n]
    with open(path, "r+b") as f:
        f.truncate(1000)
    assert "大小" in spool.damage(sha, len(data)) and "SHA-256" in spool.damage(sha)
    os.remove(path)
    assert spool.damage(sha) == "文件不存在"
