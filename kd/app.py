"""The composition root: data folder → stores → adapters → core context.

``App`` is a running kaodian (GUI and ``--headless`` both use it).
``open_context(data_dir, ...)`` opens the three DBs, the result spool and the audit log
of a data folder and returns the ``kd.core.context.Context`` the services share, with
the adapters it is given (platform client, dongle port, LAN service). ``platform_for``
builds the platform client from ``settings/site`` (URL, site code, platform password,
trusted keys). Nothing here is a business rule; it only wires parts together.
"""

import base64
import binascii
import logging
import os
import threading
from typing import Any, Callable, Dict, List, Optional

from kd.core.context import Context
from kd.core.ports import Dongle, Lan, Platform
from kd.errors import PlatformUnreachable
from kd.events import EventHub
from kd.formats.signing import TrustedKeys
from kd.store.audit import AuditLog
from kd.store.database import open_stores
from kd.store.spool import Spool

log = logging.getLogger(__name__)


def trusted_keys(site: Dict[str, Any]) -> TrustedKeys:
    """The platform keys ``settings/site`` trusts (base64 strings); bad entries are logged and skipped."""
    keys = TrustedKeys()
    for text in site.get("trusted_keys") or []:
        try:
            keys.add(base64.b64decode(str(text).encode("ascii"), validate=True))
        except (ValueError, binascii.Error, UnicodeEncodeError) as e:
            log.error("ignoring an unusable trusted key %r: %s", text, e)
    return keys


def platform_for(site: Dict[str, Any], trusted: TrustedKeys) -> Optional[Platform]:
    """A platform client for ``site`` as it is now, or None when no URL is set."""
    url = site.get("platform_url")
    if not url:
        return None
    from kd.platform.client import PlatformClient  # noqa: PLC0415 - requests is slow to import

    return PlatformClient(url, site.get("site_code") or "", site.get("platform_password", ""), trusted)


class SettingsPlatform:
    """The platform port over whatever ``settings/site`` says now.

    The first login (系统设置) sets the site code after the app started; this wrapper
    rebuilds the client when the URL, site code or password change, so every service
    sees the current settings. With no URL configured, every call raises
    ``PlatformUnreachable`` naming the manual import, and ``probe()`` is False.
    """

    def __init__(self, read_site: Callable[[], Dict[str, Any]], trusted: TrustedKeys) -> None:
        self._read_site = read_site
        self._trusted = trusted
        self._lock = threading.Lock()
        self._key: Any = None
        self._client: Any = None

    def current(self) -> Any:
        site = self._read_site()
        key = (site.get("platform_url"), site.get("site_code"), site.get("platform_password"))
        with self._lock:
            if key != self._key:
                if self._client is not None:
                    self._client.close()
                self._client = platform_for(site, self._trusted)
                self._key = key
            return self._client

    def probe(self) -> bool:
        client = self.current()
        return bool(client is not None and client.probe())

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client, self._key = None, None

    def __getattr__(self, name: str) -> Any:
        client = self.current()
        if client is None:
            raise PlatformUnreachable("未配置监控平台地址，无法联网操作。", "请使用手工导入。")
        return getattr(client, name)


def open_context(
    data_dir: str,
    hub: Optional[EventHub] = None,
    *,
    platform: Optional[Platform] = None,
    dongle: Optional[Dongle] = None,
    lan: Optional[Lan] = None,
    trusted: Optional[TrustedKeys] = None,
    **kw: Any,
) -> Context:
    """Open the data folder's stores and return the core context over the given adapters."""
    stores = open_stores(data_dir)
    spool = Spool(os.path.join(data_dir, "spool"))
    audit = AuditLog(os.path.join(data_dir, "audit.log"))
    site = stores.settings.get("settings", "site") or {}
    if trusted is None:
        trusted = trusted_keys(site)
    return Context(data_dir, stores, spool, audit, hub or EventHub(), platform=platform, dongle=dongle,
                   lan=lan, trusted=trusted, **kw)


DRILL_PLATFORM = ("drill", "platform")


def finish_restore(data_dir: str) -> None:
    """Before any store of ``data_dir`` opens: finish a 系统恢复 a crash interrupted."""
    from kd.core.system import finish_interrupted_restore  # noqa: PLC0415

    if finish_interrupted_restore(data_dir):
        log.warning("finished a 系统恢复 that was interrupted by a crash")


class App:
    """A running kaodian: drill platform (drill mode), dongle gate, core, LAN service, ticks.

    ``start()`` raises ``LockGateError`` (exit 4) without the site's dongle and
    ``UserError`` when the LAN port is taken; ``stop()`` undoes everything in reverse
    order and may be called after a failed ``start()``. Background work: the outbox
    sender (in ``Core``), the monitor's ``tick()`` every ``tick_s`` and the network
    probe every ``probe_s`` (event ``net.status`` with ``ok``), each in its own thread,
    stopped at once by ``stop()``.

    Drill mode (no site configured, or a site set up against the drill platform): the
    platform simulator runs on 127.0.0.1 with its data in ``DATA/drill/platform``, the
    gate runs a dongle emulator carrying the simulator's registered dongle, and
    ``settings/site`` points at the simulator (``"drill": true``).
    """

    def __init__(self, data_dir: str, *, lock_url: Optional[str] = None, hub: Optional[EventHub] = None,
                 lan_host: str = "0.0.0.0", lan_port: int = 9190, lan_options: Any = None,  # noqa: S104
                 drill_site: Optional[Dict[str, Any]] = None, tick_s: float = 1.0, probe_s: float = 10.0) -> None:
        self.data_dir = data_dir
        self.lock_url = lock_url
        self.hub = hub or EventHub()
        self.lan_host, self.lan_port, self.lan_options = lan_host, lan_port, lan_options
        self.drill_site = drill_site or {}
        self.tick_s, self.probe_s = tick_s, probe_s
        self.simulator: Any = None
        self.gate: Any = None
        self.core: Any = None
        self.lan: Any = None
        self.drill = False
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []

    @property
    def ctx(self) -> Context:
        return self.core.ctx

    def start(self) -> "App":
        from kd.core.services import Core  # noqa: PLC0415
        from kd.lan.server import LanOptions, LanServer  # noqa: PLC0415
        from kd.lock.coreport import DonglePort  # noqa: PLC0415
        from kd.lock.gate import open_gate  # noqa: PLC0415

        finish_restore(self.data_dir)
        site = self._site()
        self.drill = not site.get("site_code") or bool(site.get("drill"))
        if self.drill and not self.lock_url:
            site = self._start_drill_platform(site)
        self.gate = open_gate(self.data_dir, self.lock_url, self.hub)
        trusted = trusted_keys(site)
        ctx = open_context(self.data_dir, self.hub, dongle=DonglePort(self.gate.driver), trusted=trusted)
        ctx.platform = SettingsPlatform(ctx.site, trusted)
        self.core = Core(ctx).start()
        options = self.lan_options or LanOptions(host=self.lan_host, port=self.lan_port)
        self.lan = LanServer(ctx, registration=self.core.registration, verification=self.core.verification,
                             monitor=self.core.monitor, recovery=self.core.recovery, loading=self.core.loading,
                             options=options).start()
        self._every(self.tick_s, "monitor-tick", self.core.monitor.tick)
        self._every(self.probe_s, "net-probe", self._probe)
        log.info("app started (%s), LAN %s:%d", "drill" if self.drill else "site", self.lan.address(),
                 self.lan.port())
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        if self.lan is not None:
            self.lan.stop()
        if self.core is not None:
            self.core.stop()
            if self.ctx.platform is not None and hasattr(self.ctx.platform, "close"):
                self.ctx.platform.close()
            self.ctx.stores.close()
        if self.gate is not None:
            self.gate.close()
        if self.simulator is not None:
            self.simulator.shutdown()
        log.info("app stopped")

    def sync_lock(self) -> Any:
        """机考锁校时 from the running app: the platform's sync ticket into the gate's dongle.

        ``kd.lock.sync.sync_lock`` over the gate's driver and the settings' platform;
        returns its ``SyncResult`` (``.message()`` is the manual's text). Raises
        ``LockError`` / ``PlatformError`` / ``FormatError`` (``UserError``s).
        """
        from kd.lock.sync import sync_lock  # noqa: PLC0415

        return sync_lock(self.gate.driver, self.ctx.platform)

    # -- helpers ---------------------------------------------------------------------------
    def _site(self) -> Dict[str, Any]:
        stores = open_stores(self.data_dir)
        try:
            return stores.settings.get("settings", "site") or {}
        finally:
            stores.close()

    def _start_drill_platform(self, site: Dict[str, Any]) -> Dict[str, Any]:
        """Start the drill platform and point ``settings/site`` at it (its port changes per run)."""
        from kd.platform.simulator import start_simulator  # noqa: PLC0415

        folder = os.path.join(self.data_dir, *DRILL_PLATFORM)
        self.simulator = start_simulator(folder, 0, **self.drill_site)
        site = dict(site, drill=True, platform_url=self.simulator.url, platform_password=self.simulator.password,
                    trusted_keys=[base64.b64encode(self.simulator.public_key).decode("ascii")])
        stores = open_stores(self.data_dir)
        try:
            stores.settings.put("settings", "site", site)
        finally:
            stores.close()
        log.warning("演练模式：监控平台模拟器 %s（考点 %s）", self.simulator.url, self.simulator.site_code)
        return site

    def _probe(self) -> None:
        platform = self.ctx.platform
        ok = bool(platform is not None and platform.probe())
        self.hub.publish("net.status", ok=ok)

    def _every(self, seconds: float, name: str, fn: Callable[[], Any]) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    fn()
                except Exception:
                    log.exception("%s failed", name)
                self._stop.wait(seconds)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
