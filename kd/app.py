"""``App``: the running kaodian of the GUI, as a start/stop object over ``kd.site.open_site``.

The GUI's start flow (``kd.views.start``) builds an ``App`` in a worker, calls
``start()`` and later ``stop()``; both only delegate: ``start()`` is
``open_site(data_dir, lock_url=..., lan=LanOptions(...), ticks=True, ...)`` and
``stop()`` is ``Site.close()``. The attributes the views use (``core``, ``ctx``, ``lan``,
``gate``, ``simulator``, ``drill``, ``sync_lock()``) are the site's. Everything about the
sequence is in ``kd.site``; the names below are re-exported for older imports.
"""

import logging
from typing import Any, Callable, Dict, Optional

from kd.events import EventHub
from kd.forward import Forward
from kd.site import SettingsPlatform, Site, open_context, platform_for, trusted_keys

log = logging.getLogger(__name__)

__all__ = ["App", "SettingsPlatform", "open_context", "platform_for", "trusted_keys"]


class App:
    """A running kaodian (see ``kd.site``): ``start()`` opens the site with LAN and ticks.

    ``start()`` raises ``LockGateError`` (exit 4) without the site's dongle and
    ``UserError`` when the LAN port is taken; ``stop()`` closes what was opened, in
    reverse order, and may be called after a failed ``start()`` or twice.
    """

    def __init__(self, data_dir: str, *, lock_url: Optional[str] = None, hub: Optional[EventHub] = None,
                 lan_host: str = "0.0.0.0", lan_port: int = 9190, lan_options: Any = None,  # noqa: S104
                 drill_site: Optional[Dict[str, Any]] = None, tick_s: float = 1.0, probe_s: float = 10.0,
                 clock: Optional[Callable[[], Any]] = None) -> None:
        self.data_dir = data_dir
        self.clock = clock  # the site's clock (``open_site(clock=)``; tests hold time still), None: real time
        self.lock_url = lock_url
        self.hub = hub or EventHub()
        self.lan_host, self.lan_port, self.lan_options = lan_host, lan_port, lan_options
        self.drill_site = drill_site or {}
        self.tick_s, self.probe_s = tick_s, probe_s
        self.site: Optional[Site] = None

    def start(self) -> "App":
        from kd.site import LanOptions, open_site  # noqa: PLC0415

        options = self.lan_options or LanOptions(host=self.lan_host, port=self.lan_port)
        self.site = open_site(self.data_dir, hub=self.hub, lock_url=self.lock_url, lan=options, ticks=True,
                              tick_s=self.tick_s, probe_s=self.probe_s, drill_site=self.drill_site,
                              clock=self.clock)
        return self

    def stop(self) -> None:
        if self.site is not None:
            self.site.close()

    # -- the site's parts ------------------------------------------------------------------
    core = Forward[Any]("site", missing=None)
    ctx = Forward[Any]("site", missing=None)
    lan = Forward[Any]("site", missing=None)
    gate = Forward[Any]("site", missing=None)
    simulator = Forward[Any]("site", missing=None)

    @property
    def drill(self) -> bool:
        return bool(self.site is not None and self.site.drill)

    def sync_lock(self) -> Any:
        """机考锁校时 from the running app (``Site.sync_lock``)."""
        if self.site is None:
            from kd.errors import LockError  # noqa: PLC0415

            raise LockError("未检测到机考锁。", "请插入本考点的机考锁后重试。")
        return self.site.sync_lock()
