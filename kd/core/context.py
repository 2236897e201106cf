"""What every core service shares: stores, spool, audit, events, ports, clock, one lock.

Services are constructed with a ``Context``. A state change runs under ``ctx.lock``
(one ``RLock`` for the whole core: LAN handler threads and UI workers call the same
services), is persisted through the stores before the call returns, and is recorded
with ``ctx.record(actor, action, **details)``: one audit line and one hub event of the
same name, so views and tests see it. The entries the audit log writes by itself
(``audit.rotated``, ``audit.capped``: kd.store.audit) are published on the hub too, with
``actor="system"``, whichever audit log the context holds (it is replaced at 系统恢复).

Ports (``kd.core.ports``) may be ``None``: no platform configured (offline fallback
only), no LAN service yet. ``ctx.platform_or_raise()`` turns that into a ``UserError``
that points to the manual import.
"""

import datetime
import os
import threading
from typing import Any, Callable, Dict, Optional, cast

from kd.core import model
from kd.core.ports import DataFiles, Dongle, Lan, Platform
from kd.core.records import Manifest, SiteSettings
from kd.errors import LockError, PlatformUnreachable
from kd.events import EventHub
from kd.formats.signing import TrustedKeys
from kd.formats.timeutil import CST
from kd.store.audit import AuditLog
from kd.store.database import Stores
from kd.store.spool import Spool


def cst_now() -> datetime.datetime:
    return datetime.datetime.now(CST)


class Context:
    def __init__(
        self,
        data_dir: str,
        stores: Stores,
        spool: Spool,
        audit: AuditLog,
        hub: EventHub,
        *,
        platform: Optional[Platform] = None,
        dongle: Optional[Dongle] = None,
        lan: Optional[Lan] = None,
        trusted: Optional[TrustedKeys] = None,
        clock: Callable[[], datetime.datetime] = cst_now,
        folder: Optional[DataFiles] = None,
    ) -> None:
        self.data_dir = data_dir
        if folder is None:
            from kd.store.datafolder import DataFolder  # noqa: PLC0415 - the default layout

            folder = DataFolder(data_dir)
        #: the data folder's layout and file transactions (``kd.store.datafolder.DataFolder``)
        self.folder: DataFiles = folder
        self.stores = stores
        self.spool = spool
        self.hub = hub
        self.audit = audit
        self.platform = platform
        self.dongle = dongle
        self.lan = lan
        self.trusted = trusted or TrustedKeys()
        self.clock = clock
        self.lock = threading.RLock()
        #: folder-level file operations: backup copies, package install swap, restore swap,
        #: clear; never taken by LAN hot paths (the folder's own lock). Lock order: ``files_lock``
        #: before ``lock``, never the other way round
        self.files_lock = folder.files_lock

    @property
    def audit(self) -> AuditLog:
        return self._audit

    @audit.setter
    def audit(self, audit: AuditLog) -> None:
        self._audit = audit
        audit.notify = self._audit_notice

    def _audit_notice(self, action: str, details: Dict[str, Any]) -> None:
        """The audit log rotated or dropped a file: an event (``audit.capped`` is the alarm)."""
        self.hub.publish(action, actor="system", **details)

    def now(self) -> datetime.datetime:
        """Timezone-aware current time (tests may pass a clock)."""
        return self.clock()

    def path(self, *parts: str) -> str:
        """A path under the data folder (its parent folder created)."""
        full = os.path.join(self.data_dir, *parts)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return full

    def record(self, actor: str, action: str, **details: Any) -> None:
        """Audit a state change and publish it as an event of the same name."""
        self.audit.append(actor, action, details)
        self.hub.publish(action, actor=actor, **details)

    # -- settings shortcuts ----------------------------------------------------------------
    def site(self) -> SiteSettings:
        """``settings/site`` or an empty dict before first setup."""
        return cast(SiteSettings, self.stores.settings.get(model.SETTINGS, model.SITE) or {})

    def site_code(self) -> Optional[str]:
        return self.site().get("site_code")

    def mode(self) -> str:
        return self.site().get("mode", model.FORMAL)

    def manifest(self) -> Optional[Manifest]:
        """The loaded package's manifest, or None before 导入考务."""
        return cast(Optional[Manifest], self.stores.exam.get(model.PACKAGE, model.MANIFEST))

    def manifest_view(self, fn: Callable[[Manifest], Any]) -> Any:
        """``fn(manifest)`` copied out (None before 导入考务), without copying the whole manifest.

        ``fn`` must only read: it sees the stored document (``Database.view``). For the
        LAN's hot paths (register, permit): a full ``manifest()`` copies every candidate.
        """
        return self.stores.exam.view(model.PACKAGE, model.MANIFEST, cast(Callable[[Dict[str, Any]], Any], fn))

    # -- ports -----------------------------------------------------------------------------
    def platform_or_raise(self, fallback: str) -> Platform:
        """The platform port, or a ``PlatformUnreachable`` that names ``fallback`` (e.g. 手工导入)."""
        if self.platform is None:
            raise PlatformUnreachable("未配置监控平台地址，无法联网操作。", "请使用{}。".format(fallback))
        return self.platform

    def dongle_or_raise(self) -> Dongle:
        if self.dongle is None or not self.dongle.attached():
            raise LockError("未检测到机考锁。", "请插入本考点的机考锁后重试。")
        return self.dongle
