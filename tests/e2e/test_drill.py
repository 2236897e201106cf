"""The drill: a whole exam day on one machine (``main.py drill``), as CI runs it.

``main.py drill --rooms 10 --json`` runs as a real child process (platform simulator,
dongle emulator, LAN service, 10 simulated proctors, all over real sockets in a temp
folder); its one-line JSON report must show every result expected, recovered, uploaded
and at the platform, every receipt verified, every step done, and nothing failed. A
multi-session formal drill runs in-process, and a drill that cannot be set up must
report the failed step and stop there.
"""

import json
import os
import subprocess
import sys

from kd.drill import DrillOptions, run_drill

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

def steps(sessions):
    """The drill's steps: one sync, then each session verified and run in turn (the admin's day)."""
    per_session = [name for n in range(1, sessions + 1) for name in ("verify_{}".format(n), "session_{}".format(n))]
    return (["start", "login", "setup", "load", "export_site_info", "register_rooms", "authorize", "seal_check",
             "sync_lock"] + per_session + ["run_sessions", "recover", "backup_external", "upload", "platform_check",
                                           "proofs"])


def assert_complete(report, rooms, sessions):
    assert report["failures"] == [] and report["ok"] is True
    assert (report["rooms"], report["sessions"]) == (rooms, sessions)
    expected = rooms * sessions  # every room has candidates in every session of the drill site
    assert report["results_expected"] == expected
    assert report["results_received"] == report["results_uploaded"] == report["results_at_platform"] == expected
    assert report["receipts_verified"] == 2 * expected  # the platform's and the site's copy
    assert report["proofs_verified"] == sessions  # each session's proof, here and at the platform (issue 16)
    assert [s["step"] for s in report["steps"]] == steps(sessions) and all(s["ok"] for s in report["steps"])
    proctors = report["proctors"]
    assert (proctors["registered"], proctors["data_imported"], proctors["uploads"]) == (rooms, rooms, expected)
    assert proctors["sessions_started"] == proctors["sessions_ended"] == expected
    assert report["reports"]["seal_check"] >= 1 and report["reports"]["upload_status"] >= sessions
    assert report["seconds"] > 0


def test_drill_10_rooms_command(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))  # the drill's temp folder, to see it removed
    out = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "drill", "--rooms", "10", "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert_complete(report, 10, 1)
    assert report["work_dir"] is None and report["mode"] == "mock"
    assert [n for n in os.listdir(str(tmp_path)) if n.startswith("kd-drill-")] == []


def test_drill_30_rooms_two_sessions_command(tmp_path):
    """The demo day's size through ``main.py drill``: 30 proctors, each from its own loopback
    address, register under the production cap of 8 connections per address; session 2 is
    verified (with the one sync before session 1) only after session 1's results are in."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "drill", "--rooms", "30", "--sessions", "2",
                          "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert_complete(report, 30, 2)
    names = [s["step"] for s in report["steps"]]
    assert names.index("sync_lock") < names.index("verify_1") < names.index("session_1") < names.index("verify_2")


def test_drill_formal_with_sessions(tmp_path):
    report = run_drill(DrillOptions(rooms=3, sessions=3, candidates=5, mode="formal", result_mb=0.2),
                       str(tmp_path))
    assert_complete(report, 3, 3)
    assert report["mode"] == "formal"
    backups = os.listdir(str(tmp_path / "external"))
    # 9 results + the manifest + each session's completeness proof
    assert len(backups) == 1 and len(os.listdir(str(tmp_path / "external" / backups[0]))) == 9 + 1 + 3


def test_drill_reports_a_failed_step_and_stops(tmp_path):
    report = run_drill(DrillOptions(rooms=1, mode="practice"), str(tmp_path))
    assert report["ok"] is False
    assert len(report["failures"]) == 1 and report["failures"][0].startswith("setup: SetupRefused")
    assert [(s["step"], s["ok"]) for s in report["steps"]] == [("start", True), ("login", True), ("setup", False)]
    assert report["results_expected"] == 0 and report["receipts_verified"] == 0


def test_drill_command_exit_code_on_failure(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "drill", "--rooms", "0"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--rooms" in out.stderr  # argparse: bad input changes nothing
