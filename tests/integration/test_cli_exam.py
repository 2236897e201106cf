"""The 考前 commands through real ``main.py`` processes: platform simulator over HTTP,
dongle emulator over ``socket://``, the data folder configured like after first login.

``kd(env, data, *args)`` sends admin's password (``PASSWORD``) with ``--password-stdin``
to every command that asks for it (``kd.cli.needs_password`` over the real parser);
``password=None`` sends none, ``password="..."`` another one.
"""

import hashlib
import json
import os
import subprocess
import sys

import pytest

import main
from kd import cli
from kd.core import model
from kd.platform.signer import write_offline_files
from kd.store.database import open_stores
from tests.support.env import make_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAIN = os.path.join(ROOT, "main.py")


@pytest.fixture
def env(tmp_path):
    e = make_env(tmp_path, rooms=3, sessions=2, candidates=5, room_kb=4)
    e.driver.stop()  # the emulator serves one host at a time: leave it to the subprocesses
    yield e
    e.close()


ITERATIONS = 600000
PASSWORD = "exam-day-2026"  # noqa: S105 - the test site's admin password (admin_account)
_ADMIN = {}
PARSER = main.build_parser()


def admin_account():
    """The admin account after its first password change (the CLI refuses the initial one)."""
    if not _ADMIN:
        salt = os.urandom(16)
        _ADMIN.update({"user": "admin", "salt": salt.hex(), "iterations": ITERATIONS,
                       "hash": hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, ITERATIONS).hex(),
                       "must_change": False, "failures": 0, "locked_until": None,
                       "changed_at": "2026-11-20T08:00:00+08:00"})
    return dict(_ADMIN)


def configure(env, name):
    """A data folder for the subprocesses as after first login: the env's site settings, admin's own password."""
    data = os.path.join(env.root, name)
    stores = open_stores(data)
    try:
        stores.settings.put(model.SETTINGS, model.SITE, env.ctx.site())
        stores.settings.put(model.ACCOUNTS, "admin", admin_account())
    finally:
        stores.close()
    return data


def with_password(args, password=PASSWORD, stdin=""):
    """``args`` and stdin for a command: ``--password-stdin`` and the password first if the command asks."""
    args = list(args)
    if password is not None and cli.needs_password(PARSER.parse_args(args)):
        return args + ["--password-stdin"], password + "\n" + stdin
    return args, stdin


def kd(env, data, *args, password=PASSWORD, stdin=""):
    """``main.py`` on ``data`` with the env's dongle; stdin is always given (never a terminal)."""
    args, stdin = with_password(args, password, stdin)
    proc_env = dict(os.environ, PYTHONIOENCODING="utf-8")
    proc_env.pop("KD_DATA_DIR", None)
    proc_env.pop("KD_LOCK_URL", None)
    return subprocess.run([sys.executable, MAIN, "--data-dir", data, "--lock", env.lock_url] + args, input=stdin,
                          cwd=ROOT, env=proc_env, capture_output=True, text=True, encoding="utf-8", timeout=120)


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc


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
