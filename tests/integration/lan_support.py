"""A site with its LAN service on 127.0.0.1 (port 0), for the KDLAN tests.

``lan_site(tmp_path, **options)``: the real environment (platform simulator, dongle
emulator, Context) with the package loaded, the core services, and a ``LanServer``
started with ``options`` (short deadlines for the hostile tests). ``site.client()``
returns a ``ProctorClient``; ``site.raw()`` a plain socket to speak bytes with;
``site.result_file(folder)`` a room's result package written as the proctor's file to upload;
``site.permit(session)`` authorizes, syncs the dongle and verifies (proctors may start).
``SkewSite`` also estimates each room's clock offset (``site.skew``, a ``ClockSkew``); a
subclass adds such a service by overriding ``new_server`` with ``self.serve(**parts)``.
``run_to_report(sim, timeout)`` runs a proctor ``Simulation`` to its report (stopped in any
case) and asserts the report is ok.
"""

import socket
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from kd.core import model
from kd.core.authorization import AuthorizationService
from kd.core.clockskew import ClockSkew
from kd.core.monitor import MonitorService
from kd.core.outbox import Outbox
from kd.core.recovery import RecoveryService
from kd.core.registration import RegistrationService
from kd.core.verification import VerificationService
from kd.lan import framing
from kd.lan.client import ProctorClient
from kd.lan.server import LanOptions, LanServer
from tests.integration.live_helpers import loaded_env, sync
from tests.support.clocks import FakeMonotonic
from tests.support.results import result_package

LOOPBACK = "127.0.0.1"
OTHER_IP = "127.0.0.2"


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
        """The site's started ``LanServer``; a subclass adds services with ``serve(**parts)``."""
        return self.serve()

    def serve(self, **parts: Any) -> LanServer:
        """A started ``LanServer`` over the site's services and options, plus ``parts`` (``clock_skew``,
        ``extra_time``: the ``LanServer`` keywords of the services ``kd.site`` adds)."""
        return LanServer(self.ctx, registration=self.registration, verification=self.verification,
                         monitor=self.monitor, recovery=self.recovery, options=self.options, **parts).start()

    def permit(self, session: str) -> None:
        """``session`` authorized online, the dongle synced and 授权验证 passed: its proctors may start."""
        AuthorizationService(self.ctx).authorize_online(session, "admin")
        sync(self.env)
        self.verification.verify_online(session, "admin")

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
        """The room's result package of ``session`` (its first candidate absent)."""
        return result_package(self.ctx, room, session, answer_kb=answer_kb, salt=salt)

    def result_file(self, folder: Path, room: Optional[str] = None,
                    answer_kb: int = 64) -> Tuple[str, str, bytes, str]:
        """``(room, session, data, path)``: the result package of ``room`` (the first room) for its first
        session, written into ``folder`` (as the proctor machine holds it before it uploads)."""
        room = room or self.rooms()[0]
        session = self.sessions_of(room)[0]
        data = self.result_package(room, session, answer_kb=answer_kb)
        path = folder / "result-{}-{}.zip".format(room, session)
        path.write_bytes(data)
        return room, session, data, str(path)

    def close(self) -> None:
        for c in self._clients:
            c.close()
        for s in self._socks:
            s.close()
        self.server.stop()
        self.env.close()


class SkewSite(LanSite):
    """A ``LanSite`` whose server estimates each room's clock offset (``site.skew``, as ``kd.site`` builds it)."""

    def new_server(self) -> LanServer:
        if not hasattr(self, "skew"):
            self.skew = ClockSkew()
        return self.serve(clock_skew=self.skew)


def run_to_report(sim: Any, timeout: float) -> Dict[str, Any]:
    """Start ``sim`` (a ``kd.lan.simulator.Simulation``), wait up to ``timeout`` s for its report, stop it
    in any case; the report, asserted ok."""
    sim.start()
    try:
        report = sim.wait(timeout)
    finally:
        sim.stop()
    assert report["ok"], report["failures"]
    return report


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
