"""考点时间线's ``site_clock`` over a real site: this PC's clock against the platform's (measured by
封场检测 against the platform simulator) and the dongle's (measured by 授权验证 with the emulator).

The site's wall clock is ``ShiftedWall``: the test moves it 90 s ahead of the real clock the
simulator and the emulator keep, so the next seal check measures about +90 s.
"""

import datetime
import json

import pytest

from kd.core.monitor import MonitorService
from kd.core.outbox import Outbox
from kd.core.seal import SealCheckService
from kd.core.timeline import TimelineService
from kd.core.timelinerules import AlarmKind, ItemState
from kd.core.verification import VerificationService
from tests.integration.live_helpers import authorized_cli_env, authorized_env
from tests.integration.test_control import ok
from tests.support import cli as cli_support
from tests.support.clocks import FakeMonotonic, ShiftedWall
from tests.support.fixtures import closed_after


@pytest.fixture
def site(tmp_path):
    wall = ShiftedWall()
    env = authorized_env(tmp_path, clock=wall)
    VerificationService(env.ctx).verify_online("1", "admin")  # the dongle against this PC: in step
    env.wall = wall
    env.timeline = TimelineService(env.ctx, MonitorService(env.ctx, Outbox(env.ctx), clock=FakeMonotonic()))
    yield env
    env.close()


def site_clock(env):
    return next(i for i in env.timeline.timeline().items if i.id == "site_clock")


def test_the_site_clock_against_the_platform_and_the_dongle(site):
    item = site_clock(site)
    assert item.state is ItemState.DONE  # the dongle measured (授权验证), within 60 s; no seal check yet
    platform, dongle = item.skew
    assert platform.offset_s is None and dongle.offset_s is not None and abs(dongle.offset_s) < 60
    assert [c for c in site.timeline.tick() if c.alarm.kind is AlarmKind.CLOCK_SKEW] == []

    site.wall.offset += datetime.timedelta(seconds=90)  # this PC's clock now runs 90 s ahead
    result = SealCheckService(site.ctx, Outbox(site.ctx)).run("admin")
    clock = next(i for i in result["items"] if i["id"] == "clock")
    assert clock["status"] == "pass"  # the seal check tolerates 120 s; the timeline's limit is 60
    stored = next(i for i in site.ctx.stores.runtime.get("checks", "seal")["items"] if i["id"] == "clock")
    assert 60 < stored["skew_s"] < 150
    item = site_clock(site)
    assert item.state is ItemState.OVERDUE and item.skew[0].offset_s == stored["skew_s"]
    changes = [c for c in site.timeline.tick() if c.alarm.kind is AlarmKind.CLOCK_SKEW]
    assert [(c.opened, c.alarm.key) for c in changes] == [(True, "-/site_clock/-")]
    assert "对照监控平台 +" in changes[0].alarm.label

    site.wall.offset -= datetime.timedelta(seconds=90)  # corrected; the next seal check measures it
    SealCheckService(site.ctx, Outbox(site.ctx)).run("admin")
    assert site_clock(site).state is ItemState.DONE
    assert [(c.opened, c.alarm.key) for c in site.timeline.tick() if c.alarm.kind is AlarmKind.CLOCK_SKEW] == [
        (False, "-/site_clock/-")]


cli_env = closed_after(authorized_cli_env)


def test_timeline_json_carries_the_clock_items(cli_env):
    """``main.py timeline --json`` on the folder: ``site_clock`` (the dongle measured by 授权验证) and each
    session's ``skew`` with one entry per room (未知 here: no process holds the heartbeats)."""
    data = json.loads(ok(cli_support.kd(cli_env, cli_env.data_dir, "timeline", "--session", "1", "--json",
                                        password=None)).stdout)
    items = {i["id"]: i for i in data["items"]}
    assert [s["source"] for s in items["site_clock"]["skew"]] == ["platform", "dongle"]
    skew = items["skew"]
    assert skew["session"] == "1" and skew["skew"] and all(s["shown"] == "未知" and s["offset_s"] is None
                                                            for s in skew["skew"])
    assert skew["state"] in ("pending", "active") and items["started"]["skew"] == []
