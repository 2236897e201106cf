"""A crash-safe TinyDB storage: never rewrites a data file in place.

File format (``<name>.json``)::

    {"format":"kd-store/1","sha256":"<hex of body>","size":<bytes of body>}\\n
    <body: the TinyDB tables as compact UTF-8 JSON>

The header line lets a reader tell a complete file from a truncated or bit-flipped one
(JSON alone would accept a flipped digit).

Write path (one per change, or one per ``deferred()`` block): serialise, write
``<name>.json.tmp``, flush, fsync; rename the current file to ``<name>.json.prev`` (the
previous good generation); rename the temp file to ``<name>.json``; fsync the folder.
A crash at any point leaves either the new file, or no main file and the previous one
(the change was not acknowledged yet), never a half-written main file.

Open path: read and check ``<name>.json``. When it is missing but ``.prev`` is good (a
crash between the two renames), ``.prev`` is restored. When it is corrupt and ``.prev``
is good, the corrupt file is kept as ``<name>.json.corrupt-<time>`` for inspection,
``.prev`` is restored and the event is logged at CRITICAL (the last change before the
corruption may be lost). When neither is readable, ``StoreCorruptError`` names the file
and nothing on disk is touched: a corrupt store is never opened as an empty one.

The parsed tables stay in memory (``read()`` returns that object, which TinyDB mutates
before calling ``write()``); when a write fails, the memory copy is rebuilt from the last
durable body, so memory never runs ahead of disk.
"""

import hashlib
import json
import logging
import os
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional, Tuple

from tinydb.storages import Storage

from kd.errors import StoreCorruptError, StoreError
from kd.store import fsutil

log = logging.getLogger(__name__)

FORMAT = "kd-store/1"
Tables = Dict[str, Dict[str, Any]]


class CorruptFile(Exception):
    """Internal: a data file failed its checks (reason in args[0])."""


def encode(tables: Tables) -> Tuple[bytes, str]:
    """The file bytes for ``tables``, and the body text."""
    body = json.dumps(tables, ensure_ascii=False, separators=(",", ":"))
    raw = body.encode("utf-8")
    header = f'{{"format":"{FORMAT}","sha256":"{hashlib.sha256(raw).hexdigest()}","size":{len(raw)}}}\n'
    return header.encode("ascii") + raw, body


def decode(data: bytes) -> Tuple[Tables, str]:
    """Check and parse file bytes; raises ``CorruptFile`` with the reason."""
    head, sep, raw = data.partition(b"\n")
    if not sep:
        raise CorruptFile("no header line (empty or truncated file)")
    try:
        header = json.loads(head.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise CorruptFile("unreadable header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CorruptFile(f"unknown format {head[:60]!r}")
    if header.get("size") != len(raw):
        raise CorruptFile("body has {} bytes, header says {}".format(len(raw), header.get("size")))
    if header.get("sha256") != hashlib.sha256(raw).hexdigest():
        raise CorruptFile("body sha256 mismatch")
    try:
        body = raw.decode("utf-8")
        tables = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptFile(f"body is not JSON: {e}") from None
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise CorruptFile("body is not a set of tables")
    return tables, body


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


class AtomicJSONStorage(Storage):
    """TinyDB storage with atomic replace, a previous generation and corruption checks."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.prev_path = self.path + ".prev"
        self.tmp_path = self.path + ".tmp"
        self.folder = os.path.dirname(self.path)
        os.makedirs(self.folder, exist_ok=True)
        self._deferred = 0
        self._dirty = False
        self._tables: Optional[Tables] = None
        self._body = ""  # the last durable body; "" while nothing was written
        self._open()

    # -- open / recover ---------------------------------------------------------------
    def _open(self) -> None:
        if os.path.exists(self.tmp_path):
            log.info("removing unfinished write %s", self.tmp_path)
            os.remove(self.tmp_path)
        main, main_error = self._check(self.path)
        if main is not None:
            self._tables, self._body = main
            return
        prev, prev_error = self._check(self.prev_path)
        if main_error is None and prev_error is None and prev is None:
            return  # a new, empty store
        if prev is None:
            raise StoreCorruptError(
                f"数据文件已损坏，且没有可用的上一版本：{self.path}",
                "请不要删除该文件。可用“系统恢复”从备份文件恢复，或联系技术服务单位；"
                "损坏的文件保留在原处以便分析。",
                detail="main: {}; prev: {}".format(main_error or "missing", prev_error or "missing"),
            )
        if main_error is None:
            log.warning("%s missing after an interrupted write; restoring the previous generation", self.path)
        else:
            kept = "{}.corrupt-{}".format(self.path, time.strftime("%Y%m%d-%H%M%S"))
            fsutil.replace(self.path, kept)
            log.critical(
                "DATA FILE CORRUPT: %s (%s). Kept it as %s and restored the previous generation %s; "
                "the last change before the corruption may be missing.",
                self.path, main_error, kept, self.prev_path,
            )
        self._tables, self._body = prev
        fsutil.write_file_durably(self.path, encode(self._tables)[0])

    def _check(self, path: str) -> Tuple[Optional[Tuple[Tables, str]], Optional[str]]:
        """((tables, body), None) when good; (None, reason) when corrupt; (None, None) when missing."""
        data = _read(path)
        if data is None:
            return None, None
        try:
            return decode(data), None
        except CorruptFile as e:
            return None, str(e)

    # -- Storage interface ---------------------------------------------------------------
    def read(self) -> Optional[Tables]:
        return self._tables

    def write(self, data: Tables) -> None:
        self._tables = data
        if self._deferred:
            self._dirty = True
            return
        self._persist()

    def close(self) -> None:
        if self._dirty:
            self._persist()

    # -- batching ----------------------------------------------------------------------
    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Collect the writes of a block into one durable write at its end.

        If the block raises, its changes are discarded (memory is rebuilt from the last
        durable state) and nothing is written.
        """
        self._deferred += 1
        try:
            yield
        except BaseException:
            self._deferred -= 1
            if not self._deferred and self._dirty:
                self._dirty = False
                self._restore()
            raise
        self._deferred -= 1
        if not self._deferred and self._dirty:
            self._persist()

    # -- the one write path ------------------------------------------------------------
    def _persist(self) -> None:
        try:
            data, body = encode(self._tables or {})
            with open(self.tmp_path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if os.path.exists(self.path):
                fsutil.replace(self.path, self.prev_path)
            fsutil.replace(self.tmp_path, self.path)
            fsutil.fsync_dir(self.folder)
        except BaseException as e:
            self._dirty = False
            self._restore()
            if isinstance(e, (OSError, TypeError, ValueError)):
                raise StoreError(
                    f"无法保存数据：{self.path}",
                    "请检查磁盘空间和数据目录的写入权限后重试；刚才的操作没有生效。",
                    detail=repr(e),
                ) from e
            raise
        self._body = body
        self._dirty = False

    def _restore(self) -> None:
        self._tables = json.loads(self._body) if self._body else None
