"""A crash-safe TinyDB storage: never rewrites the current data file in place.

Two generation files per store, ``<name>.json.0`` and ``<name>.json.1``; the one with
the higher ``gen`` in its header is current, the other is the previous good generation.
Each file::

    {"format":"kd-store/1","gen":<n>,"sha256":"<hex of body>","size":<bytes of body>}\\n
    <body: the TinyDB tables as compact UTF-8 JSON>

The header lets a reader tell a complete file from a truncated or bit-flipped one (JSON
alone would accept a flipped digit).

Write path (once per change, or once per ``deferred()`` block): serialise; write
``<name>.json.tmp``; flush; fsync; ``os.replace`` it over the slot of the *older*
generation (``gen + 1`` goes to slot ``(gen + 1) % 2``); fsync the folder. A crash at
any point leaves the current generation untouched and the new one either complete or
absent, so an acknowledged change is never lost and the store always opens. On Windows
the replace is retried briefly when antivirus holds the file (``fsutil.replace``).

Open path: read and check both slots and take the newest good one. When a slot is
corrupt (torn, bit-flipped, not ours) while the other is good, the bad file is kept as
``<slot>.corrupt-<time>`` for inspection, the good generation is written anew as the
current one, and the event is logged at CRITICAL (if the corrupt file was the newer
one, its last change is lost). When no slot is readable, ``StoreCorruptError`` names
the file and nothing on disk is touched: a corrupt store is never opened as empty.

Speed: the tables stay in memory (``read()`` hands TinyDB that object, which it mutates
before calling ``write()``), and the JSON of every document is kept as a fragment, so a
change re-encodes only the documents named by ``touch()`` (the ``Database`` layer names
every document it changes; a write without hints re-encodes everything). When a write
fails, memory is rebuilt from the last durable body, so memory never runs ahead of disk.
"""

import hashlib
import json
import logging
import os
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional, Set, Tuple

from tinydb.storages import Storage

from kd import fileio as fsutil
from kd.errors import StoreCorruptError, StoreError

log = logging.getLogger(__name__)

FORMAT = "kd-store/1"
SLOTS = (".0", ".1")
Tables = Dict[str, Dict[str, Any]]
_dump = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _frag(doc_id: str, doc: Any) -> bytes:
    return '"{}":{}'.format(doc_id, _dump(doc)).encode("utf-8")


class CorruptFile(Exception):
    """Internal: a data file failed its checks (reason in args[0])."""


def encode(tables: Tables, gen: int) -> bytes:
    """The file bytes of generation ``gen`` holding ``tables`` (the plain, slow path)."""
    return frame(_dump(tables).encode("utf-8"), gen)


def frame(raw: bytes, gen: int) -> bytes:
    header = '{{"format":"{}","gen":{},"sha256":"{}","size":{}}}\n'.format(
        FORMAT, gen, hashlib.sha256(raw).hexdigest(), len(raw))
    return header.encode("ascii") + raw


def decode(data: bytes) -> Tuple[int, Tables, bytes]:
    """Check and parse file bytes into (gen, tables, body); ``CorruptFile`` with the reason."""
    head, sep, raw = data.partition(b"\n")
    if not sep:
        raise CorruptFile("no header line (empty or truncated file)")
    try:
        header = json.loads(head.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise CorruptFile("unreadable header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("gen"), int):
        raise CorruptFile("unknown format {!r}".format(head[:60]))
    if header.get("size") != len(raw):
        raise CorruptFile("body has {} bytes, header says {}".format(len(raw), header.get("size")))
    if header.get("sha256") != hashlib.sha256(raw).hexdigest():
        raise CorruptFile("body sha256 mismatch")
    try:
        tables = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptFile("body is not JSON: {}".format(e)) from None
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise CorruptFile("body is not a set of tables")
    return header["gen"], tables, raw


def store_exists(path: str) -> bool:
    """True when a store at ``path`` has any generation file (good or not)."""
    return any(os.path.exists(path + s) for s in SLOTS)


class _Slot:
    """What one generation file holds: missing, good (gen, tables, body) or corrupt."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.gen = -1
        self.tables: Optional[Tables] = None
        self.body = b""
        self.error: Optional[str] = None
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        try:
            self.gen, self.tables, self.body = decode(data)
        except CorruptFile as e:
            self.error = str(e)

    @property
    def good(self) -> bool:
        return self.tables is not None


class AtomicJSONStorage(Storage):
    """TinyDB storage with atomic replace, a previous generation and corruption checks."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.slot_paths = [self.path + s for s in SLOTS]
        self.tmp_path = self.path + ".tmp"
        self.folder = os.path.dirname(self.path)
        os.makedirs(self.folder, exist_ok=True)
        self._deferred = 0
        self._dirty = False
        self._tables: Optional[Tables] = None
        self._gen = 0  # generation of the durable state; 0 while nothing was written
        self._body = b""  # the durable body, to rebuild memory after a failed write
        self._frags: Dict[str, Dict[str, bytes]] = {}
        self._joined: Dict[str, bytes] = {}
        self._hints: Optional[Set[Tuple[str, Optional[str]]]] = set()
        self._open()

    # -- open / recover ---------------------------------------------------------------
    def _open(self) -> None:
        if os.path.exists(self.tmp_path):
            log.info("removing unfinished write %s", self.tmp_path)
            os.remove(self.tmp_path)
        slots = [_Slot(p) for p in self.slot_paths]
        good = sorted((s for s in slots if s.good), key=lambda s: s.gen)
        bad = [s for s in slots if s.error]
        if not good:
            if bad:
                raise StoreCorruptError(
                    "数据文件已损坏，且没有可用的上一版本：{}".format(self.path),
                    "请不要删除这些文件。可用“系统恢复”从备份文件恢复，或联系技术服务单位；"
                    "损坏的文件保留在原处以便分析。",
                    detail="; ".join("{}: {}".format(s.path, s.error) for s in bad),
                )
            return  # a new, empty store
        current = good[-1]
        self._tables, self._body, self._gen = current.tables, current.body, current.gen
        self._hints = None
        if bad:
            for slot in bad:
                kept = "{}.corrupt-{}".format(slot.path, time.strftime("%Y%m%d-%H%M%S"))
                fsutil.replace(slot.path, kept)
                log.critical(
                    "DATA FILE CORRUPT: %s (%s). Kept it as %s; continuing from generation %d in %s. "
                    "If the corrupt file was the newer generation, its last change is missing.",
                    slot.path, slot.error, kept, current.gen, current.path,
                )
            self._persist()  # the good state becomes the newest generation again

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

    def touch(self, table: str, doc_id: Optional[str] = None) -> None:
        """Say that the next write changes document ``doc_id`` of ``table`` (None: all of it)."""
        if self._hints is not None:
            self._hints.add((table, doc_id))

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
    def _body_bytes(self) -> bytes:
        """The body JSON, re-encoding only hinted documents and re-joining only their tables.

        ``_frags[table][doc_id]`` is ``"<doc_id>":<doc JSON>`` (UTF-8 bytes) and
        ``_joined[table]`` is ``"<table>":{<frags>}``; key order inside a JSON object is
        irrelevant, so fragments are joined in whatever order they were made.
        """
        tables = self._tables or {}
        hints = self._hints
        if hints is None:
            self._frags, self._joined, changed = {}, {}, set(tables)
            for name, docs in tables.items():
                self._frags[name] = {k: _frag(k, v) for k, v in docs.items()}
        else:
            changed = {t for t, _ in hints}
            whole = {t for t, d in hints if d is None}
            for name in whole:
                self._frags[name] = {k: _frag(k, v) for k, v in tables.get(name, {}).items()}
            for name, doc_id in hints:
                if name in whole or doc_id is None:
                    continue
                docs = tables.get(name, {})
                frags = self._frags.setdefault(name, {})
                if doc_id in docs:
                    frags[doc_id] = _frag(doc_id, docs[doc_id])
                else:
                    frags.pop(doc_id, None)
        for name in changed:
            if name in tables:
                self._joined[name] = _dump(name).encode("utf-8") + b":{" + b",".join(self._frags[name].values()) + b"}"
            else:
                self._joined.pop(name, None)
                self._frags.pop(name, None)
        return b"{" + b",".join(self._joined.values()) + b"}"

    def _persist(self) -> None:
        gen = self._gen + 1
        try:
            raw = self._body_bytes()
            with open(self.tmp_path, "wb") as f:
                f.write(frame(raw, gen))
                f.flush()
                os.fsync(f.fileno())
            fsutil.replace(self.tmp_path, self.slot_paths[gen % 2])
            fsutil.fsync_dir(self.folder)
        except BaseException as e:
            self._dirty = False
            self._restore()
            if isinstance(e, (OSError, TypeError, ValueError, KeyError)):
                raise StoreError(
                    "无法保存数据：{}".format(self.path),
                    "请检查磁盘空间和数据目录的写入权限后重试；刚才的操作没有生效。",
                    detail=repr(e),
                ) from e
            raise
        self._gen = gen
        self._body = raw
        self._dirty = False
        self._hints = set()

    def _restore(self) -> None:
        self._tables = json.loads(self._body) if self._body else None
        self._hints = None  # fragments may hold undone changes: rebuild them next time
