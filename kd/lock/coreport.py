"""The dongle as the core sees it (``kd.core.ports.Dongle``), over a ``LockDriver``.

``sign(digest)`` uses the ``CHAL`` command with a 32-byte digest as the nonce: the
dongle answers with its clock and an Ed25519 signature over
``challenge_message(lock_id, digest, clock_ms)`` (docs/lock-protocol.md). That is how
KDINFO registration backups and ``.bak`` system backups are signed by the site's
dongle: whoever holds the package (which names the dongle's public key) can check them,
nobody without the dongle can forge them.

``site_code()`` is the dongle's answer to ``SITE`` as the driver read it when it attached
(``LockInfo.site``; a replugged dongle is asked again): the code, None for a revision-1
dongle that cannot say, and a ``LockError`` for a dongle registered to no site.
"""

from typing import Any, Optional

from kd.core.ports import DongleSignature
from kd.errors import LockError
from kd.formats.signing import verify_raw
from kd.lock import protocol as P
from kd.lock.driver import ExpectedLock, LockDriver
from kd.lock.errors import LockDisconnected, LockProtocolError
from kd.lock.sync import sync_lock


class DonglePort:
    def __init__(self, driver: LockDriver) -> None:
        self.driver = driver

    def attached(self) -> bool:
        return self.driver.attached

    def lock_id(self) -> Optional[str]:
        info = self.driver.info
        return info.lock_id if info else None

    def site_code(self) -> Optional[str]:
        info = self.driver.info
        if info is None:
            raise LockDisconnected("未连接机考锁。", detail="site_code while detached")
        if info.site.status == P.SITE_NONE:
            raise LockError(
                "插入的机考锁（编号 {}）没有登记到任何考点。".format(info.lock_id),
                "请插入监控平台为本考点登记的机考锁；如这是新机考锁，请先在监控平台把它登记到本考点。",
                detail="dongle {} answered SITE with E_NOSITE".format(info.lock_id),
            )
        return info.site.site_code

    def verify(self, lock_id: str, public_key: bytes) -> int:
        return self.driver.verify(ExpectedLock(lock_id, public_key))

    def get_ticket(self) -> Optional[bytes]:
        return self.driver.get_ticket()

    def read_clock(self) -> int:
        return self.driver.read_clock()

    def sign(self, digest: bytes) -> DongleSignature:
        lock_id = self.lock_id()
        if lock_id is None:
            raise LockDisconnected("未连接机考锁。", detail="sign while detached")
        if len(digest) != P.NONCE_BYTES:
            raise ValueError("digest must have {} bytes".format(P.NONCE_BYTES))
        fields = self.driver.command(P.CHAL, digest.hex())
        try:
            clock_ms = P.parse_ms(fields[0])
            sig = P.b64decode(fields[1], P.SIGNATURE_BYTES)
        except (ValueError, IndexError) as e:
            raise LockProtocolError(detail="bad CHAL reply {!r}: {}".format(fields, e)) from e
        return DongleSignature(lock_id, clock_ms, sig)

    def check_signature(self, public_key: bytes, digest: bytes, sig: DongleSignature) -> bool:
        return check_signature(public_key, digest, sig)

    def sync_clock(self, platform: Any) -> str:
        """机考锁校时 over this driver (``kd.lock.sync.sync_lock``); the manual's message."""
        return sync_lock(self.driver, platform).message()


def check_signature(public_key: bytes, digest: bytes, sig: DongleSignature) -> bool:
    """True when ``sig`` is the dongle ``public_key``'s signature over ``digest``."""
    try:
        message = P.challenge_message(sig.lock_id, digest, sig.clock_ms)
    except ValueError:
        return False
    return verify_raw(public_key, message, sig.signature)
