"""The composition root: data folder → stores → adapters → core context.

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
from typing import Any, Dict, Optional

from kd.core.context import Context
from kd.core.ports import Dongle, Lan, Platform
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
    """A platform client for the configured site, or None when no URL or code is set."""
    url, code = site.get("platform_url"), site.get("site_code")
    if not url or not code:
        return None
    from kd.platform.client import PlatformClient  # noqa: PLC0415 - requests is slow to import

    return PlatformClient(url, code, site.get("platform_password", ""), trusted)


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
