"""The site's running parts as the status bar and 授权验证 see them: LAN, dongle, platform.

``StatusService(ctx)`` (``core.status``) reads the ports, so a view never reaches the
LAN server, the dongle driver or the platform client itself:

- ``snapshot()``: a ``SiteStatus`` — whether the LAN service listens and on which
  address and port (None without a LAN service), whether the dongle is attached (None
  without a dongle port);
- ``probe()``: whether the platform answers now (False without one; never raises);
- ``sync_lock()``: 机考锁校时 from this PC — the platform's signed sync ticket into the
  attached dongle (``Dongle.sync_clock``); returns the manual's message
  ("校时授权成功!\\n服务器时间:… 机考锁时间:…"), the only text that means the sync is done.
  Raises ``LockError`` (no dongle, or it refused the ticket), ``PlatformError`` (no
  platform configured, unreachable, refused) and ``FormatError`` (a bad ticket).

Every call may block on I/O (the UI calls them in a worker).
"""

import dataclasses
import logging
from typing import Optional

from kd.core.context import Context
from kd.errors import LockError, PlatformUnreachable, UserError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SiteStatus:
    lan_running: bool
    lan_address: Optional[str]
    lan_port: Optional[int]
    #: None: the site has no dongle port (a CLI process)
    lock_attached: Optional[bool]


class StatusService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def snapshot(self) -> SiteStatus:
        lan, dongle = self.ctx.lan, self.ctx.dongle
        running, address, port = False, None, None
        if lan is not None:
            try:
                running, address, port = bool(lan.listening()), lan.address(), lan.port()
            except Exception as e:  # noqa: BLE001 - a status, not an action: shown as 停止
                log.warning("LAN service state unknown: %r", e)
        return SiteStatus(running, address, port, bool(dongle.attached()) if dongle is not None else None)

    def probe(self) -> bool:
        platform = self.ctx.platform
        if platform is None:
            return False
        try:
            return bool(platform.probe())
        except UserError as e:
            log.info("platform probe: %s", e.cause)
            return False

    def sync_lock(self) -> str:
        dongle = self.ctx.dongle
        if dongle is None or not dongle.attached():
            raise LockError("未检测到机考锁。", "请插入本考点的机考锁后重试。")
        platform = self.ctx.platform
        if platform is None:
            raise PlatformUnreachable("未配置监控平台地址，无法在本机校时。",
                                      "请将机考锁插在可上互联网的电脑上，登录监控平台的校时网站校时。")
        return dongle.sync_clock(platform)
