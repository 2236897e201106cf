"""The composition root: ``open_site(data_dir, ...)`` opens a site in one sequence.

The GUI (``kd.views.start`` through ``kd.app.App``), ``--headless`` (``main.py``), every
CLI command (``kd.cli.run``), the drill (``kd.drill``) and the test support
(``tests/support/env.py``) open a data folder only through ``open_site``, so each of
them finishes interrupted work, reads the settings and decides drill mode the same way:

1. **The folder.** ``DataFolder(data_dir)``; ``finish_interrupted()`` completes (or
   rolls back) a package install or 系统恢复 a kill interrupted, before any store opens.
2. **The stores, once.** ``folder.open_stores(accept)`` (a missing or rolled-back DB is
   refused by name, never opened as empty), the result spool, the audit log.
3. **The site config, once.** ``read_config(stores)``: a frozen ``SiteConfig`` from
   ``settings/site`` and the loaded package's lock entry (``exam package/manifest``,
   only that part of it is copied): site code, mode, drill mode (no site code yet, or a
   site set up against the drill platform), platform URL and password, the trusted
   platform keys, and the gate's ``Requirement``. Nothing else reads them at start.
4. **Drill peers**, in drill mode when no platform and no dongle URL are given: the
   platform simulator on 127.0.0.1 with its data in ``DATA/drill/platform``;
   ``settings/site`` is pointed at it (one write; its port changes every run) and the
   config follows (its key is then the one trusted key).
5. **The gate** (``gate=True``, no ``dongle`` given): ``kd.lock.gate.open_gate`` with the
   config's requirement, so the gate never opens a DB file. ``LockGateError`` (exit 4)
   without the site's dongle. In drill mode it runs the drill dongle emulator.
6. **The context and the core.** ``Context(..., folder=folder)`` over the stores, with
   the dongle port (the gate's driver, or the one given), the platform port (the one
   given, or ``SettingsPlatform`` over the current settings) and the config's trusted
   keys; ``Core(ctx)`` builds every service once and hands each its siblings.
7. **LAN and ticks**, if asked: the LAN server (``lan=LanOptions(...)``) over the core's
   services, and (``ticks=True``) the outbox sender, the monitor's, the timeline's
   ``tick()`` (alarms, kd.core.timeline) and the incidents' (drafts) every ``tick_s`` and the network probe every
   ``probe_s`` (event ``net.status`` with ``ok``).
   With them (``control``: by default when LAN or ticks are on, i.e. the GUI and
   ``--headless``), the **control channel**: ``kd.control.server.ControlServer`` on
   127.0.0.1 (``DATA/control.json``) running command lines' commands through
   ``kd.cli.run_in_site`` against this site (docs/control-protocol.md). A channel that
   cannot start is logged and left out (the command line then exits 3 as without it).

``open_site`` returns a ``Site`` (``folder``, ``stores``, ``config``, ``gate``, ``ctx``,
``core``, ``lan``, ``control``, ``simulator``). ``Site.close(deadline_s)`` shuts down in
this order: close the control channel (no new command; a wait for input ends; commands
under way get up to ``CONTROL_CLOSE_S`` of the deadline), stop the LAN server (no new
connection; its handler threads are joined within the server's ``stop_timeout``),
close the platform client, join the outbox sender and the tick threads within the
deadline (a thread that did not end is logged), close the stores (a closed store
refuses writes), close the gate (dongle driver, drill emulator), stop the simulator.
``close()`` is idempotent; when a step of ``open_site`` fails, what was already opened
is closed in the same reverse order and the error propagates.

Adapters the caller gives (``platform=``, ``dongle=``, ``hub=``, ``clock=``) belong to
the caller: ``close()`` does not close them. Nothing here is a business rule.
"""

import base64
import binascii
import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Iterable, List, Mapping, Optional

from kd.core import model
from kd.core.context import Context, cst_now
from kd.core.ports import Dongle, Platform
from kd.core.services import Core
from kd.errors import PlatformUnreachable
from kd.events import EventHub
from kd.formats.signing import TrustedKeys
from kd.lan.server import LanOptions, LanServer
from kd.lock.gate import Gate, Requirement, open_gate, requirement_for
from kd.store.database import Stores
from kd.store.datafolder import DataFolder

log = logging.getLogger(__name__)

#: of ``Site.close``'s deadline, what commands run through the control channel get to finish
CONTROL_CLOSE_S = 5.0

__all__ = ["LanOptions", "SettingsPlatform", "Site", "SiteConfig", "config_from", "open_context", "open_site",
           "platform_for", "read_config", "trusted_keys"]


# -- 3. the site config ------------------------------------------------------------------------
def trusted_keys(site: Mapping[str, Any]) -> TrustedKeys:
    """The platform keys ``settings/site`` trusts (base64 strings); bad entries are logged and skipped."""
    keys = TrustedKeys()
    for text in site.get("trusted_keys") or []:
        try:
            keys.add(base64.b64decode(str(text).encode("ascii"), validate=True))
        except (ValueError, binascii.Error, UnicodeEncodeError) as e:
            log.error("ignoring an unusable trusted key %r: %s", text, e)
    return keys


@dataclasses.dataclass(frozen=True)
class SiteConfig:
    """What the start needs of ``settings/site`` and the loaded package, read once."""

    site_code: Optional[str]
    mode: str
    #: drill mode: no site configured yet, or a site set up against the drill platform
    drill: bool
    platform_url: Optional[str]
    platform_password: str
    trusted_keys: TrustedKeys
    #: what the dongle gate requires (site code, the loaded package's dongle, drill)
    requirement: Requirement
    #: ``settings/site`` as read (the drill step writes it back pointed at the simulator)
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def configured(self) -> bool:
        """系统设置 was done (a site code is set)."""
        return self.site_code is not None


def config_from(site: Mapping[str, Any], package: Optional[Mapping[str, Any]]) -> SiteConfig:
    """The config of ``settings/site`` and ``package`` (the manifest's ``{"lock": ...}``, None before 导入考务).

    Raises ``LockGateError`` when the loaded package's lock entry is unusable.
    """
    site = dict(site or {})
    site_code = site.get("site_code") or None
    drill = site_code is None or bool(site.get("drill"))
    lock = (package or {}).get("lock")
    return SiteConfig(
        site_code=site_code, mode=site.get("mode", model.FORMAL), drill=drill,
        platform_url=site.get("platform_url") or None, platform_password=site.get("platform_password") or "",
        trusted_keys=trusted_keys(site),
        requirement=requirement_for(site_code, drill, lock, package_loaded=package is not None),
        settings=site)


def read_config(stores: Stores) -> SiteConfig:
    """Read ``settings/site`` and the loaded package's lock entry (one read each)."""
    site = stores.settings.get(model.SETTINGS, model.SITE) or {}
    package = stores.exam.view(model.PACKAGE, model.MANIFEST, lambda m: {"lock": m.get("lock")})
    return config_from(site, package)


# -- the platform port -------------------------------------------------------------------------
def platform_for(site: Mapping[str, Any], trusted: TrustedKeys) -> Optional[Platform]:
    """A platform client for ``site`` as it is now, or None when no URL is set."""
    url = site.get("platform_url")
    if not url:
        return None
    from kd.platform.client import PlatformClient  # noqa: PLC0415 - requests is slow to import

    return PlatformClient(url, site.get("site_code") or "", site.get("platform_password", ""), trusted)


class SettingsPlatform:
    """The platform port over whatever ``settings/site`` says now.

    The first login (系统设置) sets the site code after the site opened; this wrapper
    rebuilds the client when the URL, site code or password change, so every service
    sees the current settings. With no URL configured, every call raises
    ``PlatformUnreachable`` naming the manual import, and ``probe()`` is False. After
    ``close()`` (the site is closing) every call raises ``PlatformUnreachable`` and
    ``probe()`` is False.
    """

    def __init__(self, read_site: Callable[[], Mapping[str, Any]], trusted: TrustedKeys) -> None:
        self._read_site = read_site
        self._trusted = trusted
        self._lock = threading.Lock()
        self._key: Any = None
        self._client: Any = None
        self._closed = False

    def current(self) -> Any:
        if self._closed:
            raise PlatformUnreachable("考点管理系统正在关闭，无法联网操作。", "请重新启动考点管理系统后再试。")
        site = self._read_site()
        key = (site.get("platform_url"), site.get("site_code"), site.get("platform_password"))
        with self._lock:
            if self._closed:
                raise PlatformUnreachable("考点管理系统正在关闭，无法联网操作。", "请重新启动考点管理系统后再试。")
            if key != self._key:
                if self._client is not None:
                    self._client.close()
                self._client = platform_for(site, self._trusted)
                self._key = key
            return self._client

    def probe(self) -> bool:
        if self._closed:
            return False
        client = self.current()
        return bool(client is not None and client.probe())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._client is not None:
                self._client.close()
            self._client, self._key = None, None

    def __getattr__(self, name: str) -> Any:
        client = self.current()
        if client is None:
            raise PlatformUnreachable("未配置监控平台地址，无法联网操作。", "请使用手工导入。")
        return getattr(client, name)


# -- the site ----------------------------------------------------------------------------------
class Site:
    """An open site (see the module docstring); ``close()`` ends everything ``open_site`` started."""

    def __init__(self, folder: DataFolder, hub: EventHub) -> None:
        self.folder = folder
        self.hub = hub
        self.config: Optional[SiteConfig] = None
        self.simulator: Any = None
        self.gate: Optional[Gate] = None
        self.ctx: Optional[Context] = None
        self.core: Optional[Core] = None
        self.lan: Optional[LanServer] = None
        self.control: Any = None
        self._stores: Optional[Stores] = None
        self._own_platform: Any = None
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._core_started = False
        self._closed = False
        self._close_lock = threading.Lock()

    @property
    def data_dir(self) -> str:
        return self.folder.root

    @property
    def stores(self) -> Optional[Stores]:
        """The open stores (the context's: 系统恢复 reopens them there)."""
        if self.ctx is not None:
            return self.ctx.stores
        return self._stores

    @property
    def drill(self) -> bool:
        return bool(self.config is not None and self.config.drill)

    @property
    def closed(self) -> bool:
        return self._closed

    def sync_lock(self) -> Any:
        """机考锁校时 from the open site: the platform's sync ticket into the gate's dongle.

        ``kd.lock.sync.sync_lock`` over the gate's driver and the settings' platform;
        returns its ``SyncResult`` (``.message()`` is the manual's text). Raises
        ``LockError`` / ``PlatformError`` / ``FormatError`` (``UserError``s).
        """
        from kd.errors import LockError  # noqa: PLC0415
        from kd.lock.sync import sync_lock  # noqa: PLC0415

        if self.gate is None or self.ctx is None:
            raise LockError("未检测到机考锁。", "请插入本考点的机考锁后重试。")
        return sync_lock(self.gate.driver, self.ctx.platform)

    # -- background work ---------------------------------------------------------------------
    def _probe(self) -> None:
        platform = self.ctx.platform if self.ctx is not None else None
        ok = bool(platform is not None and platform.probe())
        self.hub.publish("net.status", ok=ok)

    def _every(self, seconds: float, name: str, fn: Callable[[], Any]) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    fn()
                except Exception:
                    if self._stop.is_set():
                        log.debug("%s failed while closing", name, exc_info=True)
                    else:
                        log.exception("%s failed", name)
                self._stop.wait(seconds)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    # -- shutdown ------------------------------------------------------------------------------
    def close(self, deadline_s: float = 10.0) -> None:
        """Shut down in order (module docstring); idempotent, safe after a failed open.

        Every step runs even when an earlier one failed; the first error is re-raised at the end.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        end = time.monotonic() + max(0.0, deadline_s)
        errors: List[BaseException] = []

        def step(what: str, fn: Callable[[], Any]) -> Any:
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - every step runs; the first error is raised at the end
                log.exception("closing the site: %s failed", what)
                errors.append(e)
                return None

        def left() -> float:
            return max(0.0, end - time.monotonic())

        if self.control is not None:
            step("closing the control channel", lambda: self.control.close(min(left(), CONTROL_CLOSE_S)))
        self._stop.set()
        if self.lan is not None:
            step("stopping the LAN server", self.lan.stop)
        if self._own_platform is not None:
            step("closing the platform client", self._own_platform.close)
        core = self.core
        if core is not None and self._core_started:
            if not step("stopping the outbox sender", lambda: core.stop(left())):
                log.warning("the outbox sender did not end within the deadline")
        for thread in self._threads:
            thread.join(left())
            if thread.is_alive():
                log.warning("thread %s did not end within the deadline", thread.name)
        stores = self.stores
        if stores is not None:
            step("closing the stores", stores.close)
        if self.gate is not None:
            step("closing the gate", self.gate.close)
        if self.simulator is not None:
            step("stopping the drill platform", self.simulator.shutdown)
        log.info("site %s closed", self.folder.root)
        if errors:
            raise errors[0]

    def close_quietly(self, why: str) -> None:
        """``close()`` after a failure: an error while closing is logged (``why``), not raised,
        so that the failure itself is the one reported."""
        try:
            self.close()
        except Exception:  # noqa: BLE001 - the caller's own error is the one to report
            log.exception(why)

    def __enter__(self) -> "Site":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _open_data(folder: DataFolder, accept: Iterable[str]) -> Any:
    """Steps 1 to 3: finish interrupted work, open the stores, spool and audit log, read the config."""
    kind = folder.finish_interrupted()
    if kind is not None:
        log.warning("finished a %s that was interrupted by a crash", kind)
    stores = folder.open_stores(accept)
    try:
        spool = folder.open_spool()
        audit = folder.open_audit()
        config = read_config(stores)
    except BaseException:
        stores.close()
        raise
    return stores, spool, audit, config


def bound_lan(lan: LanOptions, settings: Mapping[str, Any]) -> LanOptions:
    """``lan`` bound to the chosen address (``settings/site`` ``lan_bind`` and ``lan_address``, 状态栏
    地址) when the caller left the host at every interface (no ``--lan-host``) and that address is
    this PC's now; otherwise ``lan`` as given (a chosen address that went away is logged, and
    the service listens on every interface rather than not at all)."""
    address = settings.get("lan_address")
    if not settings.get("lan_bind") or not address or lan.host not in ("0.0.0.0", ""):  # noqa: S104
        return lan
    from kd.lan.addresses import is_local  # noqa: PLC0415

    if not is_local(str(address)):
        log.warning("the chosen LAN address %s is not this PC's now; listening on every interface", address)
        return lan
    return lan._replace(host=str(address))


def _start_drill_platform(site: Site, stores: Stores, config: SiteConfig,
                          drill_site: Optional[Mapping[str, Any]]) -> SiteConfig:
    """Start the drill platform (its demo site ``drill_site``, default the drill day) and point
    ``settings/site`` at it; the config that follows."""
    from kd.platform.demo import DRILL_DAY  # noqa: PLC0415 - drill mode only
    from kd.platform.simulator import start_simulator  # noqa: PLC0415

    site_args = DRILL_DAY if drill_site is None else drill_site
    site.simulator = sim = start_simulator(site.folder.path("drill", "platform"), 0, **dict(site_args))
    settings = dict(config.settings, drill=True, platform_url=sim.url, platform_password=sim.password,
                    trusted_keys=[base64.b64encode(sim.public_key).decode("ascii")])
    stores.settings.put(model.SETTINGS, model.SITE, settings)
    log.warning("演练模式：监控平台模拟器 %s（考点 %s）", sim.url, sim.site_code)
    return dataclasses.replace(config, platform_url=sim.url, platform_password=sim.password,
                               trusted_keys=trusted_keys(settings), settings=settings)


def open_site(
    data_dir: str,
    *,
    hub: Optional[EventHub] = None,
    platform: Optional[Platform] = None,
    dongle: Optional[Dongle] = None,
    gate: bool = True,
    lock_url: Optional[str] = None,
    clock: Optional[Callable[[], Any]] = None,
    lan: Optional[LanOptions] = None,
    ticks: bool = False,
    tick_s: float = 1.0,
    probe_s: float = 10.0,
    drill_site: Optional[Mapping[str, Any]] = None,
    accept: Iterable[str] = (),
    control: Optional[bool] = None,
) -> Site:
    """Open the site in ``data_dir`` in the documented sequence and return it.

    ``platform`` / ``dongle``: ports to use instead of the settings' platform and the
    gate's dongle (tests: the simulator over HTTP, the emulator's driver); no drill
    platform starts when a platform is given. ``gate=False`` skips the dongle gate (the
    context then has ``dongle`` or none). ``lock_url``: the dongle (``--lock``; no drill
    emulator or drill platform then). ``lan``: start the LAN server with these options.
    ``ticks``: start the outbox sender, the monitor tick and the network probe.
    ``drill_site``: the drill platform's demo site (``start_simulator`` arguments; None:
    ``kd.platform.demo.DRILL_DAY``).
    ``accept``: stores to open as they are (``repair-db``). ``control``: start the control
    channel (default: when ``lan`` or ``ticks`` is given).

    Raises ``StoreMissingError`` / ``StoreCorruptError`` / ``StoreError`` (the stores),
    ``LockGateError`` (exit 4: no dongle, or not the site's), ``LanServiceError`` (the LAN
    port is taken); whatever was opened before is closed first.
    """
    folder = DataFolder(data_dir)
    site = Site(folder, hub or EventHub())
    try:
        stores, spool, audit, config = _open_data(folder, accept)
        site._stores = stores
        if config.drill and platform is None and not lock_url:
            config = _start_drill_platform(site, stores, config, drill_site)
        site.config = config
        if gate and dongle is None:
            from kd.lock.coreport import DonglePort  # noqa: PLC0415

            site.gate = open_gate(folder.root, lock_url, site.hub, requirement=config.requirement)
            dongle = DonglePort(site.gate.driver)
        ctx = Context(folder.root, stores, spool, audit, site.hub, dongle=dongle, trusted=config.trusted_keys,
                      clock=clock or cst_now, folder=folder)
        if platform is None:
            platform = site._own_platform = SettingsPlatform(ctx.site, config.trusted_keys)
        ctx.platform = platform
        site.ctx = ctx
        site.core = core = Core(ctx)
        if lan is not None:
            site.lan = LanServer(ctx, registration=core.registration, verification=core.verification,
                                 monitor=core.monitor, recovery=core.recovery, loading=core.loading,
                                 options=bound_lan(lan, config.settings), extra_time=core.extra_time,
                                 clock_skew=core.clock_skew).start()
        if ticks:
            core.start()
            site._core_started = True
            site._every(tick_s, "monitor-tick", core.monitor.tick)
            site._every(tick_s, "timeline-tick", core.timeline.tick)
            site._every(tick_s, "incident-tick", core.incidents.tick)  # 考场情况记录 drafted (kd.core.incidents)
            site._every(probe_s, "net-probe", site._probe)
        if control if control is not None else (lan is not None or ticks):
            site.control = _start_control(site)
    except BaseException:
        site.close_quietly("closing after a failed open")
        raise
    log.info("site open (%s)%s", "drill" if config.drill else "site",
             ", LAN {}:{}".format(site.lan.address(), site.lan.port()) if site.lan is not None else "")
    return site


def _start_control(site: Site) -> Any:
    """The control channel over ``site`` (step 7's sibling), or None when it cannot start (logged)."""
    from kd import cli  # noqa: PLC0415 - the command handlers, run for command lines
    from kd.control.server import ControlServer  # noqa: PLC0415

    try:
        return ControlServer(site.folder.root, lambda argv, cwd: cli.run_in_site(site, argv, cwd)).start()
    except OSError:
        log.exception("the control channel could not start: command lines will find the folder held (exit 3)")
        return None


def open_context(data_dir: str, hub: Optional[EventHub] = None, *, platform: Optional[Platform] = None,
                 dongle: Optional[Dongle] = None, lan: Any = None, trusted: Optional[TrustedKeys] = None,
                 clock: Optional[Callable[[], Any]] = None) -> Context:
    """Steps 1 to 3 and a bare ``Context`` (no drill peers, gate, core, LAN or ticks).

    For core tests and benchmarks that build the one service they measure over the given
    ports; ``trusted`` replaces the settings' keys. The caller closes ``ctx.stores``.
    """
    folder = DataFolder(data_dir)
    stores, spool, audit, config = _open_data(folder, ())
    return Context(folder.root, stores, spool, audit, hub or EventHub(), platform=platform, dongle=dongle, lan=lan,
                   trusted=config.trusted_keys if trusted is None else trusted, clock=clock or cst_now,
                   folder=folder)
