"""The proctor simulator against the real LAN service: a (tiny) exam day end to end."""

import json
import os
import subprocess
import sys

import pytest

from kd.core import model
from kd.errors import FormatError
from kd.lan.simulator import SimOptions, Simulation, rooms_from_site_info
from tests.integration.lan_support import LanSite
from tests.support.fixtures import closed_after

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


site = closed_after(lambda tmp_path: LanSite(tmp_path / "site", rooms=3, sessions=1))


def ready(site, tmp_path):
    """Site info exported, the session authorized and verified: proctors may start."""
    paths = site.registration.export_site_info(str(tmp_path / "usb"), "admin", "127.0.0.1", site.port)
    session = site.ctx.manifest()["sessions"][0]["id"]
    site.permit(session)
    return paths["kdinfo"], session


def test_simulated_day_in_process(site, tmp_path):
    kdinfo_path = tmp_path / "usb"
    paths = site.registration.export_site_info(str(kdinfo_path), "admin", "127.0.0.1", site.port)
    rooms = rooms_from_site_info(paths["kdinfo"], 3)
    assert [r["code"] for r in rooms] == site.rooms()
    imported = site.ctx.hub.subscribe(["room.data_imported"])
    sim = Simulation("127.0.0.1", site.port, rooms, SimOptions(
        speed=90 * 60 / 0.5, wrong_code=1, disconnect=1, result_mb=0.3, work_dir=str(tmp_path / "proctors"),
        permit_every=0.1, timeout=10)).start()
    try:
        for _ in rooms:  # proctors register and import while the session is not yet verified...
            assert imported.get(10) is not None
        session = site.ctx.manifest()["sessions"][0]["id"]
        site.permit(session)  # ...and start once it is
        report = sim.wait(60)
    finally:
        sim.stop()
    assert report["ok"], report["failures"]
    assert (report["registered"], report["data_imported"], report["sessions_started"], report["sessions_ended"],
            report["uploads"]) == (3, 3, 3, 3, 3)
    assert report["wrong_code_refused"] == 1 and report["disconnected_uploads"] == 1
    for result in report["results"]:
        doc = site.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(result["room"], result["session"]))
        assert doc["result"]["sha256"] == result["sha256"] and doc["result"]["source"] == "lan"
        assert doc["started_at"] and doc["ended_at"]
        assert site.ctx.spool.verify(result["sha256"])
    assert all(r["data_imported"] for r in site.registration.snapshot()["rooms"])
    assert site.server.partial_uploads() == []


def test_simulator_command_line(site, tmp_path):
    kdinfo_path, _ = ready(site, tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "kd.lan.simulator", "--server", "127.0.0.1:{}".format(site.port),
         "--site-info", kdinfo_path, "--rooms", "2", "--speed", str(90 * 60 / 0.3), "--result-mb", "0.1",
         "--json", "--timeout", "60"], cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] and report["uploads"] == 2
    recovered = [d for d in site.ctx.stores.runtime.all(model.ROOM_SESSIONS) if d.get("result")]
    assert sorted(d["room"] for d in recovered) == site.rooms()[:2]


def test_simulator_refuses_a_bad_site_info(tmp_path, site):
    kdinfo_path, _ = ready(site, tmp_path)
    with pytest.raises(FormatError):
        rooms_from_site_info(kdinfo_path, 4)
    bad = tmp_path / "bad.KDINFO"
    with open(kdinfo_path, "rb") as f:
        bad.write_bytes(f.read().replace(b'"reg_code":"', b'"reg_code":"X', 1))
    out = subprocess.run([sys.executable, "-m", "kd.lan.simulator", "--server", "127.0.0.1:1", "--site-info",
                          str(bad), "--rooms", "1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "考点信息" in out.stderr
