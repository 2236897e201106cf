"""The site's running parts as the status bar and 授权验证 see them: LAN, dongle, platform.

``StatusService(ctx)`` (``core.status``) reads the ports, so a view never reaches the
LAN server, the dongle driver or the platform client itself:

- ``snapshot()``: a ``SiteStatus`` — whether the LAN service listens and on which
  address and port (None without a LAN service), whether the dongle is attached (None
  without a dongle port);
  (``lan_address`` is the address proctors are told, ``told_address``; ``lan_addresses``
  this PC's IPv4 addresses best first, ``lan_chosen`` / ``lan_bind`` the settings);
- ``choose_address(address, bind, actor)``: the administrator's pick of the address
  proctors are told (``settings/site`` ``lan_address``; ``bind``: ``lan_bind``, the LAN
  service listens on that address only from the next start); audited
  ``system.lan_address_changed``. Raises ``UserError`` for an address that is not this PC's;
- ``contact()``: the footer's 技术服务单位 and 服务电话 (``ServiceContact``): ``settings/site``
  ``service_unit`` / ``service_phone``, else the loaded package's optional ``service``
  object (docs/formats.md §2.2.1), else empty (the footer then shows only 系统版本);
- ``probe()``: whether the platform answers now (False without one; never raises);
- ``sync_lock()``: 机考锁校时 from this PC — the platform's signed sync ticket into the
  attached dongle (``Dongle.sync_clock``); returns the manual's message
  ("校时授权成功!\\n服务器时间:… 机考锁时间:…"), the only text that means the sync is done.
  Raises ``LockError`` (no dongle, or it refused the ticket), ``PlatformError`` (no
  platform configured, unreachable, refused) and ``FormatError`` (a bad ticket).

Every call may block on I/O (the UI calls them in a worker).

**The address proctors are told** (``told_address(ctx)``, the one rule the 考点信息表, the
status bar and 封场检测 follow): the chosen ``lan_address`` while it is one of the LAN
service's ``addresses()`` (this PC's IPv4 addresses; only the bound one when the service
is bound to one), else the first of them (private LAN addresses first, link-local and
loopback last: ``kd.lan.addresses``). Without a LAN service (a command line) it is the
chosen address, or None.
"""

import dataclasses
import ipaddress
import logging
from typing import Any, Dict, List, Optional, Tuple, cast

from kd.core import model, names
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
    #: this PC's IPv4 addresses proctors could be told, best first (() without a LAN service)
    lan_addresses: Tuple[str, ...] = ()
    #: the address chosen in settings (None: none chosen, the best one is told)
    lan_chosen: Optional[str] = None
    #: the LAN service is to listen on the chosen address only (from the next start)
    lan_bind: bool = False


@dataclasses.dataclass(frozen=True)
class ServiceContact:
    """The footer's 技术服务单位 and 服务电话 ("" when none is known)."""

    unit: str = ""
    phone: str = ""


#: the longest 技术服务单位 / 服务电话 shown (a package's or the settings' text)
CONTACT_MAX = 40


def _contact_text(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if len(text) > CONTACT_MAX or any(ord(c) < 32 for c in text):
        return ""
    return text


def _lan_addresses(lan: Any) -> List[str]:
    try:
        return [str(a) for a in lan.addresses()]
    except Exception as e:  # noqa: BLE001 - a status, not an action: the LAN's own address then
        log.warning("this PC's addresses unknown: %r", e)
        return [str(lan.address())]


def told_address(ctx: Context, found: Optional[List[str]] = None) -> Optional[str]:
    """The address proctors are told (the module docstring); ``found``: the LAN's addresses, if read."""
    chosen = ctx.site().get("lan_address") or None
    lan = ctx.lan
    if lan is None:
        return chosen
    if found is None:
        found = _lan_addresses(lan)
    if chosen and chosen in found:
        return chosen
    return found[0] if found else str(lan.address())


class StatusService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def snapshot(self) -> SiteStatus:
        lan, dongle = self.ctx.lan, self.ctx.dongle
        running, port = False, None  # type: Tuple[bool, Optional[int]]
        address: Optional[str] = None
        found: List[str] = []
        site = self.ctx.site()
        if lan is not None:
            try:
                running, port = bool(lan.listening()), lan.port()
                found = _lan_addresses(lan)
                address = told_address(self.ctx, found)
            except Exception as e:  # noqa: BLE001 - a status, not an action: shown as 停止
                log.warning("LAN service state unknown: %r", e)
        return SiteStatus(running, address, port, bool(dongle.attached()) if dongle is not None else None,
                          lan_addresses=tuple(found), lan_chosen=site.get("lan_address") or None,
                          lan_bind=bool(site.get("lan_bind")))

    def choose_address(self, address: str, bind: bool, actor: str) -> SiteStatus:
        """Remember ``address`` as the one proctors are told (``bind``: listen on it only, from the next start)."""
        text = (address or "").strip()
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            raise UserError("“{}”不是 IPv4 地址。".format(text[:40]),
                            "请从列表中选择本机在考场局域网上的地址。") from None
        lan = self.ctx.lan
        if lan is not None:
            found = _lan_addresses(lan)
            if text not in found:
                raise UserError("{} 不是本机当前的网络地址（本机地址：{}）。".format(text, "、".join(found)),
                                "请从列表中选择本机在考场局域网上的地址；网络刚变化时请稍后再试。")
        with self.ctx.lock:
            site: Dict[str, Any] = dict(self.ctx.site())
            before = (site.get("lan_address"), bool(site.get("lan_bind")))
            site["lan_address"], site["lan_bind"] = text, bool(bind)
            if before != (text, bool(bind)):
                self.ctx.stores.settings.put(model.SETTINGS, model.SITE, site)
                self.ctx.record(actor, names.LAN_ADDRESS_CHANGED, address=text, bind=bool(bind),
                                previous=before[0], previous_bind=before[1])
        return self.snapshot()

    def contact(self) -> ServiceContact:
        site = self.ctx.site()
        unit, phone = _contact_text(site.get("service_unit")), _contact_text(site.get("service_phone"))
        if unit or phone:
            return ServiceContact(unit, phone)
        service = self.ctx.manifest_view(lambda m: cast(Dict[str, Any], m).get("service"))
        if isinstance(service, dict):
            return ServiceContact(_contact_text(service.get("unit")), _contact_text(service.get("phone")))
        return ServiceContact()

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
