"""补时 on the wire: an approved grant reaches the room's proctor in the heartbeat reply and is acknowledged.

Real parts: a ``LanServer`` on 127.0.0.1 port 0 over the site's core services, real
``ProctorClient``s, the proctor simulator (``kd.lan.simulator``) for the room that runs longer.
"""

import datetime

import pytest

from kd.core.extratime import EXTRA_TIME, ExtraTimeService
from kd.core.incidents import IncidentService
from kd.lan.client import LanError
from kd.lan.server import LanServer
from kd.lan.simulator import SimOptions, Simulation, rooms_from_site_info
from tests.integration.lan_support import LanSite
from tests.support.fixtures import closed_after


class ExtraTimeSite(LanSite):
    """A ``LanSite`` whose server carries the site's 补时 service (as ``kd.site`` builds it)."""

    def new_server(self) -> LanServer:
        self.extra_time = ExtraTimeService(self.ctx, IncidentService(self.ctx, self.monitor))
        return self.serve(extra_time=self.extra_time)


site = closed_after(lambda tmp_path: ExtraTimeSite(tmp_path / "site", rooms=2, sessions=1))


def state(**extra):
    return dict({"session": "1", "started": True, "ended": False, "logged_in": 3, "in_exam": 3}, **extra)


def audited(ctx, action):
    return [e for e in ctx.audit.entries() if e["action"] == action]


def test_a_grant_rides_the_heartbeat_reply_until_the_proctor_acknowledges_it(site):
    site.permit("1")
    room, other = site.rooms()
    proctor = site.registered(room, imported=True)
    neighbour = site.registered(other, ip="127.0.0.2", imported=True)
    proctor.permit("1")
    assert "extra_time" not in proctor.heartbeat(state())
    grant = site.extra_time.grant(room, "1", 12, actor="admin", reason="网络中断 12 分钟")
    acked = site.ctx.hub.subscribe(["extra_time.acknowledged"])
    offered = {"id": grant["id"], "session_id": "1", "minutes": 12, "total_min": 12,
               "expected_end": grant["expected_end"], "reason": "网络中断 12 分钟"}
    # an old proctor that never acknowledges keeps being offered it; other rooms never are
    assert proctor.heartbeat(state())["extra_time"] == offered
    assert proctor.heartbeat(state())["extra_time"] == offered
    assert "extra_time" not in neighbour.heartbeat(state())
    # another room's grant id, or an unknown one, acknowledges nothing
    assert neighbour.heartbeat(state(extra_time_ack=grant["id"])).get("extra_time") is None
    assert proctor.heartbeat(state(extra_time_ack="99"))["extra_time"] == offered
    assert site.ctx.stores.runtime.get(EXTRA_TIME, grant["id"])["acked_at"] is None
    # the ack: this reply already no longer carries it, nor does the next
    assert "extra_time" not in proctor.heartbeat(state(extra_time_ack=grant["id"]))
    assert "extra_time" not in proctor.heartbeat(state())
    assert acked.get(timeout=5).data["grant_id"] == grant["id"]
    assert site.ctx.stores.runtime.get(EXTRA_TIME, grant["id"])["acked_at"]
    entries = audited(site.ctx, "extra_time.acknowledged")
    assert [(e["actor"], e["details"]["grant_id"]) for e in entries] == [(room, grant["id"])]
    # echoing it again changes nothing (a proctor may keep sending its last ack)
    assert "extra_time" not in proctor.heartbeat(state(extra_time_ack=grant["id"]))
    assert len(audited(site.ctx, "extra_time.acknowledged")) == 1
    # a second grant is offered anew, with the room's new total
    second = site.extra_time.grant(room, "1", 3, actor="admin", reason="设备故障")
    assert proctor.heartbeat(state(extra_time_ack=grant["id"]))["extra_time"]["id"] == second["id"]
    assert proctor.heartbeat(state())["extra_time"]["total_min"] == 15


def test_a_malformed_ack_is_refused_and_changes_nothing(site):
    site.permit("1")
    room = site.rooms()[0]
    proctor = site.registered(room, imported=True)
    grant = site.extra_time.grant(room, "1", 5, actor="admin", reason="停电")
    for bad in (5, "", "一", "x" * 40, None):
        with pytest.raises(LanError) as e:
            proctor.heartbeat(state(extra_time_ack=bad))
        assert e.value.code == "E_ARG"
    assert proctor.heartbeat(state())["extra_time"]["id"] == grant["id"]


def test_the_simulated_proctor_runs_the_granted_minutes_longer_and_acknowledges(site, tmp_path):
    paths = site.registration.export_site_info(str(tmp_path / "usb"), "admin", "127.0.0.1", site.port)
    rooms = rooms_from_site_info(paths["kdinfo"], 2)
    granted_room = rooms[0]["code"]
    grant = site.extra_time.grant(granted_room, "1", 30, actor="admin", reason="网络中断")
    site.permit("1")
    speed = 90 * 60 / 1.0  # the 90-minute session runs 1 s, its 30 minutes of 补时 1/3 s more
    sim = Simulation("127.0.0.1", site.port, rooms, SimOptions(
        speed=speed, result_mb=0.05, work_dir=str(tmp_path / "proctors"), permit_every=0.1, timeout=10)).start()
    try:
        report = sim.wait(60)
    finally:
        sim.stop()
    assert report["ok"], report["failures"]
    assert report["extra_time_acked"] == 1
    by_room = {p.report.room: p.report for p in sim.proctors}
    took = by_room[granted_room]
    assert took.extra_time == {"1": 30} and took.extra_time_acked == [grant["id"]]
    assert by_room[rooms[1]["code"]].extra_time == {}
    ran = (datetime.datetime.fromisoformat(took.ended_at["1"])
           - datetime.datetime.fromisoformat(took.started_at["1"])).total_seconds()
    assert ran >= (90 + 30) * 60 / speed
    assert site.ctx.stores.runtime.get(EXTRA_TIME, grant["id"])["acked_at"]
    assert site.extra_time.pending(granted_room) is None
