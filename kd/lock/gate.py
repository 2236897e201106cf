"""The start gate: kaodian does not start without the site's exam dongle (screens.md §登录).

``open_gate(data_dir, url, hub, requirement=...)`` either returns a ``Gate`` (the attached
driver, kept for the life of the app, and the drill emulator if one was started) or raises
``LockGateError`` (a ``LockError``: exit code 4) whose text follows the manual:
"考点管理系统需要机考锁才能启动…", the cause, and what to do.

The gate never reads the data folder's stores: ``kd.site`` reads the site config once
and hands the gate its ``Requirement`` (``requirement_for``, the one place that turns
the settings and the loaded package's lock entry into what the gate requires):

- **drill mode** (no site configured yet, or a site set up against the drill platform:
  ``settings/site`` has ``"drill": true``; decided once, in ``kd.site.SiteConfig``). Unless
  a URL is given, the gate starts a dongle emulator itself (state in
  ``DATA_DIR/drill/lock``, identity and trusted platform key taken from the drill
  platform's folder ``DATA_DIR/drill/platform`` when it exists) and logs that it is drill mode;
- a site configured, no package loaded: any present, protocol-correct dongle (it must
  answer ``VERSION``/``ID``/``KEY`` and sign a challenge that verifies with its own key);
- a package loaded: exactly the dongle the package names (lock id, and a challenge
  answer that verifies against the package's public key).

How the dongle is found: the ``url`` argument (``--lock``), else ``KD_LOCK_URL``, else
USB auto-detection (``kd.lock.driver``). Tk-free.
"""

import base64
import binascii
import json
import logging
import os
from typing import Any, Mapping, NamedTuple, Optional

from kd.errors import LockError, UserError
from kd.events import EventHub
from kd.lock.driver import DEFAULT_TIMEOUT, ExpectedLock, LockDriver, LockInfo
from kd.lock.emulator import LockEmulator, read_identity

log = logging.getLogger(__name__)

ENV_LOCK_URL = "KD_LOCK_URL"
START_CAUSE = "考点管理系统需要机考锁才能启动："

DRILL_LOCK_DIR = ("drill", "lock")
DRILL_PLATFORM_DIR = ("drill", "platform")


class LockGateError(LockError):
    """kaodian may not start: no dongle, or not the site's dongle (exit code 4)."""


class Requirement(NamedTuple):
    """What the gate requires: the site code (None before 系统设置), the package's dongle
    (None: any protocol-correct dongle) and whether this is drill mode."""

    site_code: Optional[str]
    expected: Optional[ExpectedLock]
    drill: bool = False


class Gate:
    """The dongle the app runs with: keep it open; ``close()`` at shutdown."""

    def __init__(self, driver: LockDriver, info: LockInfo, requirement: Requirement,
                 emulator: Optional[LockEmulator] = None) -> None:
        self.driver = driver
        self.info = info
        self.requirement = requirement
        self.emulator = emulator

    @property
    def drill(self) -> bool:
        return self.requirement.drill

    def close(self) -> None:
        self.driver.stop()
        if self.emulator is not None:
            self.emulator.stop()


def requirement_for(site_code: Optional[str], drill: bool, lock: Optional[Mapping[str, Any]],
                    package_loaded: bool) -> Requirement:
    """The requirement for a site: its code, drill mode, and the loaded package's lock entry.

    ``lock`` is the manifest's ``{"id": ..., "public_key": <base64>}`` (looked at only when
    a site code is set and ``package_loaded``). Raises ``LockGateError`` when the loaded
    package's dongle entry is unusable.
    """
    if site_code is None or not package_loaded:
        return Requirement(site_code, None, drill)
    entry = dict(lock or {})
    try:
        key = base64.b64decode(str(entry.get("public_key", "")).encode("ascii"), validate=True)
        if len(key) != 32 or not isinstance(entry.get("id"), str):
            raise ValueError("bad lock entry")
    except (ValueError, binascii.Error, UnicodeEncodeError) as e:
        raise LockGateError(
            START_CAUSE + "已导入的考务数据中没有有效的机考锁信息。",
            "请重新导入考务数据；如问题持续，请联系技术服务单位。",
            detail="package lock entry {!r}: {}".format(lock, e),
        ) from e
    return Requirement(site_code, ExpectedLock(entry["id"], key), drill)


def start_drill_lock(data_dir: str) -> LockEmulator:
    """The drill dongle: an emulator on 127.0.0.1 with its state in ``DATA_DIR/drill/lock``.

    When the drill platform's folder has a ``dongle.json`` (lock id, seed and the site
    the platform registered it to) and ``platform.pub``, the emulator takes that identity
    and site and trusts that key, so the drill platform's package names this dongle, its
    sync tickets are accepted and it answers ``SITE`` with the drill platform's site code.
    A drill dongle state of another identity or site (the drill platform was reset) is set
    aside as ``dongle.json.old`` and the platform's dongle follows.
    """
    state_dir = os.path.join(data_dir, *DRILL_LOCK_DIR)
    platform_dir = os.path.join(data_dir, *DRILL_PLATFORM_DIR)
    lock_id, seed, site_code, trust = None, None, None, []
    identity = os.path.join(platform_dir, "dongle.json")
    if os.path.exists(identity):
        try:
            lock_id, seed, site_code = read_identity(identity)
        except (OSError, ValueError) as e:
            log.warning("drill platform dongle identity unusable (%s); using the emulator's own", e)
    pub = os.path.join(platform_dir, "platform.pub")
    if os.path.exists(pub):
        try:
            with open(pub, encoding="ascii") as f:
                key = base64.b64decode(f.read().strip().encode("ascii"), validate=True)
            if len(key) == 32:
                trust.append(key)
        except (OSError, ValueError, binascii.Error) as e:
            log.warning("drill platform key %s unusable: %s", pub, e)
    state_file = os.path.join(state_dir, "dongle.json")
    if lock_id is not None and os.path.exists(state_file):
        try:
            with open(state_file, "rb") as f:
                doc = json.loads(f.read().decode("utf-8"))
            current = (doc.get("lock_id"), doc.get("seed"), doc.get("site_code"))
        except (OSError, ValueError, AttributeError):
            current = (None, None, None)
        wanted = (lock_id, seed.hex() if seed else None, site_code)
        # the drill platform was reset: follow its dongle (a state without a site is an older
        # emulator's file of the same dongle: it is registered, not replaced)
        if current[:2] != wanted[:2] or (None not in (current[2], site_code) and current[2] != site_code):
            aside = state_file + ".old"
            os.replace(state_file, aside)
            log.warning("drill dongle %s (site %s) replaced by the drill platform's %s (site %s; old state in %s)",
                        current[0], current[2], lock_id, site_code, aside)
    emulator = LockEmulator(state_dir, trust=trust, lock_id=lock_id, seed=seed, site_code=site_code)
    emulator.start_tcp("127.0.0.1", 0)
    return emulator


def open_gate(
    data_dir: str,
    url: Optional[str] = None,
    hub: Optional[EventHub] = None,
    *,
    requirement: Requirement,
    timeout: float = DEFAULT_TIMEOUT,
) -> Gate:
    """Attach and check the dongle ``requirement`` asks for; ``LockGateError`` if none.

    ``data_dir`` is only where the drill emulator keeps its state (drill mode, no URL).
    """
    req = requirement
    url = url or os.environ.get(ENV_LOCK_URL) or None
    emulator = None
    if req.drill and not url:
        emulator = start_drill_lock(data_dir)
        url = emulator.url
        log.warning("演练模式（drill mode）：使用机考锁模拟器 %s（编号 %s）",
                    url, emulator.lock_id)
    driver = LockDriver(url, hub, timeout=timeout)
    try:
        driver.start(wait=True)
        info = driver.info
        if info is None:  # unplugged in the very moment after attaching
            driver.stop()
            raise LockError("机考锁连接后立即断开。", "请重新插入机考锁后再启动。")
        if req.expected is not None:
            driver.verify(req.expected)
        else:
            driver.challenge(info.public_key, info.lock_id)
    except UserError as e:
        driver.stop()
        if emulator is not None:
            emulator.stop()
        raise LockGateError(START_CAUSE + e.cause, e.remedy, detail=e.detail) from e
    log.info("start gate passed: dongle %s on %s (%s)", info.lock_id, info.url,
             "drill" if req.drill else ("site package lock" if req.expected else "site configured, no package"))
    return Gate(driver, info, req, emulator)
