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
import tempfile
import time

from _common import emit, loaded_site, start_lan_server

ATTEMPTS = int(os.environ.get("KD_BENCH_ATTEMPTS", "1000"))
ATTACKER = "127.0.0.5"


def lines(path: str) -> int:
    with open(path, "rb") as f:
        return f.read().count(b"\n")


def main() -> None:
    from kd.lan import framing

    with tempfile.TemporaryDirectory() as tmp, loaded_site(tmp, rooms=3, candidates=2) as ctx:
        server = start_lan_server(ctx, "127.0.0.1")
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
    emit(bench="lan_flood_audit", attempts=ATTEMPTS, seconds=round(seconds, 2), bytes_during=during,
         lines_during=lines_during, bytes_after_stop=after, lines_after_stop=lines_after,
         bytes_per_1000=round(after * 1000 / ATTEMPTS))


if __name__ == "__main__":
    main()
