"""The drill's watch over the exam (issue 15): ``--outage K`` and ``--skew K`` through real drills.

Each test is a whole drill day (``run_drill``: platform simulator over HTTP, dongle
emulator, the LAN service on loopback, simulated proctors in threads): the site must see
what was injected — a ``room_lost`` alarm, a drafted outage incident of about 1.5 lost
(simulated) minutes and a 补时 granted and acknowledged per outage; a ``clock_skew``
alarm per skewed room and a largest estimated offset of about 300 s — and the report's
``ok`` is true only then. A drill whose checks expect what was not injected ends
``ok: false`` naming the check.
"""

import os
import subprocess
import sys

import pytest

from kd.drill import DrillOptions, run_drill
from kd.drillwatch import LOST_MIN_RANGE, SKEW_S, WATCH_SPEED
from kd.lan.simulator import SimOptions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
needs_skew = pytest.mark.skipif("skew_rooms" not in SimOptions._fields,
                                reason="the simulator has no skewed clocks yet")


def _watch_fields(report):
    return {k: report[k] for k in ("time_scale", "injected", "alarms", "incidents", "extra_time_granted",
                                   "clock_skew_max_s")}


def test_drill_with_two_outages(tmp_path):
    report = run_drill(DrillOptions(rooms=3, candidates=4, outage=2), str(tmp_path))
    assert report["failures"] == [] and report["ok"] is True, _watch_fields(report)
    assert report["time_scale"] == WATCH_SPEED and report["injected"] == {"outage": 2, "skew": 0}
    assert report["proctors"]["outages"] == 2
    outage_rooms = ["11003001", "11003002"]  # the first two proctors
    assert report["alarms"]["room_lost"] == 2
    incidents = report["incidents"]
    assert sorted(d["room"] for d in incidents) == outage_rooms
    for d in incidents:
        assert (d["kind"], d["session"], d["state"]) == ("outage", "1", "confirmed")
        assert LOST_MIN_RANGE[0] <= d["lost_min"] <= LOST_MIN_RANGE[1]  # about 1.5 (90 simulated seconds)
    assert report["extra_time_granted"] == [{"room": r, "session": "1", "minutes": 2} for r in outage_rooms]
    assert report["proctors"]["extra_time_acked"] == 2  # the proctors took their 补时
    assert report["clock_skew_max_s"] is not None and abs(report["clock_skew_max_s"]) < 10  # no skew injected
    assert report.get("alarms", {}).get("clock_skew", 0) == 0
    assert report["results_at_platform"] == 3


@needs_skew
def test_drill_with_two_skewed_clocks(tmp_path):
    report = run_drill(DrillOptions(rooms=3, candidates=4, skew=2), str(tmp_path))
    assert report["failures"] == [] and report["ok"] is True, _watch_fields(report)
    assert report["injected"] == {"outage": 0, "skew": 2}
    assert report["alarms"]["clock_skew"] == 2
    assert abs(report["clock_skew_max_s"] - SKEW_S) <= 10
    # nothing was lost: no room_lost alarm, no incident, no 补时
    assert report["alarms"].get("room_lost", 0) == 0
    assert report["incidents"] == [] and report["extra_time_granted"] == []
    assert report["time_scale"] == 1.0  # the fast exam: the site's watch keeps the real clock


@needs_skew
def test_a_drill_whose_checks_expect_otherwise_is_not_ok(tmp_path):
    """A real skewed clock, checks that expect none: the site raised the alarm, the check names it."""
    report = run_drill(DrillOptions(rooms=2, candidates=4, skew=1, expect_skew=0), str(tmp_path))
    assert report["ok"] is False
    assert report["alarms"]["clock_skew"] == 1
    assert "skew: clock_skew alarms of 1 rooms, expected 0" in report["failures"]
    assert any(f.startswith("skew: clock_skew_max_s") for f in report["failures"])
    assert all(f.startswith("skew: ") for f in report["failures"]), report["failures"]


@needs_skew
def test_drill_command_with_a_skewed_clock(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "drill", "--rooms", "2", "--skew", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("演练成功")
    assert lines[1].startswith("考中监测：模拟断网 0 个 → 失去连接告警 0 个、情况记录 0 条、补时 0 分钟；"
                               "模拟时钟偏差 1 个 → 时钟偏差告警 1 个，最大偏差 ")


def test_more_outages_than_rooms_stop_the_drill_at_its_start(tmp_path):
    report = run_drill(DrillOptions(rooms=1, outage=2), str(tmp_path))
    assert report["ok"] is False and [(s["step"], s["ok"]) for s in report["steps"]] == [("start", False)]
    assert report["failures"] == ["start: ValueError: --outage 2 is not between 0 and the 1 rooms"]
    assert _watch_fields(report) == {"time_scale": None, "injected": {"outage": 2, "skew": 0}, "alarms": {},
                                     "incidents": [], "extra_time_granted": [], "clock_skew_max_s": None}
