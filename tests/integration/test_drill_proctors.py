"""The drill's simulated proctors against the real LAN service (issue 14, the drill's day).

- 30 proctors, each from its own loopback address, all register under the production
  per-address cap (8): with one address, 22 of them got ``E_BUSY``;
- on schedule, a proctor starts a session only once its clock reached the session's
  开考时间 (heartbeating meanwhile: connected, 考试中 0), and its progress callback reports
  every phase in order.
"""

import datetime
import threading
import time

import pytest

from kd.formats.timeutil import CST, parse_time
from kd.lan.simulator import PHASES, SimOptions, Simulation, loopback_address, own_addresses_work, rooms_from_site_info
from tests.integration.lan_support import LanSite, run_to_report

pytestmark = pytest.mark.skipif(not own_addresses_work(), reason="this system cannot bind 127.0.0.2")


def test_loopback_addresses():
    assert [loopback_address(i) for i in (0, 1, 252, 253)] == ["127.0.0.2", "127.0.0.3", "127.0.0.254",
                                                               "127.0.1.2"]


def test_thirty_proctors_register_under_the_per_address_cap(tmp_path):
    site = LanSite(tmp_path / "site", rooms=30, sessions=1)  # LanOptions() defaults: max_per_ip 8
    try:
        assert site.options.max_per_ip == 8
        kdinfo = site.registration.export_site_info(str(tmp_path / "usb"), "admin", "127.0.0.1", site.port)["kdinfo"]
        rooms = rooms_from_site_info(kdinfo, 30)
        done = threading.Event()
        registered = site.ctx.hub.subscribe(["room.data_imported"])
        sim = Simulation("127.0.0.1", site.port, rooms, SimOptions(
            own_address=True, timeout=10, connect_timeout=20, work_dir=str(tmp_path / "proctors")),
            on_progress=lambda: done.set())
        sim.start()
        try:
            for _ in rooms:
                assert registered.get(30) is not None, [p.progress for p in sim.proctors if not p.report.registered]
            rows = site.registration.snapshot()["rooms"]
            assert sum(1 for r in rows if r.get("data_imported")) == 30
            assert sorted(r["ip"] for r in rows) == sorted(loopback_address(i) for i in range(30))
            # the server records the import before the proctor has read its reply: wait for the proctors' side
            assert _eventually(lambda: all(p.phase in ("data_imported", "permit") for p in sim.progress())), \
                [p for p in sim.progress() if p.phase not in ("data_imported", "permit")]
            assert done.is_set()
        finally:
            sim.stop()
    finally:
        site.close()


def _eventually(condition, within=10.0):
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_on_schedule_a_proctor_starts_at_the_start_time(tmp_path):
    site = LanSite(tmp_path / "site", rooms=2, sessions=1)
    try:
        session = site.ctx.manifest()["sessions"][0]
        start = parse_time(session["start"], "start")
        site.permit(session["id"])  # permitted long before the start...
        # ...and the proctors' clock is 1.5 s before it (the real one is 30 minutes before)
        offset = start - datetime.datetime.now(CST) - datetime.timedelta(seconds=1.5)
        kdinfo = site.registration.export_site_info(str(tmp_path / "usb"), "admin", "127.0.0.1", site.port)["kdinfo"]
        seen = []
        lock = threading.Lock()
        sim = Simulation("127.0.0.1", site.port, rooms_from_site_info(kdinfo, 2), SimOptions(
            own_address=True, on_schedule=True, speed=90 * 60 / 0.5, permit_every=0.05, timeout=10,
            work_dir=str(tmp_path / "proctors")),
            on_progress=lambda: _note(sim, seen, lock), clock=lambda: datetime.datetime.now(CST) + offset)
        report = run_to_report(sim, 60)
        for p in sim.proctors:
            started = datetime.datetime.fromisoformat(p.report.started_at[session["id"]])
            assert started >= start
            phases = [phase for room, phase in seen if room == p.room]
            day = [ph for ph in PHASES if ph not in ("connecting", "failed")]
            assert [ph for ph in phases if ph != "connecting"] == day
        assert report["uploads"] == 2
    finally:
        site.close()


def _note(sim, seen, lock):
    with lock:
        for p in sim.progress():
            if not seen or (p.room, p.phase) not in seen:
                seen.append((p.room, p.phase))
