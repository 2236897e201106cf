"""``main.py seal-check | verify | monitor | outbox`` as processes, over the simulator and the emulator."""

import json

from kd.core import model
from kd.store.database import open_stores
from tests.integration.live_helpers import authorized_cli_env
from tests.support.cli import PASSWORD, kd
from tests.support.fixtures import closed_after

env = closed_after(authorized_cli_env)


def cli(env, *args, password=PASSWORD):
    """``main.py`` on the env's own data folder, admin's password sent to the commands that ask."""
    return kd(env, env.data_dir, *args, password=password)


def test_cli_chapter_four(env):
    # 封场检测 from the CLI: no LAN service in this process, so it is a no-go (exit 1) with the reason
    out = cli(env, "seal-check", "--json", "--min-free-gb", "0")
    assert out.returncode == 1, out.stderr
    result = json.loads(out.stdout)
    items = {i["id"]: i for i in result["items"]}
    assert items["lan"]["status"] == "fail" and items["lan"]["detail"] == "局域网服务未启动。"
    assert all(i["status"] == "pass" for k, i in items.items() if k not in ("lan", "lan_address"))
    text = cli(env, "seal-check", "--min-free-gb", "0")
    assert text.returncode == 1 and "✗ 局域网服务运行" in text.stdout and "处理：" in text.stdout
    # 授权验证: session 2 is hours away (sync not within its hour) → exit 2, reason on stderr
    bad = cli(env, "verify", "--session", "2")
    assert bad.returncode == 2 and "校时" in bad.stderr
    good = cli(env, "verify", "--session", "1", "--json")
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["verified"] is True
    # 考场监控: the persisted state (no heartbeats in a CLI process)
    mon = cli(env, "monitor", "--json")
    assert mon.returncode == 0, mon.stderr
    snap = json.loads(mon.stdout)
    assert snap["session"]["id"] == "1" and len(snap["rows"]) == 3
    assert all(r["verified"] and not r["connected"] for r in snap["rows"])
    table = cli(env, "monitor", "--session", "1")
    assert table.returncode == 0 and "考场编号 | 注册IP" in table.stdout and "人数统计" in table.stdout
    # the outbox: a report stored by the core, sent by ``outbox --send``
    stores = open_stores(env.data_dir)
    try:
        stores.runtime.put(model.OUTBOX, "x1", {
            "id": "x1", "kind": "room_status", "data": {"rooms": []}, "key": "kd-" + "a" * 32, "session_id": "1",
            "room_code": None, "created_at": "2026-06-13T08:00:00+08:00", "state": "pending", "tries": 0,
            "last_error": None, "next_try_at": "2026-06-13T08:00:00+08:00", "sent_at": None})
    finally:
        stores.close()
    listed = json.loads(cli(env, "outbox", "--json").stdout)
    assert listed["counts"]["pending"] == 1
    sent = cli(env, "outbox", "--send", "--json")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent_now"] == 1
    assert [r["idempotency_key"] for r in env.sim.received()["reports"]] == ["kd-" + "a" * 32]
