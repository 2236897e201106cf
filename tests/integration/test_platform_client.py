"""PlatformClient against the real platform simulator over HTTP on 127.0.0.1 (no mocks)."""

import hashlib
import os
import socket
import time

import pytest

from kd.errors import FormatError, PlatformRefused, PlatformUnreachable
from kd.formats.signing import Signer, TrustedKeys
from kd.platform import demo
from kd.platform.client import PlatformClient, new_report_key
from kd.platform.simulator import start_simulator
from tests.support.env import SITE
from tests.support.fixtures import closed_after
from tests.support.simclient import sim_client

sim = closed_after(lambda tmp_path: start_simulator(str(tmp_path / "sim"), site_code=SITE, rooms=3, sessions=2,
                                                   candidates=5, room_kb=32, first_start_in=60), close="shutdown")


@pytest.fixture
def client(sim):
    c = sim_client(sim)
    yield c
    c.close()


def api_requests(sim, path_part=""):
    return [r for r in sim.requests() if path_part in r["path"]]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- login and probe ------------------------------------------------------------------

def test_probe_and_login(sim, client):
    assert client.probe() is True
    answer = client.login()
    assert answer["site_code"] == SITE
    assert answer["exam_name"] == sim.data.site["exam_name"]
    assert isinstance(answer["token"], str) and len(answer["token"]) >= 20


def test_wrong_password_is_refused_once_with_the_platform_message(sim):
    with sim_client(sim, password="wrong") as c:
        with pytest.raises(PlatformRefused) as err:
            c.login()
    assert "考点代码或平台密码错误" in str(err.value)
    assert "HTTP 401" in str(err.value)
    assert len(api_requests(sim, "/login")) == 1  # a refusal is not retried


def test_expired_token_logs_in_again(sim, client):
    client.login()
    sim.expire_tokens()
    info = client.package_info()
    assert info["site_code"] == SITE
    assert [r["path"] for r in sim.requests()][-3:] == [
        "/api/v1/site/package/info", "/api/v1/login", "/api/v1/site/package/info"]


# -- package ----------------------------------------------------------------------------

def test_download_package_verifies_and_loads(sim, client, tmp_path):
    folder = tmp_path / "dl"
    result = client.download_package(str(folder))
    pkg = result.package
    assert os.listdir(folder) == [os.path.basename(result.path)]
    with open(result.path, "rb") as f:
        data = f.read()
    info = client.package_info()
    assert hashlib.sha256(data).hexdigest() == info["sha256"]
    assert pkg.site_code == SITE
    assert pkg.publish_time == info["publish_time"]
    assert pkg.room_codes == ["11003001", "11003002", "11003003"]
    assert [s["name"] for s in pkg.sessions] == ["第一场次", "第二场次"]
    assert len(pkg.candidates) == 3 * 2 * 5
    assert pkg.lock_id == sim.data.lock_id
    assert pkg.room_file("11003002") == demo.room_file(sim.data.site, "11003002", 32 * 1024)


def test_package_signed_by_an_unknown_key_is_refused_and_not_kept(sim, tmp_path):
    folder = tmp_path / "dl"
    with sim_client(sim, trusted=TrustedKeys([Signer.generate().public_key])) as c:
        with pytest.raises(FormatError) as err:
            c.download_package(str(folder))
    assert "签名密钥不受信任" in str(err.value)
    assert os.listdir(folder) == []


def test_older_package_than_loaded_is_refused(sim, client, tmp_path):
    folder = tmp_path / "dl"
    with pytest.raises(FormatError) as err:
        client.download_package(str(folder), loaded_publish_time="2099-01-01T00:00:00+08:00")
    assert "不能回退" in str(err.value)
    assert os.listdir(folder) == []


def test_package_cut_midway_is_downloaded_again(sim, client, tmp_path):
    folder = tmp_path / "dl"
    sim.faults.set(drop_after=40000, drop_count=1)
    result = client.download_package(str(folder))
    assert os.listdir(folder) == [os.path.basename(result.path)]
    downloads = api_requests(sim, "/site/package")
    assert [r.get("fault") for r in downloads] == ["cut", None]
    assert sim.faults.as_dict()["drops_done"] == 1


def test_package_cut_every_time_is_unreachable_and_leaves_no_half_file(sim, tmp_path):
    folder = tmp_path / "dl"
    sim.faults.set(drop_after=30000, drop_count=100)
    with sim_client(sim, retries=2) as c:
        with pytest.raises(PlatformUnreachable) as err:
            c.download_package(str(folder))
    assert "手工导入" in err.value.remedy and ".zip" in err.value.remedy
    assert len(api_requests(sim, "/site/package")) == 3
    assert os.listdir(folder) == []


def test_package_above_the_size_cap_is_refused(sim, tmp_path):
    folder = tmp_path / "dl"
    with sim_client(sim, max_package_bytes=10000) as c:
        with pytest.raises(PlatformRefused) as err:
            c.download_package(str(folder))
    assert "过大" in str(err.value)
    assert os.listdir(folder) == []


# -- authorizations, verification, sync -----------------------------------------------------

def test_authorization_and_verification_are_verified(sim, client):
    auth = client.download_authorization("1")
    assert (auth.site_code, auth.session_id, auth.session_name) == (SITE, "1", "第一场次")
    assert auth.raw.startswith(b"{")
    second = client.download_authorization("2")
    assert second.session_name == "第二场次"
    verification = client.download_verification("1", lock_id=sim.data.lock_id)
    assert (verification.session_id, verification.lock_id) == ("1", sim.data.lock_id)


def test_unknown_session_and_early_verification_are_refused(sim, client):
    with pytest.raises(PlatformRefused) as err:
        client.download_authorization("9")
    assert "场次不存在" in str(err.value) and ".PTQ" in err.value.remedy
    with pytest.raises(PlatformRefused) as err:
        client.download_verification("2")  # starts in 3.5 h: opens 2 h before the start
    assert "尚未开放" in str(err.value)


def test_authorization_from_another_platform_key_is_refused(sim):
    with sim_client(sim, trusted=TrustedKeys([Signer.generate().public_key])) as c:
        with pytest.raises(FormatError):
            c.download_authorization("1")


def test_sync_lock_returns_a_verified_ticket(sim, client):
    lock_time = time.time() - 93.5  # the dongle's clock runs behind
    ticket = client.sync_lock(sim.data.lock_id, lock_time)
    assert ticket.lock_id == sim.data.lock_id and ticket.site_code == SITE
    assert ticket.valid_until > ticket.server_time
    (sync,) = sim.received()["syncs"]
    assert sync["lock_id"] == sim.data.lock_id and sync["lock_time"] == lock_time
    with pytest.raises(PlatformRefused) as err:
        client.sync_lock("KDLOCK-99999-01", time.time())
    assert "未登记" in str(err.value)


# -- reports ----------------------------------------------------------------------------------

def test_report_recorded_once_per_key(sim, client):
    key = new_report_key()
    first = client.post_report("seal_check", {"passed": True, "rooms": 3}, key, created_at="2026-06-13T08:00:00+08:00")
    again = client.post_report("seal_check", {"passed": True, "rooms": 3}, key, created_at="2026-06-13T08:00:00+08:00")
    assert first["duplicate"] is False and again["duplicate"] is True
    assert first["report_id"] == again["report_id"]
    reports = sim.received()["reports"]
    assert [r["idempotency_key"] for r in reports] == [key]
    assert reports[0]["report"]["kind"] == "seal_check"


def test_report_whose_answer_was_lost_is_retried_and_recorded_once(sim, client):
    stamp = "2026-06-13T09:00:00+08:00"
    client.post_report("session_ended", {"rooms": 3}, new_report_key(), session_id="1", created_at=stamp)
    body_bytes = api_requests(sim, "/reports")[-1]["in"]
    # the same body with another key has the same size: cut the connection 5 bytes into
    # the answer, so the platform recorded the report but the client never heard
    sim.faults.set(drop_after=body_bytes + 5, drop_count=1)
    key = new_report_key()
    answer = client.post_report("session_ended", {"rooms": 3}, key, session_id="1", created_at=stamp)
    assert answer["duplicate"] is True  # the retry found the first delivery
    sends = api_requests(sim, "/reports")[-2:]
    assert [r.get("fault") for r in sends] == ["cut", None]
    kinds = [(r["idempotency_key"], r["report"]["kind"]) for r in sim.received()["reports"]]
    assert kinds.count((key, "session_ended")) == 1
    assert len(kinds) == 2


def test_every_report_kind_is_accepted(sim, client):
    for kind in ("seal_check", "room_status", "session_started", "session_ended", "recovery_status",
                 "upload_status"):
        client.post_report(kind, {"kind_test": kind}, new_report_key(), session_id="1", room_code="11003001")
    assert len(sim.received()["reports"]) == 6
    with pytest.raises(ValueError):
        client.post_report("bogus", {}, new_report_key())


def test_same_key_with_other_content_is_refused(sim, client):
    key = new_report_key()
    client.post_report("room_status", {"registered": 3}, key)
    with pytest.raises(PlatformRefused) as err:
        client.post_report("room_status", {"registered": 2}, key)
    assert "HTTP 409" in str(err.value)


CREATED = "2026-06-13T08:00:00+08:00"


def test_report_keys_survive_a_simulator_restart(tmp_path):
    data_dir = str(tmp_path / "sim")
    key = new_report_key()
    with start_simulator(data_dir, rooms=2, room_kb=8) as first:
        public_key = first.public_key
        with sim_client(first, timeout=(10.0, 30.0)) as c:  # generous: a retried post would say duplicate
            # the same report sent again carries its original created_at (the outbox keeps it)
            assert c.post_report("recovery_status", {"all": True}, key, created_at=CREATED)["duplicate"] is False
    with start_simulator(data_dir) as second:
        assert second.public_key == public_key
        with sim_client(second, timeout=(10.0, 30.0)) as c:
            assert c.post_report("recovery_status", {"all": True}, key, created_at=CREATED)["duplicate"] is True
        assert len(second.received()["reports"]) == 1


# -- unreachable vs refused, timeouts, retries --------------------------------------------------

def test_nothing_listening_is_unreachable(tmp_path):
    port = free_port()
    c = PlatformClient(f"http://127.0.0.1:{port}", SITE, "x", TrustedKeys(), retries=1, backoff=0.0,
                       timeout=(1.0, 1.0))
    with c:
        assert c.probe() is False
        with pytest.raises(PlatformUnreachable) as err:
            c.download_authorization("1")
    assert "无法连接监控平台" in err.value.cause
    assert "手工导入" in err.value.remedy and ".PTQ" in err.value.remedy
    assert "ConnectionError" in err.value.detail


def test_connection_closed_without_answer_is_unreachable(sim):
    sim.faults.set(refuse="close")
    with sim_client(sim, retries=1) as c:
        assert c.probe() is False
        with pytest.raises(PlatformUnreachable):
            c.package_info()


def test_platform_503_is_refused_after_bounded_retries(sim):
    sim.faults.set(refuse=503)
    with sim_client(sim, retries=2) as c:
        with pytest.raises(PlatformRefused) as err:
            c.download_authorization("1")
    assert "监控平台暂时无法提供服务" in str(err.value)
    assert "HTTP 503" in str(err.value)
    assert len(api_requests(sim, "/login")) == 3  # login itself was the failing call, tried 1 + 2 times


def test_slow_answer_hits_the_read_timeout(sim):
    sim.faults.set(slow=30.0)
    with sim_client(sim, retries=0, timeout=(2.0, 0.3)) as c:
        with pytest.raises(PlatformUnreachable) as err:
            c.login()
    assert "Timeout" in err.value.detail
    # shutdown (fixture) ends the simulator's slow wait at once


def test_every_nth_failure_is_retried_for_gets(sim, client):
    client.login()
    sim.faults.set(fail_every=2)
    for session in ("1", "2", "1", "2"):
        assert client.download_authorization(session).session_id == session
    assert client.package_info()["site_code"] == SITE
    faults = sim.faults.as_dict()
    assert faults["fails_done"] >= 4
    gets = [r for r in sim.requests() if r["method"] == "GET"]
    assert sum(1 for r in gets if r.get("fault") == "fail-every") == faults["fails_done"]


def test_without_retries_the_nth_failure_reaches_the_caller(sim):
    with sim_client(sim, retries=0) as c:
        c.login()
        sim.faults.set(fail_every=1)
        with pytest.raises(PlatformRefused):
            c.package_info()
