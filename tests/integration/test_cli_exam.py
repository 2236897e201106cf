"""The 考前 commands through real ``main.py`` processes: platform simulator over HTTP,
dongle emulator over ``socket://``, the data folder configured like after first login
(tests/support/cli.py: ``kd`` sends admin's password to every command that asks for it).
"""

import json
import os

from kd.platform.signer import write_offline_files
from tests.support.cli import cli_env, configure, kd, ok
from tests.support.fixtures import closed_after

env = closed_after(cli_env)


def test_load_export_restore(env, tmp_path):
    data = configure(env, "site")
    snap = json.loads(ok(kd(env, data, "load", "--json")).stdout)
    assert snap["loaded"] and len(snap["rooms"]) == 3 and snap["source"] == "online"
    usb = str(tmp_path / "usb")
    paths = json.loads(ok(kd(env, data, "export-site-info", usb, "--address", "192.168.3.4", "--json")).stdout)
    assert os.path.exists(paths["kdinfo"]) and os.path.exists(paths["html"])
    # tampered KDINFO: exit 2, registrations unchanged
    rooms_before = json.loads(ok(kd(env, data, "rooms", "--json")).stdout)["registration"]
    with open(paths["kdinfo"], "rb") as f:
        raw = bytearray(f.read())
    raw[len(raw) // 3] ^= 0x02
    tampered = str(tmp_path / "t.KDINFO")
    with open(tampered, "wb") as f:
        f.write(raw)
    proc = kd(env, data, "restore-registration", tampered)
    assert proc.returncode == 2 and "考点信息备份文件" in proc.stderr
    text = ok(kd(env, data, "rooms")).stdout
    assert "已注册考场0个，未注册考场3个" in text
    assert all(r["reg_code"] in text for r in rooms_before["rooms"])
    # a reinstalled server restores the codes from the file
    fresh = configure(env, "fresh")
    ok(kd(env, fresh, "load"))
    ok(kd(env, fresh, "restore-registration", paths["kdinfo"]))
    after = json.loads(ok(kd(env, fresh, "rooms", "--json")).stdout)["registration"]
    assert [r["reg_code"] for r in after["rooms"]] == [r["reg_code"] for r in rooms_before["rooms"]]


def test_manual_zip_and_ptq_when_platform_down(env):
    data = configure(env, "site")
    files = write_offline_files(env.sim.data, os.path.join(env.root, "offline"), ["package", "authorization"])
    env.sim.faults.set(refuse=403)  # refused at once (a 503 would be retried with backoff)
    proc = kd(env, data, "load")
    assert proc.returncode == 2 and "手工导入" in proc.stderr
    zip_path = next(p for p in files if p.endswith(".zip"))
    assert "手工导入" in ok(kd(env, data, "load", "--zip", zip_path)).stdout
    ptq = next(p for p in files if p.endswith("-2.PTQ"))
    proc = kd(env, data, "authorize", "--ptq", ptq, "--session", "1")
    assert proc.returncode == 2 and "场次不符" in proc.stderr
    snap = json.loads(ok(kd(env, data, "authorize", "--ptq", ptq, "--json")).stdout)
    assert [r["authorized"] for r in snap["sessions"]] == [False, True]
    env.sim.faults.clear()
    snap = json.loads(ok(kd(env, data, "authorize", "--session", "1", "--json")).stdout)
    assert snap["all_authorized"]
