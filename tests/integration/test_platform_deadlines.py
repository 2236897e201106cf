"""Every platform call has a total deadline (docs/platform-api.md §1.2), on real loopback sockets.

Three kinds of bad platform: the simulator's ``drip`` fault (answers and reads one byte
every half second, so no single read ever times out), a test server that sends its
headers at once and then drips the body (or never answers an upload chunk), and ports
that never answer (a full listen backlog: the SYN is dropped; a listening socket that
never accepts: the request is sent and nothing comes back).

The client here has ``deadline`` 3 s (``probe_deadline`` 2 s) and per-read timeouts far
longer than the drip's pauses; each call must fail within its deadline plus a coarse
margin. These are correctness bounds, not speed figures: the margin is generous.
"""

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kd.errors import PlatformUnreachable
from kd.formats.signing import TrustedKeys
from kd.platform.client import PlatformClient, new_report_key
from kd.platform.simulator import start_simulator
from tests.support import cli
from tests.support.fixtures import closed_after

SITE = "11003"
DEADLINE = 3.0
PROBE_DEADLINE = 2.0
MARGIN = 4.0  # seconds over the deadline still counted as "on time" (a busy 2-core machine)
DRIP = 0.5  # seconds between the bytes of a dripping platform


def make_client(url, trusted=None, password="x", **kw):
    kw.setdefault("deadline", DEADLINE)
    kw.setdefault("probe_deadline", PROBE_DEADLINE)
    kw.setdefault("timeout", (5.0, 30.0))  # the defaults: a drip never trips them
    kw.setdefault("backoff", 0.5)
    return PlatformClient(url, SITE, password, trusted or TrustedKeys(), **kw)


def timed(fn):
    """(seconds taken, the exception raised or None)."""
    start = time.monotonic()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the caller checks what it was
        return time.monotonic() - start, e
    return time.monotonic() - start, None


def small_file(tmp_path, size=1000):
    path = str(tmp_path / "11003001-1.result")
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    return path


def assert_late(client, seconds, error, op_words, bound=None):
    bound = (client.deadline if bound is None else bound) + MARGIN
    assert isinstance(error, PlatformUnreachable), error
    assert seconds < bound, "took {:.1f}s, bound {:.1f}s".format(seconds, bound)
    assert "无法连接监控平台" in error.cause
    for word in op_words:
        assert word in error.cause + error.remedy


# -- a dripping platform: the simulator's drip fault ------------------------------------------------

@pytest.fixture
def sim(tmp_path):
    server = start_simulator(str(tmp_path / "sim"), site_code=SITE, rooms=2, sessions=1, candidates=3, room_kb=8)
    yield server
    server.shutdown()  # ends the drip's pauses at once


@pytest.fixture
def dripping(sim, tmp_path):
    """A client logged in (and one upload committed) while the platform was fine; then the drip starts."""
    client = make_client(sim.url, TrustedKeys([sim.public_key]), sim.password)
    client.login()
    path = small_file(tmp_path)
    receipt = client.upload_result(path, session_id="1", room_code="11003001")
    upload_id = sim.received()["uploads"][0]["upload_id"]
    sim.faults.set(drip=DRIP)
    yield client, path, upload_id, receipt
    client.close()


def test_drip_probe_and_server_time_end_at_the_probe_deadline(dripping):
    client = dripping[0]
    start = time.monotonic()
    assert client.probe() is False  # 网络连接: 异常
    assert time.monotonic() - start < PROBE_DEADLINE + MARGIN
    start = time.monotonic()
    assert client.server_time() is None
    assert time.monotonic() - start < PROBE_DEADLINE + MARGIN


@pytest.mark.parametrize("call,words", [
    ("login", ["登录监控平台"]),
    ("package_info", ["查询考场数据包", "手工导入"]),
    ("package", ["下载考场数据包", "手工导入", ".zip"]),
    ("authorization", ["下载考试授权", ".PTQ"]),
    ("verification", ["下载授权验证", ".KDV"]),
    ("sync", ["机考锁校时"]),
    ("report", ["上报状态", "自动重新上报"]),
    ("upload_status", ["上报考试数据", "续报"]),
])
def test_drip_small_calls_end_at_their_deadline(dripping, tmp_path, call, words):
    client, _path, upload_id, _receipt = dripping
    calls = {
        "login": client.login,
        "package_info": client.package_info,
        "package": lambda: client.download_package(str(tmp_path / "dl")),
        "authorization": lambda: client.download_authorization("1"),
        "verification": lambda: client.download_verification("1"),
        "sync": lambda: client.sync_lock("KDLOCK-11003-01", time.time()),
        "report": lambda: client.post_report("seal_check", {"passed": True}, new_report_key()),
        "upload_status": lambda: client.upload_status(upload_id),
    }
    seconds, error = timed(calls[call])
    assert_late(client, seconds, error, words)
    assert "秒内未完成" in error.cause
    if call == "package":
        assert os.listdir(str(tmp_path / "dl")) == []  # no .part left behind


def test_drip_upload_ends_at_its_transfer_deadline(dripping, tmp_path):
    client = dripping[0]
    path = str(tmp_path / "other.result")
    with open(path, "wb") as f:
        f.write(os.urandom(5000))
    seconds, error = timed(lambda: client.upload_result(path, session_id="1", room_code="11003002"))
    assert_late(client, seconds, error, ["上报考试数据", "续报"], bound=client.transfer_deadline(5000))


def test_drip_upload_of_a_committed_file_also_ends(dripping):
    client, path, _upload_id, _receipt = dripping
    seconds, error = timed(lambda: client.upload_result(path, session_id="1", room_code="11003001"))
    assert_late(client, seconds, error, ["续报"], bound=client.transfer_deadline(os.path.getsize(path)))


def test_the_platform_back_after_a_drip_works_again(dripping, sim):
    client = dripping[0]
    seconds, error = timed(client.package_info)
    assert isinstance(error, PlatformUnreachable)
    sim.faults.clear()
    assert client.package_info()["site_code"] == SITE
    assert client.probe() is True


# -- headers at once, then a drip (package body) or nothing (upload chunk) --------------------------

class _Scripted(BaseHTTPRequestHandler):
    """A platform that logs in and creates uploads at once, drips the package body, never answers a chunk."""

    protocol_version = "HTTP/1.1"
    server: "ScriptedPlatform"

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def _json(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.endswith("/login"):
            self._json({"token": "t" * 24})
        elif self.path.endswith("/uploads"):
            self._json({"upload_id": "U1", "state": "open", "offset": 0, "size": body["size"], "max_chunk": 65536})
        else:
            self._hold()

    def do_GET(self):  # noqa: N802
        if self.path.endswith("/site/package"):
            size = 10 * 65536
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.server.arrived.set()
            for _ in range(size):
                if self.server.stopping.wait(DRIP):
                    return
                self.wfile.write(b"x")
        else:
            self._hold()

    def do_PUT(self):  # noqa: N802
        self.server.arrived.set()
        self._hold()  # reads nothing of the chunk, answers nothing

    def _hold(self):
        self.server.stopping.wait()
        self.close_connection = True


class ScriptedPlatform(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        self.stopping = threading.Event()
        self.arrived = threading.Event()
        super().__init__(("127.0.0.1", 0), _Scripted)
        self.url = "http://127.0.0.1:{}".format(self.server_address[1])
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.shutdown()
        self.server_close()


@pytest.fixture
def scripted():
    server = ScriptedPlatform()
    yield server
    server.stop()


def test_package_body_that_drips_is_cut_by_the_pace_rule(scripted, tmp_path):
    folder = str(tmp_path / "dl")
    with make_client(scripted.url, min_rate=1024 * 1024, retries=0) as client:
        seconds, error = timed(lambda: client.download_package(folder))
        # the headers came at once; the body may be at most `deadline` seconds behind min_rate
        assert_late(client, seconds, error, ["下载考场数据包", "手工导入"])
    assert "cut at the exchange's deadline" in error.detail
    assert os.listdir(folder) == []


def test_package_body_that_drips_with_retries_ends_at_the_transfer_deadline(scripted, tmp_path):
    folder = str(tmp_path / "dl")
    with make_client(scripted.url, min_rate=1024 * 1024, retries=5) as client:
        seconds, error = timed(lambda: client.download_package(folder))
        assert_late(client, seconds, error, ["下载考场数据包"], bound=client.transfer_deadline(10 * 65536))
    assert "秒内未完成" in error.cause
    assert os.listdir(folder) == []


def test_upload_chunk_never_answered_ends_at_the_transfer_deadline(scripted, tmp_path):
    path = small_file(tmp_path, 200000)
    with make_client(scripted.url, min_rate=1024 * 1024, retries=5) as client:
        seconds, error = timed(lambda: client.upload_result(path, session_id="1", room_code="11003001"))
        assert_late(client, seconds, error, ["上报考试数据", "续报"], bound=client.transfer_deadline(200000))


def test_close_cuts_an_exchange_under_way(scripted, tmp_path):
    client = make_client(scripted.url, deadline=600.0)
    outcome = {}

    def upload():
        path = small_file(tmp_path, 100000)
        outcome["took"], outcome["error"] = timed(
            lambda: client.upload_result(path, session_id="1", room_code="11003001"))

    worker = threading.Thread(target=upload)
    worker.start()
    assert scripted.arrived.wait(20)  # the chunk is on its way and will never be answered
    client.close()
    worker.join(20)
    assert not worker.is_alive()
    assert isinstance(outcome["error"], PlatformUnreachable) and outcome["took"] < 20
    with pytest.raises(PlatformUnreachable):  # a closed client refuses
        client.package_info()
    assert client.probe() is False


# -- ports that never answer ----------------------------------------------------------------------

@pytest.fixture
def full_backlog():
    """A port whose listen backlog is full and never accepted: a new connection's SYN is dropped."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    yield "http://127.0.0.1:{}".format(port)
    filler.close()
    server.close()


@pytest.fixture
def never_accepted():
    """A port that completes TCP handshakes (kernel backlog) but whose server never reads nor answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield "http://127.0.0.1:{}".format(server.getsockname()[1])
    server.close()


@pytest.mark.parametrize("port", ["full_backlog", "never_accepted"])
def test_unresponsive_port_every_call_ends_on_time(request, tmp_path, port):
    url = request.getfixturevalue(port)
    path = small_file(tmp_path)
    with make_client(url) as client:
        start = time.monotonic()
        assert client.probe() is False
        assert time.monotonic() - start < PROBE_DEADLINE + MARGIN
        for call, words in [
            (lambda: client.download_package(str(tmp_path)), ["手工导入", ".zip"]),
            (lambda: client.post_report("seal_check", {}, new_report_key()), ["自动重新上报"]),
        ]:
            seconds, error = timed(call)
            assert_late(client, seconds, error, words)
        seconds, error = timed(lambda: client.upload_result(path, session_id="1", room_code="11003001"))
        assert_late(client, seconds, error, ["续报"], bound=client.transfer_deadline(1000))


# -- offline commands never wait for the outbox -------------------------------------------------

cli_env = closed_after(lambda tmp_path: cli.cli_env(tmp_path, rooms=1, sessions=1, candidates=4, room_kb=4))


def test_recover_with_an_unreachable_platform_returns_at_once_and_the_report_stays_queued(
        cli_env, tmp_path, never_accepted):
    from kd.core import model
    from kd.store.database import open_stores
    from tests.support.cli import configure, export, kd, ok

    data = configure(cli_env, "site")
    ok(kd(cli_env, data, "load"))
    stores = open_stores(data)  # the network goes away after 导入考务
    try:
        stores.settings.update(model.SETTINGS, model.SITE, {"platform_url": never_accepted})
    finally:
        stores.close()
    room = cli_env.sim.data.manifest()["rooms"][0]["code"]
    folder = str(tmp_path / "exported")
    os.mkdir(folder)
    start = time.monotonic()
    got = json.loads(ok(kd(cli_env, data, "recover", export(cli_env, folder, room, "1"), "--json")).stdout)
    took = time.monotonic() - start
    assert got["room"] == room and not got["duplicate"]
    # the last room recovered: recovery_status is enqueued; the command does not wait for the platform
    # (one platform call would take its whole 30 s deadline here); a coarse bound for a process start
    assert took < 20, "recover took {:.1f}s".format(took)
    queued = json.loads(ok(kd(cli_env, data, "outbox", "--json")).stdout)
    (report,) = [r for r in queued["items"] if r["kind"] == "recovery_status"]
    assert report["state"] == "pending" and report["tries"] == 0
    assert cli_env.sim.received()["reports"] == []
