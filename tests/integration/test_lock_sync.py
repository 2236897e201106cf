"""机考锁校时 end to end: emulator + platform simulator + client, in-process and via main.py."""

import os
import subprocess
import sys
import time

import pytest

from kd.errors import PlatformRefused
from kd.formats.signing import TrustedKeys
from kd.lock.driver import LockDriver
from kd.lock.emulator import LockEmulator
from kd.lock.errors import LockRefused
from kd.lock.sync import sync_lock
from kd.platform.client import PlatformClient
from kd.platform.simulator import start_simulator

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    server = start_simulator(str(tmp_path_factory.mktemp("platform")), rooms=1, sessions=1, candidates=1, room_kb=1)
    yield server
    server.shutdown()


@pytest.fixture
def registered(sim, tmp_path):
    """The dongle the simulator's site registered, ten minutes slow, trusting the platform."""
    emu = LockEmulator(str(tmp_path / "lock"), trust=[sim.public_key], lock_id=sim.data.lock_id,
                       seed=bytes.fromhex(sim.data.dongle["seed"]))
    emu.dongle.set_clock_offset(-600)
    emu.start_tcp()
    yield emu
    emu.stop()


def client_for(sim):
    return PlatformClient(sim.url, sim.site_code, sim.password, TrustedKeys([sim.public_key]), retries=0)


def now_ms():
    return int(time.time() * 1000)


def test_sync_sets_the_dongle_clock_from_the_platform(sim, registered):
    driver = LockDriver(registered.url, keepalive=None).start()
    try:
        assert driver.read_clock() < now_ms() - 500_000
        with client_for(sim) as client:
            result = sync_lock(driver, client)
        assert result.lock_id == sim.data.lock_id
        assert result.lock_time_before_ms < now_ms() - 500_000
        assert abs(driver.read_clock() - now_ms()) < 60_000
        assert driver.get_ticket() == result.ticket.raw
        lines = result.message().split("\n")
        assert lines[0] == "校时授权成功!"
        assert lines[1].startswith("服务器时间:") and " 机考锁时间:" in lines[1]
    finally:
        driver.stop()
    syncs = [s for s in sim.received()["syncs"] if s["lock_id"] == sim.data.lock_id]
    assert syncs and syncs[-1]["drift_seconds"] < -500


def test_an_unregistered_dongle_gets_no_ticket(sim, tmp_path):
    with LockEmulator(str(tmp_path / "other"), trust=[sim.public_key]) as emu:
        emu.start_tcp()
        driver = LockDriver(emu.url, keepalive=None).start()
        try:
            with client_for(sim) as client, pytest.raises(PlatformRefused) as e:
                sync_lock(driver, client)
            assert "未登记" in str(e.value)
            assert driver.get_ticket() is None
        finally:
            driver.stop()


def test_a_dongle_not_trusting_the_platform_refuses_the_ticket(sim, tmp_path):
    with LockEmulator(str(tmp_path / "lock"), lock_id=sim.data.lock_id,
                      seed=bytes.fromhex(sim.data.dongle["seed"])) as emu:
        emu.start_tcp()
        driver = LockDriver(emu.url, keepalive=None).start()
        try:
            with client_for(sim) as client, pytest.raises(LockRefused) as e:
                sync_lock(driver, client)
            assert e.value.code == "E_TICKET" and "untrusted" in e.value.text
            assert driver.get_ticket() is None
        finally:
            driver.stop()


def test_main_sync_lock_command(sim, registered, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("KD_LOCK_URL", "KD_DATA_DIR", "KD_PLATFORM_PASSWORD")}
    args = [sys.executable, os.path.join(ROOT, "main.py"), "--data-dir", str(tmp_path / "data"), "sync-lock",
            "--lock", registered.url, "--platform", sim.url, "--site", sim.site_code,
            "--trust", sim.data.public_key_path, "--password-stdin"]  # this folder's admin: still 888 (a fresh PC)
    proc = subprocess.run(args + ["--password", sim.password], cwd=ROOT, env=env, input="888\n",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("校时授权成功!\n服务器时间:")
    assert registered.dongle.state.ticket is not None
    missing = subprocess.run(args, cwd=ROOT, env=env, input="888\n", capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "--password" in missing.stderr
