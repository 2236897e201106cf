"""系统备份 while the LAN service runs: the copy never holds the core lock (DESIGN §4); 重新上报 repairs.

A real ``LanServer`` over the test site, a real proctor client heartbeating every 75 ms,
~300 MB of real spool files, and a system backup to a slow medium. The medium's slowness
is the one stand-in: the file object the backup writes through sleeps 20 ms per MiB
written (a USB 2.0 stick writes a few MB/s), so the copy takes at least 6 s.

And the proctor's 重新“上报” of a result whose spool file got damaged sends its bytes again
and replaces the damaged file (the LAN begin answers "committed" only for an intact file).
"""

import hashlib
import math
import os
import threading
import time
import zipfile

from kd.core import backup as backup_mod
from kd.core.system import SystemService
from kd.core.upload import UploadService
from kd.formats import backup as bak
from tests.integration.lan_support import LanSite
from tests.support.fixtures import closed_after

ACTOR = "tester"  # not an account: passes require_changed
MIB = 1024 * 1024
SPOOL_MIB = 300
SECONDS_PER_MIB = 0.02  # 300 MiB: at least 6 s of copying


site = closed_after(lambda tmp_path: LanSite(tmp_path, rooms=2, sessions=1))


class SlowMedium:
    """The backup's output file on a slow medium: every MiB written costs ``seconds_per_mib``."""

    def __init__(self, f, seconds_per_mib, copying):
        self._f = f
        self.seconds_per_mib = seconds_per_mib
        self.copying = copying
        self.written = 0
        self.slept = 0.0
        self._paid = 0

    def write(self, data):
        n = self._f.write(data)
        self.written += len(data)
        while self.written - self._paid >= MIB:
            self._paid += MIB
            time.sleep(self.seconds_per_mib)
            self.slept += self.seconds_per_mib
            self.copying.set()
        return n

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def fill_spool(spool, total_mib, files):
    """``files`` real result files of ``total_mib`` MiB in all, named by their SHA-256 like ``Spool.put`` does."""
    block = os.urandom(MIB)
    shas = []
    for i in range(files):
        digest = hashlib.sha256()
        tmp = os.path.join(spool.folder, "fill-{}.tmp".format(i))
        with open(tmp, "wb") as f:
            head = "result file {}\n".format(i).encode()
            f.write(head)
            digest.update(head)
            for _ in range(total_mib // files):
                f.write(block)
                digest.update(block)
        os.replace(tmp, spool.path(digest.hexdigest()))
        shas.append(digest.hexdigest())
    return shas


def p99(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def test_heartbeat_p99_under_1s_during_a_300mb_system_backup_to_a_slow_folder(site, external_dir, monkeypatch):
    ctx = site.ctx
    shas = fill_spool(ctx.spool, SPOOL_MIB, 6)
    room = site.rooms()[0]
    proctor = site.registered(room)
    state = {"session": site.sessions_of(room)[0], "logged_in": 0, "in_exam": 0}
    proctor.heartbeat(state)
    copying, done = threading.Event(), threading.Event()
    media = []

    def slow_open(path):
        medium = SlowMedium(open(path, "wb"), SECONDS_PER_MIB, copying)  # noqa: SIM115 - closed by the backup
        media.append(medium)
        return medium

    monkeypatch.setattr(backup_mod, "_open_output", slow_open)
    outcome = {}

    def run():
        try:
            outcome["path"] = SystemService(ctx).backup(external_dir, "LAN test", ACTOR)
        except BaseException as e:  # noqa: BLE001 - reported below
            outcome["error"] = e
        finally:
            done.set()

    def record():
        with ctx.lock:
            ctx.record(ACTOR, "test.during_backup")

    recorder = threading.Thread(target=record, name="recorder")
    worker = threading.Thread(target=run, name="backup")
    worker.start()
    latencies = []
    try:
        assert copying.wait(60), "the backup did not start copying"
        assert not ctx.files_lock.acquire(timeout=0.05)  # no install, restore or clear while it copies
        recorder.start()  # a state change while the backup copies: after its frozen audit length
        while not done.is_set():
            start = time.perf_counter()
            proctor.heartbeat(state)
            latencies.append(time.perf_counter() - start)
            done.wait(0.075)
    finally:
        worker.join(120)
        if recorder.ident is not None:
            recorder.join(120)
        for sha in shas:
            os.remove(ctx.spool.path(sha))  # 300 MB less left in the pytest temp folders
    assert "error" not in outcome, outcome.get("error")
    worst = p99(latencies)
    print("\nheartbeats during the backup: {} sent, p99 {:.0f} ms, max {:.0f} ms; copy slept {:.1f} s".format(
        len(latencies), worst * 1000, max(latencies) * 1000, media[0].slept))
    assert worst < 1.0
    assert media[0].slept >= 5.0 and media[0].written >= SPOOL_MIB * MIB  # the copy was slow, as meant
    assert len(latencies) >= 20

    path = outcome["path"]
    assert path.damaged == [] and path.warnings == []
    with bak.BackupFile(path) as f:  # the backup verifies
        f.verify_all()
        assert {"spool/{}.dat".format(s) for s in shas} <= {m.name for m in f.members}
    with zipfile.ZipFile(path) as z:
        audit = z.read(bak.AUDIT)
    with open(ctx.audit.path, "rb") as f:
        live = f.read()
    assert audit and audit.endswith(b"\n") and live.startswith(audit)  # exactly the frozen first N bytes
    assert b"test.during_backup" not in audit and b"test.during_backup" in live


def test_the_proctor_uploading_again_replaces_a_damaged_spool_file(site, tmp_path, external_dir):
    """重新“上报” on the proctor PC, the first remedy the backups give for a damaged result."""
    ctx = site.ctx
    room = site.rooms()[0]
    session = site.sessions_of(room)[0]
    package = tmp_path / "result.zip"
    package.write_bytes(site.result_package(room, session))
    proctor = site.registered(room)
    sha = proctor.upload(str(package), session)["sha256"]
    spool_path = ctx.spool.path(sha)
    blob = bytearray(open(spool_path, "rb").read())
    blob[len(blob) // 2] ^= 0x01
    with open(spool_path, "wb") as f:
        f.write(bytes(blob))
    upload = UploadService(ctx, site.outbox)
    done = upload.backup_external(external_dir, "admin")
    assert [m["sha256"] for m in done["missing"]] == [sha]

    again = proctor.upload(str(package), session)  # the same package: its bytes are sent again
    assert again["sha256"] == sha and ctx.spool.verify(sha)
    assert upload.backup_external(external_dir, "admin")["complete"] is True
