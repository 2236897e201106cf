"""What people read from the command line: times as ``2026-12-01 17:35`` and sessions by name.

Real ``main.py`` processes over the platform simulator and the dongle emulator
(tests/support/cli.py). The text output (not ``--json``, which keeps ISO 8601) of every
command that prints a time or a session must show the time through
``kd.core.labels.shown`` and the session as the package names it (第一场次), never
``2026-12-01T17:35:00+08:00`` or ``场次 1``.
"""

import json
import os
import re

import pytest

from kd.core import model
from tests.integration.live_helpers import authorized_env
from tests.support.cli import admin_account, cli_env, configure, export, kd, ok
from tests.support.fixtures import closed_after

ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
SHOWN_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d(?!:)")
SESSION_NUMBER = re.compile(r"场次 ?\d")

env = closed_after(lambda tmp_path: cli_env(tmp_path, rooms=2, sessions=1, candidates=4, room_kb=4))


def read(proc):
    """The text a person reads: the output of a command that ended well (stderr holds the log's lines)."""
    return ok(proc).stdout


def assert_readable(text, *, times=True):
    assert not ISO_TIME.search(text), text
    assert not SESSION_NUMBER.search(text), text
    if times:
        assert SHOWN_TIME.search(text), text


def test_exam_results_and_system_texts(env, tmp_path, external_dir):
    data = configure(env, "site")
    assert_readable(read(kd(env, data, "load")))
    assert_readable(read(kd(env, data, "rooms")))
    assert_readable(read(kd(env, data, "authorize")))
    rooms = [r["code"] for r in env.sim.data.manifest()["rooms"]]
    exported = str(tmp_path / "exported")
    os.mkdir(exported)
    recovered = read(kd(env, data, "recover", export(env, exported, rooms[0], "1")))
    assert_readable(recovered, times=False)
    assert "第一场次" in recovered
    assert kd(env, data, "recover", export(env, exported, rooms[0], "1", salt=b"other")).returncode == 2
    ok(kd(env, data, "recover", export(env, exported, rooms[1], "1")))
    results = read(kd(env, data, "results"))
    assert_readable(results)
    assert "已拒绝：考场 {} 第一场次".format(rooms[0]) in results
    ok(kd(env, data, "backup-external", external_dir))
    assert_readable(read(kd(env, data, "upload")))
    outbox = read(kd(env, data, "outbox"))  # recovery_status, then upload_status of 第一场次
    assert_readable(outbox)
    assert "第一场次" in outbox
    assert_readable(read(kd(env, data, "audit")))
    assert_readable(read(kd(env, data, "status")), times=False)
    usb = str(tmp_path / "usb")
    os.mkdir(usb)
    ok(kd(env, data, "backup", usb))
    bak = next(os.path.join(usb, name) for name in os.listdir(usb) if name.endswith(".bak"))
    assert_readable(read(kd(env, data, "restore", bak)))
    # --json keeps the records' ISO times
    assert ISO_TIME.search(ok(kd(env, data, "rooms", "--json")).stdout)
    assert all(ISO_TIME.fullmatch(item["created_at"][:16])
               for item in json.loads(ok(kd(env, data, "outbox", "--json")).stdout)["items"])


@pytest.fixture
def live(tmp_path):
    e = authorized_env(tmp_path)
    e.ctx.stores.settings.put(model.ACCOUNTS, "admin", admin_account())  # as after the first password change
    e.ctx.stores.close()  # the CLI processes own the data folder and the dongle from here on
    e.driver.stop()
    yield e
    e.close()


def test_live_texts(live):
    seal = kd(live, live.data_dir, "seal-check", "--min-free-gb", "0")
    assert seal.returncode == 1, seal.stderr  # no LAN service in a CLI process
    assert_readable(seal.stdout)
    verified = read(kd(live, live.data_dir, "verify", "--session", "1"))
    assert_readable(verified)
    assert verified.startswith("第一场次")
    monitor = read(kd(live, live.data_dir, "monitor", "--session", "1"))
    assert_readable(monitor)
    assert "场次：第一场次" in monitor
