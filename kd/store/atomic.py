"""A crash-safe TinyDB storage: never rewrites the current data file in place.

Two generation files per store, ``<name>.json.0`` and ``<name>.json.1``; the one with
the higher ``gen`` in its header is current, the other is the previous good generation.
Each file::

    {"format":"kd-store/1","gen":<n>,"sha256":"<hex of body>","size":<bytes of body>}\\n
    <body: the TinyDB tables as compact UTF-8 JSON>

The header lets a reader tell a complete file from a truncated or bit-flipped one (JSON
alone would accept a flipped digit). Generation ``g`` lives in slot ``g % 2``; generations
count from 1 (``create_store()`` writes an empty generation 1 into ``.1``).

Write path (once per change, or once per ``deferred()`` block): serialise; write
``<name>.json.tmp``; flush; fsync; ``os.replace`` it over the slot of the *older*
generation (``gen + 1`` goes to slot ``(gen + 1) % 2``); fsync the folder. A crash at
any point leaves the current generation untouched and the new one either complete or
absent, so an acknowledged change is never lost and the store always opens. On Windows
the replace is retried briefly when antivirus holds the file (``fsutil.replace``).
After ``close()`` the storage refuses ``read()`` and ``write()`` (``StoreClosedError``),
so a store that outlived a restart can never write over the files its successor owns.

Open path: read and check both slots and take the newest good one.

- A slot that cannot be read at all (permission, a directory in its place, I/O error)
  raises ``StoreError`` naming the file and the OS error; nothing is touched.
- A corrupt slot (torn, bit-flipped, not ours) beside a good one is copied to
  ``<slot>.corrupt-<time>`` for inspection, then the good generation is written anew as
  the current one (over the corrupt slot), and the event is logged at CRITICAL (if the
  corrupt file was the newer one, its last change is lost). Both slots exist at every
  step. When no slot is good, ``StoreCorruptError`` names the file and nothing on disk
  is touched: a corrupt store is never opened as empty.
- Slots are written alternately and never deleted, so from generation 2 on both files
  always exist. One file alone holding generation >= 2 means the other was deleted (if
  it was the newer one, acknowledged changes would silently roll back): refused with
  ``StoreMissingError`` naming the missing file and the generation found. Exception: a
  ``<missing slot>.corrupt-<time>`` at least as new as the remaining slot is what an
  older version's corrupt recovery left when killed between setting the corrupt file
  aside and rewriting it; that recovery is finished (a new generation is written).
- No file at all: an empty store, or ``StoreMissingError`` with ``must_exist=True``.
- ``accept_damage=True`` is the explicit way out (``main.py repair-db NAME``): a missing
  generation, missing files or no good slot are accepted (corrupt files are renamed to
  ``<slot>.corrupt-<time>``), logged at CRITICAL with what was accepted, and a new
  generation is written at once so the store is whole again. Unreadable files are still
  refused.

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
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from tinydb.storages import Storage

from kd import fileio as fsutil
from kd.errors import StoreClosedError, StoreCorruptError, StoreError, StoreMissingError

log = logging.getLogger(__name__)

FORMAT = "kd-store/1"
SLOTS = (".0", ".1")
Tables = Dict[str, Dict[str, Any]]
_dump = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_STAMP = "%Y%m%d-%H%M%S"
#: how much older than the remaining slot a corrupt leftover's time stamp may be
#: (the stamp has whole seconds; file systems round modification times)
_STAMP_SLACK = 2.0
REMEDY_DOC = "详见 docs/storage.md “数据文件缺失或被回退”。"


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


def db_name(path: str) -> str:
    """The store's name as ``main.py repair-db`` takes it: ``db/runtime.json`` -> ``runtime``."""
    base = os.path.basename(path)
    return base[:-5] if base.endswith(".json") else base


def ways_out(path: str) -> str:
    """The remedy text of a missing or rolled-back store: the three documented ways out."""
    return ("请从回收站或副本把该文件放回原处后重新启动；或用最近的系统备份恢复到新的数据目录"
            "（main.py --data-dir 新目录 restore 备份文件）；或确认接受损失后运行 main.py repair-db {}。{}"
            ).format(db_name(path), REMEDY_DOC)


def closed_error(name: str) -> StoreClosedError:
    return StoreClosedError("数据库已关闭（系统正在重新启动或已退出）：{}".format(name), "请稍后重试。")


def _write_generation(tmp_path: str, dest: str, folder: str, data: bytes) -> None:
    """The durable replace every generation goes through: tmp, flush, fsync, replace, fsync folder."""
    with open(tmp_path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    fsutil.replace(tmp_path, dest)
    fsutil.fsync_dir(folder)


def create_store(path: str) -> bool:
    """Write empty generations 1 and 2 (both slots) unless the store has a generation file.

    A data folder creates its stores with this, so that from then on a store without
    files was deleted (``must_exist=True`` refuses it), and, both slots existing from
    the start, one slot alone always means a deleted generation (refused, see the module
    docstring). Returns whether it wrote. Raises ``StoreError`` when a file cannot be
    written.
    """
    path = os.path.abspath(path)
    if store_exists(path):
        return False
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        for gen in (1, 2):
            _write_generation(path + ".tmp", path + SLOTS[gen % 2], folder, frame(b"{}", gen))
    except OSError as e:
        raise StoreError(
            "无法创建数据文件：{}".format(path + SLOTS[1]),
            "请检查磁盘空间和数据目录的写入权限后重试。",
            detail=repr(e),
        ) from e
    return True


class _Slot:
    """What one generation file holds: missing, good (gen, tables, body) or corrupt (data kept).

    A file that exists but cannot be read raises ``StoreError`` naming it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.gen = -1
        self.tables: Optional[Tables] = None
        self.body = b""
        self.data = b""  # the bytes of a corrupt file, to keep a copy
        self.error: Optional[str] = None
        self.present = True
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            self.present = False
            return
        except OSError as e:
            raise fsutil.access_refused("无法读取数据文件", path, e, "数据没有被改动。") from e
        try:
            self.gen, self.tables, self.body = decode(data)
        except CorruptFile as e:
            self.error = str(e)
            self.data = data

    @property
    def good(self) -> bool:
        return self.tables is not None


def _stamp() -> str:
    return time.strftime(_STAMP)


def _leftover_time(slot_path: str) -> Optional[float]:
    """The newest time stamp of a ``<slot>.corrupt-<time>`` beside ``slot_path`` (None: none)."""
    folder, base = os.path.split(slot_path)
    prefix = base + ".corrupt-"
    newest: Optional[float] = None
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    for name in names:
        if not name.startswith(prefix):
            continue
        try:
            t = time.mktime(time.strptime(name[len(prefix):len(prefix) + 15], _STAMP))
        except (ValueError, OverflowError):
            continue
        newest = t if newest is None else max(newest, t)
    return newest


class AtomicJSONStorage(Storage):
    """TinyDB storage with atomic replace, a previous generation and corruption checks."""

    def __init__(self, path: str, *, must_exist: bool = False, accept_damage: bool = False) -> None:
        """Open the store at ``path`` (files ``<path>.0`` / ``<path>.1``).

        Raises ``StoreMissingError`` (no file and ``must_exist``; a deleted generation),
        ``StoreCorruptError`` (no good generation) or ``StoreError`` (a file is unreadable),
        each naming the file; ``accept_damage`` opens what is there instead (see the module).
        """
        self.path = os.path.abspath(path)
        self.slot_paths = [self.path + s for s in SLOTS]
        self.tmp_path = self.path + ".tmp"
        self.folder = os.path.dirname(self.path)
        if not must_exist or accept_damage:
            os.makedirs(self.folder, exist_ok=True)
        self._deferred = 0
        self._dirty = False
        self._closed = False
        self._tables: Optional[Tables] = None
        self._gen = 0  # generation of the durable state; 0 while nothing was written
        self._body = b""  # the durable body, to rebuild memory after a failed write
        self._frags: Dict[str, Dict[str, bytes]] = {}
        self._joined: Dict[str, bytes] = {}
        self._hints: Optional[Set[Tuple[str, Optional[str]]]] = set()
        self._open(must_exist, accept_damage)

    @property
    def generation(self) -> int:
        """The generation of the durable state (0: nothing written yet)."""
        return self._gen

    # -- open / recover ---------------------------------------------------------------
    def _open(self, must_exist: bool, accept_damage: bool) -> None:
        if os.path.lexists(self.tmp_path):
            log.info("removing unfinished write %s", self.tmp_path)
            try:
                os.remove(self.tmp_path)
            except OSError as e:
                raise fsutil.access_refused("无法清理未完成的写入", self.tmp_path, e, "数据没有被改动。") from e
        slots = [_Slot(p) for p in self.slot_paths]
        good = sorted((s for s in slots if s.good), key=lambda s: s.gen)
        bad = [s for s in slots if s.error]
        missing = [s for s in slots if not s.present]
        if not good:
            self._open_without_good(bad, must_exist, accept_damage)
            return
        current = good[-1]
        self._tables, self._body, self._gen = current.tables, current.body, current.gen
        self._hints = None
        if missing and current.gen >= 2:
            self._one_slot_left(current, missing[0], accept_damage)
            return
        if bad:
            for slot in bad:
                kept = "{}.corrupt-{}".format(slot.path, _stamp())
                try:
                    fsutil.write_file_durably(kept, slot.data)  # a copy: the slot stays until it is replaced
                except OSError as e:
                    raise StoreError(
                        "数据文件已损坏，且无法保存损坏文件的副本：{}".format(slot.path),
                        "请检查磁盘空间和数据目录的写入权限后重试；上一版本的数据仍完好。",
                        detail=repr(e),
                    ) from e
                log.critical(
                    "DATA FILE CORRUPT: %s (%s). Kept a copy as %s; continuing from generation %d in %s. "
                    "If the corrupt file was the newer generation, its last change is missing.",
                    slot.path, slot.error, kept, current.gen, current.path,
                )
            self._persist()  # the good state becomes the newest generation again, over the corrupt slot

    def _open_without_good(self, bad: List[_Slot], must_exist: bool, accept_damage: bool) -> None:
        if accept_damage:
            for slot in bad:
                kept = "{}.corrupt-{}".format(slot.path, _stamp())
                fsutil.replace(slot.path, kept)
                log.critical("ACCEPTED DAMAGE: %s is corrupt (%s); kept it as %s.", slot.path, slot.error, kept)
            log.critical("ACCEPTED DAMAGE: %s has no good generation; opening it EMPTY as requested (repair-db).",
                         self.path)
            self._hints = None
            self._persist()
            return
        if bad:
            raise StoreCorruptError(
                "数据文件已损坏，且没有可用的上一版本：{}".format(self.path),
                "请不要删除这些文件（会保留以便分析）。可用最近的系统备份恢复到新的数据目录"
                "（main.py --data-dir 新目录 restore 备份文件），或确认接受损失后运行 main.py repair-db {}。{}".format(
                    db_name(self.path), REMEDY_DOC),
                detail="; ".join("{}: {}".format(s.path, s.error) for s in bad),
            )
        if must_exist:
            raise StoreMissingError(
                "数据文件缺失：{}（{} 和 {} 都不存在）".format(self.path, SLOTS[0], SLOTS[1]),
                ways_out(self.path),
            )
        # a new, empty store: nothing is written until the first change

    def _one_slot_left(self, current: _Slot, lost: _Slot, accept_damage: bool) -> None:
        """One file of generation >= 2 and the other gone: a deletion, or a recovery to finish."""
        leftover = _leftover_time(lost.path)
        try:
            mtime = os.path.getmtime(current.path)
        except OSError:
            mtime = None
        if leftover is not None and mtime is not None and leftover >= mtime - _STAMP_SLACK:
            log.critical(
                "finishing an interrupted corrupt-file recovery: %s was set aside as %s.corrupt-*; "
                "continuing from generation %d in %s", lost.path, lost.path, current.gen, current.path)
        elif accept_damage:
            log.critical(
                "ACCEPTED DAMAGE: %s is missing; continuing from generation %d in %s as requested (repair-db). "
                "If the missing file was the newer generation, its changes are lost.",
                lost.path, current.gen, current.path)
        else:
            raise StoreMissingError(
                "数据文件缺失：{}（另一份 {} 为第 {} 代）。缺的若是较新的一份，最近保存的更改会被悄悄回退，"
                "因此不予打开。".format(lost.path, os.path.basename(current.path), current.gen),
                ways_out(self.path),
                detail="present: {} gen {}; missing: {}".format(current.path, current.gen, lost.path),
            )
        self._persist()  # gen + 1 goes into the missing slot: both exist again

    # -- Storage interface ---------------------------------------------------------------
    def read(self) -> Optional[Tables]:
        if self._closed:
            raise closed_error(self.path)
        return self._tables

    def write(self, data: Tables) -> None:
        if self._closed:
            raise closed_error(self.path)
        self._tables = data
        if self._deferred:
            self._dirty = True
            return
        self._persist()

    def close(self) -> None:
        """Write what a ``deferred()`` block left pending, then refuse every further use."""
        if self._closed:
            return
        try:
            if self._dirty:
                self._persist()
        finally:
            self._closed = True

    def durable_body(self) -> bytes:
        """The body of the newest durable generation (``{}`` before the first write): what a backup copies."""
        if self._closed:
            raise closed_error(self.path)
        return self._body or b"{}"

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
            _write_generation(self.tmp_path, self.slot_paths[gen % 2], self.folder, frame(raw, gen))
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
