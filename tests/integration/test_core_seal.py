"""封场检测 (§3.4) with the platform simulator and the dongle emulator: item by item, then a pass."""

import pytest

from kd.core import model
from kd.core.outbox import SENT, Outbox
from kd.core.seal import FAIL, PASS, SKIPPED, SealCheckService
from tests.integration.live_helpers import Listener, authorize, loaded_env, register, room_codes, shifted
from tests.support.env import make_env


@pytest.fixture
def env(tmp_path):
    e = loaded_env(tmp_path)
    lan = Listener()
    e.ctx.lan = lan
    yield e
    lan.close()
    e.close()


def items(result):
    return {i["id"]: i for i in result["items"]}


def check(env, **kw):
    kw.setdefault("min_free_bytes", 1)
    outbox = Outbox(env.ctx)
    return SealCheckService(env.ctx, outbox, **kw), outbox


def test_nothing_loaded_fails_with_remedies(tmp_path):
    env = make_env(tmp_path, rooms=2, sessions=1, candidates=2)
    try:
        service, outbox = check(env)
        result = service.run("admin")
        got = items(result)
        assert not result["passed"]
        for key in ("package", "registered", "room_data", "authorized", "dongle", "lan"):
            assert got[key]["status"] == FAIL and got[key]["remedy"], key
        assert got["lan"]["detail"] == "局域网服务未启动。"
        assert outbox.items() == []  # a failed check reports nothing
        stored = env.ctx.stores.runtime.get(model.CHECKS, model.SEAL)
        assert stored["passed"] is False and stored["checked_at"] and stored["passed_at"] is None
    finally:
        env.close()


def test_fails_item_by_item_then_passes_and_reports(env):
    service, outbox = check(env)
    codes = room_codes(env)
    # loaded only
    got = items(service.run("admin"))
    assert got["package"]["status"] == PASS
    assert got["registered"]["status"] == FAIL and all(c in got["registered"]["detail"] for c in codes)
    assert "注册码" in got["registered"]["remedy"]
    assert got["room_data"]["status"] == FAIL and got["authorized"]["status"] == FAIL
    assert got["dongle"]["status"] == PASS and got["lan"]["status"] == PASS
    assert got["disk"]["status"] == PASS and got["clock"]["status"] == PASS
    # one room missing, the others registered without their data
    register(env, codes[1:], imported=False)
    got = items(service.run("admin"))
    assert got["registered"]["status"] == FAIL and codes[0] in got["registered"]["detail"]
    assert codes[1] not in got["registered"]["detail"]
    assert got["room_data"]["status"] == FAIL and codes[1] in got["room_data"]["detail"]
    assert "导入考场数据" in got["room_data"]["remedy"]
    # all registered and imported; sessions not yet authorized
    register(env)
    got = items(service.run("admin"))
    assert got["registered"]["status"] == PASS and got["room_data"]["status"] == PASS
    assert got["authorized"]["status"] == FAIL and ".PTQ" in got["authorized"]["remedy"]
    authorize(env, ["1"])
    got = items(service.run("admin"))
    assert got["authorized"]["status"] == FAIL and "2" in got["authorized"]["detail"]
    assert outbox.items() == []
    authorize(env)
    result = service.run("admin")
    assert result["passed"] and all(i["status"] == PASS for i in result["items"])
    # reported through the outbox; the time of the pass is kept
    stored = env.ctx.stores.runtime.get(model.CHECKS, model.SEAL)
    assert stored["passed"] and stored["passed_at"] == result["checked_at"]
    [report] = outbox.items()
    assert report["kind"] == "seal_check" and report["id"] == stored["report_id"]
    assert service.snapshot()["report_label"].startswith("等待上报")
    assert outbox.deliver_once() == 1
    snap = service.snapshot()
    assert snap["report"]["state"] == SENT and snap["report_label"].startswith("上报成功 ")
    got = [r for r in env.sim.received()["reports"] if r["report"]["kind"] == "seal_check"]
    assert len(got) == 1 and got[0]["report"]["data"]["passed"] is True
    # a later failing run is stored but keeps the time of the last pass
    env.ctx.lan = None
    again = service.run("admin")
    assert not again["passed"] and again["passed_at"] == result["checked_at"]
    assert len(outbox.items()) == 1


def test_room_data_with_another_hash_fails(env):
    register(env)
    authorize(env)
    code = room_codes(env)[0]
    env.ctx.stores.runtime.update(model.ROOMS, code, {"data_sha256": "0" * 64})
    service, _ = check(env)
    got = items(service.run("admin"))
    assert got["room_data"]["status"] == FAIL and "不符" in got["room_data"]["detail"]


def test_dongle_lan_disk_clock_items(env):
    register(env)
    authorize(env)
    # no dongle
    dongle, env.ctx.dongle = env.ctx.dongle, None
    service, _ = check(env)
    got = items(service.run("admin"))
    assert got["dongle"]["status"] == FAIL and "插入" in got["dongle"]["remedy"]
    env.ctx.dongle = dongle
    # a dongle that is not the package's one: the package names another lock
    manifest = env.ctx.manifest()
    manifest["lock"]["id"] = "L999999"
    env.ctx.stores.exam.put(model.PACKAGE, model.MANIFEST, manifest)
    got = items(service.run("admin"))
    assert got["dongle"]["status"] == FAIL and "L999999" in got["dongle"]["remedy"]
    # LAN service started but no longer listening
    env.ctx.lan.close()
    assert items(service.run("admin"))["lan"]["status"] == FAIL
    # not enough disk
    huge, _ = check(env, min_free_bytes=1 << 60)
    got = items(huge.run("admin"))
    assert got["disk"]["status"] == FAIL and "清理" in got["disk"]["remedy"]
    # system clock 10 minutes fast
    env.ctx.clock = shifted(10)
    got = items(service.run("admin"))
    assert got["clock"]["status"] == FAIL and "偏快" in got["clock"]["detail"]


def test_unreachable_platform_skips_the_clock_and_still_passes(env):
    register(env)
    authorize(env)
    env.sim.faults.set(refuse="close")
    service, outbox = check(env)
    result = service.run("admin")
    got = items(result)
    assert got["clock"]["status"] == SKIPPED and "无法连接" in got["clock"]["detail"]
    assert result["passed"]
    assert outbox.deliver_once() == 0  # stays pending until the platform is back
    assert service.snapshot()["report"]["state"] == "pending"
    env.sim.faults.clear()
    assert outbox.deliver_once() == 1
    assert service.snapshot()["report_label"].startswith("上报成功")
