"""A site with its LAN service on 127.0.0.1 (port 0), for the KDLAN tests.

``lan_site(tmp_path, **options)``: the real environment (platform simulator, dongle
emulator, Context) with the package loaded, the core services, and a ``LanServer``
started with ``options`` (short deadlines for the hostile tests). ``site.client()``
returns a ``ProctorClient``; ``site.raw()`` a plain socket to speak bytes with.
"""

import hashlib
import socket
from typing import Any, Dict, List, Optional

from kd.core import model
from kd.core.monitor import MonitorService
from kd.core.outbox import Outbox
from kd.core.recovery import RecoveryService
from kd.core.registration import RegistrationService
from kd.core.verification import VerificationService
from kd.formats.result import ABSENT, PRESENT, build_result
from kd.lan import framing
from kd.lan.client import ProctorClient
from kd.lan.server import LanOptions, LanServer
from tests.integration.live_helpers import loaded_env

LOOPBACK = "127.0.0.1"
OTHER_IP = "127.0.0.2"


class FakeMonotonic:
    """A monotonic clock the test moves by hand (for the monitor's heartbeat timeouts)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class LanSite:
    def __init__(self, tmp_path: Any, rooms: int = 3, sessions: int = 2, **options: Any) -> None:
        self.env = loaded_env(tmp_path, rooms=rooms, sessions=sessions, first_start_in=30)
        self.ctx = self.env.ctx
        self.outbox = Outbox(self.ctx)
        self.clock = FakeMonotonic()
        self.registration = RegistrationService(self.ctx)
        self.verification = VerificationService(self.ctx)
        self.monitor = MonitorService(self.ctx, self.outbox, clock=self.clock)
        self.recovery = RecoveryService(self.ctx, self.outbox)
        options.setdefault("host", LOOPBACK)
        options.setdefault("port", 0)
        self.options = LanOptions(**options)
        self.server = self.new_server()
        self._clients: List[ProctorClient] = []
        self._socks: List[socket.socket] = []

    def new_server(self) -> LanServer:
        return LanServer(self.ctx, registration=self.registration, verification=self.verification,
                         monitor=self.monitor, recovery=self.recovery, options=self.options).start()

    @property
    def port(self) -> int:
        return self.server.port()

    def rooms(self) -> List[str]:
        return [r["code"] for r in self.ctx.manifest()["rooms"]]

    def sessions_of(self, room: str) -> List[str]:
        ids = {c["session"] for c in self.ctx.manifest()["candidates"] if c["room"] == room}
        return [s["id"] for s in self.ctx.manifest()["sessions"] if s["id"] in ids]

    def reg_code(self, room: str) -> str:
        return self.ctx.stores.runtime.get(model.ROOMS, room)["reg_code"]

    def client(self, ip: str = LOOPBACK, **kw: Any) -> ProctorClient:
        kw.setdefault("timeout", 10.0)
        c = ProctorClient(LOOPBACK, self.port, source_address=(ip, 0), **kw)
        self._clients.append(c)
        return c

    def registered(self, room: Optional[str] = None, ip: str = LOOPBACK, imported: bool = False) -> ProctorClient:
        """A client that registered ``room`` from ``ip``; ``imported``: and confirmed its data import
        (what a start permit needs)."""
        room = room or self.rooms()[0]
        c = self.client(ip)
        reply = c.register(room, self.reg_code(room))
        if imported:
            c.data_imported(reply["data"]["sha256"])
        return c

    def raw(self, ip: str = LOOPBACK) -> socket.socket:
        s = socket.create_connection((LOOPBACK, self.port), timeout=10, source_address=(ip, 0))
        self._socks.append(s)
        return s

    def result_package(self, room: str, session: str, answer_kb: int = 4, salt: bytes = b"") -> bytes:
        people = sorted((c for c in self.ctx.manifest()["candidates"]
                         if c["room"] == room and c["session"] == session), key=lambda c: c["seat"])
        cands = []
        for i, c in enumerate(people):
            answer = None
            if i:
                seed = hashlib.sha256(salt + c["ticket"].encode()).digest()
                answer = seed * (answer_kb * 32)
            cands.append({"ticket": c["ticket"], "subject": c["subject"], "status": PRESENT if i else ABSENT,
                          "answer": answer})
        subjects = next(s["subjects"] for s in self.ctx.manifest()["sessions"] if s["id"] == session)
        return build_result(site_code=self.ctx.site_code(), room_code=room, session_id=session,
                            created_at=self.ctx.now(), candidates=cands, subjects=subjects)

    def close(self) -> None:
        for c in self._clients:
            c.close()
        for s in self._socks:
            s.close()
        self.server.stop()
        self.env.close()


def send(sock: socket.socket, header: Dict[str, Any], body: bytes = b"") -> None:
    framing.send_frame(sock, header, body, timeout=10)


def recv(sock: socket.socket, timeout: float = 10.0) -> framing.Frame:
    return framing.read_frame(sock, framing.Limits(idle=timeout, request=timeout, min_rate=1.0, grace=timeout))


def closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bool:
    """Read until the peer closes; True when it did within ``timeout`` (frames in between are skipped)."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except socket.timeout:
        return False
    except OSError:
        return True  # reset by the peer
