"""A whole site on loopback for core tests: real platform simulator, real dongle emulator.

``make_env(tmp_path)`` starts the platform simulator (HTTP on 127.0.0.1, port 0) with a
small demo site, a dongle emulator over ``socket://`` carrying the identity the
simulator registered for the site (so the package names it, its tickets verify and it
answers ``SITE`` with the site code), a
``LockDriver`` on it, a ``PlatformClient``, writes ``settings/site`` (configured against
the simulator) into a fresh data folder, and opens the site there the way every start
does (``kd.site.open_site``), with the client and the driver as its ports and no gate,
LAN or background threads: ``env.site``, ``env.ctx``, ``env.core``. ``env.close()``
stops everything.

Nothing here is a mock: every call goes through sockets, HTTP and files.
"""

import base64
import datetime
import os
from typing import Any, Callable, List, Optional

from kd.core import model
from kd.core.context import Context
from kd.core.services import Core
from kd.events import EventHub
from kd.formats.signing import TrustedKeys
from kd.formats.timeutil import CST, format_time
from kd.lock.coreport import DonglePort
from kd.lock.driver import LockDriver
from kd.lock.emulator import LockEmulator, read_identity
from kd.platform.client import PlatformClient
from kd.platform.simulator import start_simulator
from kd.site import Site, open_site
from kd.store.datafolder import DataFolder

SITE = "11003"


class Env:
    def __init__(self, root: str, rooms: int = 3, sessions: int = 2, candidates: int = 5,
                 first_start_in: int = 60, room_kb: int = 4, mode: str = model.FORMAL,
                 clock: Optional[Callable[[], datetime.datetime]] = None) -> None:
        self.root = root
        self._stops: List[Callable[[], Any]] = []
        self.sim = start_simulator(os.path.join(root, "platform"), site_code=SITE, rooms=rooms, sessions=sessions,
                                   candidates=candidates, first_start_in=first_start_in, room_kb=room_kb)
        self._stops.append(self.sim.shutdown)
        self.trusted = TrustedKeys([self.sim.public_key])
        lock_id, seed, site_code = read_identity(os.path.join(root, "platform", "dongle.json"))
        self.emulator = LockEmulator(os.path.join(root, "lock"), trust=[self.sim.public_key],
                                     lock_id=lock_id, seed=seed, site_code=site_code)
        self.lock_url = self.emulator.start_tcp()
        self._stops.append(self.emulator.stop)
        self.hub = EventHub()
        self.driver = LockDriver(self.lock_url, self.hub, keepalive=None).start(wait=True)
        self._stops.append(self.driver.stop)
        self.client = PlatformClient(self.sim.url, SITE, self.sim.password, self.trusted, retries=1, backoff=0.05)
        self._stops.append(self.client.close)
        self.data_dir = os.path.join(root, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        stores = DataFolder(self.data_dir).open_stores()  # as 系统设置 against the simulator left it
        try:
            stores.settings.put(model.SETTINGS, model.SITE, {
                "site_code": SITE, "mode": mode, "configured_at": format_time(datetime.datetime.now(CST)),
                "platform_url": self.sim.url, "platform_password": self.sim.password,
                "trusted_keys": [base64.b64encode(self.sim.public_key).decode("ascii")],
            })
        finally:
            stores.close()
        self.site: Site = open_site(self.data_dir, hub=self.hub, platform=self.client,
                                    dongle=DonglePort(self.driver), gate=False, clock=clock)
        self._stops.append(self.site.close)
        self.ctx: Context = self.site.ctx
        self.core: Core = self.site.core

    def close(self) -> None:
        for stop in reversed(self._stops):
            stop()
        self._stops.clear()


def make_env(tmp_path: Any, **kw: Any) -> Env:
    return Env(str(tmp_path), **kw)
