"""The drill's completeness proofs (kd.drillproof, issue 16), through whole drills in-process.

A good day: one proof per session verified here and at the simulator, exported to
``WORK/proofs`` (``proof_files``), the same file next to the external backup. A day where
one proctor never uploads (``no_upload=1``): the day goes on without that room and ends
``ok: false``, the proof's failing check naming the room. And ``main.py drill --keep``
lists the exported proofs, which ``main.py proof verify`` accepts.
"""

import json
import os
import subprocess
import sys

from kd.drill import DrillOptions, run_drill
from kd.formats import proof as P
from kd.formats.signing import TrustedKeys
from kd.platform.simdata import read_public_key

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def platform_key(work):
    return read_public_key(os.path.join(work, "data", "drill", "platform", "platform.pub"))


def test_a_good_day_verifies_one_proof_per_session_here_and_at_the_platform(tmp_path):
    report = run_drill(DrillOptions(rooms=3, sessions=2, candidates=4), str(tmp_path))
    assert report["ok"], report["failures"]
    assert report["proofs_verified"] == 2 and [s["ok"] for s in report["steps"] if s["step"] == "proofs"] == [True]
    files = report["proof_files"]
    assert [os.path.basename(f) for f in files] == [P.file_name("11003", "1"), P.file_name("11003", "2")]
    trusted = TrustedKeys([platform_key(str(tmp_path))])
    for path in files:
        assert os.path.dirname(path) == os.path.join(str(tmp_path), "proofs")
        data = open(path, "rb").read()
        verdict = P.verify(data, trusted)
        assert verdict.ok, verdict.message()
        assert len(verdict.body["rooms"]) == 3 and len(verdict.body["roster"]) == 3 * 4
        copies = [os.path.join(root, name) for root, _dirs, names in os.walk(os.path.join(str(tmp_path), "external"))
                  for name in names if name == os.path.basename(path)]
        assert len(copies) == 1 and open(copies[0], "rb").read() == data


def test_a_proctor_that_never_uploads_ends_the_day_not_ok_and_the_proof_names_its_room(tmp_path):
    report = run_drill(DrillOptions(rooms=3, sessions=1, candidates=4, no_upload=1), str(tmp_path))
    assert report["ok"] is False and report["proofs_verified"] == 0
    room = "11003001"  # the first proctor's room
    proof_failures = [f for f in report["failures"] if f.startswith("proof 1: ")]
    assert len(proof_failures) == 1 and proof_failures[0].startswith("proof 1: result: 考场 {} ".format(room))
    assert "recover: no result for room {} session 1".format(room) in report["failures"]
    # the others' day went on: uploaded, at the platform, the proof sent (and found wanting there too)
    assert report["results_uploaded"] == report["results_at_platform"] == 2
    [path] = report["proof_files"]
    verdict = P.verify(open(path, "rb").read(), TrustedKeys([platform_key(str(tmp_path))]))
    assert not verdict.ok and (verdict.first.id, verdict.first.room) == ("result", room)


def test_drill_keep_lists_the_proofs_and_proof_verify_accepts_them(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "drill", "--rooms", "2", "--candidates", "3",
                          "--keep", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["proofs_verified"] == 1 and report["work_dir"]
    [path] = report["proof_files"]
    key = os.path.join(report["work_dir"], "data", "drill", "platform", "platform.pub")
    check = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "proof", "verify", path, "--trust", key],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr[-2000:]
