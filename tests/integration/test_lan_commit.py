"""KDLAN upload commit semantics on loopback (docs/lan-protocol.md, upload_begin/upload_commit).

- A storage failure while the commit is recorded (the result spool or the runtime DB
  cannot be written) is ``E_STORAGE``: retryable, ``offset`` = the bytes the server
  holds, a ``retry_after``, the partial copy kept; once the storage is back the proctor
  commits without sending a byte again. The failures are real OS conditions: the spool
  folder replaced by a file, a folder where the runtime DB writes its temporary file, a
  full tmpfs mounted on the spool (only where ``mount`` is permitted).
- After a commit whose reply was lost, ``upload_begin`` for the same file answers
  ``offset = size, committed: true`` and ``upload_commit`` answers ``ok`` again.
- Partial uploads no connection has begun or continued for ``part_max_age`` are removed
  at start and by the server's housekeeping (mtimes set with ``os.utime``).
"""

import hashlib
import os
import shutil
import subprocess
import threading
import time

import pytest

from kd.core import model
from kd.lan.client import LanError, ProctorClient
from kd.lan.server import UPLOAD_DIR
from tests.integration.lan_support import LanSite, recv, send
from tests.support.fixtures import closed_after

DAY = 24 * 3600.0


class CountingClient(ProctorClient):
    """The reference client, counting the result bytes it sends in ``upload_chunk`` requests."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.chunk_bytes = 0
        self.kinds = []

    def request(self, kind, fields=None, body=b"", auth=True):
        self.kinds.append(kind)
        if kind == "upload_chunk":
            self.chunk_bytes += len(body)
        return super().request(kind, fields, body, auth)


site = closed_after(LanSite)


def _counting(site, room, token):
    return CountingClient("127.0.0.1", site.port, timeout=10.0, room=room, token=token)


def _send_all(client, session, data, chunk=64 * 1024):
    sha = hashlib.sha256(data).hexdigest()
    h, _ = client.request("upload_begin", {"session": session, "size": len(data), "sha256": sha})
    offset = h["offset"]
    while offset < len(data):
        h, _ = client.request("upload_chunk", {"offset": offset}, data[offset:offset + chunk])
        offset = h["offset"]
    return sha


def _recorded(site, room, session):
    doc = site.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(room, session)) or {}
    return doc.get("result")


def _events(site, name):
    seen = []
    arrived = threading.Event()

    def on(event):
        seen.append(event.data)
        arrived.set()

    site.ctx.hub.on(name, on)
    return seen, arrived


# -- 1. a storage failure at commit is retryable; the partial copy is kept ---------------------------------

def test_spool_folder_unusable_at_commit_is_a_retryable_storage_error(site, tmp_path):
    room, session, data, _ = site.result_file(tmp_path)
    c = site.registered(room)
    sha = _send_all(c, session, data)
    spool = site.ctx.spool.folder
    aside = spool + ".aside"
    os.rename(spool, aside)
    with open(spool, "wb") as f:  # the spool folder is now a file: nothing can be written in it
        f.write(b"not a folder")
    try:
        with pytest.raises(LanError) as e:
            c.request("upload_commit")
        assert e.value.code == "E_STORAGE"
        assert e.value.offset == len(data)  # the server holds every byte
        assert e.value.retry_after and e.value.retry_after > 0
        assert site.server.partial_uploads() == [{"room": room, "session": session, "sha256": sha,
                                                  "bytes": len(data)}]
        assert _recorded(site, room, session) is None
        with pytest.raises(LanError) as again:  # still broken: the same answer, nothing lost
            c.request("upload_commit")
        assert again.value.code == "E_STORAGE" and again.value.offset == len(data)
    finally:
        os.remove(spool)
        os.rename(aside, spool)
    h, _ = c.request("upload_commit")  # the storage is back: the same connection commits
    assert h["sha256"] == sha and h["result"]["duplicate"] is False
    assert _recorded(site, room, session)["sha256"] == sha
    assert site.ctx.spool.verify(sha)
    assert site.server.partial_uploads() == []


def test_runtime_db_unwritable_at_commit_keeps_the_part_and_the_client_retries(site, tmp_path):
    room, session, data, path = site.result_file(tmp_path)
    sha = hashlib.sha256(data).hexdigest()
    token = site.registered(room).token
    c = _counting(site, room, token)
    blocker = os.path.join(site.ctx.data_dir, "db", "runtime.json.tmp")
    assert os.path.exists(os.path.join(site.ctx.data_dir, "db", "runtime.json.0")) or \
        os.path.exists(os.path.join(site.ctx.data_dir, "db", "runtime.json.1"))
    os.mkdir(blocker)  # the runtime DB writes its next generation here first: it cannot
    pauses = []

    def pause(seconds):  # the client's back-off: the administrator frees the disk meanwhile
        pauses.append(seconds)
        assert site.server.partial_uploads() == [{"room": room, "session": session, "sha256": sha,
                                                  "bytes": len(data)}]
        assert _recorded(site, room, session) is None
        os.rmdir(blocker)

    reply = c.upload(path, session, chunk=64 * 1024, pause=pause)
    assert len(pauses) == 1 and pauses[0] > 0
    assert c.chunk_bytes == len(data)  # every byte sent once: the retry did not resend
    assert c.kinds.count("upload_commit") == 2 and c.kinds.count("upload_begin") == 2
    assert reply["sha256"] == sha and reply["result"]["sha256"] == sha
    assert _recorded(site, room, session)["sha256"] == sha
    assert site.server.partial_uploads() == []


def test_runtime_db_unwritable_raw_reply_then_begin_resumes_at_size(site, tmp_path):
    room, session, data, _ = site.result_file(tmp_path)
    c = site.registered(room)
    sha = _send_all(c, session, data)
    blocker = os.path.join(site.ctx.data_dir, "db", "runtime.json.tmp")
    os.mkdir(blocker)
    try:
        with pytest.raises(LanError) as e:
            c.request("upload_commit")
        assert (e.value.code, e.value.offset) == ("E_STORAGE", len(data))
        assert e.value.retry_after and e.value.retry_after > 0
    finally:
        os.rmdir(blocker)
    assert [p["bytes"] for p in site.server.partial_uploads()] == [len(data)]
    c.close()  # the proctor comes back later on a new connection
    h, _ = c.request("upload_begin", {"session": session, "size": len(data), "sha256": sha})
    assert h["offset"] == len(data) and not h.get("committed")
    h, _ = c.request("upload_commit")
    assert h["sha256"] == sha and _recorded(site, room, session)["sha256"] == sha


def _can_mount(where):
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = os.path.join(where, "mount-probe")
    os.makedirs(probe)
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        if ok:
            subprocess.run(["umount", probe], check=True)
        return ok
    finally:
        os.rmdir(probe)


def test_full_disk_under_the_spool_then_retry(site, tmp_path):
    if not _can_mount(str(tmp_path)):
        pytest.skip("mounting a tmpfs is not permitted here")
    room, session, data, path = site.result_file(tmp_path, answer_kb=64)
    sha = hashlib.sha256(data).hexdigest()
    token = site.registered(room).token
    c = _counting(site, room, token)
    spool = site.ctx.spool.folder
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", spool], check=True)
    mounted = [True]
    try:
        with open(os.path.join(spool, "filler"), "wb") as f:  # fill the little disk up
            try:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            except OSError:
                pass
    except OSError:
        pass
    errors = []

    def pause(seconds):  # the administrator frees the disk (here: the full tmpfs goes away)
        errors.append(seconds)
        subprocess.run(["umount", spool], check=True)
        mounted[0] = False

    try:
        reply = c.upload(path, session, chunk=64 * 1024, pause=pause)
    finally:
        if mounted[0]:
            subprocess.run(["umount", spool], check=True)
    assert len(errors) == 1
    assert c.chunk_bytes == len(data)
    assert reply["sha256"] == sha
    assert _recorded(site, room, session)["sha256"] == sha and site.ctx.spool.verify(sha)
    assert site.server.partial_uploads() == []


def _fill(folder):
    """Write zeros into ``folder`` until its file system is full; the filler's path."""
    filler = os.path.join(folder, "filler")
    try:
        with open(filler, "wb", buffering=0) as f:
            block = b"\0" * (1024 * 1024)
            while True:
                f.write(block)
    except OSError:
        pass
    return filler


def test_full_disk_under_the_uploads_folder(site, tmp_path):
    if not _can_mount(str(tmp_path)):
        pytest.skip("mounting a tmpfs is not permitted here")
    room, session, data, _ = site.result_file(tmp_path)
    sha = hashlib.sha256(data).hexdigest()
    c = site.registered(room)
    uploads = site.server.upload_dir
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", uploads], check=True)
    try:  # too little room for the upload: a retryable refusal, not a final one
        with pytest.raises(LanError) as e:
            c.request("upload_begin", {"session": session, "size": len(data), "sha256": sha})
        assert (e.value.code, e.value.offset) == ("E_STORAGE", 0) and e.value.retry_after > 0
    finally:
        subprocess.run(["umount", uploads], check=True)

    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=70m", "tmpfs", uploads], check=True)
    try:
        begin = {"session": session, "size": len(data), "sha256": sha}
        assert c.request("upload_begin", begin)[0]["offset"] == 0
        c.request("upload_chunk", {"offset": 0}, data[:100000])
        filler = _fill(uploads)  # the disk fills up mid-upload
        with pytest.raises(LanError) as e:
            c.request("upload_chunk", {"offset": 100000}, data[100000:])
        assert e.value.code == "E_STORAGE" and e.value.retry_after > 0
        held = e.value.offset
        assert 100000 <= held < len(data)
        os.remove(filler)  # space again: continue from what the server holds
        assert c.request("upload_chunk", {"offset": held}, data[held:])[0]["offset"] == len(data)
        h, _ = c.request("upload_commit")
        assert h["sha256"] == sha and _recorded(site, room, session)["sha256"] == sha
    finally:
        subprocess.run(["umount", uploads], check=True)


def test_refused_content_still_discards(site, tmp_path):
    room = site.rooms()[0]
    session = site.sessions_of(room)[0]
    junk = os.urandom(5000)
    c = site.registered(room)
    _send_all(c, session, junk)
    with pytest.raises(LanError) as e:
        c.request("upload_commit")
    assert e.value.code == "E_REFUSED"
    assert site.server.partial_uploads() == []


# -- 2. a commit whose reply was lost: upload_begin answers "already complete" ----------------------------

def _commit_without_reading(site, room, token, session, data):
    """Upload and commit on a raw socket, closing it before the commit reply is read."""
    seen, committed = _events(site, "lan.committed")
    sha = hashlib.sha256(data).hexdigest()
    sock = site.raw()
    auth = {"room": room, "token": token}
    send(sock, dict(auth, type="upload_begin", seq=1, session=session, size=len(data), sha256=sha))
    assert recv(sock).header["offset"] == 0
    seq, offset = 2, 0
    while offset < len(data):
        body = data[offset:offset + 256 * 1024]
        send(sock, dict(auth, type="upload_chunk", seq=seq, offset=offset), body)
        reply = recv(sock).header
        assert reply["type"] == "ok", reply
        offset, seq = reply["offset"], seq + 1
    send(sock, dict(auth, type="upload_commit", seq=seq))
    sock.close()  # the reply is lost
    assert committed.wait(10)
    return sha


def test_lost_commit_reply_then_begin_answers_complete(site, tmp_path):
    room, session, data, path = site.result_file(tmp_path)
    token = site.registered(room).token
    sha = _commit_without_reading(site, room, token, session, data)
    first = _recorded(site, room, session)
    assert first["sha256"] == sha and site.server.partial_uploads() == []

    c = _counting(site, room, token)  # the proctor reconnects and begins again
    h, _ = c.request("upload_begin", {"session": session, "size": len(data), "sha256": sha})
    assert h["offset"] == len(data) and h["committed"] is True
    with pytest.raises(LanError) as e:  # nothing more to send
        c.request("upload_chunk", {"offset": len(data)}, b"x")
    assert e.value.code == "E_STATE"
    c.chunk_bytes = 0  # the refused probe above is not part of the upload
    h, _ = c.request("upload_commit")
    assert (h["room"], h["session"], h["sha256"], h["size"]) == (room, session, sha, len(data))
    assert {k: v for k, v in h["result"].items() if k != "duplicate"} == dict(first, room=room, session=session)
    assert h["result"]["duplicate"] is True
    assert _recorded(site, room, session) == first
    assert c.chunk_bytes == 0

    reply = c.upload(path, session)  # the reference client follows the doc: not a byte again
    assert reply["sha256"] == sha and c.chunk_bytes == 0
    assert site.server.partial_uploads() == []


def test_complete_after_a_restart_and_a_leftover_part_is_removed(site, tmp_path):
    room, session, data, path = site.result_file(tmp_path)
    c = site.registered(room)
    reply = c.upload(path, session)
    sha = reply["sha256"]
    site.server.stop()
    part = os.path.join(site.ctx.data_dir, UPLOAD_DIR, "{}.{}.{}.part".format(room, session, sha))
    with open(part, "wb") as f:  # as left by a server killed after recording, before removing it
        f.write(data)
    site.server = site.new_server()
    c.port = site.port
    c.close()
    h, _ = c.request("upload_begin", {"session": session, "size": len(data), "sha256": sha})
    assert h["offset"] == len(data) and h["committed"] is True
    assert not os.path.exists(part)
    assert c.request("upload_commit")[0]["result"]["sha256"] == sha


def test_another_package_after_a_commit_is_not_complete(site, tmp_path):
    room, session, data, path = site.result_file(tmp_path)
    c = site.registered(room)
    c.upload(path, session)
    other = site.result_package(room, session, answer_kb=8, salt=b"other")
    h, _ = c.request("upload_begin", {"session": session, "size": len(other),
                                      "sha256": hashlib.sha256(other).hexdigest()})
    assert h["offset"] == 0 and not h.get("committed")


# -- 3. abandoned partial uploads are removed after part_max_age ------------------------------------------

def _part(site, room, session, data):
    sha = hashlib.sha256(data).hexdigest()
    return os.path.join(site.server.upload_dir, "{}.{}.{}.part".format(room, session, sha))


def _age(path, seconds):
    when = time.time() - seconds
    os.utime(path, (when, when))


def test_abandoned_part_is_removed_at_start_and_a_fresh_one_kept(site, tmp_path, caplog):
    rooms = site.rooms()
    old_room, new_room = rooms[0], rooms[1]
    _, session, old, old_path = site.result_file(tmp_path, room=old_room)
    _, session2, new, new_path = site.result_file(tmp_path, room=new_room)
    c_old = site.registered(old_room)
    c_new = site.registered(new_room)
    for c, path, s in ((c_old, old_path, session), (c_new, new_path, session2)):
        with pytest.raises(LanError):
            c.upload(path, s, chunk=10000, abort_after=30000)
    site.server.stop()
    _age(_part(site, old_room, session, old), DAY + 60)
    _age(_part(site, new_room, session2, new), DAY - 3600)  # 23 h: still resumable
    with caplog.at_level("INFO", logger="kd.lan"):
        site.server = site.new_server()
    assert [p["room"] for p in site.server.partial_uploads()] == [new_room]
    assert any("abandoned" in r.getMessage() and old_room in r.getMessage() for r in caplog.records)
    for c in (c_old, c_new):
        c.port = site.port
    begin = {"session": session, "size": len(old), "sha256": hashlib.sha256(old).hexdigest()}
    assert c_old.request("upload_begin", begin)[0]["offset"] == 0  # starts again from 0
    begin = {"session": session2, "size": len(new), "sha256": hashlib.sha256(new).hexdigest()}
    assert c_new.request("upload_begin", begin)[0]["offset"] == 30000  # resumes


def test_housekeeping_removes_an_abandoned_part_but_not_one_in_use(tmp_path):
    site = LanSite(tmp_path, sweep_interval=0.05)
    try:
        room, session, data, path = site.result_file(tmp_path)
        c = site.registered(room)
        with pytest.raises(LanError):
            c.upload(path, session, chunk=10000, abort_after=20000)
        part = _part(site, room, session, data)
        sha = hashlib.sha256(data).hexdigest()

        # a connection holds the upload: an old mtime alone does not make it abandoned
        h, _ = c.request("upload_begin", {"session": session, "size": len(data), "sha256": sha})
        assert h["offset"] == 20000
        assert time.time() - os.stat(part).st_mtime < 3600  # upload_begin touched it
        _age(part, DAY + 60)
        assert site.server.sweep_parts() == []
        assert os.path.exists(part)

        closed = threading.Event()
        site.ctx.hub.on("lan.closed", lambda e: closed.set())
        c.close()
        assert closed.wait(10)
        seen, removed = _events(site, "lan.part_removed")
        assert removed.wait(10)  # the accept thread's housekeeping found it
        assert seen[0]["room"] == room and seen[0]["sha256"] == sha and seen[0]["bytes"] == 20000
        assert not os.path.exists(part) and site.server.partial_uploads() == []
        assert c.request("upload_begin", {"session": session, "size": len(data), "sha256": sha})[0]["offset"] == 0
    finally:
        site.close()


def test_a_resumed_part_is_not_swept(site, tmp_path):
    room, session, data, path = site.result_file(tmp_path)
    c = site.registered(room)
    with pytest.raises(LanError):
        c.upload(path, session, chunk=10000, abort_after=20000)
    part = _part(site, room, session, data)
    _age(part, DAY - 60)  # paused almost a day, then the proctor comes back
    sha = hashlib.sha256(data).hexdigest()
    assert c.request("upload_begin", {"session": session, "size": len(data), "sha256": sha})[0]["offset"] == 20000
    closed = threading.Event()
    site.ctx.hub.on("lan.closed", lambda e: closed.set())
    c.close()
    assert closed.wait(10)
    assert site.server.sweep_parts(now=time.time() + 120) == []  # a day after the pause, not after begin
    assert os.path.exists(part)
    assert c.upload(path, session)["sha256"] == sha
