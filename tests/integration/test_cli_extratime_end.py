"""After ``main.py extra-time grant`` (a real process on a real site folder), ``main.py monitor`` and
``main.py timeline`` (processes too) show the room's moved end: 否（补时） and the 补时 line, the
timeline's 结束 item with the room and its expected end (text and JSON)."""

import json

from tests.integration.test_cli_incidents import cli, env, first_room  # noqa: F401 - ``env`` is the fixture


def test_monitor_and_timeline_after_a_grant(env):  # noqa: F811
    room, _ticket = first_room(env)
    granted = cli(env, "extra-time", "grant", "--room", room, "--session", "1", "--minutes", "10",
                  "--reason", "网络中断", "--json")
    assert granted.returncode == 0, granted.stderr
    grant = json.loads(granted.stdout)
    expected = grant["expected_end"]
    monitor = cli(env, "monitor", "--session", "1", password=None)
    assert monitor.returncode == 0, monitor.stderr
    lines = monitor.stdout.strip().split("\n")
    row = next(line for line in lines if line.startswith(room + " |"))
    assert row.split(" | ")[5] == "否（补时）"
    assert lines[-1].startswith("补时：考场 {} 10 分钟，预计 ".format(room)) and lines[-1].endswith(" 结束")
    assert expected[11:16] in lines[-1]
    doc = json.loads(cli(env, "monitor", "--session", "1", "--json", password=None).stdout)
    mine = next(r for r in doc["rows"] if r["room"] == room)
    assert mine["extra_time_min"] == 10 and mine["expected_end"] == expected
    snap = json.loads(cli(env, "timeline", "--session", "1", "--json", password=None).stdout)
    ended = next(i for i in snap["items"] if i["id"] == "ended")
    assert ended["extra_time"] == [{"room": room, "minutes": 10, "expected_end": expected}]
    text = cli(env, "timeline", "--session", "1", password=None).stdout
    assert "（补时：{} 至 ".format(room) in text and "（10 分钟））" in text
