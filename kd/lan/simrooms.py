"""Where the simulated proctors (``kd.lan.simulator``) come from: their rooms and their addresses.

- ``rooms_from_site_info(path, count)``: the first ``count`` rooms (code, reg_code) of an
  exported 考点信息表 (``kd.formats.kdinfo``), as the proctors present them at registration.
- ``loopback_address(i)``: proctor ``i``'s own source address, ``127.0.<i // 253>.<i % 253 + 2>``
  (127.0.0.2, 127.0.0.3, ...), so that N proctors on one PC look like N machines of a LAN to
  the server's per-address connection cap; ``own_addresses_work()`` says whether this
  system can bind such an address (Linux and Windows can, macOS cannot without an alias).
"""

import logging
import socket
from typing import Any, Dict, List

from kd.errors import FormatError
from kd.formats import kdinfo

log = logging.getLogger(__name__)

__all__ = ["is_loopback", "loopback_address", "own_addresses_work", "rooms_from_site_info"]


def loopback_address(index: int) -> str:
    """The loopback address of proctor ``index``: 127.0.0.2, 127.0.0.3, ... (127.0.<i // 253>.<i % 253 + 2>)."""
    high, low = divmod(int(index), 253)
    if not 0 <= high <= 255:
        raise ValueError("too many proctors for 127.0.x.y addresses")
    return "127.0.{}.{}".format(high, low + 2)


def own_addresses_work(address: str = "127.0.0.2") -> bool:
    """Whether this system can bind a socket to a loopback address other than 127.0.0.1
    (Linux and Windows can; macOS cannot without an alias)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
        return True
    except OSError as e:
        log.info("cannot bind %s (%s): the proctors connect from the system's address", address, e)
        return False


def is_loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.")


def rooms_from_site_info(path: str, count: int) -> List[Dict[str, Any]]:
    """The first ``count`` rooms (code, reg_code) of an exported KDINFO. Raises ``FormatError``."""
    try:
        with open(path, "rb") as f:
            data = f.read(kdinfo.MAX_BYTES + 1)
    except OSError as e:
        raise FormatError("无法读取考点信息文件：{}".format(path), kdinfo.REMEDY, detail=repr(e)) from e
    rooms = kdinfo.parse_kdinfo(data).rooms
    if count > len(rooms):
        raise FormatError("考点信息文件只有 {} 个考场，不够模拟 {} 个。".format(len(rooms), count),
                          "请减少 --rooms。")
    return [{"code": r["code"], "reg_code": r["reg_code"]} for r in rooms[:count]]
