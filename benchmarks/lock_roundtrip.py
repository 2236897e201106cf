"""Dongle challenge-response round trip over ``socket://`` vs a bare TCP echo round trip.

``ms``: median of ``LockDriver.challenge()`` against the emulator on 127.0.0.1 (request
line out, the emulator signs with Ed25519, reply framed by the reader thread, signature
verified). ``baseline_ms``: median of the same-sized line sent to a plain TCP echo
server thread and read back by a blocking socket in the same process. Both are timed in
turn in one loop. Prints one JSON line.
"""

import socket
import tempfile
import threading

from _common import emit, interleaved_median_ms

from kd.lock.driver import LockDriver
from kd.lock.emulator import LockEmulator

REPEAT = 400


def echo_server() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server


def main() -> None:
    with tempfile.TemporaryDirectory() as state:
        emu = LockEmulator(state)
        emu.start_tcp()
        driver = LockDriver(emu.url, keepalive=None).start()
        server = echo_server()
        client = socket.create_connection(server.getsockname())
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        line = b"CHAL " + b"ab" * 32 + b"\n"
        reader = client.makefile("rb")

        def echo() -> None:
            client.sendall(line)
            if reader.readline() != line:
                raise RuntimeError("echo mismatch")

        def challenge() -> None:
            driver.challenge(emu.public_key)

        try:
            ms, baseline = interleaved_median_ms([challenge, echo], REPEAT, warmup=20)
        finally:
            reader.close()
            client.close()
            server.close()
            driver.stop()
            emu.stop()
    emit(bench="lock_roundtrip", ms=round(ms, 4), baseline_ms=round(baseline, 4), ratio=round(ms / baseline, 2))


if __name__ == "__main__":
    main()
