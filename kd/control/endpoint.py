"""``DATA/control.json``: where the running instance's control channel listens, and its secret.

Written by the running instance when its control server starts, removed when it closes
(a kill leaves it behind: a command line uses it only while the instance lock is held,
and a stale file's secret proves nothing to a new instance)::

    {"format": "kd-control", "version": 1, "host": "127.0.0.1", "port": 52114,
     "pid": 4242, "secret": "<64 lowercase hex digits: 32 random bytes>",
     "started_at": "2026-11-21T08:00:00+08:00"}

``host`` is always ``127.0.0.1`` (a reader refuses any other); ``port`` is the one the
OS chose for this run; ``secret`` is new every run (``secrets.token_bytes(32)``).

The file is created under a temporary name with mode 0600 (owner read/write only on
POSIX) and renamed into place, so a reader never sees half a file. What that mode
protects, and what it does not on Windows (where the file gets the data folder's ACL),
is in docs/control-protocol.md §1.
"""

import datetime
import json
import logging
import os
import secrets
from typing import NamedTuple, Optional

log = logging.getLogger(__name__)

FILE_NAME = "control.json"
FORMAT = "kd-control"
VERSION = 1
HOST = "127.0.0.1"
SECRET_BYTES = 32


class Endpoint(NamedTuple):
    host: str
    port: int
    pid: int
    secret: bytes


def path_of(data_dir: str) -> str:
    return os.path.join(data_dir, FILE_NAME)


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def write(data_dir: str, port: int, secret: bytes) -> str:
    """Write ``control.json`` for this process (module docstring); returns its path. Raises ``OSError``."""
    path = path_of(data_dir)
    doc = {"format": FORMAT, "version": VERSION, "host": HOST, "port": int(port), "pid": os.getpid(),
           "secret": secret.hex(),
           "started_at": datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")}
    tmp = "{}.{}.tmp".format(path, os.getpid())
    if os.path.lexists(tmp):
        os.remove(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, json.dumps(doc).encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def read(data_dir: str) -> Optional[Endpoint]:
    """The endpoint in ``control.json``, or None when it is missing or unusable (the reason is logged)."""
    path = path_of(data_dir)
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(4096).decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("control endpoint %s unreadable: %s", path, e)
        return None
    try:
        if doc.get("format") != FORMAT or doc.get("version") != VERSION or doc.get("host") != HOST:
            raise ValueError("format {!r} version {!r} host {!r}".format(doc.get("format"), doc.get("version"),
                                                                          doc.get("host")))
        port, pid = doc["port"], doc.get("pid", 0)
        if not isinstance(port, int) or not 0 < port < 65536 or not isinstance(pid, int):
            raise ValueError("port {!r} pid {!r}".format(port, pid))
        secret = bytes.fromhex(doc["secret"])
        if len(secret) != SECRET_BYTES:
            raise ValueError("secret of {} bytes".format(len(secret)))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        log.warning("control endpoint %s unusable: %s", path, e)
        return None
    return Endpoint(HOST, port, pid, secret)


def remove(data_dir: str, secret: bytes) -> None:
    """Remove ``control.json`` if it is still this run's (its secret); never raises."""
    found = read(data_dir)
    if found is None or found.secret != secret:
        return
    try:
        os.remove(path_of(data_dir))
    except OSError as e:
        log.warning("could not remove %s: %s", path_of(data_dir), e)
