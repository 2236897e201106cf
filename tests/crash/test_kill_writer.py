"""Kill a writer with SIGKILL at random moments; nothing acknowledged may be lost.

The number of kills is ``--crash-kills`` (default 200, CI's minimum); every kill is
followed by a full check: the three stores open, every acknowledged write is there with
its content, every acknowledged spool file verifies, the audit chain holds.
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from kd.store.audit import AuditLog
from kd.store.database import open_stores
from kd.store.spool import Spool

WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "writer.py")

pytestmark = pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")


def run_and_kill(data_dir, rng):
    """Start the writer, kill it after a random number of acks; return the acks seen."""
    proc = subprocess.Popen(
        [sys.executable, WRITER, data_dir, str(rng.randrange(1 << 30))],
        stdout=subprocess.PIPE, universal_newlines=True,
    )
    acks = {}
    try:
        mode = rng.random()
        if mode < 0.1:
            proc.kill()  # during start-up and recovery
        else:
            want = rng.randint(0, 12)
            for line in proc.stdout:
                if line.startswith("ACK"):
                    _, i, digest = line.split()
                    acks[int(i)] = digest
                if line.startswith("READY") and want == 0 or len(acks) >= want:
                    break
            time.sleep(rng.random() * 0.004)  # spread the kill over the next write's phases
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        rest, _ = proc.communicate()
    for line in rest.splitlines():  # acks printed before the kill landed count too
        if line.startswith("ACK"):
            _, i, digest = line.split()
            acks[int(i)] = digest
    return acks


def check(data_dir, acked):
    stores = open_stores(data_dir)
    try:
        stored = {d["i"]: d["sha"] for d in stores.runtime.all("acks")}
    finally:
        stores.close()
    missing = {i: s for i, s in acked.items() if stored.get(i) != s}
    assert not missing, "acknowledged writes lost: {}".format(sorted(missing)[:10])
    spool = Spool(os.path.join(data_dir, "spool"))
    for digest in set(acked.values()):
        assert spool.has(digest) and spool.verify(digest), digest
    audit = AuditLog(os.path.join(data_dir, "audit.log"))
    assert audit.verify() is None
    logged = {e["details"]["i"] for e in audit.entries()}
    assert set(acked) <= logged


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 0.35 s a kill: the default 200 kills take 70 s; 900 s fit about 2,500
def test_sigkill_never_loses_an_acknowledged_write(tmp_path, request):
    kills = request.config.getoption("--crash-kills")
    rng = random.Random(request.config.getoption("--crash-seed"))
    data_dir = str(tmp_path)
    acked = {}
    for _ in range(kills):
        acked.update(run_and_kill(data_dir, rng))
        check(data_dir, acked)
    assert len(acked) > kills  # the writer really made progress between kills
