"""The result spool: binary files (result packages) stored durably, named by SHA-256.

Result packages never go into TinyDB. ``put(stream, expected_sha256)`` copies the
stream to ``<folder>/<sha256>.part-<random>``, flushes, fsyncs, checks the size and
hash, renames it to ``<folder>/<sha256>.dat``, fsyncs the folder, and only then returns:
when ``put`` returns, the file survives a crash or a power cut, and the caller may
acknowledge it. A hash or size mismatch raises ``IntegrityError`` and leaves nothing.
Putting content that is already there re-hashes the stored file: intact, it is a no-op
(the stream is not read); damaged (bit rot, a truncated file: ``damage()`` says why), it
is logged at ERROR and replaced by the stream's content, checked like a new file. Leftover
``.part`` files (a crash mid-copy) are removed when the spool is opened.

The file name is derived only from a validated hex digest, never from a name a client
chose.
"""

import hashlib
import logging
import os
import re
import secrets
from typing import BinaryIO, List, Optional

from kd import fileio as fsutil
from kd.errors import IntegrityError, SpoolError

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
SUFFIX = ".dat"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_sha256(value: str) -> str:
    """``value`` lower-cased if it is a SHA-256 hex digest; ``IntegrityError`` if not."""
    digest = str(value).lower()
    if not _SHA256.match(digest):
        raise IntegrityError(f"文件校验值格式错误：{str(value)[:80]!r}", "请重新发送该文件。")
    return digest


class Spool:
    """A folder of content-addressed, durably written files."""

    def __init__(self, folder: str, max_file_bytes: int = 4 * 1024 ** 3) -> None:
        self.folder = os.path.abspath(folder)
        self.max_file_bytes = max_file_bytes
        os.makedirs(self.folder, exist_ok=True)
        for name in os.listdir(self.folder):
            if ".part-" in name:
                log.warning("removing unfinished spool file %s", name)
                os.remove(os.path.join(self.folder, name))

    def path(self, sha256: str) -> str:
        return os.path.join(self.folder, check_sha256(sha256) + SUFFIX)

    def has(self, sha256: str) -> bool:
        return os.path.exists(self.path(sha256))

    def size(self, sha256: str) -> int:
        return os.path.getsize(self.path(sha256))

    def open(self, sha256: str) -> BinaryIO:
        return open(self.path(sha256), "rb")

    def list(self) -> List[str]:
        return sorted(n[: -len(SUFFIX)] for n in os.listdir(self.folder) if n.endswith(SUFFIX))

    def verify(self, sha256: str) -> bool:
        """Re-hash a stored file; True when it still matches its name."""
        h = hashlib.sha256()
        with self.open(sha256) as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
        return h.hexdigest() == check_sha256(sha256)

    def damage(self, sha256: str, expected_size: Optional[int] = None) -> Optional[str]:
        """Why the stored file ``sha256`` is not intact (missing, wrong size, wrong hash), or None."""
        path = self.path(sha256)
        try:
            size = os.path.getsize(path)
            if expected_size is not None and size != expected_size:
                return "文件大小不符（{} 字节，应为 {} 字节）".format(size, expected_size)
            if not self.verify(sha256):
                return "SHA-256 不符（文件内容已损坏）"
        except FileNotFoundError:
            return "文件不存在"
        except OSError as e:
            return "无法读取（{}）".format(e)
        return None

    def put(self, stream: BinaryIO, expected_sha256: str, expected_size: Optional[int] = None) -> str:
        """Store ``stream`` durably if it hashes to ``expected_sha256``; return the final path.

        Raises ``IntegrityError`` on a hash or size mismatch (nothing is kept) and
        ``SpoolError`` when the disk refuses the write.
        """
        digest = check_sha256(expected_sha256)
        final = self.path(digest)
        if os.path.exists(final):
            problem = self.damage(digest)
            if problem is None:
                log.info("spool already holds %s", digest)
                return final
            log.error("spool file %s is damaged (%s): replacing it with the content received", final, problem)
        limit = self.max_file_bytes if expected_size is None else min(expected_size, self.max_file_bytes)
        part = os.path.join(self.folder, f"{digest}.part-{secrets.token_hex(4)}")
        h = hashlib.sha256()
        size = 0
        try:
            with open(part, "wb") as f:
                for chunk in iter(lambda: stream.read(CHUNK), b""):
                    size += len(chunk)
                    if size > limit:
                        raise IntegrityError(
                            f"接收的文件超过声明的大小（{limit} 字节）", "请重新发送该文件。"
                        )
                    h.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            if expected_size is not None and size != expected_size:
                raise IntegrityError(
                    f"接收的文件不完整：{size} / {expected_size} 字节", "请重新发送该文件。"
                )
            if h.hexdigest() != digest:
                raise IntegrityError("接收的文件校验失败（SHA-256 不符），文件可能在传输中损坏", "请重新发送该文件。")
            fsutil.replace(part, final)
            fsutil.fsync_dir(self.folder)
        except OSError as e:
            fsutil.remove_quietly(part)
            raise SpoolError(
                f"无法保存接收的文件到 {self.folder}",
                "请检查磁盘空间和数据目录的写入权限；该文件未被确认接收，发送方可以重新发送。",
                detail=repr(e),
            ) from e
        except BaseException:
            fsutil.remove_quietly(part)
            raise
        log.info("spooled %s (%d bytes)", digest, size)
        return final
