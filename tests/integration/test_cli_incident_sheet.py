"""``main.py incident sheet``: the 考场情况记录单 written by a process over a real site folder."""

import json
import os

from tests.integration.live_helpers import authorized_cli_env
from tests.integration.test_cli_incidents import cli, first_room
from tests.support.fixtures import closed_after

env = closed_after(authorized_cli_env)


def test_incident_sheet_asks_the_password_and_writes_the_sheet(env, tmp_path):
    room, _ticket = first_room(env)
    out = tmp_path / "sheets"
    refused = cli(env, "incident", "sheet", "--session", "1", "--room", room, str(out), password=None)
    assert refused.returncode == 2 and "--password-stdin" in refused.stderr and not out.exists()
    added = cli(env, "incident", "add", "--room", room, "--session", "1", "--category", "网络中断",
                "--start", "2026-06-07 09:10", "--end", "2026-06-07 09:14", "--description", "交换机<断电>")
    assert added.returncode == 0, added.stderr
    done = cli(env, "incident", "sheet", "--session", "1", "--room", room, str(out), "--json")
    assert done.returncode == 0, done.stderr
    path = json.loads(done.stdout)["path"]
    assert path == str(out / "考场情况记录单-1-{}.html".format(room))
    page = open(path, encoding="utf-8").read()
    assert "交换机&lt;断电&gt;" in page and "网络中断" in page and "4 分钟" in page and "考点主考（签名）" in page
    whole = cli(env, "incident", "sheet", "--session", "1", str(out))
    assert whole.returncode == 0 and "考场情况记录单-1.html" in whole.stdout, whole.stderr
    assert os.path.exists(str(out / "考场情况记录单-1.html"))
    bad = cli(env, "incident", "sheet", "--session", "9", str(out))
    assert bad.returncode == 2 and "没有场次" in bad.stderr
