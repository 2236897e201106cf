"""The simulated proctors carry their clock in every heartbeat; ``SimOptions.skew_s`` / ``skew_rooms``
put the first K proctors' clocks off, and the site estimates exactly those rooms off (real LAN on loopback)."""

import datetime

from kd.lan.simulator import SimOptions, Simulation, rooms_from_site_info
from tests.integration.lan_support import SkewSite, run_to_report
from tests.support.fixtures import closed_after

site = closed_after(lambda tmp_path: SkewSite(tmp_path / "site", rooms=3, sessions=1))


def test_the_first_k_proctors_clocks_are_off_and_the_site_sees_it(site, tmp_path):
    paths = site.registration.export_site_info(str(tmp_path / "usb"), "admin", "127.0.0.1", site.port)
    rooms = rooms_from_site_info(paths["kdinfo"], 3)
    session = site.ctx.manifest()["sessions"][0]["id"]
    site.permit(session)
    sim = Simulation("127.0.0.1", site.port, rooms, SimOptions(
        speed=90 * 60 / 0.5, skew_s=300.0, skew_rooms=2, work_dir=str(tmp_path / "proctors"), permit_every=0.1,
        timeout=10))
    skewed = [p for p in sim.proctors if p.report.clock_skew_s == 300.0]
    assert [p.room for p in skewed] == [r["code"] for r in rooms[:2]]
    now = datetime.datetime.now(datetime.timezone.utc)
    assert skewed[0].client.clock is skewed[0].clock  # the heartbeats carry the skewed clock
    assert 299.0 < (skewed[0].clock() - now).total_seconds() < 330.0
    assert sim.proctors[2].report.clock_skew_s == 0.0 and sim.proctors[2].client.clock is sim.proctors[2].clock
    run_to_report(sim, 120)
    estimates = site.skew.estimates()
    codes = [r["code"] for r in rooms]
    assert set(estimates) == set(codes)
    for code in codes[:2]:
        assert 240.0 < estimates[code].offset_s <= 300.0 + 30.0, estimates[code]
    assert abs(estimates[codes[2]].offset_s) < 60.0
