"""The LAN upload store without sockets: real part files in tmp_path, recording collaborators.

``RecordingRecovery`` stands in for the recovery service's side the store talks to
(``recovered()`` and ``receive()``): it lists every call, reads and checks the stream as
the real one does, records what it accepted, and raises what a test scripts.
``RecordingHub`` lists every event; ``FakeClock`` is real time plus an offset the test
moves (part ages are compared with file modification times). The owners are plain
objects, as the server's connections are.
"""

import hashlib
import os
import time

import pytest

from kd.core.loading import NotLoaded
from kd.errors import FormatError, IntegrityError, ResultConflict, SpoolError
from kd.lan.replies import Reply
from kd.lan.upload_state import UploadState
from kd.lan.uploads import DISK_RESERVE, UploadStore, parse_part

ROOM, SESSION = "R01", "S1"
DATA = bytes(range(256)) * 40  # 10,240 bytes
SHA = hashlib.sha256(DATA).hexdigest()
DAY = 24 * 3600.0


class RecordingRecovery:
    def __init__(self):
        self.calls = []
        self.records = []
        self.raises = []  # exceptions for the next receive() calls, in order

    def recovered(self):
        self.calls.append(("recovered",))
        return [dict(r) for r in self.records]

    def receive(self, room, session, stream, sha256, size, source, actor):
        data = stream.read()
        self.calls.append(("receive", room, session, sha256, size, source, actor, data))
        if self.raises:
            raise self.raises.pop(0)
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError("结果包与声明的 SHA-256 不符。")
        result = {"sha256": sha256, "size": size, "counts": {}, "duplicate": False}
        self.records.append({"room": room, "session": session, "result": result})
        return dict(result, room=room, session=session)

    def receives(self):
        return [c for c in self.calls if c[0] == "receive"]


class RecordingHub:
    def __init__(self):
        self.events = []

    def publish(self, event, **fields):
        self.events.append((event, fields))

    def names(self):
        return [e for e, _ in self.events]


class FakeClock:
    def __init__(self):
        self.offset = 0.0
        self.mono = 1000.0

    def time(self):
        return time.time() + self.offset

    def monotonic(self):
        return self.mono


class Owner:
    """A connection as the store sees it: any object."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "Owner({})".format(self.name)


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


class Env:
    def __init__(self, tmp_path):
        self.folder = str(tmp_path / "lan-uploads")
        self.recovery = RecordingRecovery()
        self.hub = RecordingHub()
        self.clock = FakeClock()
        self.damaged = {}  # sha -> why the spool's copy is not intact
        self.free = 10 ** 12
        self.store = self.new_store()

    def new_store(self):
        return UploadStore(self.folder, recovery=self.recovery, damage=lambda sha, size: self.damaged.get(sha),
                           publish=self.hub.publish, clock=self.clock, disk_free=lambda path: self.free,
                           retry_after=7, part_max_age=DAY).open()

    def part(self, sha=SHA, room=ROOM, session=SESSION):
        return os.path.join(self.folder, "{}.{}.{}.part".format(room, session, sha))

    def send(self, owner, data=DATA, start=0, step=4096, store=None):
        store = store or self.store
        offset = start
        while offset < len(data):
            offset = store.chunk(owner, offset, data[offset:offset + step])
        return offset


def refused(code, call, *args):
    with pytest.raises(Reply) as e:
        call(*args)
    assert e.value.code == code, (e.value.code, e.value.message)
    return e.value


def test_a_whole_upload_open_complete_committed(env):
    a = Owner("a")
    assert env.store.begin(a, ROOM, SESSION, SHA, len(DATA)) == {"offset": 0}
    assert env.store.upload_of(a).state is UploadState.OPEN
    assert env.store.chunk(a, 0, DATA[:4096]) == 4096
    assert os.path.getsize(env.part()) == 4096  # unbuffered: the size on disk is the offset answered
    env.send(a, start=4096)
    assert env.store.upload_of(a).state is UploadState.COMPLETE
    reply = env.store.commit(a)
    assert reply["result"]["sha256"] == SHA and reply["size"] == len(DATA)
    assert env.recovery.receives() == [("receive", ROOM, SESSION, SHA, len(DATA), "lan", "proctor", DATA)]
    assert not os.path.exists(env.part()) and env.store.partial_uploads() == []
    assert env.store.upload_of(a) is None
    assert env.hub.names() == ["lan.upload", "lan.upload", "lan.committed"]  # first chunk, last chunk
    assert env.hub.events[-1][1] == {"room": ROOM, "session": SESSION, "sha256": SHA, "size": len(DATA)}
    refused("E_STATE", env.store.commit, a)  # done: nothing in progress on this owner


def test_progress_events_at_most_one_per_second(env):
    a = Owner("a")
    env.store.begin(a, ROOM, SESSION, SHA, len(DATA))
    env.store.chunk(a, 0, DATA[:1000])
    env.store.chunk(a, 1000, DATA[1000:2000])
    env.clock.mono += 1.0
    env.store.chunk(a, 2000, DATA[2000:3000])
    env.store.chunk(a, 3000, DATA[3000:4000])
    assert [f["offset"] for _, f in env.hub.events] == [1000, 3000]


def test_chunks_and_commits_out_of_turn(env):
    a = Owner("a")
    refused("E_STATE", env.store.chunk, a, 0, b"x")  # no begin
    refused("E_STATE", env.store.commit, a)
    env.store.begin(a, ROOM, SESSION, SHA, len(DATA))
    assert refused("E_OFFSET", env.store.chunk, a, 5, b"x").extra == {"offset": 0}
    refused("E_ARG", env.store.chunk, a, 0, b"")
    refused("E_ARG", env.store.chunk, a, 0, DATA + b"x")  # past the declared size
    env.store.chunk(a, 0, DATA[:100])
    assert refused("E_OFFSET", env.store.commit, a).extra == {"offset": 100}
    assert env.recovery.receives() == [] and os.path.getsize(env.part()) == 100


def test_take_over_by_another_connection(env):
    a, b = Owner("a"), Owner("b")
    env.store.begin(a, ROOM, SESSION, SHA, len(DATA))
    env.store.chunk(a, 0, DATA[:3000])
    lost = env.store.upload_of(a)
    assert env.store.begin(b, ROOM, SESSION, SHA, len(DATA)) == {"offset": 3000}
    assert lost.state is UploadState.RELEASED and lost.file is None
    refused("E_STATE", env.store.chunk, a, 3000, DATA[3000:4000])
    refused("E_STATE", env.store.commit, a)
    env.send(b, start=3000)
    env.store.release(a)  # the old connection ends: b keeps the upload
    assert env.store.commit(b)["sha256"] == SHA
    assert len(env.recovery.receives()) == 1


def test_crash_resume_a_new_store_finds_the_part(env):
    a = Owner("a")
    env.store.begin(a, ROOM, SESSION, SHA, len(DATA))
    env.send(a, data=DATA[:6000])
    # the process dies: nothing released, nothing closed; a new server opens the folder
    store = env.new_store()
    assert store.partial_uploads() == [{"room": ROOM, "session": SESSION, "sha256": SHA, "bytes": 6000}]
    b = Owner("b")
    assert store.begin(b, ROOM, SESSION, SHA, len(DATA)) == {"offset": 6000}
    env.send(b, start=6000, store=store)
    assert store.commit(b)["sha256"] == SHA
    assert env.recovery.receives()[0][-1] == DATA


def test_crash_resume_with_every_byte_held_commits_at_once(env):
    a = Owner("a")
    env.store.begin(a, ROOM, SESSION, SHA, len(DATA))
    env.send(a)  # every byte arrived, the commit did not
    store = env.new_store()
    b = Owner("b")
    assert store.begin(b, ROOM, SESSION, SHA, len(DATA)) == {"offset": len(DATA)}
    assert store.upload_of(b).state is UploadState.COMPLETE
    refused("E_ARG", store.chunk, b, len(DATA), b"x")
    assert store.commit(b)["sha256"] == SHA


def test_crash_between_recording_and_removing_the_part(env):
    a = Owner("a")
    env.store.begin(a, ROOM, SESSION, SHA, len(DATA))
    env.send(a)
    env.store.commit(a)
    with open(env.part(), "wb") as f:  # the part was not removed before the crash
        f.write(DATA)
    store = env.new_store()
    b = Owner("b")
    assert store.begin(b, ROOM, SESSION, SHA, len(DATA)) == {"offset": len(DATA), "committed": True}
    assert not os.path.exists(env.part())
    assert store.upload_of(b).state is UploadState.COMMITTED
    refused("E_STATE", store.chunk, b, 0, b"x")
    again = store.commit(b)  # the lost reply, answered from the record
    assert again["result"]["duplicate"] is True and again["sha256"] == SHA
    assert len(env.recovery.receives()) == 1 and store.upload_of(b) is None


def test_a_damaged_spool_copy_is_sent_again(env):
    a = Owner("a")
    env.store.begin(a, ROOM, SESSION, SHA, len(DATA))
    env.send(a)
    env.store.commit(a)
    env.damaged[SHA] = "SHA-256 不符（文件内容已损坏）"
    assert env.store.begin(a, ROOM, SESSION, SHA, len(DATA)) == {"offset": 0}


def test_another_package_for_the_same_room_and_session_discards_the_part(env):
    a, b = Owner("a"), Owner("b")
    other = DATA[::-1]
    other_sha = hashlib.sha256(other).hexdigest()
    env.store.begin(a, ROOM, SESSION, SHA, len(DATA))
    env.store.chunk(a, 0, DATA[:100])
    lost = env.store.upload_of(a)
    with open(os.path.join(env.folder, "notes.txt"), "w") as f:
        f.write("not a part")
    assert env.store.begin(b, ROOM, SESSION, other_sha, len(other)) == {"offset": 0}
    assert not os.path.exists(env.part()) and lost.state is UploadState.RELEASED
    assert [p["sha256"] for p in env.store.partial_uploads()] == [other_sha]
    assert os.path.exists(os.path.join(env.folder, "notes.txt"))


def test_a_part_longer_than_declared_starts_again(env):
    with open(env.part(), "wb") as f:
        f.write(DATA + b"extra")
    assert env.store.begin(Owner("a"), ROOM, SESSION, SHA, len(DATA)) == {"offset": 0}
    assert os.path.getsize(env.part()) == 0


def test_no_disk_space_refuses_the_begin_and_holds_nothing(env):
    a = Owner("a")
    env.free = 2 * len(DATA) + DISK_RESERVE - 1
    e = refused("E_STORAGE", env.store.begin, a, ROOM, SESSION, SHA, len(DATA))
    assert e.extra == {"offset": 0, "retry_after": 7}
    assert env.store.upload_of(a) is None
    env.clock.offset = DAY + 1
    assert env.store.sweep() == [os.path.basename(env.part())]  # not held: sweepable


@pytest.mark.parametrize("error, code, kept", [
    (IntegrityError("内容不符。"), "E_INTEGRITY", False),
    (ResultConflict("已有另一结果包。", "请核对。"), "E_CONFLICT", False),
    (FormatError("不是本考点的结果包。"), "E_REFUSED", False),
    (SpoolError("磁盘已满。"), "E_STORAGE", True),
    (OSError(28, "No space left on device"), "E_STORAGE", True),
    (NotLoaded("尚未导入考务。"), "E_REFUSED", True),
])
def test_what_receive_raises_decides_the_parts_fate(env, error, code, kept):
    a = Owner("a")
    env.store.begin(a, ROOM, SESSION, SHA, len(DATA))
    env.send(a)
    env.recovery.raises.append(error)
    e = refused(code, env.store.commit, a)
    event, fields = env.hub.events[-1]
    assert event == "lan.commit_failed" and fields["code"] == code and fields["kept"] is kept
    assert (fields["room"], fields["session"], fields["sha256"]) == (ROOM, SESSION, SHA)
    assert os.path.exists(env.part()) is kept
    upload = env.store.upload_of(a)
    if not kept:
        assert upload is None
        assert e.extra == ({"offset": 0} if code == "E_INTEGRITY" else {})
        refused("E_STATE", env.store.commit, a)
        return
    assert upload.state is UploadState.COMPLETE and upload.file is not None  # reopened for the retry
    if code == "E_STORAGE":
        assert e.extra == {"offset": len(DATA), "retry_after": 7}
    assert env.store.commit(a)["sha256"] == SHA  # the retry sends nothing again
    assert [c[-1] for c in env.recovery.receives()] == [DATA, DATA]


def test_a_bug_in_receive_propagates_and_keeps_the_part(env):
    a = Owner("a")
    env.store.begin(a, ROOM, SESSION, SHA, len(DATA))
    env.send(a)
    env.recovery.raises.append(KeyError("bug"))
    with pytest.raises(KeyError):
        env.store.commit(a)
    assert env.hub.events[-1][1]["code"] == "E_INTERNAL" and env.hub.events[-1][1]["kept"] is True
    assert os.path.getsize(env.part()) == len(DATA)
    assert env.store.commit(a)["sha256"] == SHA


def test_sweep_removes_only_old_parts_no_one_holds(env):
    a, b = Owner("a"), Owner("b")
    other = DATA[:5000]
    other_sha = hashlib.sha256(other).hexdigest()
    env.store.begin(a, ROOM, SESSION, SHA, len(DATA))
    env.store.chunk(a, 0, DATA[:100])
    env.store.begin(b, "R02", SESSION, other_sha, len(other))
    env.store.chunk(b, 0, other[:200])
    env.store.release(b)
    env.clock.offset = DAY - 60
    assert env.store.sweep() == []  # 23 h 59 min: still resumable
    env.clock.offset = DAY + 60
    assert env.store.sweep() == [os.path.basename(env.part(other_sha, room="R02"))]  # a still holds its part
    assert env.hub.events[-1] == ("lan.part_removed", {"room": "R02", "session": SESSION, "sha256": other_sha,
                                                       "bytes": 200, "reason": "abandoned"})
    env.store.release(a)
    assert env.store.sweep() == [os.path.basename(env.part())]
    assert env.store.partial_uploads() == []


def test_a_chunk_or_begin_makes_the_part_young_again(env):
    a = Owner("a")
    env.store.begin(a, ROOM, SESSION, SHA, len(DATA))
    env.store.chunk(a, 0, DATA[:100])
    env.store.release(a)
    old = time.time() - DAY - 60
    os.utime(env.part(), (old, old))
    env.store.begin(a, ROOM, SESSION, SHA, len(DATA))  # touches it
    env.store.release(a)
    assert env.store.sweep() == []
    assert env.store.partial_uploads()[0]["bytes"] == 100


def test_store_opens_its_folder_and_sweeps_at_open(env):
    env.store.begin(Owner("a"), ROOM, SESSION, SHA, len(DATA))
    env.store.release(Owner("a"))
    old = time.time() - DAY - 60
    os.utime(env.part(), (old, old))
    env.new_store()
    assert not os.path.exists(env.part())
    assert env.hub.names()[-1] == "lan.part_removed"


def test_part_names():
    assert parse_part("R01.S1.{}.part".format(SHA)) == ("R01", "S1", SHA)
    for name in ("R01.S1.{}".format(SHA), "R01.{}.part".format(SHA), "R/01.S1.{}.part".format(SHA),
                 "R01.S1.abc.part", "a.b.c.{}.part".format(SHA)):
        assert parse_part(name) is None
