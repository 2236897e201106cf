"""Login, settings and system commands through real ``main.py`` processes (simulator over
HTTP, dongle emulator over ``socket://``), from the first login to a restore."""

import base64
import json
import os

from kd.core import model
from kd.store.database import open_stores
from tests.support import cli
from tests.support.cli import cli_env, ok
from tests.support.env import SITE
from tests.support.fixtures import closed_after

NEW = "Kd-2026!pass"

env = closed_after(cli_env)


def kd(env, data, *args, stdin="", password=NEW):
    """``main.py`` on ``data``: ``password`` (default the changed one) to the commands that ask."""
    return cli.kd(env, data, *args, stdin=stdin, password=password)


def refused(proc, text):
    assert proc.returncode == 2 and text in proc.stderr, (proc.returncode, proc.stderr)


def test_first_login_setup_backup_init_restore(env, tmp_path):
    data = str(tmp_path / "site")
    first = json.loads(ok(kd(env, data, "login", "--password-stdin", "--json", stdin="888\n")).stdout)
    assert first == {"user": "admin", "must_change": True, "needs_setup": True}
    refused(kd(env, data, "setup", "--site", SITE, "--mode", "formal"), "仍在使用初始密码")
    ok(kd(env, data, "passwd", "--stdin", stdin="888\n{0}\n{0}\n".format(NEW)))
    out = ok(kd(env, data, "setup", "--site", SITE, "--mode", "formal", "--platform-url", env.sim.url,
                "--platform-password-stdin", stdin=env.sim.password + "\n")).stdout
    assert "系统设置完成：考点代码 11003，正式考试" in out
    stores = open_stores(data)  # the platform's key comes with the installation, not from setup
    try:
        stores.settings.update(model.SETTINGS, model.SITE,
                               {"trusted_keys": [base64.b64encode(env.sim.public_key).decode("ascii")]})
    finally:
        stores.close()
    ok(kd(env, data, "load"))

    usb = str(tmp_path / "usb")
    path = json.loads(ok(kd(env, data, "backup", usb, "--note", "考前", "--json")).stdout)["path"]
    assert os.path.dirname(path) == usb and path.endswith(".bak")
    assert json.loads(ok(kd(env, data, "init", "--confirm", SITE, "--json")).stdout)["site_code_cleared"] == SITE
    restored = json.loads(ok(kd(env, data, "restore", path, "--json")).stdout)
    assert restored["restart_required"] and restored["note"] == "考前"
    status = json.loads(ok(kd(env, data, "status", "--json")).stdout)
    assert status["site_code"] == SITE and status["mode"] == "formal" and status["package_loaded"]
    assert status["rooms"] == 3 and status["exit_allowed"] is True
    assert "登录成功" in ok(kd(env, data, "login", "--password-stdin", stdin=NEW + "\n")).stdout
