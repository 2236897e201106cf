"""Kill a writer of the audit log before every file operation of its rotations: the log still verifies.

A small writer (written into the test's folder) appends entries to an ``AuditLog`` with a
tiny ``max_bytes`` and ``keep``, so that twenty appends rotate it several times and the cap
drops files; it prints ``ACK <i>`` after each append returned. It runs under
``killpoint.py``, which SIGKILLs it just before its N-th file operation in the folder
(writing ``audit.log.new``, each rename, each append, the deletion of a capped file), for
every N. After each kill the log is opened as the next start opens it and must verify
across its files; every acknowledged entry is still there unless it was in a file the cap
dropped (then only the oldest are gone); no ``audit.log.new`` is left. Then the writer runs
again on the same folder and the log verifies once more.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from kd.store.audit import AuditLog

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KILLPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "killpoint.py")
PARAMS = {"max_bytes": 1500, "keep": 2, "max_total": 10 ** 6}
APPENDS = 20

WRITER = """
import json, sys
sys.path.insert(0, {root!r})
from kd.store.audit import AuditLog
log = AuditLog(sys.argv[1], **json.loads(sys.argv[2]))
start = int(sys.argv[3])
for i in range(start, start + {appends}):
    log.append("crash-writer", "step", {{"i": i, "pad": "x" * 100}})
    print("ACK", i, flush=True)
"""

pytestmark = pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")


def run(tmp_path, folder, kill_at, start):
    script = tmp_path / "writer.py"
    if not script.exists():
        script.write_text(WRITER.format(root=ROOT, appends=APPENDS), encoding="utf-8")
    os.makedirs(folder, exist_ok=True)
    proc = subprocess.run([sys.executable, KILLPOINT, str(kill_at), folder, str(script),
                           os.path.join(folder, "audit.log"), json.dumps(PARAMS), str(start)],
                          capture_output=True, text=True, timeout=60)
    acked = [int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("ACK")]
    return proc, acked


def check(folder, acked):
    log = AuditLog(os.path.join(folder, "audit.log"), **PARAMS)
    report = log.verify_report()
    assert report.ok, report
    assert not os.path.exists(os.path.join(folder, "audit.log.new"))
    logged = [e["details"]["i"] for e in log.entries() if e["action"] == "step"]
    assert logged == sorted(set(logged)), "an entry twice or out of order"
    lost = set(acked) - set(logged)
    assert not lost or max(lost) < min(logged), "acknowledged entries lost: {}".format(sorted(lost))
    if lost:
        assert report.rotated_away is not None  # only files the cap dropped
    return logged


def test_kill_before_every_file_operation_of_rotations(tmp_path):
    proc, acked = run(tmp_path, str(tmp_path / "count"), 0, 0)
    assert proc.returncode == 0, proc.stderr
    assert acked == list(range(APPENDS))
    count = int(re.search(r"KILLPOINT-COUNT (\d+)", proc.stderr).group(1))
    folder = str(tmp_path / "count")
    assert len([n for n in os.listdir(folder) if n.startswith("audit.log.")]) == PARAMS["keep"]
    check(folder, acked)
    caps = [e for e in AuditLog(os.path.join(folder, "audit.log"), **PARAMS).entries()
            if e["action"] == "audit.capped"]
    assert caps, "the writer must reach the cap"
    assert count > APPENDS + 3 * 3  # appends, and per rotation the new file and two renames
    for kill_at in range(1, count + 1):
        folder = str(tmp_path / "k{}".format(kill_at))
        proc, acked = run(tmp_path, folder, kill_at, 0)
        assert proc.returncode == -9, (kill_at, proc.returncode, proc.stderr)
        logged = check(folder, acked)
        proc, again = run(tmp_path, folder, 0, APPENDS)  # the next start goes on
        assert proc.returncode == 0 and again == list(range(APPENDS, 2 * APPENDS)), (kill_at, proc.stderr)
        assert check(folder, acked + again)[-1] == 2 * APPENDS - 1
        assert logged is not None
