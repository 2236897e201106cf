"""What the core needs from the outside world, as small interfaces ``kd.site.open_site`` fills in.

The core never imports ``kd.platform``, ``kd.lock``, ``kd.lan`` or tkinter. It talks to:

- ``Platform``: the monitoring platform (``kd.platform.client.PlatformClient`` satisfies
  it as it is). Methods raise ``PlatformUnreachable`` / ``PlatformRefused`` /
  ``FormatError`` (all ``UserError``).
- ``Dongle``: the exam dongle (``kd.lock.coreport.DonglePort`` over ``kd.lock.driver``).
  Methods raise ``LockError`` (a ``UserError``) when it is missing or not answering.
- ``Lan``: the proctor LAN service, for the seal check and the status bar
  (``kd.lan.server.LanServer``; ``None`` when the LAN service is not running).
- ``DataFiles``: the data folder's layout and journaled file transactions
  (``kd.store.datafolder.DataFolder``).

Tests wire the real adapters (the platform simulator over HTTP, the dongle emulator
over ``socket://``), never mocks.
"""

import datetime
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from kd.core.records import JsonObject
from kd.formats.documents import AuthorizationVerification, SessionAuthorization, UploadReceipt
from kd.formats.package import SitePackage
from kd.store.audit import AuditLog
from kd.store.database import Stores
from kd.store.spool import Spool

try:  # Python 3.8 has typing.Protocol; keep the import explicit for readers
    from typing import Protocol
except ImportError:  # pragma: no cover - Python < 3.8 is not supported
    Protocol = object  # type: ignore


class Downloaded(NamedTuple):
    """A downloaded, verified site package and the file it lives in."""

    path: str
    package: SitePackage


class Platform(Protocol):
    def probe(self) -> bool: ...

    def server_time(self) -> Optional[datetime.datetime]: ...

    def download_package(self, folder: Optional[str] = None,
                         loaded_publish_time: Optional[str] = None) -> Downloaded: ...

    def download_authorization(self, session_id: str) -> SessionAuthorization: ...

    def download_verification(self, session_id: str, lock_id: Optional[str] = None) -> AuthorizationVerification: ...

    def post_report(self, kind: str, data: Dict[str, Any], key: str, *, session_id: Optional[str] = None,
                    room_code: Optional[str] = None, created_at: Optional[str] = None) -> JsonObject: ...

    def upload_result(self, path: str, *, session_id: str, room_code: str, file_id: Optional[str] = None,
                      progress: Optional[Callable[[int, int], None]] = None) -> UploadReceipt: ...


class DongleSignature(NamedTuple):
    """The dongle's signature over a 32-byte digest, with the clock it signed."""

    lock_id: str
    clock_ms: int
    signature: bytes


class Dongle(Protocol):
    def attached(self) -> bool: ...

    def lock_id(self) -> Optional[str]: ...

    def site_code(self) -> Optional[str]:
        """The site code the attached dongle was registered to (docs/lock-protocol.md ``SITE``).

        None when the dongle does not report it (protocol revision 1, older firmware).
        Raises ``LockError`` when no dongle is attached, or when the dongle says it is
        registered to no site.
        """

    def verify(self, lock_id: str, public_key: bytes) -> int:
        """Check that the attached dongle is this one; return its signed clock (ms since epoch)."""

    def get_ticket(self) -> Optional[bytes]: ...

    def sign(self, digest: bytes) -> DongleSignature:
        """Have the dongle sign a 32-byte digest (KDINFO, .bak)."""

    def check_signature(self, public_key: bytes, digest: bytes, sig: DongleSignature) -> bool: ...

    def sync_clock(self, platform: Any) -> str:
        """机考锁校时: ``platform``'s signed sync ticket into the dongle; the manual's message.

        ``platform`` is the ``Platform`` port (its ``sync_lock(lock_id, lock_time)``).
        Raises ``LockError``, ``PlatformError``, ``FormatError``.
        """


class DataFiles(Protocol):
    """The data folder's layout and file transactions (``kd.store.datafolder.DataFolder``)."""

    root: str
    files_lock: Any

    @property
    def rooms_dir(self) -> str: ...

    @property
    def print_dir(self) -> str: ...

    @property
    def downloads_dir(self) -> str: ...

    @property
    def proofs_dir(self) -> str: ...

    def path(self, *parts: str) -> str: ...

    def store_path(self, name: str) -> str: ...

    def room_file(self, room_code: str) -> str: ...

    def begin(self, kind: str) -> Any:
        """A new ``Transaction``: ``stage(item)``, ``set_tables(db, new, old)``, ``commit(dbs)``, ``abort()``."""

    def clear_exam_files(self) -> int: ...

    def open_stores(self) -> Stores:
        """The folder's three stores (after 系统恢复 swapped them in)."""

    def open_spool(self) -> Spool: ...

    def open_audit(self) -> AuditLog: ...


class Lan(Protocol):
    def listening(self) -> bool: ...

    def address(self) -> str: ...

    def port(self) -> int: ...

    def disconnect_room(self, room_code: str) -> None: ...

    def addresses(self) -> List[str]:
        """This PC's IPv4 addresses proctors could be told, best first (only the bound one when bound)."""

    def probe(self, host: str, port: int) -> Optional[str]:
        """Connect to the LAN service at ``host:port`` as a proctor would; None when it answered, else why not."""
