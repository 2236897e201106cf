"""Keyed documents in one TinyDB file, safe to use from many threads.

``Database`` wraps one TinyDB instance with one lock (TinyDB is not thread-safe) and a
small keyed API: each document lives in a named table under a string key (stored in the
``_key`` field). Everything handed in is copied and checked to be JSON (so a caller
keeping a reference cannot change stored state behind the lock's back), and everything
handed out is a copy.

Each change is durable when the call returns (the storage's write path). Several changes
that must land together go in ``with db.transaction():`` — one durable write at the end,
nothing written if the block raises.

A closed ``Database`` refuses every call, reads and writes (``StoreClosedError``, a
``StoreError``): a thread that still holds a store across a restart or a restore gets an
error instead of writing its stale tables over the files the new store owns.
``close()`` is idempotent.

``Database.open(path, must_exist=..., accept_damage=...)`` opens a file store (the
refusals and the way out are kaodian.store.atomic's); ``create_store(path)`` writes an
empty first generation, so that a store a data folder lists always exists as a file.

``open_stores(data_dir)`` opens the three files of a data folder, split by write rate
(DESIGN.md §6): ``settings`` (accounts, site code, mode), ``exam`` (the loaded site
package: large, rarely written), ``runtime`` (registrations, session states, outbox:
small, often written). ``memory_stores()`` is the in-memory twin for unit tests.
"""

import json
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, cast

from tinydb import Query, TinyDB
from tinydb.storages import MemoryStorage, Storage
from tinydb.table import Document, Table

from kd.store.atomic import AtomicJSONStorage, closed_error, create_store

__all__ = ["DB_FILES", "KEY", "Database", "Stores", "create_store", "memory_stores", "open_stores"]

KEY = "_key"
Doc = Dict[str, Any]


def _copy(doc: Any) -> Any:
    """A deep copy that also proves the value is JSON (a bad value fails here, not at write)."""
    return json.loads(json.dumps(doc, ensure_ascii=False))


class _TinyDB(TinyDB):
    def table(self, name: str, **kwargs: Any) -> Table:
        # TinyDB's per-table query cache would survive a rolled-back transaction or a
        # failed write and then answer from state that never reached the disk.
        kwargs["cache_size"] = 0
        return super().table(name, **kwargs)


class Database:
    """One TinyDB file behind one lock, with copies in and out."""

    def __init__(self, storage: Storage, name: str = "memory") -> None:
        self.name = name
        self._storage = storage
        self._db = _TinyDB(storage=_Given(storage))
        self._lock = threading.RLock()
        self._touch = getattr(storage, "touch", None)
        self._closed = False
        #: table -> key -> TinyDB doc id, built on first use of a table
        self._index: Dict[str, Dict[str, int]] = {}

    @classmethod
    def open(cls, path: str, *, must_exist: bool = False, accept_damage: bool = False) -> "Database":
        """Open the file store at ``path`` (``<path>.0`` / ``<path>.1``).

        Raises ``StoreMissingError`` (no file while ``must_exist``, or a deleted
        generation), ``StoreCorruptError`` (no good generation) or ``StoreError`` (a file
        cannot be read), each naming the file. ``accept_damage`` opens what is there
        instead, logs it at CRITICAL and writes a new generation (``repair-db``).
        """
        storage = AtomicJSONStorage(path, must_exist=must_exist, accept_damage=accept_damage)
        return cls(storage, name=os.path.basename(path))

    @property
    def generation(self) -> Optional[int]:
        """The durable generation of a file store (0: nothing written yet); None in memory."""
        return getattr(self._storage, "generation", None)

    @property
    def closed(self) -> bool:
        return self._closed

    @classmethod
    def in_memory(cls, name: str = "memory") -> "Database":
        return cls(MemoryStorage(), name=name)

    def _ids(self, table: str) -> Dict[str, int]:
        ids = self._index.get(table)
        if ids is None:
            ids = {doc[KEY]: doc.doc_id for doc in self._db.table(table).all()}
            self._index[table] = ids
        return ids

    def _hint(self, table: str, doc_id: Optional[int] = None) -> None:
        if self._touch is not None:
            self._touch(table, None if doc_id is None else str(doc_id))

    @contextmanager
    def _open(self) -> Iterator[None]:
        """Hold the lock of a store that is not closed (``StoreClosedError`` when it is)."""
        with self._lock:
            if self._closed:
                raise closed_error(self.name)
            yield

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the lock; forget the index when a write fails (memory was rolled back)."""
        with self._open():
            try:
                yield
            except BaseException:
                self._index.clear()
                raise

    def _find(self, table: str, key: str) -> Optional[Document]:
        """The stored document ``key`` of ``table`` itself (not a copy), None when there is none; under the lock."""
        doc_id = self._ids(table).get(key)
        return None if doc_id is None else _stored(self._db.table(table), doc_id)

    # -- reads ---------------------------------------------------------------------------
    def durable_body(self) -> bytes:
        """The tables as last made durable, as the store file's body (UTF-8 JSON): for a backup.

        Taken under the lock, so no write of another thread is half in it; the in-memory
        twin answers its current tables.
        """
        with self._open():
            body = getattr(self._storage, "durable_body", None)
            if body is not None:
                return bytes(body())
            return json.dumps(self._storage.read() or {}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def get(self, table: str, key: str) -> Optional[Doc]:
        with self._open():
            stored = self._find(table, key)
            return None if stored is None else _strip(stored)

    def view(self, table: str, key: str, fn: Callable[[Doc], Any]) -> Any:
        """``fn(doc)`` on the stored document, copied out; None when there is none.

        For reading a small part of a large document (the 8,000-candidate manifest)
        without copying all of it: ``fn`` runs under the lock on the stored document
        itself, must not change it, and only its (JSON) result is copied.
        """
        with self._open():
            stored = self._find(table, key)
            return None if stored is None else _copy(fn(stored))

    def all(self, table: str) -> List[Doc]:
        with self._open():
            return [_strip(d) for d in self._db.table(table).all()]

    def items(self, table: str) -> Dict[str, Doc]:
        """Every document of ``table`` by its key (copies)."""
        with self._open():
            return {d[KEY]: _strip(d) for d in self._db.table(table).all()}

    def find(self, table: str, **fields: Any) -> List[Doc]:
        """Documents whose fields equal all of ``fields``."""
        with self._open():
            return [_strip(d) for d in self._db.table(table).search(Query().fragment(fields))]

    def count(self, table: str) -> int:
        with self._open():
            return len(self._db.table(table))

    def tables(self) -> List[str]:
        with self._open():
            return sorted(self._db.tables())

    # -- writes --------------------------------------------------------------------------
    def put(self, table: str, key: str, doc: Doc) -> Doc:
        """Store ``doc`` under ``key``, replacing what was there. Returns the stored copy."""
        stored = _copy(doc)
        stored[KEY] = key
        with self._writing():
            ids = self._ids(table)
            t = self._db.table(table)
            doc_id = ids.get(key)
            if doc_id is None:
                doc_id = max(ids.values(), default=0) + 1
                self._hint(table, doc_id)
                t.insert(Document(stored, doc_id=doc_id))
                ids[key] = doc_id
            else:
                self._hint(table, doc_id)
                t.update(_replace_with(stored), doc_ids=[doc_id])
        return _strip(stored)

    def update(self, table: str, key: str, changes: Doc) -> Doc:
        """Merge ``changes`` into the document ``key`` (KeyError if there is none)."""
        new = _copy(changes)
        new.pop(KEY, None)
        with self._writing():
            doc_id = self._ids(table).get(key)
            if doc_id is None:
                raise KeyError("{}/{}".format(table, key))
            t = self._db.table(table)
            self._hint(table, doc_id)
            t.update(new, doc_ids=[doc_id])
            return _strip(_stored(t, doc_id))

    def delete(self, table: str, key: str) -> bool:
        with self._writing():
            ids = self._ids(table)
            doc_id = ids.get(key)
            if doc_id is None:
                return False
            self._hint(table, doc_id)
            self._db.table(table).remove(doc_ids=[doc_id])
            del ids[key]
            return True

    def replace_table(self, table: str, docs: Dict[str, Doc]) -> None:
        """Make ``table`` hold exactly ``docs`` (key → doc), in one durable write."""
        rows = []
        for key, doc in docs.items():
            row = _copy(doc)
            row[KEY] = key
            rows.append(row)
        with self.transaction():
            self._hint(table)
            self._db.drop_table(table)
            self._index.pop(table, None)
            if rows:
                self._db.table(table).insert_multiple(rows)

    def clear(self) -> None:
        """Drop every table (system initialisation)."""
        with self._writing():
            for table in self._db.tables():
                self._hint(table)
            self._db.drop_tables()
            self._index.clear()

    @contextmanager
    def transaction(self) -> Iterator["Database"]:
        """Hold the lock and make the block's changes one durable write (or none)."""
        with self._writing():
            deferred = getattr(self._storage, "deferred", None)
            if deferred is None:  # MemoryStorage: no durability to batch
                yield self
                return
            with deferred():
                yield self

    def close(self) -> None:
        """Write anything pending and refuse every further call; closing again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._db.close()


class _Given:
    """TinyDB wants a storage class to instantiate; hand it an existing instance."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def __call__(self) -> Storage:
        return self._storage


def _strip(doc: Doc) -> Doc:
    out = _copy(dict(doc))
    out.pop(KEY, None)
    return out


def _stored(t: Table, doc_id: int) -> Document:
    """The document ``doc_id`` of ``t``: one id gets one document (the key map says it exists)."""
    return cast(Document, t.get(doc_id=doc_id))


def _replace_with(new: Doc) -> Callable[[Any], None]:
    """A TinyDB update transform (typed there as taking a Mapping; it is the stored dict)."""

    def transform(doc: Doc) -> None:
        doc.clear()
        doc.update(new)

    return transform


class Stores(NamedTuple):
    settings: Database
    exam: Database
    runtime: Database

    def close(self) -> None:
        for db in self:
            db.close()


DB_FILES = ("settings", "exam", "runtime")


def open_stores(data_dir: str, *, must_exist: bool = False) -> Stores:
    """Open (or, unless ``must_exist``, create) ``data_dir/db/{settings,exam,runtime}.json``.

    Raises what ``Database.open`` raises; the stores opened before a refusal are closed.
    """
    folder = os.path.join(data_dir, "db")
    if not must_exist:
        os.makedirs(folder, exist_ok=True)
    opened: List[Database] = []
    try:
        for name in DB_FILES:
            opened.append(Database.open(os.path.join(folder, name + ".json"), must_exist=must_exist))
    except BaseException:
        for db in opened:
            db.close()
        raise
    return Stores(*opened)


def memory_stores() -> Stores:
    """The in-memory twin of ``open_stores`` for unit tests of the core."""
    return Stores(*(Database.in_memory(name) for name in DB_FILES))
