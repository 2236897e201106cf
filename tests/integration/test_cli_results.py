"""``recover``, ``results``, ``backup-external``, ``upload`` through real ``main.py`` processes."""

import json
import os

from tests.support.cli import cli_env, configure, export, kd, ok
from tests.support.fixtures import closed_after

env = closed_after(lambda tmp_path: cli_env(tmp_path, rooms=2, sessions=1, candidates=4, room_kb=4))


def test_recover_backup_upload(env, tmp_path, external_dir):
    data = configure(env, "site")
    ok(kd(env, data, "load"))
    rooms = [r["code"] for r in env.sim.data.manifest()["rooms"]]
    exported = str(tmp_path / "exported")
    os.mkdir(exported)
    got = json.loads(ok(kd(env, data, "recover", export(env, exported, rooms[0], "1"), "--json")).stdout)
    assert got["room"] == rooms[0] and got["counts"]["absent"] == 1 and not got["duplicate"]
    refused = kd(env, data, "recover", export(env, exported, rooms[0], "1", salt=b"other"))
    assert refused.returncode == 2 and "已拒绝" in refused.stderr
    ok(kd(env, data, "recover", export(env, exported, rooms[1], "1")))
    text = ok(kd(env, data, "results")).stdout
    assert "人数统计" in text and "已回收（有冲突）" in text and "已拒绝" in text
    snap = json.loads(ok(kd(env, data, "results", "--session", "1", "--json")).stdout)
    assert snap["totals"]["recovered"] == 2 and snap["all_recovered"]
    early = kd(env, data, "upload")
    assert early.returncode == 2 and "备份到外部存储" in early.stderr
    assert "备份完成" in ok(kd(env, data, "backup-external", external_dir)).stdout
    done = json.loads(ok(kd(env, data, "upload", "--json")).stdout)
    assert len(done["uploaded"]) == 2 and done["sessions"][0]["status"] == "全部已上报"
    ok(kd(env, data, "outbox", "--send"))  # commands only enqueue; a running instance or --send delivers
    received = env.sim.received()
    assert sorted(u["room_code"] for u in received["uploads"] if u["state"] == "committed") == sorted(rooms)
    kinds = [r["report"]["kind"] for r in received["reports"]]
    assert kinds.count("recovery_status") == 1 and kinds.count("upload_status") == 1
