"""``main.py incident …`` and ``main.py extra-time …`` as processes over a real site folder and the dongle emulator."""

import json
import os

from kd.core import model
from kd.store.audit import AuditLog
from kd.store.database import open_stores
from tests.integration.live_helpers import authorized_cli_env
from tests.support.cli import PASSWORD, kd
from tests.support.fixtures import closed_after

env = closed_after(authorized_cli_env)


def cli(env, *args, password=PASSWORD):
    return kd(env, env.data_dir, *args, password=password)


def first_room(env):
    stores = open_stores(env.data_dir)
    try:
        manifest = stores.exam.get(model.PACKAGE, model.MANIFEST)
        room = manifest["rooms"][0]["code"]
        ticket = next(c["ticket"] for c in manifest["candidates"] if c["room"] == room and c["session"] == "1")
        return room, ticket
    finally:
        stores.close()


def test_incident_and_extra_time_commands(env):
    room, ticket = first_room(env)
    # state-changing actions ask the password: none given → refused before anything
    refused = cli(env, "incident", "add", "--room", room, "--session", "1", "--category", "设备故障",
                  "--start", "09:10", "--description", "考生机蓝屏", password=None)
    assert refused.returncode == 2 and "--password-stdin" in refused.stderr
    added = cli(env, "incident", "add", "--room", room, "--session", "1", "--category", "设备故障",
                "--start", "2026-06-07 09:10", "--end", "2026-06-07 09:22", "--description", "考生机蓝屏",
                "--candidates", ticket, "--json")
    assert added.returncode == 0, added.stderr
    doc = json.loads(added.stdout)
    assert (doc["state"], doc["category"], doc["candidates"], doc["start"]) == (
        "confirmed", "device", [ticket], "2026-06-07T09:10:00+08:00")
    bad = cli(env, "incident", "add", "--room", room, "--session", "1", "--category", "停电", "--start", "09:10",
              "--description", "x")
    assert bad.returncode == 2 and "类别" in bad.stderr
    listed = cli(env, "incident", "list", password=None)  # reads only: no password
    assert listed.returncode == 0 and "#{} [已确认]".format(doc["id"]) in listed.stdout and "设备故障" in listed.stdout
    again = cli(env, "incident", "confirm", doc["id"])
    assert again.returncode == 2 and "不能确认" in again.stderr
    dismissed = cli(env, "incident", "dismiss", doc["id"], "--note", "误记")
    assert dismissed.returncode == 0 and "已驳回" in dismissed.stdout, dismissed.stderr
    proposed = cli(env, "extra-time", "propose", "--room", room, "--session", "1", "--json", password=None)
    assert proposed.returncode == 0 and json.loads(proposed.stdout)["lost_min"] == 0
    ok = cli(env, "extra-time", "grant", "--room", room, "--session", "1", "--minutes", "30", "--reason", "停电")
    assert ok.returncode == 0 and "补时 30 分钟" in ok.stdout, ok.stderr
    over = cli(env, "extra-time", "grant", "--room", room, "--session", "1", "--minutes", "10", "--reason", "再停电")
    assert over.returncode == 2 and "二次确认" in over.stderr and "--confirm" in over.stderr
    confirmed = cli(env, "extra-time", "grant", "--room", room, "--session", "1", "--minutes", "10",
                    "--reason", "再停电", "--confirm", "--json")
    assert confirmed.returncode == 0, confirmed.stderr
    grant = json.loads(confirmed.stdout)
    assert grant["total_min"] == 40 and grant["tier"] == "dongle" and grant["dongle"]["lock_id"]
    grants = cli(env, "extra-time", "list", "--json", password=None)
    assert [g["total_min"] for g in json.loads(grants.stdout)] == [30, 40]
    stale = cli(env, "incident", "end-room", "--room", room, "--session", "1", "--reason", "监考机损坏")
    assert stale.returncode == 2 and "没有开考记录" in stale.stderr
    actions = [e["action"] for e in AuditLog(os.path.join(env.data_dir, "audit.log")).entries()]
    assert actions.count("incident.recorded") == 1 and actions.count("incident.dismissed") == 1
    assert actions.count("extra_time.granted") == 2
