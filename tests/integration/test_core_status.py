"""core.status over real ports: the LAN server on loopback, the dongle emulator over
``socket://``, the platform simulator over HTTP. What the status bar and 机考锁校时 read."""

import pytest

from kd.core.status import SiteStatus
from kd.errors import LockError, PlatformError
from kd.lan.server import LanOptions, LanServer
from kd.lock.sync import format_ms
from tests.support.env import make_env


@pytest.fixture
def env(tmp_path):
    env = make_env(tmp_path / "site", rooms=1, sessions=1, candidates=1)
    yield env
    env.close()


def test_snapshot_follows_the_lan_service_and_the_dongle(env):
    status = env.core.status
    assert status.snapshot() == SiteStatus(lan_running=False, lan_address=None, lan_port=None, lock_attached=True)
    core = env.core
    server = LanServer(env.ctx, registration=core.registration, verification=core.verification,
                       monitor=core.monitor, recovery=core.recovery, loading=core.loading,
                       options=LanOptions(host="127.0.0.1", port=0)).start()
    try:
        snap = status.snapshot()
        assert snap.lan_running and snap.lan_port == server.port() and snap.lan_address == server.address()
    finally:
        server.stop()
    assert status.snapshot().lan_running is False
    env.driver.stop()  # the dongle is gone
    assert status.snapshot().lock_attached is False
    with pytest.raises(LockError):
        status.sync_lock()


def test_probe_and_sync_lock_through_the_platform(env):
    status = env.core.status
    assert status.probe() is True
    assert not env.ctx.dongle.get_ticket()  # never synced
    message = status.sync_lock()
    assert message.startswith("校时授权成功!\n服务器时间:") and "机考锁时间:" in message
    assert env.ctx.dongle.get_ticket()  # the platform's signed ticket is in the dongle
    assert format_ms(env.driver.read_clock())[:10] in message  # and its clock was set

    env.sim.faults.set(refuse=503)
    with pytest.raises(PlatformError):
        status.sync_lock()
    env.sim.shutdown()
    assert status.probe() is False  # never raises
