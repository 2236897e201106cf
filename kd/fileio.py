"""File primitives every layer shares: durable writes, folder fsync, busy-file retry, hashing.

- ``fsync_dir(path)``: make a rename or create in ``path`` durable (POSIX; a no-op on
  Windows, where NTFS metadata is journaled and directories cannot be opened).
- ``replace(src, dst)``: ``os.replace`` that, on Windows, retries for a short while when
  another process (antivirus, backup, indexer) holds one of the files, then raises
  ``StoreBusyError`` naming the file.
- ``write_file_durably(path, data)``: temp file in the same folder, write, flush, fsync,
  replace, fsync the folder. Returns only when the new content is durable.
- ``write_chunks_durably(path, chunks)``: the same for content that arrives in pieces.
- ``sha256_file(path)``: SHA-256 hex digest and size of a file, read in blocks.
"""

import hashlib
import logging
import os
import time
from typing import Iterable, Optional, Tuple

from kd.errors import StoreBusyError

log = logging.getLogger(__name__)

#: how long to keep retrying a replace that Windows refuses with "access denied"
REPLACE_RETRY_SECONDS = 3.0
_RETRY_STEP = 0.05


def fsync_dir(path: str) -> None:
    if os.name == "nt":  # pragma: no cover - Windows cannot open a directory for fsync
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace(src: str, dst: str, retry_seconds: float = REPLACE_RETRY_SECONDS) -> None:
    """Atomically rename ``src`` over ``dst``, retrying while Windows reports it busy."""
    deadline = time.monotonic() + retry_seconds
    attempt = 0
    while True:
        try:
            os.replace(src, dst)
            if attempt:
                log.info("replace %s succeeded after %d retries", dst, attempt)
            return
        except PermissionError as e:
            # On Windows a file opened by another process without FILE_SHARE_DELETE cannot
            # be replaced (WinError 5/32); elsewhere PermissionError is a real permission
            # problem and retrying would not help.
            if os.name != "nt" or time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"数据文件被其他程序占用，无法保存：{dst}",
                    "请暂时关闭杀毒软件的实时扫描或把数据目录加入信任区，然后重试；数据未丢失。",
                    detail=repr(e),
                ) from e
            attempt += 1
            time.sleep(_RETRY_STEP)


def sha256_file(path: str, block: int = 1024 * 1024) -> Tuple[str, int]:
    """SHA-256 hex digest and size of the file at ``path``."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def write_chunks_durably(path: str, chunks: Iterable[bytes]) -> None:
    """Replace ``path`` with the concatenated ``chunks``, durably (see ``write_file_durably``)."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = "{}.tmp-{}".format(path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    fsync_dir(folder)


def write_file_durably(path: str, data: bytes, mode: Optional[int] = None) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content.

    ``mode`` (e.g. ``0o600`` for a private key) is set before the file takes its name.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    fsync_dir(folder)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
