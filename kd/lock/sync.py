"""机考锁校时 (screens.md §4.1): sync the dongle's clock from the platform.

On an internet PC, with the dongle plugged in: read the dongle's id and clock, ask the
platform for a signed sync ticket (``PlatformClient.sync_lock``, verified there), write
it to the dongle (``TICKET PUT``: the dongle checks it and sets its clock from the
ticket's ``server_time``), read the ticket back, and show the manual's message::

    校时授权成功!
    服务器时间:2026-06-12 08:00:02 机考锁时间:2026-06-12 08:00:02

Only that message means the sync is done. ``sync_lock(driver, client)`` is the function
(also for a UI button); ``run_cli(opts)`` is ``python3 main.py sync-lock``.
"""

import argparse
import base64
import binascii
import datetime
import logging
import os
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from kd.errors import LockError, UserError
from kd.formats.timeutil import CST

if TYPE_CHECKING:  # imported where used: main.py builds its parser with this module at every start
    from kd.formats.documents import SyncTicket
    from kd.formats.signing import TrustedKeys
    from kd.lock.driver import LockDriver

log = logging.getLogger(__name__)

ENV_PLATFORM_URL = "KD_PLATFORM_URL"
ENV_PLATFORM_PASSWORD = "KD_PLATFORM_PASSWORD"  # noqa: S105 - the name of a variable


class SyncResult(NamedTuple):
    lock_id: str
    lock_time_before_ms: int
    server_time: datetime.datetime
    lock_time_ms: int
    ticket: "SyncTicket"

    def message(self) -> str:
        """The manual's success text, with both clocks in China Standard Time."""
        return "校时授权成功!\n服务器时间:{} 机考锁时间:{}".format(
            self.server_time.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S"), format_ms(self.lock_time_ms))


def format_ms(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000.0, datetime.timezone.utc).astimezone(CST)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def sync_lock(driver: "LockDriver", client: Any) -> "SyncResult":
    """Sync the attached dongle's clock from the platform; raises the family's ``UserError``s.

    ``client`` is a ``kd.platform.client.PlatformClient`` (``sync_lock(lock_id, lock_time)``
    returning a verified ``SyncTicket``). Raises ``LockError`` subclasses (dongle),
    ``PlatformError`` subclasses (network, refusal) and ``FormatError`` (bad ticket).
    """
    lock_id = driver.read_id()
    before = driver.read_clock()
    log.info("sync: dongle %s clock %s", lock_id, format_ms(before))
    ticket = client.sync_lock(lock_id, before / 1000.0)
    if ticket.lock_id != lock_id:  # the client checked it; a second look costs nothing
        raise LockError("监控平台返回的校时凭证不属于这把机考锁。", "请重新校时；如问题持续，请联系技术服务单位。",
                        detail="ticket for {} while syncing {}".format(ticket.lock_id, lock_id))
    after = driver.put_ticket(ticket.raw)
    stored = driver.get_ticket()
    if stored != ticket.raw:
        raise LockError("机考锁没有保存校时凭证。", "请拔下机考锁重新插入后再校时一次。",
                        detail="TICKET GET returned {} bytes, expected {}".format(
                            len(stored or b""), len(ticket.raw)))
    log.info("sync: dongle %s set to %s (server time %s, was %s)", lock_id, format_ms(after),
             ticket.server_time.isoformat(), format_ms(before))
    return SyncResult(lock_id, before, ticket.server_time, after, ticket)


# --- python3 main.py sync-lock ------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``sync-lock`` to ``main.py``'s subcommands."""
    p = subparsers.add_parser("sync-lock", help="机考锁校时：从监控平台获取校时凭证写入机考锁（在联网电脑上运行）",
                              description="机考锁校时 (screens.md §4.1)")
    p.add_argument("--lock", dest="sync_lock_url", metavar="URL",
                   help="机考锁端口，如 COM3、/dev/ttyACM0、socket://127.0.0.1:7700（默认自动检测，或 KD_LOCK_URL）")
    p.add_argument("--platform", metavar="URL", help="监控平台地址（或环境变量 {}）".format(ENV_PLATFORM_URL))
    p.add_argument("--site", metavar="CODE", help="考点代码")
    p.add_argument("--password", help="监控平台密码（或环境变量 {}）".format(ENV_PLATFORM_PASSWORD))
    p.add_argument("--trust", metavar="KEY", action="append", default=[],
                   help="监控平台公钥：base64 文本或含公钥的 .pub 文件（可重复）")
    return p


def _trusted(values: Any) -> "TrustedKeys":
    from kd.formats.signing import TrustedKeys  # noqa: PLC0415

    keys = TrustedKeys()
    for value in values:
        text = value
        if os.path.exists(value):
            with open(value, encoding="ascii") as f:
                text = f.read().strip()
        try:
            keys.add(base64.b64decode(text.encode("ascii"), validate=True))
        except (ValueError, binascii.Error, UnicodeEncodeError):
            raise UserError("监控平台公钥无效：{}".format(value),
                            "请用 --trust 给出 base64 公钥或公钥文件（platform.pub）。") from None
    return keys


def run_cli(opts: argparse.Namespace, lock_url: Optional[str] = None) -> int:
    """``main.py sync-lock``: print the manual's message; ``UserError``s propagate."""
    platform = opts.platform or os.environ.get(ENV_PLATFORM_URL)
    password = opts.password or os.environ.get(ENV_PLATFORM_PASSWORD)
    missing = [name for name, value in (("--platform", platform), ("--site", opts.site),
                                        ("--password", password), ("--trust", opts.trust)) if not value]
    if missing or not platform or not password:
        raise UserError("机考锁校时缺少参数：{}".format("、".join(missing)),
                        "用法：kaodian sync-lock --platform URL --site 考点代码 --password 密码 --trust platform.pub")
    from kd.lock.driver import LockDriver  # noqa: PLC0415
    from kd.lock.gate import ENV_LOCK_URL  # noqa: PLC0415
    from kd.platform.client import PlatformClient  # noqa: PLC0415 - requests only for this command

    url = opts.sync_lock_url or lock_url or os.environ.get(ENV_LOCK_URL) or None
    driver = LockDriver(url, keepalive=None)
    driver.start(wait=True)
    try:
        with PlatformClient(platform, opts.site, password, _trusted(opts.trust)) as client:
            result = sync_lock(driver, client)
    finally:
        driver.stop()
    print(result.message(), flush=True)
    return 0
