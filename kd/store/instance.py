"""Single-instance lock on a data folder.

The first kaodian to start on a data folder holds an OS lock on ``kaodian.lock`` in it
(``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows) until it exits; the OS drops
the lock when the process dies, so a crash never leaves a stale lock behind. A second
instance gets ``InstanceRunningError`` (exit code 3). The file holds the owner's pid,
for the message only.
"""

import logging
import os
from typing import IO, Optional

from kd.errors import InstanceRunningError

log = logging.getLogger(__name__)

LOCK_NAME = "kaodian.lock"


class InstanceLock:
    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, LOCK_NAME)
        self._file: Optional[IO[bytes]] = None

    def acquire(self) -> "InstanceLock":
        """Take the lock or raise ``InstanceRunningError``."""
        f = open(self.path, "a+b")  # noqa: SIM115 - held open for the life of the process
        try:
            _lock(f)
        except OSError:
            f.seek(0)
            owner = f.read(32).decode("ascii", "replace").strip()
            f.close()
            raise InstanceRunningError(
                "考点管理系统已经在运行（数据目录 {}，进程 {}）。".format(os.path.dirname(self.path), owner or "?"),
                "请在任务栏右下角的托盘图标中找到已打开的系统；不要同时运行两个考点管理系统。",
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()).encode("ascii"))
        f.flush()
        self._file = f
        log.info("instance lock taken: %s", self.path)
        return self

    def release(self) -> None:
        if self._file is not None:
            try:
                _unlock(self._file)
            finally:
                self._file.close()
                self._file = None

    def __enter__(self) -> "InstanceLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


if os.name == "nt":  # pragma: no cover - exercised on Windows
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
