"""SIGKILL the headless server during 20 concurrent LAN uploads; restart; the proctors resume.

A drill data folder is prepared in-process with the real ``open_site`` (drill platform, dongle
emulator): site set up, package loaded, 20 rooms registered (each from its own loopback
address, 127.0.0.10-29, as 20 proctor machines) with their room data imported, the
session authorized, the dongle synced and the session verified. Then ``main.py
--headless`` serves that folder in a child process, and 20 reference clients
(``kd.lan.client.ProctorClient``) upload result packages at once: ten run to their
commit reply, ten are held after a chunk reply, each at another point of its file (from
the first chunk to every byte sent but no commit yet). The server is killed with
SIGKILL, restarted on the same port, and the held clients resume.

Checked: every chunk the server acknowledged is in its partial file after the restart;
the resumed uploads continue from there (not from 0) and complete; after a clean stop,
every upload acknowledged by a commit reply is recorded for its room and session with
its SHA-256 and present in the spool, verifying; no partial upload is left.
"""

import datetime
import hashlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading

import pytest

from kd.core import model
from kd.formats.result import ABSENT, PRESENT, build_result
from kd.formats.timeutil import CST
from kd.lan.client import LanError, ProctorClient
from kd.lan.server import UPLOAD_DIR
from kd.site import LanOptions, open_site
from kd.store.database import open_stores
from kd.store.spool import Spool

pytestmark = pytest.mark.skipif(os.name == "nt", reason="SIGKILL and 127.0.0.x source addresses are POSIX")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOMS = 20
HELD = 10  # clients held mid-upload when the server is killed
CHUNK = 64 * 1024
WAIT = 30.0


def prepare(data_dir):
    """The drill data folder: rooms registered from their own IPs, the session verified."""
    site = {"rooms": ROOMS, "sessions": 1, "candidates": 4, "room_kb": 4, "first_start_in": 10, "duration": 30}
    app = open_site(data_dir, lan=LanOptions(host="127.0.0.1", port=0), ticks=True, probe_s=60.0, drill_site=site)
    try:
        core = app.core
        core.accounts.change_password("admin", "888", "crash-2026")
        core.accounts.setup(app.simulator.site_code, model.MOCK, "admin")
        core.loading.load_online("admin")
        manifest = app.ctx.manifest()
        rooms = []
        for i, room in enumerate(manifest["rooms"]):
            code, ip = room["code"], "127.0.0.{}".format(10 + i)
            reg_code = app.ctx.stores.runtime.get(model.ROOMS, code)["reg_code"]
            token = core.registration.register(code, reg_code, ip)["token"]
            core.registration.mark_data_imported(code, token, ip, core.loading.room_data_sha256(code))
            rooms.append({"code": code, "ip": ip, "token": token})
        session = manifest["sessions"][0]["id"]
        core.authorization.authorize_online(session, "admin")
        app.sync_lock()
        core.verification.verify_online(session, "admin")
        return manifest, session, rooms
    finally:
        app.close()


def result_package(manifest, room, session, answer_kb):
    people = sorted((c for c in manifest["candidates"] if c["room"] == room and c["session"] == session),
                    key=lambda c: c["seat"])
    cands = []
    for i, c in enumerate(people):
        seed = hashlib.sha256("{}|{}".format(room, c["ticket"]).encode()).digest()
        # incompressible answers, so the package (a zip) is about answer_kb per candidate
        answer = b"".join(hashlib.sha256(seed + n.to_bytes(4, "big")).digest() for n in range(answer_kb * 32))
        cands.append({"ticket": c["ticket"], "subject": c["subject"], "status": ABSENT if i == 0 else PRESENT,
                      "answer": None if i == 0 else answer})
    subjects = next(s["subjects"] for s in manifest["sessions"] if s["id"] == session)
    return build_result(site_code=manifest["site_code"], room_code=room, session_id=session,
                        created_at=datetime.datetime.now(CST), candidates=cands, subjects=subjects)


class Headless:
    """``main.py --headless`` on a data folder, its port read from the ready line."""

    def __init__(self, data_dir, port, log_path):
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "main.py"), "--headless", "--lan-port", str(port),
             "--data-dir", data_dir], cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log,
            universal_newlines=True, encoding="utf-8")
        lines = queue.Queue()

        def read():
            for line in self.proc.stdout:
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        self.port = None
        while self.port is None:
            try:
                line = lines.get(timeout=WAIT)
            except queue.Empty:
                self.stop()
                raise AssertionError("the headless server did not announce its port") from None
            found = re.search(r"考场通讯端口 (\d+)", line)
            if found:
                self.port = int(found.group(1))

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(WAIT) == -signal.SIGKILL

    def terminate(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(WAIT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        self.log.close()


class Uploader(threading.Thread):
    """One proctor uploading its result; a held one stops once ``hold`` of its file is
    acknowledged (a fraction, 1.0: everything but the commit) until released."""

    def __init__(self, port, room, session, path, hold, release, restarted):
        super().__init__(name="uploader-" + room["code"], daemon=True)
        self.client = ProctorClient("127.0.0.1", port, timeout=WAIT, source_address=(room["ip"], 0),
                                    room=room["code"], token=room["token"])
        self.room, self.session, self.path = room["code"], session, path
        self.size = os.path.getsize(path)
        with open(path, "rb") as f:
            self.sha256 = hashlib.sha256(f.read()).hexdigest()
        self.hold = hold
        self.held = hold is not None
        self.release, self.restarted = release, restarted
        self.at_hold = threading.Event()
        self.acked_offset = 0  # the last offset a chunk reply confirmed before the kill
        self.resumed_offsets = []
        self.committed = None
        self.error = None

    def _progress(self, offset, size):
        if self.restarted.is_set():
            self.resumed_offsets.append(offset)
            return
        self.acked_offset = offset
        if self.held and offset >= size * self.hold and not self.at_hold.is_set():
            self.at_hold.set()
            self.release.wait(WAIT)

    def run(self):
        try:
            try:
                self.committed = self.client.upload(self.path, self.session, chunk=CHUNK, retries=0,
                                                    progress=self._progress)
            except LanError as e:
                if e.code != "E_NET" or not self.held:
                    raise
                self.client.close()
                assert self.restarted.wait(WAIT), "the server was not restarted"
                self.committed = self.client.upload(self.path, self.session, chunk=CHUNK, retries=0,
                                                    progress=self._progress)
            self.client.bye()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def test_sigkill_during_20_uploads_loses_nothing_acknowledged(tmp_path):
    data_dir = str(tmp_path / "data")
    manifest, session, rooms = prepare(data_dir)
    work = tmp_path / "proctors"
    work.mkdir()
    server = Headless(data_dir, 0, str(tmp_path / "headless.log"))
    port = server.port
    release, restarted = threading.Event(), threading.Event()
    uploaders = []
    try:
        for i, room in enumerate(rooms):
            j = i - (ROOMS - HELD)
            hold = (j + 1) / HELD if j >= 0 else None
            path = str(work / "{}.zip".format(room["code"]))
            with open(path, "wb") as f:
                f.write(result_package(manifest, room["code"], session, answer_kb=16 if hold is None else 128))
            uploaders.append(Uploader(port, room, session, path, hold, release, restarted))
        for u in uploaders:
            u.start()
        free = [u for u in uploaders if not u.held]
        held = [u for u in uploaders if u.held]
        for u in free:
            u.join(WAIT)
            assert u.error is None and u.committed is not None, (u.room, u.error)
        for u in held:
            assert u.at_hold.wait(WAIT), (u.room, u.error)
            assert u.committed is None
        server.kill()  # 10 committed, 10 mid-upload with their connections open
        release.set()
        server.stop()
        parts = {name.split(".")[0]: os.path.getsize(os.path.join(data_dir, UPLOAD_DIR, name))
                 for name in os.listdir(os.path.join(data_dir, UPLOAD_DIR)) if name.endswith(".part")}
        for u in held:  # every acknowledged chunk is on disk
            assert 0 < u.acked_offset <= parts.get(u.room, -1) <= u.size, (u.room, u.acked_offset, parts.get(u.room))

        server = Headless(data_dir, port, str(tmp_path / "headless.log"))
        assert server.port == port
        restarted.set()
        for u in held:
            u.join(WAIT)
            assert u.error is None and u.committed is not None, (u.room, u.error)
            if parts[u.room] < u.size:  # resumed from the server's offset, not from 0
                assert u.resumed_offsets and min(u.resumed_offsets) > parts[u.room], (u.room, u.resumed_offsets[:3])
            else:  # every byte was there: straight to the commit
                assert u.resumed_offsets == [], (u.room, u.resumed_offsets)
        assert server.terminate() == 0  # a clean stop
    finally:
        release.set()
        restarted.set()
        server.stop()

    stores = open_stores(data_dir)
    spool = Spool(os.path.join(data_dir, "spool"))
    try:
        for u in uploaders:
            assert u.committed["sha256"] == u.sha256 and u.committed["size"] == u.size
            doc = stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(u.room, session))
            assert doc and doc["result"]["sha256"] == u.sha256, u.room
            assert doc["result"]["source"] == "lan"
            assert spool.has(u.sha256) and spool.verify(u.sha256), u.room
    finally:
        stores.close()
    assert [n for n in os.listdir(os.path.join(data_dir, UPLOAD_DIR)) if n.endswith(".part")] == []
