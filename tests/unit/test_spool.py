"""The result spool: durable put, hash and size checks, idempotence."""

import hashlib
import io
import os

import pytest

from kd.errors import IntegrityError, SpoolError
from kd.store.spool import Spool


def sha(data):
    return hashlib.sha256(data).hexdigest()


def test_put_stores_verified_file(tmp_path):
    spool = Spool(str(tmp_path))
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = spool.put(io.BytesIO(data), sha(data), len(data))
    assert open(path, "rb").read() == data
    assert spool.list() == [sha(data)] and spool.has(sha(data)) and spool.verify(sha(data))
    assert spool.size(sha(data)) == len(data)


def test_same_content_twice_is_a_noop(tmp_path):
    spool = Spool(str(tmp_path))
    data = b"result package"
    first = spool.put(io.BytesIO(data), sha(data))
    mtime = os.stat(first).st_mtime_ns
    assert spool.put(io.BytesIO(data), sha(data).upper()) == first
    assert os.stat(first).st_mtime_ns == mtime and os.listdir(str(tmp_path)) == [os.path.basename(first)]


@pytest.mark.parametrize("case", ["hash", "short", "long"])
def test_mismatch_leaves_nothing(tmp_path, case):
    spool = Spool(str(tmp_path))
    data = b"x" * 1000
    digest = sha(b"other") if case == "hash" else sha(data)
    size = {"hash": None, "short": 2000, "long": 10}[case]
    with pytest.raises(IntegrityError):
        spool.put(io.BytesIO(data), digest, size)
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "abc", "g" * 64, "a" * 63 + "/"])
def test_client_cannot_choose_a_file_name(tmp_path, bad):
    with pytest.raises(IntegrityError):
        Spool(str(tmp_path)).put(io.BytesIO(b""), bad)


def test_stale_parts_are_cleaned_on_open(tmp_path):
    (tmp_path / ("a" * 64 + ".part-1234")).write_bytes(b"half")
    assert Spool(str(tmp_path)).list() == [] and os.listdir(str(tmp_path)) == []


def test_disk_refusal_is_a_user_error(tmp_path):
    spool = Spool(str(tmp_path / "s"))
    os.rmdir(spool.folder)  # the folder vanished (USB stick pulled)
    with pytest.raises(SpoolError):
        spool.put(io.BytesIO(b"x"), sha(b"x"))
