"""Audit log growth under a flood of wrong registration codes from one LAN address.

The site (platform simulator, dongle emulator, a 3-room package) and the ``LanServer`` run
in this process; one attacker on 127.0.0.5 sends ``ATTEMPTS`` = 1,000 ``register``
requests with a wrong code over raw sockets, reconnecting whenever the server closes the
connection (it closes an unauthenticated one after its failed try). Measured: the bytes
and lines the audit log grew by while the flood ran, and after the server's clean stop
(which writes the counts of the open refusal windows). Issue 12 item 8: on the version
before, 1,000 lines (about 218 KB, one line per attempt); now one line per room, address,
action and 60 s window. ``KD_BENCH_ATTEMPTS`` changes the count. Prints one JSON line:
``{"bench": "lan_flood_audit", "attempts", "seconds", "bytes_during", "lines_during",
"bytes_after_stop", "lines_after_stop", "bytes_per_1000"}``.
"""

import os
import socket
import sys
import tempfile
import time

from _common import ROOT, emit

ATTEMPTS = int(os.environ.get("KD_BENCH_ATTEMPTS", "1000"))
ATTACKER = "127.0.0.5"


def lines(path: str) -> int:
    with open(path, "rb") as f:
        return f.read().count(b"\n")


def main() -> None:
    sys.path.insert(0, ROOT)
    from kd.core.loading import LoadingService
    from kd.core.monitor import MonitorService
    from kd.core.outbox import Outbox
    from kd.core.recovery import RecoveryService
    from kd.core.registration import RegistrationService
    from kd.core.verification import VerificationService
    from kd.lan import framing
    from kd.lan.server import LanOptions, LanServer
    from tests.support.env import make_env

    with tempfile.TemporaryDirectory() as tmp:
        env = make_env(tmp, rooms=3, sessions=1, candidates=2, room_kb=1)
        try:
            ctx = env.ctx
            LoadingService(ctx).load_online("bench")
            outbox = Outbox(ctx)
            server = LanServer(ctx, registration=RegistrationService(ctx), verification=VerificationService(ctx),
                               monitor=MonitorService(ctx, outbox), recovery=RecoveryService(ctx, outbox),
                               options=LanOptions(host="127.0.0.1", port=0)).start()
            room = ctx.manifest()["rooms"][0]["code"]
            audit = ctx.audit.path
            size0, lines0 = os.path.getsize(audit), lines(audit)
            limits = framing.Limits(idle=10, request=10, min_rate=1.0, grace=10)
            sock = None
            start = time.monotonic()
            for i in range(ATTEMPTS):
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", server.port()), timeout=10,
                                                    source_address=(ATTACKER, 0))
                framing.send_frame(sock, {"type": "register", "seq": i + 1, "room": room, "reg_code": "ZZZZZZZZ"},
                                   timeout=10)
                try:
                    reply = framing.read_frame(sock, limits)
                except (framing.Closed, framing.FrameError, OSError):
                    reply = None
                if reply is None or reply.header.get("closing"):
                    sock.close()
                    sock = None
            seconds = time.monotonic() - start
            if sock is not None:
                sock.close()
            during, lines_during = os.path.getsize(audit) - size0, lines(audit) - lines0
            server.stop()
            after, lines_after = os.path.getsize(audit) - size0, lines(audit) - lines0
        finally:
            env.close()
    emit(bench="lan_flood_audit", attempts=ATTEMPTS, seconds=round(seconds, 2), bytes_during=during,
         lines_during=lines_during, bytes_after_stop=after, lines_after_stop=lines_after,
         bytes_per_1000=round(after * 1000 / ATTEMPTS))


if __name__ == "__main__":
    main()
