"""Fixtures shared by the integration tests.

- ``no_env_lock``: ``KD_LOCK_URL`` unset for the test (``kd.lock.gate.ENV_LOCK_URL``), so
  the gate finds the dongle the test gives it and not one of the caller's environment; a
  module that opens gates takes it with ``pytestmark = pytest.mark.usefixtures("no_env_lock")``.
- ``emu``: a dongle emulator (a fresh identity under ``tmp_path/dongle``) on a TCP port,
  ``emu.url`` its ``socket://`` URL, stopped after the test.
"""

import pytest

from kd.lock import gate as G
from kd.lock.emulator import LockEmulator


@pytest.fixture
def no_env_lock(monkeypatch):
    monkeypatch.delenv(G.ENV_LOCK_URL, raising=False)


@pytest.fixture
def emu(tmp_path):
    e = LockEmulator(str(tmp_path / "dongle"))
    e.start_tcp()
    yield e
    e.stop()
