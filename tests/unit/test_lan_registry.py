"""Who gets a slot on the LAN server: the registry's admission decisions, without a network.

The sockets are ``RecordingSocket``s (the registry only ever shuts one down, to close a
connection from another thread); the keys are their ids, as the server's are.
"""

import threading

from kd.lan.registry import Registry

KNOWN, STRANGER = "10.0.0.1", "10.0.0.66"


class RecordingSocket:
    def __init__(self):
        self.calls = []

    def shutdown(self, how):
        self.calls.append(("shutdown", how))


def connect(registry, ip, listening=True):
    """Admit and open one connection from ``ip``; (decision, connection or None)."""
    sock = RecordingSocket()
    decision = registry.admit(id(sock), ip, listening)
    if decision.reason is not None:
        return decision, None
    return decision, registry.open(sock, ip, auth_timeout=10.0)


def test_per_address_and_total_caps():
    registry = Registry(max_connections=3, max_per_ip=2, max_unauthenticated=3)
    registry.set_known({KNOWN})
    assert connect(registry, KNOWN)[0].reason is None
    assert connect(registry, KNOWN)[0].reason is None
    assert connect(registry, KNOWN)[0].reason == "too many connections from this address"
    assert connect(registry, STRANGER)[0].reason is None
    decision, _ = connect(registry, "10.0.0.2")
    assert decision.reason == "too many connections" and decision.victim is None
    assert registry.refused == 2
    assert registry.counts() == {"rooms": [], "connections": 3, "unauthenticated": 3}


def test_a_stopping_server_admits_no_one():
    registry = Registry(8, 8, 8)
    assert connect(registry, KNOWN, listening=False)[0].reason == "stopping"


def test_unknown_addresses_share_the_unauthenticated_slots_the_oldest_idle_gives_way():
    registry = Registry(max_connections=10, max_per_ip=10, max_unauthenticated=2)
    _, first = connect(registry, STRANGER)
    _, second = connect(registry, STRANGER)
    second.idle = False  # busy with a request: never evicted
    decision, third = connect(registry, STRANGER)
    assert decision.reason is None and decision.victim is first
    assert first.closing == "evicted" and registry.evicted == 1
    first.kill("evicted")
    assert first.sock.calls == [("shutdown", 2)]
    third.idle = False
    decision, _ = connect(registry, STRANGER)  # no idle one left to give way
    assert decision.reason == "too many unauthenticated connections"


def test_a_registered_address_always_gets_a_slot():
    registry = Registry(max_connections=2, max_per_ip=8, max_unauthenticated=2)
    registry.set_known({KNOWN})
    _, a = connect(registry, STRANGER)
    connect(registry, STRANGER)
    decision, mine = connect(registry, KNOWN)  # the table is full: a stranger's idle connection goes
    assert decision.reason is None and decision.victim is a
    assert mine.known


def test_authenticating_binds_the_room_and_makes_the_address_known():
    registry = Registry(max_connections=10, max_per_ip=10, max_unauthenticated=1)
    _, conn = connect(registry, STRANGER)
    registry.bind(conn, "R01")
    assert conn.room == "R01" and registry.connections("R01") == [conn]
    assert registry.counts() == {"rooms": ["R01"], "connections": 1, "unauthenticated": 0}
    _, other = connect(registry, STRANGER)  # a known address now: not limited by the share
    decision, _ = connect(registry, STRANGER)
    assert decision.reason is None and decision.victim is None
    assert other.room is None


def test_close_and_release_free_the_slots():
    registry = Registry(max_connections=1, max_per_ip=1, max_unauthenticated=1)
    _, conn = connect(registry, STRANGER)
    thread = threading.current_thread()
    registry.track(thread)
    assert registry.threads() == [thread]
    registry.close(conn, thread)
    assert registry.threads() == [] and registry.connections() == []
    sock = RecordingSocket()
    assert registry.admit(id(sock), STRANGER, True).reason is None
    registry.release(id(sock))  # its thread never started
    assert connect(registry, STRANGER)[0].reason is None
