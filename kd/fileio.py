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
- ``access_refused(cause, path, e, outcome)``: the ``StoreError`` for a file the OS would not
  let us read or remove (``<cause>：<path>（<strerror>）``, the permission and antivirus
  remedy, then ``outcome``); the caller raises it ``from e``.
- ``remove_quietly(path)``: delete a file when it can be; an ``OSError`` (none there, busy,
  denied) is ignored: for leftovers (temp and ``.part`` files) whose absence is not promised.

Telling media apart and reading past the cache (the external backup, docs/operations.md
"What the read-back proves"):

- ``inside(path, folder)``: ``path`` is ``folder`` or below it (real paths, case-folded on
  Windows).
- ``same_volume(a, b)``: both paths (or their nearest existing parents) are on one volume.
  POSIX: the same ``st_dev``. Windows: the same volume GUID
  (``GetVolumePathNameW`` + ``GetVolumeNameForVolumeMountPointW``), else the same volume root
  (drive letter or UNC share).
- ``volume_kind(path)``: ``"removable"``, ``"fixed"``, ``"remote"``, ``"cdrom"``,
  ``"ramdisk"`` or ``"unknown"``. Windows: ``GetDriveTypeW`` of the volume root (a USB hard
  disk reports ``fixed``). Linux: the ``removable`` flag of the block device in ``/sys``.
- ``drop_cache(path)``: fsync the file, then ``posix_fadvise(POSIX_FADV_DONTNEED)`` on it;
  True when the OS was asked (POSIX with ``posix_fadvise``), False elsewhere.
- ``sha256_uncached(path)``: like ``sha256_file`` but read from the medium where the OS
  lets us: Windows opens the file with ``FILE_FLAG_NO_BUFFERING`` (aligned 1 MiB reads
  into a ``VirtualAlloc`` buffer); POSIX drops the file's cached pages first. Returns
  ``(digest, size, how)``, ``how`` being ``READ_UNCACHED``, ``READ_CACHE_DROPPED`` or
  ``READ_CACHED`` (neither was possible: the bytes may have come from the cache).
"""

import hashlib
import logging
import os
import sys
import time
from typing import Any, Iterable, Optional, Tuple

from kd.errors import StoreBusyError, StoreError

log = logging.getLogger(__name__)

#: how long to keep retrying a replace that Windows refuses with "access denied"
REPLACE_RETRY_SECONDS = 3.0
_RETRY_STEP = 0.05

#: how ``sha256_uncached`` read the file
READ_UNCACHED = "uncached"            # Windows FILE_FLAG_NO_BUFFERING: the OS cache was bypassed
READ_CACHE_DROPPED = "cache_dropped"  # POSIX: the file's cached pages were dropped first (a hint)
READ_CACHED = "cached"                # neither: the bytes may have come from the OS cache
UNCACHED_BLOCK = 1024 * 1024          # a multiple of every sector size (512 B to 4 KiB)


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


def access_refused(cause: str, path: str, e: OSError, outcome: str = "") -> StoreError:
    """``cause：path（the OS's words）``, remedy: check the permissions or pause the antivirus, then ``outcome``."""
    return StoreError(
        "{}：{}（{}）".format(cause, path, e.strerror or e),
        "请检查该文件和数据目录的访问权限，或暂时关闭杀毒软件的实时扫描后重试{}".format(
            "；" + outcome if outcome else "。"),
        detail=repr(e),
    )


def remove_quietly(path: str) -> None:
    """Delete the file at ``path`` if it can be; ignore the ``OSError`` when it cannot."""
    try:
        os.remove(path)
    except OSError:
        pass


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
        remove_quietly(tmp)
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
        remove_quietly(tmp)
        raise
    fsync_dir(folder)


# -- media: which volume, which kind, read past the cache --------------------------------------
def _real(path: str) -> str:
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


def inside(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` itself or anything below it (symlinks resolved)."""
    p, f = _real(path), _real(folder)
    try:
        return os.path.commonpath([p, f]) == f
    except ValueError:  # different drives on Windows
        return False


def nearest_existing(path: str) -> str:
    """``path`` if it exists, else its nearest existing parent folder."""
    current = os.path.abspath(path)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def same_volume(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` (or their nearest existing parents) are on one volume."""
    a, b = nearest_existing(a), nearest_existing(b)
    if os.name == "nt":  # pragma: no cover - Windows
        return _volume_id(a) == _volume_id(b)
    return os.stat(a).st_dev == os.stat(b).st_dev


def volume_kind(path: str) -> str:
    """``removable``, ``fixed``, ``remote``, ``cdrom``, ``ramdisk`` or ``unknown`` (see the docstring)."""
    path = nearest_existing(path)
    if os.name == "nt":  # pragma: no cover - Windows
        try:
            kind = _kernel32().GetDriveTypeW(_volume_root(path))
        except OSError:
            return "unknown"
        return {2: "removable", 3: "fixed", 4: "remote", 5: "cdrom", 6: "ramdisk"}.get(kind, "unknown")
    try:
        dev = os.stat(path).st_dev
        block = os.path.realpath("/sys/dev/block/{}:{}".format(os.major(dev), os.minor(dev)))
        for folder in (block, os.path.dirname(block)):  # a partition's flag is on its disk
            flag = os.path.join(folder, "removable")
            if os.path.exists(flag):
                with open(flag) as f:
                    return "removable" if f.read().strip() == "1" else "fixed"
    except (OSError, ValueError, AttributeError):
        pass
    return "unknown"


def drop_cache(path: str) -> bool:
    """Flush ``path`` and ask the OS to drop its cached pages; True when it could be asked."""
    fadvise = getattr(os, "posix_fadvise", None)
    if fadvise is None:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages are not dropped: make them clean first
        fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def sha256_uncached(path: str) -> Tuple[str, int, str]:
    """SHA-256, size and how the file was read (``READ_UNCACHED`` / ``_CACHE_DROPPED`` / ``_CACHED``)."""
    if os.name == "nt":  # pragma: no cover - Windows
        try:
            digest, size = _sha256_no_buffering(path)
            return digest, size, READ_UNCACHED
        except OSError as e:
            log.warning("unbuffered read of %s failed (%r); reading it through the cache", path, e)
            digest, size = sha256_file(path)
            return digest, size, READ_CACHED
    how = READ_CACHE_DROPPED if drop_cache(path) else READ_CACHED
    digest, size = sha256_file(path)
    return digest, size, how


def _kernel32() -> Any:  # pragma: no cover - Windows
    import ctypes  # noqa: PLC0415
    from ctypes import wintypes  # noqa: PLC0415

    if sys.platform != "win32":  # the callers check os.name; this tells the type checker too
        raise OSError("kernel32 is Windows only")
    k32 = ctypes.WinDLL("kernel32", use_last_error=True)
    k32.GetVolumePathNameW.argtypes = [wintypes.LPCWSTR, wintypes.LPWSTR, wintypes.DWORD]
    k32.GetVolumePathNameW.restype = wintypes.BOOL
    k32.GetVolumeNameForVolumeMountPointW.argtypes = [wintypes.LPCWSTR, wintypes.LPWSTR, wintypes.DWORD]
    k32.GetVolumeNameForVolumeMountPointW.restype = wintypes.BOOL
    k32.GetDriveTypeW.argtypes = [wintypes.LPCWSTR]
    k32.GetDriveTypeW.restype = wintypes.UINT
    k32.CreateFileW.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, wintypes.LPVOID,
                                wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]
    k32.CreateFileW.restype = wintypes.HANDLE
    k32.ReadFile.argtypes = [wintypes.HANDLE, wintypes.LPVOID, wintypes.DWORD, ctypes.POINTER(wintypes.DWORD),
                             wintypes.LPVOID]
    k32.ReadFile.restype = wintypes.BOOL
    k32.CloseHandle.argtypes = [wintypes.HANDLE]
    k32.CloseHandle.restype = wintypes.BOOL
    k32.VirtualAlloc.argtypes = [wintypes.LPVOID, ctypes.c_size_t, wintypes.DWORD, wintypes.DWORD]
    k32.VirtualAlloc.restype = wintypes.LPVOID
    k32.VirtualFree.argtypes = [wintypes.LPVOID, ctypes.c_size_t, wintypes.DWORD]
    k32.VirtualFree.restype = wintypes.BOOL
    return k32


def _volume_root(path: str) -> str:  # pragma: no cover - Windows
    """The root of the volume holding ``path`` (``C:\\``, a mount folder, or ``\\\\server\\share\\``)."""
    import ctypes  # noqa: PLC0415

    buf = ctypes.create_unicode_buffer(1024)
    if not _kernel32().GetVolumePathNameW(os.path.abspath(path), buf, len(buf)):
        drive = os.path.splitdrive(os.path.abspath(path))[0]
        return drive + "\\"
    return buf.value


def _volume_id(path: str) -> str:  # pragma: no cover - Windows
    """The volume GUID path of ``path``'s volume, or its root when it has none (network shares)."""
    import ctypes  # noqa: PLC0415

    root = _volume_root(path)
    buf = ctypes.create_unicode_buffer(1024)
    if _kernel32().GetVolumeNameForVolumeMountPointW(root, buf, len(buf)):
        return buf.value.lower()
    return os.path.normcase(root)


def _sha256_no_buffering(path: str) -> Tuple[str, int]:  # pragma: no cover - Windows
    """Hash ``path`` read with ``FILE_FLAG_NO_BUFFERING`` (sector-aligned buffer and sizes)."""
    import ctypes  # noqa: PLC0415
    from ctypes import wintypes  # noqa: PLC0415

    if sys.platform != "win32":  # the caller checks os.name; this tells the type checker too
        raise OSError("FILE_FLAG_NO_BUFFERING is Windows only")
    k32 = _kernel32()
    generic_read, share_all, open_existing = 0x80000000, 0x1 | 0x2 | 0x4, 3
    no_buffering, sequential = 0x20000000, 0x08000000
    handle = k32.CreateFileW(os.path.abspath(path), generic_read, share_all, None, open_existing,
                             no_buffering | sequential, None)
    if handle is None or handle == ctypes.c_void_p(-1).value:
        raise ctypes.WinError(ctypes.get_last_error())
    buf = k32.VirtualAlloc(None, UNCACHED_BLOCK, 0x1000 | 0x2000, 0x04)  # page-aligned, committed, RW
    if not buf:
        k32.CloseHandle(handle)
        raise ctypes.WinError(ctypes.get_last_error())
    digest, size, got = hashlib.sha256(), 0, wintypes.DWORD()
    try:
        while True:
            if not k32.ReadFile(handle, buf, UNCACHED_BLOCK, ctypes.byref(got), None):
                raise ctypes.WinError(ctypes.get_last_error())
            if got.value == 0:
                break
            digest.update(ctypes.string_at(buf, got.value))
            size += got.value
            if got.value < UNCACHED_BLOCK:  # end of file (the next offset is not aligned)
                break
    finally:
        k32.VirtualFree(buf, 0, 0x8000)
        k32.CloseHandle(handle)
    return digest.hexdigest(), size
