"""The dongle emulator's TCP link is free again as soon as its holder closed it, like a serial port.

A process that opened the dongle right after another closed it (``main.py`` CLI commands
after the running site let go, a site reopened after a CLI command) was refused while the
emulator's connection thread had not read the end yet: CI saw ``LockDisconnected``.
"""

import socket

from kd.lock.emulator import LockEmulator


def _ask(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line + b"\n")
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            return reply
        reply += chunk
    return reply


def test_a_link_closed_by_its_holder_is_free_at_once_while_a_live_one_is_not(tmp_path):
    emu = LockEmulator(str(tmp_path / "lock"))
    host, port = emu.start_tcp()[len("socket://"):].split(":")
    try:
        for _ in range(20):
            first = socket.create_connection((host, int(port)), timeout=10)
            assert _ask(first, b"VERSION").startswith(b"OK KDLOCK")
            first.close()  # and at once again, before the emulator's thread for it read the end
            second = socket.create_connection((host, int(port)), timeout=10)
            try:
                assert _ask(second, b"VERSION").startswith(b"OK KDLOCK")
            finally:
                second.close()
        live = socket.create_connection((host, int(port)), timeout=10)
        try:
            assert _ask(live, b"VERSION").startswith(b"OK KDLOCK")
            other = socket.create_connection((host, int(port)), timeout=10)
            try:
                assert _ask(other, b"VERSION") == b""  # a second link while the first is alive: refused
            finally:
                other.close()
            assert _ask(live, b"VERSION").startswith(b"OK KDLOCK")
        finally:
            live.close()
    finally:
        emu.stop()
