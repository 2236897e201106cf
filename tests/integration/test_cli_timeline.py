"""``main.py timeline [--session N] [--json]`` as real processes: on the folder, and in a running ``--headless``.

On the folder: an authorized site (session 1 in 30 minutes, verified), no password asked,
text with people's times, JSON with ISO times, nothing written. In a running instance: a
real ``main.py --headless`` on a drill folder whose first session starts in 10 minutes;
after ``load`` its rooms are not registered by T-30, so the timeline tick opens alarms:
the headless process logs them, and ``timeline`` over the control channel shows them.
"""

import json
import os
import re
import subprocess
import sys

from kd.core import model
from kd.platform.simdata import SimData
from kd.store.database import open_stores
from tests.integration.live_helpers import authorized_cli_env
from tests.integration.test_control import PASSWORD, ROOT, SITE, Running, account, environment, kd, ok
from tests.support import cli as cli_support
from tests.support.fixtures import closed_after

MAIN = os.path.join(ROOT, "main.py")
SHOWN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d")

env = closed_after(authorized_cli_env)


def test_on_the_folder_text_and_json_without_a_password(env):
    stores = open_stores(env.data_dir)
    try:
        generation = stores.runtime.generation
    finally:
        stores.close()
    out = cli_support.kd(env, env.data_dir, "timeline", password=None)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("考点时间线（") and "未处理告警：0 个" in text
    assert "场次：" in text and "已完成  考场全部注册并导入考场数据" in text
    assert SHOWN.search(text) and "+08:00" not in text
    data = json.loads(ok(cli_support.kd(env, env.data_dir, "timeline", "--session", "1", "--json",
                                        password=None)).stdout)
    assert data["session"] == "1" and data["open_alarms"] == 0 and data["alarms"] == []
    ids = [(i["session"], i["id"]) for i in data["items"]]
    assert ids[:2] == [(None, "package"), (None, "seal")] and {s for s, _ in ids} == {None, "1"}
    started = [i for i in data["items"] if i["id"] == "started"][0]
    assert started["due_at"].endswith("+08:00") and started["state"] == "pending" and started["state_label"] == "未到"
    bad = cli_support.kd(env, env.data_dir, "timeline", "--session", "9", password=None)
    assert bad.returncode == 2 and "没有场次 9" in bad.stderr
    stores = open_stores(env.data_dir)
    try:
        assert stores.runtime.generation == generation  # read-only: nothing written
    finally:
        stores.close()


class SoonRunning(Running):
    """``Running`` of test_control (a real ``main.py --headless``) over a drill site whose first
    session starts in 10 minutes."""

    def __init__(self, root):  # noqa: D107 - the parent's start, over this folder
        self.root = str(root)
        self.data = os.path.join(self.root, "data")
        stores = open_stores(self.data)
        try:
            stores.settings.put(model.SETTINGS, model.SITE, {"site_code": SITE, "mode": model.MOCK, "drill": True,
                                                             "configured_at": "2026-11-20T08:00:00+08:00"})
            stores.settings.put(model.ACCOUNTS, "admin", account("admin", PASSWORD))
        finally:
            stores.close()
        self.sim = SimData(os.path.join(self.data, "drill", "platform"), site_code=SITE, rooms=2, sessions=1,
                           candidates=3, room_kb=4, first_start_in=10)
        self.err_path = os.path.join(self.root, "headless.err")
        self._err = open(self.err_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, MAIN, "--data-dir", self.data, "--lan-port", "0", "--headless"],
                                     stdout=subprocess.PIPE, stderr=self._err, cwd=ROOT, env=environment(),
                                     text=True, encoding="utf-8")
        for line in self.proc.stdout:
            if "考场通讯端口" in line:
                break
        else:
            raise AssertionError("the headless site never ran: " + open(self.err_path, encoding="utf-8").read())
        self.rc = None


def test_in_a_running_headless_site_alarms_are_logged_and_shown(tmp_path):
    running = SoonRunning(tmp_path)
    try:
        ok(kd(running.data, "load", "--password-stdin", stdin=PASSWORD + "\n"))
        log_path = os.path.join(running.data, "logs", "kaodian.log")
        # the instance ticks every second: wait for the alarm of the unregistered rooms (T-30 passed)
        for _ in range(600):
            data = json.loads(ok(kd(running.data, "timeline", "--json")).stdout)
            if any(a["item"] == "rooms_ready" for a in data["alarms"]):
                break
        else:
            raise AssertionError("no alarm opened: {}".format(data))
        assert data["open_alarms"] >= 1
        alarm = [a for a in data["alarms"] if a["item"] == "rooms_ready"][0]
        assert alarm["key"] == "1/rooms_ready/-" and alarm["kind"] == "overdue"
        assert alarm["opened_at"].endswith("+08:00")
        text = ok(kd(running.data, "timeline")).stdout
        assert "未处理告警：" in text and "逾期：" in text and "考场全部注册并导入考场数据逾期" in text
    finally:
        running.stop()
    with open(log_path, encoding="utf-8") as f:
        logged = f.read()
    assert "告警：" in logged and "1/rooms_ready/-" in logged
    with open(running.err_path, encoding="utf-8") as f:
        assert "告警：" in f.read()  # WARNING: on the headless process's stderr too
