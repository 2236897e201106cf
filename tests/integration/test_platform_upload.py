"""Resumable result upload against the real platform simulator over HTTP on 127.0.0.1."""

import functools
import hashlib
import os
import socket

import pytest

from kd.errors import FormatError, PlatformUnreachable
from kd.formats.signing import Signer, TrustedKeys
from kd.platform.client import PlatformClient
from kd.platform.simulator import start_simulator
from tests.support.env import SITE
from tests.support.fixtures import closed_after
from tests.support.simclient import sim_client

MiB = 1024 * 1024


sim = closed_after(lambda tmp_path: start_simulator(str(tmp_path / "sim"), site_code=SITE, rooms=2, sessions=1,
                                                   candidates=3, room_kb=8), close="shutdown")
make_client = functools.partial(sim_client, timeout=(2.0, 20.0))  # a read of a whole chunk may take longer


def random_file(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MiB))
            f.write(block)
            left -= len(block)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def puts(sim):
    return [r for r in sim.requests() if r["method"] == "PUT"]


def stored_hash(sim, upload_id):
    with open(sim.uploads.data_path(upload_id), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_50mb_upload_interrupted_twice_resumes_from_the_platform_offset(sim, tmp_path):
    size = 50 * MiB
    path = str(tmp_path / "11003001-1.result")
    sha = random_file(path, size)
    cut = 17 * 1000 * 1000  # not a multiple of the chunk size: the cuts land mid-chunk
    sim.faults.set(drop_after=cut, drop_count=2)
    seen = []
    with make_client(sim, chunk_size=4 * MiB) as c:
        with pytest.raises(PlatformUnreachable) as err:
            c.upload_result(path, session_id="1", room_code="11003001", attempts=1)
        assert "续报" in err.value.remedy
        (upload,) = sim.received()["uploads"]
        first_offset = c.upload_status(upload["upload_id"])["offset"]
        assert 0 < first_offset < size

        with pytest.raises(PlatformUnreachable):  # 续报, cut again
            c.upload_result(path, session_id="1", room_code="11003001", attempts=1)
        second_offset = c.upload_status(upload["upload_id"])["offset"]
        assert first_offset < second_offset < size

        receipt = c.upload_result(path, session_id="1", room_code="11003001", attempts=1,
                                  progress=lambda done, total: seen.append((done, total)))
    assert (receipt.sha256, receipt.size) == (sha, size)
    assert (receipt.site_code, receipt.session_id, receipt.room_code, receipt.file_id) == (
        SITE, "1", "11003001", "11003001-1.result")
    assert stored_hash(sim, upload["upload_id"]) == sha
    assert seen[-1] == (size, size) and seen[0][0] > second_offset
    # each resumed run started exactly where the platform said it was
    starts = [p["offset"] for p in puts(sim)]
    assert first_offset in starts and second_offset in starts
    assert starts[0] == 0 and starts == sorted(starts)
    assert [p.get("fault") for p in puts(sim)].count("cut") == 2
    # nothing was sent twice beyond the two cut chunks
    assert sum(p["in"] for p in puts(sim)) == size
    assert sim.received()["uploads"][0]["state"] == "committed"


def test_upload_resumes_by_itself_within_one_call(sim, tmp_path):
    path = str(tmp_path / "r.bin")
    sha = random_file(path, 3 * MiB)
    sim.faults.set(drop_after=700000, drop_count=2)
    with make_client(sim, chunk_size=256 * 1024, retries=3) as c:
        receipt = c.upload_result(path, session_id="1", room_code="11003002", file_id="room2-session1")
    assert receipt.sha256 == sha and receipt.file_id == "room2-session1"
    assert sim.faults.as_dict()["drops_done"] == 2
    assert len([r for r in sim.requests() if r["path"] == "/api/v1/uploads"]) == 3


def test_uploading_a_committed_file_again_returns_its_receipt_without_sending(sim, tmp_path):
    path = str(tmp_path / "r.bin")
    random_file(path, 300000)
    with make_client(sim) as c:
        first = c.upload_result(path, session_id="1", room_code="11003001")
        sent = len(puts(sim))
        again = c.upload_result(path, session_id="1", room_code="11003001")
    assert again.raw == first.raw
    assert len(puts(sim)) == sent


def test_empty_result_file_uploads(sim, tmp_path):
    path = str(tmp_path / "empty.bin")
    open(path, "wb").close()
    with make_client(sim) as c:
        receipt = c.upload_result(path, session_id="1", room_code="11003001")
    assert receipt.size == 0 and receipt.sha256 == hashlib.sha256(b"").hexdigest()


def test_receipt_signed_by_an_untrusted_key_is_refused(sim, tmp_path):
    path = str(tmp_path / "r.bin")
    random_file(path, 1000)
    with make_client(sim, trusted=TrustedKeys([Signer.generate().public_key])) as c:
        with pytest.raises(FormatError):
            c.upload_result(path, session_id="1", room_code="11003001")


def test_another_client_resumes_from_the_platform_offset(sim, tmp_path):
    """A cut upload is finished by another client (e.g. after a restart): it asks the platform."""
    path = str(tmp_path / "r.bin")
    sha = random_file(path, 2 * MiB)
    sim.faults.set(drop_after=MiB + 1000, drop_count=1)
    with make_client(sim, chunk_size=512 * 1024) as a, make_client(sim, chunk_size=300 * 1024) as b:
        with pytest.raises(PlatformUnreachable):
            a.upload_result(path, session_id="1", room_code="11003001", attempts=1)
        receipt = b.upload_result(path, session_id="1", room_code="11003001")
    assert receipt.sha256 == sha


def test_unreachable_platform_upload_error_names_the_resume_button(tmp_path):
    path = str(tmp_path / "r.bin")
    random_file(path, 10)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = PlatformClient(f"http://127.0.0.1:{port}", SITE, "x", TrustedKeys(), retries=0, timeout=(0.5, 0.5))
    with c, pytest.raises(PlatformUnreachable) as err:
        c.upload_result(path, session_id="1", room_code="11003001")
    assert "续报" in err.value.remedy
