"""Single-instance lock on a data folder.

The first kaodian to start on a data folder holds an OS lock on ``kaodian.lock`` in it
(``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows) until it exits; the OS drops
the lock when the process dies, so a crash never leaves a stale lock behind. A second
instance gets ``InstanceRunningError`` (exit code 3). The file holds the owner's pid,
for the message only.

``wait_s``: a kaodian that restarted itself (``kd.relaunch``, ``KD_RELAUNCHED=1``) is
started right after its predecessor let go of the lock; should the lock still be held
(the old process not quite gone, a Windows handle closed late), it tries again every
``POLL_S`` for up to ``wait_s`` seconds before refusing. The default is 0: refuse at once.
"""

import logging
import os
import sys
import time
from typing import IO, Optional

from kd.errors import InstanceRunningError

log = logging.getLogger(__name__)

LOCK_NAME = "kaodian.lock"
#: seconds between two tries while waiting for the lock (``wait_s``)
POLL_S = 0.1


class InstanceLock:
    def __init__(self, data_dir: str, wait_s: float = 0.0) -> None:
        self.path = os.path.join(data_dir, LOCK_NAME)
        self.wait_s = wait_s
        self._file: Optional[IO[bytes]] = None

    def acquire(self) -> "InstanceLock":
        """Take the lock (trying for up to ``wait_s`` seconds) or raise ``InstanceRunningError``."""
        f = open(self.path, "a+b")  # noqa: SIM115 - held open for the life of the process
        deadline = time.monotonic() + self.wait_s
        said = False
        while not _try_lock(f):
            if time.monotonic() >= deadline:
                owner = _owner(f)
                f.close()
                raise InstanceRunningError(
                    "考点管理系统已经在运行（数据目录 {}，进程 {}）。".format(os.path.dirname(self.path), owner or "?"),
                    "请在任务栏右下角的托盘图标中找到已打开的系统；不要同时运行两个考点管理系统。",
                )
            if not said:
                log.warning("instance lock %s is held (pid %s); waiting up to %.1f s for it",
                            self.path, _owner(f) or "?", self.wait_s)
                said = True
            time.sleep(POLL_S)  # bounded by the deadline: the other process is on its way out
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()).encode("ascii"))
        f.flush()
        self._file = f
        log.info("instance lock taken: %s", self.path)
        return self

    def release(self) -> None:
        """Let go of the lock (again: nothing happens)."""
        if self._file is not None:
            try:
                _unlock(self._file)
            finally:
                self._file.close()
                self._file = None
            log.info("instance lock released: %s", self.path)

    def __enter__(self) -> "InstanceLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_lock(f: IO[bytes]) -> bool:
    try:
        _lock(f)
    except OSError:
        return False
    return True


def _owner(f: IO[bytes]) -> str:
    """The pid the holder wrote into the lock file (for messages only)."""
    try:
        f.seek(0)
        return f.read(32).decode("ascii", "replace").strip()
    except OSError:
        return ""


if sys.platform == "win32":  # pragma: no cover - exercised on Windows
    import msvcrt

    def _lock(f: IO[bytes]) -> None:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(f: IO[bytes]) -> None:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(f: IO[bytes]) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(f: IO[bytes]) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
