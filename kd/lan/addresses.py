"""This PC's IPv4 addresses, in the order an administrator should be offered them, and a LAN probe.

``ipv4_addresses()`` gathers, with the standard library only:

1. ``socket.getaddrinfo(socket.gethostname(), None, AF_INET)`` — on Windows every
   adapter's address; on Linux often only ``127.0.1.1`` (``/etc/hosts``);
2. the address the routing table picks for the outside (a UDP socket ``connect`` to
   ``ROUTE_PROBES``; no packet is sent) — the usual LAN address when there is a default
   route;
3. on Linux, ``ip -4 -o addr show`` (each ``inet A.B.C.D/len`` of an interface that is
   up), when the ``ip`` tool exists; it runs at most ``IP_TOOL_TIMEOUT_S``.

and orders them (``order()``): private LAN addresses (10/8, 172.16/12, 192.168/16)
first, then other addresses (public, CGNAT 100.64/10), then link-local
(169.254/16: an adapter that got no DHCP answer) and loopback (127/8) last; within a group
the routing table's pick first, then as found. The list is never empty: without any
address it is ``["127.0.0.1"]``. ``best()`` is its first entry.

``is_local(address)``: the address can be bound on this PC now (a socket ``bind`` to
port 0). ``probe(host, port, timeout)``: a real TCP connect to the KDLAN service and the
harmless ``bye`` request (docs/lan-protocol.md §4 ``bye``: no authentication, no state,
the server answers ``ok`` and closes); returns None when the service answered, else the
reason (Chinese text) it did not.
"""

import ipaddress
import logging
import re
import shutil
import socket
import subprocess  # noqa: S404 - the fixed `ip` command, no shell, no user input
import sys
from typing import Iterable, List, Optional

from kd.lan import framing

log = logging.getLogger(__name__)

#: where the UDP "connect" points (no packet is sent): a public and a private address
ROUTE_PROBES = ("8.8.8.8", "10.255.255.255")
IP_TOOL_TIMEOUT_S = 2.0
LOOPBACK = "127.0.0.1"
_INET = re.compile(r"\binet (\d{1,3}(?:\.\d{1,3}){3})/\d+")


def _valid(text: str) -> Optional[str]:
    try:
        address = ipaddress.IPv4Address(text.strip())
    except ValueError:
        return None
    if address.is_unspecified or address.is_multicast or str(address) == "255.255.255.255":
        return None
    return str(address)


def _from_hostname() -> List[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        log.debug("getaddrinfo(hostname): %r", e)
        return []
    return [str(info[4][0]) for info in infos]


def _routed() -> List[str]:
    found = []
    for target in ROUTE_PROBES:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.connect((target, 9))
                found.append(str(sock.getsockname()[0]))
        except OSError as e:
            log.debug("no route towards %s: %r", target, e)
    return found


def _from_ip_tool() -> List[str]:
    """``ip -4 -o addr show up`` on Linux (nothing elsewhere, or without the tool)."""
    if not sys.platform.startswith("linux"):
        return []
    tool = shutil.which("ip")
    if tool is None:
        return []
    try:
        out = subprocess.run([tool, "-4", "-o", "addr", "show", "up"], capture_output=True,  # noqa: S603
                             timeout=IP_TOOL_TIMEOUT_S, check=False, text=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        log.debug("ip -4 addr: %r", e)
        return []
    return _INET.findall(out)


def rank(address: str) -> int:
    """0 private LAN, 1 other, 2 link-local, 3 loopback."""
    ip = ipaddress.IPv4Address(address)
    if ip.is_loopback:
        return 3
    if ip.is_link_local:
        return 2
    if ip.is_private and not ip.is_reserved:
        return 0
    return 1


def order(found: Iterable[str], routed: Iterable[str] = ()) -> List[str]:
    """Valid, distinct addresses: by ``rank``, the ``routed`` ones first within a rank, else as found."""
    seen: List[str] = []
    for text in found:
        address = _valid(str(text))
        if address is not None and address not in seen:
            seen.append(address)
    preferred = [a for a in (_valid(str(r)) for r in routed) if a is not None]
    return sorted(seen, key=lambda a: (rank(a), a not in preferred, seen.index(a))) or [LOOPBACK]


def ipv4_addresses() -> List[str]:
    """This PC's IPv4 addresses, best first (see the module docstring); never empty."""
    routed = _routed()
    return order(_from_ip_tool() + _from_hostname() + routed, routed)


def best() -> str:
    return ipv4_addresses()[0]


def is_local(address: str) -> bool:
    """Whether ``address`` can be bound on this PC now."""
    if _valid(address) is None:
        return False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True


def probe(host: str, port: int, timeout: float = 3.0) -> Optional[str]:
    """None when the KDLAN service on ``host:port`` answered ``bye`` with ``ok``; else why not (Chinese)."""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.settimeout(timeout)
            framing.send_frame(sock, {"v": framing.VERSION, "type": "bye", "seq": 1}, timeout=timeout)
            reply = framing.read_frame(sock, framing.Limits(idle=timeout, request=timeout))
    except (OSError, framing.FrameError, framing.Closed) as e:
        return "无法连接 {}:{}（{}）".format(host, port, _reason(e))
    header = reply.header
    if header.get("type") == "ok" and header.get("seq") == 1:
        return None
    return "{}:{} 的回答不是考场通讯服务的应答（{} {}）".format(host, port, header.get("type"), header.get("code", ""))


def _reason(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return "连接超时"
    if isinstance(e, ConnectionRefusedError):
        return "连接被拒绝：该地址上没有考场通讯服务"
    if isinstance(e, framing.Closed):
        return "连接被关闭"
    return type(e).__name__ + (": " + str(e) if str(e) else "")
