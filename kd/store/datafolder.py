"""The data folder: its layout, what it holds, and its journaled file transactions.

Layout (``DataFolder(root)``; nothing else builds these paths)::

    kaodian-data.json   the folder manifest: what this folder holds (see below)
    db/<name>.json.{0,1} settings, exam, runtime (kd.store.atomic: two generations each)
    spool/              result packages, content-addressed (kd.store.spool)
    rooms/<room>.dat    the loaded package's room data files
    audit.log           hash-chained JSON lines (kd.store.audit)
    lan-uploads/        partial result uploads from proctors
    print/ downloads/   printouts, downloaded site packages
    proofs/             the sessions' 考点数据完整性证明 (kd.core.proof; rebuilt at will)
    drill/              drill mode's platform simulator and dongle emulator
    logs/ kaodian.lock  rotating log, single-instance lock
    .tx/ tx.journal     a file transaction being installed (below)

**The folder manifest** ``kaodian-data.json`` (UTF-8 JSON, written durably once, when
the folder is created)::

    {"format": "kd-data-folder", "version": 1, "created_at": "<ISO time>",
     "app_version": "0.1.0", "stores": ["settings", "exam", "runtime"]}

Each listed store is created as files (generations 1 and 2, empty) with the manifest,
so from then on a listed store without its files was deleted: ``open_stores()`` refuses
it by name (``StoreMissingError``) instead of opening it empty, and the store itself
refuses a deleted newer generation (kd.store.atomic). A folder written by a version
without the manifest (DB files, no manifest) gets one on first open (logged). A folder
with exam data (audit log, spool, rooms) but neither DB files nor a manifest is refused.
The documented ways out are in docs/storage.md ("数据文件缺失或被回退"); the explicit
one is ``open_stores(accept=("runtime",))`` (``main.py repair-db runtime``).

**File transactions** (installing a site package, 系统恢复): everything new is staged
under ``.tx/`` first — whole items (``rooms``, ``db``, ``spool``, ``audit.log``) as
``.tx/new/<item>``, and whole DB tables to replace as ``.tx/tables-new-<db>.json``
together with the tables they replace (``.tx/tables-old-<db>.json``). Then the journal
``tx.journal`` is written durably; it is the commit point::

    {"format": "kd-tx", "version": 1, "kind": "load", "direction": "forward",
     "items": [{"name": "rooms", "had": true}], "tables": {"exam": ["package"]},
     "keep_old": false}

Forward, each step idempotent: each live item is moved to ``.tx/old/<item>`` and the
staged one into its place; each DB gets its new tables (one durable write per DB); the
journal is removed; the old items are deleted (or kept as ``restore-previous`` when
``keep_old``). If a step fails in the running process, the journal is rewritten with
``"direction": "back"`` and undone: old items back, old tables back. After a kill at any
point, ``finish_interrupted()`` (called before any store opens) completes the journal in
its direction; without a journal it deletes an unfinished staging. So the folder is
always entirely old or entirely new.
"""

import datetime
import json
import logging
import os
import shutil
import threading
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import kd
from kd import fileio
from kd.errors import StoreCorruptError, StoreError, StoreMissingError
from kd.store import atomic
from kd.store.audit import AuditLog
from kd.store.database import DB_FILES, Database, Stores
from kd.store.spool import Spool

log = logging.getLogger(__name__)

MANIFEST = "kaodian-data.json"
MANIFEST_FORMAT = "kd-data-folder"
JOURNAL = "tx.journal"
TX_DIR = ".tx"
TX_FORMAT = "kd-tx"
PREVIOUS = "restore-previous"
#: leftovers of the versions before the journal (an interrupted load or restore staging)
LEGACY_LEFTOVERS = (".restore-staging", ".restore-old")
#: items a transaction may replace
ITEMS = ("db", "spool", "rooms", "audit.log")
#: folders of files made from the exam data, dropped with it
DERIVED_DIRS = ("print", "downloads", "lan-uploads", "proofs")
Tables = Dict[str, Dict[str, Dict[str, Any]]]  # table -> key -> document

REMEDY_DOC = "详见 docs/storage.md “数据文件缺失或被回退”。"


def _move(src: str, dst: str) -> None:
    """One rename of a swap (a module function, so that a test can make it fail)."""
    fileio.replace(src, dst)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _fsync_tree(root: str) -> None:
    """Make every file and folder staged under ``root`` durable (files were fsynced when written)."""
    for folder, _dirs, _files in os.walk(root):
        fileio.fsync_dir(folder)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


def _place(name: str) -> Any:
    """A read-only attribute of the layout: the path of ``name`` below the folder's root (a property;
    typed ``Any`` so that the class can declare it ``str``, as the core's ``DataFiles`` port reads it)."""
    return property(lambda folder: folder.path(name), doc="``<root>/{}``".format(name))


class DataFolder:
    """One data folder: paths, what it holds, its stores, its file transactions."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        #: held by folder-level file work (backup copies, transactions, clearing); never by LAN hot paths
        self.files_lock = threading.RLock()

    # -- layout ------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    db_dir: str = _place("db")
    spool_dir: str = _place("spool")
    rooms_dir: str = _place("rooms")
    audit_path: str = _place("audit.log")
    uploads_dir: str = _place("lan-uploads")
    print_dir: str = _place("print")
    downloads_dir: str = _place("downloads")
    proofs_dir: str = _place("proofs")
    drill_dir: str = _place("drill")

    def store_path(self, name: str) -> str:
        return os.path.join(self.db_dir, name + ".json")

    def room_file(self, room_code: str) -> str:
        return os.path.join(self.rooms_dir, room_code + ".dat")

    # -- what the folder holds -----------------------------------------------------------------
    def manifest(self) -> Optional[Dict[str, Any]]:
        """The folder manifest, None when there is none; ``StoreCorruptError`` when unreadable."""
        path = self.path(MANIFEST)
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise StoreCorruptError("数据目录清单无法读取：{}".format(path),
                                    "请检查文件权限；如该文件已损坏，可把它改名后重新启动（系统会按现有数据文件重建清单）。"
                                    + REMEDY_DOC, detail=repr(e)) from e
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT \
                or not isinstance(doc.get("stores"), list):
            raise StoreCorruptError("数据目录清单格式不符：{}".format(path),
                                    "请把该文件改名后重新启动（系统会按现有数据文件重建清单）。" + REMEDY_DOC)
        return doc

    def _has_exam_files(self) -> bool:
        if os.path.exists(self.audit_path) and os.path.getsize(self.audit_path) > 0:
            return True
        for folder in (self.spool_dir, self.rooms_dir):
            if os.path.isdir(folder) and any(n.endswith(".dat") for n in os.listdir(folder)):
                return True
        return False

    def ensure(self) -> Dict[str, Any]:
        """The folder manifest; written (with empty stores) for a new folder, or for an older version's folder.

        Raises ``StoreMissingError`` when the folder has exam data but no DB files and no
        manifest (the DBs were deleted with the manifest).
        """
        doc = self.manifest()
        if doc is not None:
            return doc
        existing = [name for name in DB_FILES if atomic.store_exists(self.store_path(name))]
        if not existing and self._has_exam_files():
            raise StoreMissingError(
                "数据目录 {} 中有考试数据（审计日志、结果包或考场数据），"
                "但数据库文件和数据目录清单都不存在。".format(self.root),
                "数据库可能被误删：请从回收站或副本找回 db 文件夹，或用“系统恢复”把最近的系统备份恢复到新的数据目录。"
                + REMEDY_DOC)
        for name in DB_FILES:
            if name not in existing:
                atomic.create_store(self.store_path(name))
        doc = {"format": MANIFEST_FORMAT, "version": 1, "created_at": _now(), "app_version": kd.__version__,
               "stores": list(DB_FILES)}
        if existing:
            doc["migrated"] = True
            log.warning("data folder %s has no manifest (written by an older version): writing one for %s",
                        self.root, ", ".join(DB_FILES))
        fileio.write_file_durably(self.path(MANIFEST), json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8"))
        return doc

    def open_stores(self, accept: Iterable[str] = ()) -> Stores:
        """Open the folder's three stores, refusing any that is missing or rolled back.

        ``accept`` names stores to open as they are (the explicit way out, ``repair-db``).
        Raises ``StoreMissingError`` / ``StoreCorruptError`` / ``StoreError`` naming the file.
        """
        accept = set(accept)
        listed = set(self.ensure()["stores"])
        opened: List[Database] = []
        try:
            for name in DB_FILES:
                opened.append(Database.open(self.store_path(name), must_exist=name in listed and name not in accept,
                                            accept_damage=name in accept))
        except BaseException:
            for db in opened:
                db.close()
            raise
        return Stores(*opened)

    def open_spool(self) -> Spool:
        return Spool(self.spool_dir)

    def open_audit(self) -> AuditLog:
        return AuditLog(self.audit_path)

    # -- transactions --------------------------------------------------------------------------
    def begin(self, kind: str) -> "Transaction":
        """A new transaction's staging (an older unfinished staging without a journal is dropped)."""
        if os.path.exists(self.path(JOURNAL)):
            raise StoreError("上次的数据操作尚未完成。", "请重新启动考点管理系统（启动时会完成上次的操作），然后再试。")
        return Transaction(self, kind)

    def finish_interrupted(self) -> Optional[str]:
        """Complete a transaction a kill interrupted (call before any store opens); its kind, or None."""
        journal = self.path(JOURNAL)
        if not os.path.exists(journal):
            self._drop_staging()
            return None
        tx = Transaction.resume(self)
        log.warning("finishing an interrupted %s transaction (%s) in %s", tx.kind, tx.direction, self.root)
        if tx.direction == "forward":
            tx.forward(None)
            tx.finish()
        else:
            tx.backward(None)
            tx.finish()
        return tx.kind

    def _drop_staging(self) -> None:
        for name in (TX_DIR,) + LEGACY_LEFTOVERS:
            if os.path.exists(self.path(name)):
                log.info("removing an unfinished staging %s (it was never swapped in)", name)
                _remove(self.path(name))
        for name in os.listdir(self.root) if os.path.isdir(self.root) else ():
            if name.startswith(("rooms.new-", "rooms.old-")):  # loads of the versions before the journal
                log.warning("removing a leftover of an interrupted load: %s", name)
                _remove(self.path(name))

    # -- clearing ------------------------------------------------------------------------------
    def clear_exam_files(self) -> int:
        """Delete the spool, the room files and the derived folders; the number of files removed.

        Call after the DBs that refer to them were cleared (a kill leaves only orphans).
        """
        files = 0
        with self.files_lock:
            for folder in (self.spool_dir, self.rooms_dir):
                if not os.path.isdir(folder):
                    continue
                for name in os.listdir(folder):
                    full = os.path.join(folder, name)
                    if os.path.isfile(full):
                        os.remove(full)
                        files += 1
            for name in DERIVED_DIRS:
                if os.path.isdir(self.path(name)):
                    shutil.rmtree(self.path(name))
        return files


def read_tables(db: Database, tables: Iterable[str]) -> Tables:
    """The named tables of ``db`` as table -> key -> document."""
    return {name: db.items(name) for name in tables}


def apply_tables(db: Database, tables: Mapping[str, Mapping[str, Dict[str, Any]]]) -> None:
    """Replace each named table of ``db`` by the given documents, in one durable write."""
    with db.transaction():
        for name, docs in tables.items():
            db.replace_table(name, dict(docs))


class Transaction:
    """One staged change of a data folder; see the module docstring.

    ``stage(item)`` → the path to build the new item at; ``set_tables(db, tables)``;
    ``commit(dbs)`` swaps it all in (``dbs``: the live ``Database`` objects the tables go
    to; others are opened from their files). ``abort()`` drops the staging.
    """

    def __init__(self, folder: DataFolder, kind: str, *, fresh: bool = True) -> None:
        self.folder = folder
        self.kind = kind
        self.dir = folder.path(TX_DIR)
        self.direction = "forward"
        self.items: List[Dict[str, Any]] = []
        self.tables: Dict[str, List[str]] = {}
        self.keep_old = False
        if fresh:
            if os.path.exists(self.dir):
                _remove(self.dir)
            os.makedirs(os.path.join(self.dir, "new"))
            os.makedirs(os.path.join(self.dir, "old"))

    @classmethod
    def resume(cls, folder: DataFolder) -> "Transaction":
        path = folder.path(JOURNAL)
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read().decode("utf-8"))
            if doc.get("format") != TX_FORMAT or doc.get("direction") not in ("forward", "back"):
                raise ValueError("not a transaction journal")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError) as e:
            raise StoreCorruptError("未完成的数据操作的日志无法读取：{}".format(path),
                                    "请不要删除数据目录中的文件，联系技术服务单位。" + REMEDY_DOC,
                                    detail=repr(e)) from e
        tx = cls(folder, str(doc.get("kind")), fresh=False)
        tx.direction = doc["direction"]
        tx.items = list(doc.get("items") or [])
        tx.tables = dict(doc.get("tables") or {})
        tx.keep_old = bool(doc.get("keep_old"))
        return tx

    # -- staging -------------------------------------------------------------------------------
    def stage(self, item: str) -> str:
        """Where to build the new ``item`` (``rooms``, ``db``, ``spool``, ``audit.log``)."""
        if item not in ITEMS:
            raise ValueError("not a data folder item: {}".format(item))
        return os.path.join(self.dir, "new", item)

    def _tables_path(self, which: str, db: str) -> str:
        return os.path.join(self.dir, "tables-{}-{}.json".format(which, db))

    def set_tables(self, db: str, new: Tables, old: Tables) -> None:
        """Stage ``new`` tables for store ``db``, with the ``old`` ones they replace (for a roll-back)."""
        if db not in DB_FILES or set(new) != set(old):
            raise ValueError("tables of {} do not match".format(db))
        for which, tables in (("new", new), ("old", old)):
            fileio.write_file_durably(self._tables_path(which, db),
                                      json.dumps(tables, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        self.tables[db] = sorted(new)

    def _read_tables(self, which: str, db: str) -> Tables:
        with open(self._tables_path(which, db), "rb") as f:
            tables: Tables = json.loads(f.read().decode("utf-8"))
        return tables

    def abort(self) -> None:
        """Drop the staging (before ``commit``)."""
        _remove(self.dir)

    # -- the swap ------------------------------------------------------------------------------
    def _places(self, item: str) -> Tuple[str, str, str]:
        """Where ``item`` is staged, where it lives, where the live one is moved aside."""
        return os.path.join(self.dir, "new", item), self.folder.path(item), os.path.join(self.dir, "old", item)

    def _write_journal(self) -> None:
        doc = {"format": TX_FORMAT, "version": 1, "kind": self.kind, "direction": self.direction,
               "items": self.items, "tables": self.tables, "keep_old": self.keep_old}
        fileio.write_file_durably(self.folder.path(JOURNAL), json.dumps(doc, ensure_ascii=False).encode("utf-8"))

    def commit(self, dbs: Optional[Mapping[str, Database]] = None, *, keep_old: bool = False,
               swapped: Optional[Callable[[], None]] = None) -> None:
        """Swap everything staged in; roll it all back if a step fails (the error is re-raised).

        ``swapped`` runs after the items are in place and before the tables are written
        (系统恢复 closes and reopens its stores there); a failure there rolls back too.
        """
        root = self.folder.root
        staged = os.listdir(os.path.join(self.dir, "new"))
        for name in [n for n in ITEMS if n in staged]:
            self.items.append({"name": name, "had": os.path.lexists(os.path.join(root, name))})
        self.keep_old = keep_old
        _fsync_tree(self.dir)
        self._write_journal()
        try:
            self.forward(dbs, swapped)
        except BaseException:
            log.exception("the %s transaction failed; rolling back", self.kind)
            self.direction = "back"
            self._write_journal()
            self.backward(dbs)
            self.finish()
            raise
        self.finish()

    def forward(self, dbs: Optional[Mapping[str, Database]],
                swapped: Optional[Callable[[], None]] = None) -> None:
        for item in self.items:
            new, live, old = self._places(item["name"])
            if not os.path.lexists(new):
                continue  # already swapped in
            if os.path.lexists(live):
                if os.path.lexists(old):
                    _remove(live)  # re-created after the old one was moved away
                else:
                    _move(live, old)
            _move(new, live)
        fileio.fsync_dir(self.folder.root)
        if swapped is not None:
            swapped()
        for db_name in self.tables:
            self._apply(db_name, self._read_tables("new", db_name), dbs)

    def backward(self, dbs: Optional[Mapping[str, Database]]) -> None:
        for item in reversed(self.items):
            new, live, old = self._places(item["name"])
            if item.get("had"):
                if os.path.lexists(old):
                    if os.path.lexists(live):
                        if os.path.lexists(new):
                            _remove(live)
                        else:
                            _move(live, new)
                    _move(old, live)
            elif os.path.lexists(live) and not os.path.lexists(new):
                _move(live, new)
        fileio.fsync_dir(self.folder.root)
        for db_name in self.tables:
            self._apply(db_name, self._read_tables("old", db_name), dbs)

    def _apply(self, name: str, tables: Tables, dbs: Optional[Mapping[str, Database]]) -> None:
        """Give store ``name`` these tables (not written when it holds them already: a store
        whose write failed is unchanged, and writing it again would fail the roll-back too)."""
        live = (dbs or {}).get(name)
        db = live if live is not None else Database.open(self.folder.store_path(name), must_exist=True)
        try:
            if read_tables(db, tables) != tables:
                apply_tables(db, tables)
        finally:
            if live is None:
                db.close()

    def finish(self) -> None:
        """Drop the journal (the transaction is complete), then tidy up the staging."""
        root = self.folder.root
        os.remove(self.folder.path(JOURNAL))
        fileio.fsync_dir(root)
        try:
            old = os.path.join(self.dir, "old")
            if self.keep_old and self.direction == "forward" and os.path.isdir(old) and os.listdir(old):
                _remove(self.folder.path(PREVIOUS))
                os.replace(old, self.folder.path(PREVIOUS))
            _remove(self.dir)
        except OSError as e:  # the transaction is complete; only tidying failed
            log.error("could not tidy up after the %s transaction: %r", self.kind, e)
