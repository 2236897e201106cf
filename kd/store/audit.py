"""The append-only audit log: hash-chained JSON lines, torn tails sealed, never cut, rotated by size.

Each line (UTF-8, ``\\n``-terminated) is one JSON object (compact, ``ensure_ascii=False``)::

    {"seq":1,"time":"2026-11-26T08:00:00+08:00","actor":"admin",
     "action":"package.loaded","details":{...},"prev":"<hex>"}

``prev`` is the SHA-256 of the previous entry's line bytes (without its newline); the
first entry's ``prev`` is 64 zeros. ``seq`` counts entries from 1, across rotated files.
Changing, removing or reordering a line breaks the chain at that line; ``verify()`` names
the first broken line.

``append()`` writes the line, flushes and fsyncs before it returns. When that fails (a
full disk), the file is truncated back to its last known-good size and ``StoreError`` is
raised: no partial line stays behind for the next append to join. If even the truncation
fails, the next append first checks the file and seals what it finds (below).

**Torn tails.** A power cut or a full disk can leave a last line without its newline
(never acknowledged). It is kept as evidence, not cut: at open (and in-process before the
next append, when the file is longer than the log knows) the torn bytes are terminated
with ``\\n`` and followed by a seal entry::

    {"seq":<good entries + 1>,"time":…,"actor":"system","action":"audit.torn_tail_sealed",
     "details":{"torn_bytes":<length of the torn line>,"torn_sha256":"<hex of its bytes>"},
     "prev":"<hash of the last good line>"}

so the chain runs from the last good line to the seal, around the torn line, and goes on
from the seal. The event is logged at CRITICAL (a power cut or a full disk, not
tampering). ``verify_report()`` accepts a line immediately followed by a seal that matches
it (``prev`` is the hash of the last good line, ``seq`` the next number, ``torn_bytes`` and
``torn_sha256`` those of the line) and lists it as sealed; any other break, a forged seal
included, is the first broken line.

**Rotation.** When an append would take ``audit.log`` past ``max_bytes`` (16 MiB), the file
is closed and renamed ``audit.log.<n>`` (``n`` = the highest kept number + 1: the higher,
the newer; a name is never reused), and a new ``audit.log`` starts with an entry that
carries the chain across::

    {"seq":<last seq + 1>,…,"actor":"system","action":"audit.rotated",
     "details":{"file":"audit.log.<n>","lines":<its lines>,"bytes":<its size>,
                "last_seq":<its last seq>,"last_hash":"<hash of its last line>"},
     "prev":"<hash of its last line>"}

The steps, each safe to be killed after: (1) the new file's first line is written to
``audit.log.new`` and fsynced; (2) ``audit.log`` → ``audit.log.<n>``; (3) ``audit.log.new``
→ ``audit.log``. At open, ``audit.log.new`` next to ``audit.log`` is an unfinished step 1
(removed: nothing was rotated); ``audit.log.new`` without ``audit.log`` is step 3 still to
do (done, after checking that its entry names a kept file of exactly ``bytes``). A failed
rotation (a full disk, Windows refusing to rename a file another program holds open) is
logged and the log goes on in the same file, trying again after ``ROTATE_RETRY_BYTES``
(1 MiB) more.

**The cap.** After a rotation, while more than ``keep`` (8) rotated files are kept or they
hold more than ``max_total`` bytes (128 MiB), the oldest is dropped: first an entry
``audit.capped`` (``details``: ``file``, ``bytes``, ``first_seq``, ``last_seq``,
``last_hash``, ``kept_files``, ``kept_bytes``) is appended, then the file is deleted, and the
event is logged at CRITICAL and handed to ``notify`` (the context publishes it on the hub as
``audit.capped``). So the log takes at most ``max_bytes`` + ``max_total`` (144 MiB) plus one
entry per file.

**Verifying across files.** ``verify_report()`` walks back from ``audit.log`` along the
``audit.rotated`` entries (each names its predecessor) and then checks the chain forward
over those files, oldest first: each file's first entry must be the ``audit.rotated`` entry
matching its predecessor (name, lines, bytes, last seq and hash). The oldest file starts
the chain at genesis, or with an ``audit.rotated`` entry whose file is no longer kept
(``rotated_away``: the cap dropped it; its ``prev`` and ``seq`` are then accepted as the
start) — unless an older rotated file is still there (a file missing in the middle:
broken). Rotated files not on the chain are listed as ``unlinked`` (e.g. kept from before
a 系统恢复, which brings back the backup's ``audit.log``). The format is in
docs/formats.md ("审计日志").

``mark()`` / ``marked_bytes(mark)`` let a backup copy the log as it was when it froze its
inputs, even if the file is rotated meanwhile.
"""

import datetime
import hashlib
import json
import logging
import os
import re
import threading
from typing import IO, Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

from kd import fileio
from kd.errors import StoreError

log = logging.getLogger(__name__)

GENESIS = "0" * 64
SEAL_ACTION = "audit.torn_tail_sealed"
ROTATED_ACTION = "audit.rotated"
CAPPED_ACTION = "audit.capped"
SEAL_ACTOR = SYSTEM_ACTOR = "system"
#: a file is rotated when an append would take it past this size
MAX_BYTES = 16 * 1024 * 1024
#: rotated files kept at most
KEEP = 8
#: bytes of rotated files kept at most
MAX_TOTAL = 128 * 1024 * 1024
#: after a failed rotation, the next try waits until the file grew by this much
ROTATE_RETRY_BYTES = 1024 * 1024
NEW_SUFFIX = ".new"
_TAIL_BYTES = 1 << 16
_dump = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

Notify = Callable[[str, Dict[str, Any]], None]


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


def _parse(raw: bytes) -> Optional[Dict[str, Any]]:
    try:
        entry = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return entry if isinstance(entry, dict) else None


def _seals(entry: Optional[Dict[str, Any]], torn: bytes, prev: str, seq: int) -> bool:
    """Whether ``entry`` is the seal of the torn line ``torn`` (without newline) after ``prev``."""
    if entry is None or entry.get("action") != SEAL_ACTION or entry.get("actor") != SEAL_ACTOR:
        return False
    details = entry.get("details")
    return (isinstance(details, dict) and entry.get("prev") == prev and entry.get("seq") == seq
            and details.get("torn_bytes") == len(torn)
            and details.get("torn_sha256") == hashlib.sha256(torn).hexdigest())


def _rotated_entry(entry: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The details of an ``audit.rotated`` entry (None for any other line)."""
    if entry is None or entry.get("action") != ROTATED_ACTION or entry.get("actor") != SYSTEM_ACTOR:
        return None
    details = entry.get("details")
    return details if isinstance(details, dict) else None


class VerifyReport(NamedTuple):
    """What ``verify_report()`` found: line numbers are 1-based lines of their file."""

    #: the first line where the chain breaks (tampering or damage), in ``broken_file``; None when it holds
    broken: Optional[int]
    #: torn lines (power cut, full disk) of ``audit.log`` sealed by the seal entry on the next line
    sealed: List[int]
    #: the last line of ``audit.log`` has no newline and no seal yet (sealed at the next open or append)
    torn_tail: Optional[int]
    #: lines checked (all of them, or up to the first broken one), every file together
    lines: int
    #: the file of ``broken`` (a name in the log's folder)
    broken_file: Optional[str] = None
    #: the files checked, oldest first (names; the last is ``audit.log``)
    files: Tuple[str, ...] = ()
    #: sealed torn lines of the rotated files: (file, line)
    sealed_rotated: Tuple[Tuple[str, int], ...] = ()
    #: the oldest file checked continues this one, which is no longer kept (the cap dropped it)
    rotated_away: Optional[str] = None
    #: the ``seq`` the checked chain starts with (1 unless older files were rotated away)
    first_seq: int = 1
    #: rotated files that are not on the chain (e.g. kept from before a 系统恢复)
    unlinked: Tuple[str, ...] = ()
    #: a file of the chain that is missing while older rotated files are kept (then ``broken`` is set)
    missing: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.broken is None


class AuditMark(NamedTuple):
    """Where the log ended when ``mark()`` was called (for a backup's frozen inputs)."""

    path: str     # the current file then
    length: int   # its size then
    becomes: str  # the name that file gets if it is rotated meanwhile


class _Chain(NamedTuple):
    files: List[str]                # paths, oldest first, the current file last
    rotated_away: Optional[str]
    missing: Optional[str]
    unlinked: List[str]


class AuditLog:
    """The audit log at ``path`` (and its rotated files next to it); ``append`` from any thread.

    ``notify(action, details)``, when set, is called (outside the log's lock, in the
    appending thread) for each ``audit.rotated`` and ``audit.capped`` entry the log writes.
    """

    def __init__(self, path: str, *, max_bytes: int = MAX_BYTES, keep: int = KEEP,
                 max_total: int = MAX_TOTAL) -> None:
        self.path = os.path.abspath(path)
        self.dir, self.name = os.path.split(self.path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.max_total = max_total
        self.notify: Optional[Notify] = None
        self._rotated_re = re.compile(r"^{}\.([1-9][0-9]{{0,8}})$".format(re.escape(self.name)))
        self._lock = threading.Lock()
        os.makedirs(self.dir, exist_ok=True)
        #: the file's size after the last durable entry: everything beyond it is unacknowledged
        self._size = 0
        self._last_hash, self._seq = GENESIS, 0
        #: no rotation is tried before the file has this size (moved on after a failed rotation)
        self._rotate_after = 0
        try:
            self._recover_tail(at_open=True)
        except OSError as e:
            raise StoreError(
                "无法读取审计日志：{}（{}）".format(self.path, e.strerror or e),
                "请检查该文件和数据目录的访问权限，或暂时关闭杀毒软件的实时扫描后重试。",
                detail=repr(e),
            ) from e

    # -- the files ----------------------------------------------------------------------
    def rotated_files(self) -> List[Tuple[int, str]]:
        """The rotated files kept next to the log: (number, name), oldest first."""
        out = []
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return out
        for name in names:
            m = self._rotated_re.match(name)
            if m is not None:
                out.append((int(m.group(1)), name))
        return sorted(out)

    def _file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _number(self, name: str) -> Optional[int]:
        m = self._rotated_re.match(name) if isinstance(name, str) else None
        return int(m.group(1)) if m is not None else None

    # -- the tail -----------------------------------------------------------------------
    def _recover_tail(self, at_open: bool = False) -> None:
        """Read the chain's end from disk; seal a torn last line. Sets size, seq and last hash.

        First finishes a rotation a kill interrupted. At open, a seal that cannot be
        written yet (a full disk) is logged and left to the next append, so that the log
        can still be read.
        """
        self._finish_rotation()
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            self._size, self._last_hash, self._seq = 0, GENESIS, 0
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            end = _last_newline(f, size) + 1  # 0 when there is no complete line
            torn = b""
            if end < size:
                f.seek(end)
                torn = f.read(size - end)
            last = _last_line(f, end)
        if last is None:
            last_hash, seq = GENESIS, 0
        else:
            entry = _parse(last)
            last_hash = line_hash(last)
            if entry is not None and isinstance(entry.get("seq"), int):
                seq = entry["seq"]
            else:
                log.error("audit log %s: last line unreadable; appending after it (verify() will name it)", self.path)
                seq = self._count_entries()
        self._size, self._last_hash, self._seq = end, last_hash, seq
        if not torn:
            return
        try:
            self._seal(torn, size)
        except OSError as e:
            if not at_open:
                raise
            log.error("audit log %s: could not seal its torn last line yet (%r); the next append will",
                      self.path, e)

    def _finish_rotation(self) -> None:
        """Complete or undo a rotation a kill interrupted (see the module docstring)."""
        new = self.path + NEW_SUFFIX
        if not os.path.lexists(new):
            return
        if os.path.lexists(self.path):
            log.warning("audit log %s: removing %s, left by a rotation interrupted before its rename "
                        "(nothing was rotated)", self.path, os.path.basename(new))
            os.remove(new)
            return
        with open(new, "rb") as f:
            head = f.readline(_TAIL_BYTES)
        details = _rotated_entry(_parse(head)) if head.endswith(b"\n") else None
        name = str(details.get("file")) if details else ""
        if details is None or self._number(name) is None or _size_of(self._file(name)) != details.get("bytes"):
            log.error("audit log %s: removing %s: it does not continue a kept rotated file", self.path,
                      os.path.basename(new))
            os.remove(new)
            return
        log.warning("audit log %s: finishing a rotation a kill interrupted (%s was rotated)", self.path, name)
        os.replace(new, self.path)
        fileio.fsync_dir(self.dir)

    def _count_entries(self) -> int:
        """Entries up to the end of the file (when its last line is unreadable): the seq the chain reached.

        Complete lines, less one torn line per seal entry, after the seq the file's
        ``audit.rotated`` first entry carries on from.
        """
        count = 0
        base = 0
        for number, raw, _ in _lines_of(self.path):
            if not raw.endswith(b"\n"):
                break
            entry = _parse(raw)
            if number == 1 and _rotated_entry(entry) is not None and isinstance(entry.get("seq"), int):
                base = entry["seq"] - 1
            count += 0 if entry is not None and entry.get("action") == SEAL_ACTION else 1
        return base + count

    def _seal(self, torn: bytes, size: int) -> None:
        """Terminate the torn bytes at the end of the file and append their seal entry."""
        entry = self._entry(SEAL_ACTOR, SEAL_ACTION,
                            {"torn_bytes": len(torn), "torn_sha256": hashlib.sha256(torn).hexdigest()})
        line = _dump(entry).encode("utf-8")
        self._write(b"\n" + line + b"\n", size)
        log.critical(
            "AUDIT LOG TORN TAIL SEALED: %s had an unfinished last line (%d bytes, sha256 %s) - a power cut or a "
            "full disk during an append, not tampering. It is kept and sealed by entry %d.",
            self.path, len(torn), entry["details"]["torn_sha256"], entry["seq"])
        self._size = size + len(line) + 2
        self._seq += 1
        self._last_hash = line_hash(line)

    def _write(self, data: bytes, size: int) -> None:
        """Append ``data`` durably to a file of ``size`` bytes; on failure truncate back to ``size``."""
        try:
            with open(self.path, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            try:
                with open(self.path, "r+b") as f:
                    f.truncate(size)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                log.error("audit log %s: could not remove a failed append (%r); the next append seals it",
                          self.path, e)
            raise

    # -- appending ----------------------------------------------------------------------
    def _entry(self, actor: str, action: str, details: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        return {"seq": self._seq + 1, "time": _now(), "actor": actor, "action": action,
                "details": details or {}, "prev": self._last_hash}

    def _commit(self, entry: Dict[str, Any]) -> Dict[str, Any]:
        """Write ``entry`` (built by ``_entry`` from the current state) at the end of the current file.

        Lock held; no rotation. Raises ``OSError`` (the file is as before).
        """
        line = _dump(entry).encode("utf-8")
        self._write(line + b"\n", self._size)
        self._size += len(line) + 1
        self._seq += 1
        self._last_hash = line_hash(line)
        return entry

    def append(self, actor: str, action: str, details: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Write one entry durably and return it (rotating the file first when it is full).

        Raises ``StoreError`` when it cannot be written (the file is as before the call).
        """
        notes: List[Tuple[str, Dict[str, Any]]] = []
        with self._lock:
            try:
                if _size_of(self.path) != self._size:  # a failed append left bytes we could not remove
                    self._recover_tail()
                entry = self._entry(actor, action, details)
                size = len(_dump(entry).encode("utf-8")) + 1
                if self._size > 0 and self._size + size > self.max_bytes and self._size >= self._rotate_after:
                    if self._rotate(notes):
                        entry = self._entry(actor, action, details)
                self._commit(entry)
            except OSError as e:
                raise StoreError(
                    "无法写入审计日志：{}（{}）".format(self.path, getattr(e, "strerror", None) or e),
                    "请检查磁盘空间（磁盘可能已满）和数据目录的写入权限后重试；这次操作没有完成。",
                    detail=repr(e),
                ) from e
        self._tell(notes)
        return entry

    def _tell(self, notes: List[Tuple[str, Dict[str, Any]]]) -> None:
        notify = self.notify
        if notify is None:
            return
        for action, details in notes:
            try:
                notify(action, dict(details))
            except Exception:  # noqa: BLE001 - a listener must not fail the append that already happened
                log.exception("audit log listener failed on %s", action)

    # -- rotation -----------------------------------------------------------------------
    def _rotate(self, notes: List[Tuple[str, Dict[str, Any]]]) -> bool:
        """Rotate the current file (lock held); False when it could not be done (logged; goes on in place).

        Raises ``OSError`` only when the current file was renamed but the new one could not
        take its name: the next append (or open) finishes the rotation.
        """
        rotated = self.rotated_files()
        number = rotated[-1][0] + 1 if rotated else 1
        name = "{}.{}".format(self.name, number)
        target = self._file(name)
        new = self.path + NEW_SUFFIX
        details = {"file": name, "lines": _count_lines(self.path, self._size), "bytes": self._size,
                   "last_seq": self._seq, "last_hash": self._last_hash}
        entry = self._entry(SYSTEM_ACTOR, ROTATED_ACTION, details)
        line = _dump(entry).encode("utf-8")
        try:
            with open(new, "wb") as f:
                f.write(line + b"\n")
                f.flush()
                os.fsync(f.fileno())
            if os.path.lexists(target):
                raise FileExistsError(target)
            _rename(self.path, target)
        except OSError as e:
            _remove_quietly(new)
            self._rotate_after = self._size + ROTATE_RETRY_BYTES
            log.error("audit log %s: could not rotate it to %s (%r); going on in the same file, trying again "
                      "after %d more bytes", self.path, name, e, ROTATE_RETRY_BYTES)
            return False
        fileio.fsync_dir(self.dir)
        _rename(new, self.path)
        fileio.fsync_dir(self.dir)
        self._size = len(line) + 1
        self._seq += 1
        self._last_hash = line_hash(line)
        self._rotate_after = 0
        log.info("audit log rotated: %s (%d lines, %d bytes) kept as %s", self.name, details["lines"],
                 details["bytes"], name)
        notes.append((ROTATED_ACTION, details))
        self._cap(notes)
        return True

    def _cap(self, notes: List[Tuple[str, Dict[str, Any]]]) -> None:
        """Drop the oldest rotated files beyond ``keep`` files or ``max_total`` bytes (lock held)."""
        files = [(name, _size_of(self._file(name))) for _, name in self.rotated_files()]
        while files and (len(files) > self.keep or sum(size for _, size in files) > self.max_total):
            name, size = files.pop(0)
            path = self._file(name)
            first, last = _first_line(path), _last_complete_line(path)
            head, tail = _parse(first or b""), _parse(last or b"")
            details = {"file": name, "bytes": size,
                       "first_seq": head.get("seq") if head else None,
                       "last_seq": tail.get("seq") if tail else None,
                       "last_hash": line_hash(last) if last is not None else None,
                       "kept_files": len(files), "kept_bytes": sum(s for _, s in files),
                       "keep": self.keep, "max_total": self.max_total}
            try:
                self._commit(self._entry(SYSTEM_ACTOR, CAPPED_ACTION, details))
            except OSError as e:
                log.error("audit log %s: could not record dropping %s (%r); it is kept for now", self.path, name, e)
                return
            try:
                os.remove(path)
            except OSError as e:
                log.error("audit log %s: could not delete %s (%r); trying again at the next rotation",
                          self.path, name, e)
                return
            log.critical(
                "AUDIT LOG CAPPED: %s (entries %s to %s, %d bytes) was deleted: the audit log keeps at most %d "
                "rotated files and %d bytes. Older entries are gone; copy the rotated files off the PC to keep them.",
                name, details["first_seq"], details["last_seq"], size, self.keep, self.max_total)
            notes.append((CAPPED_ACTION, details))

    # -- a frozen copy ------------------------------------------------------------------
    def mark(self) -> AuditMark:
        """Where the log ends now (call it where the backup freezes its inputs)."""
        with self._lock:
            rotated = self.rotated_files()
            number = rotated[-1][0] + 1 if rotated else 1
            return AuditMark(self.path, _size_of(self.path), self._file("{}.{}".format(self.name, number)))

    def marked_bytes(self, mark: AuditMark) -> bytes:
        """The file ``mark`` was taken of, its first ``mark.length`` bytes cut back to the last complete line.

        Reads the rotated file when the current one was rotated since the mark.
        """
        with self._lock:
            path = mark.becomes if os.path.exists(mark.becomes) else mark.path
            try:
                f = open(path, "rb")
            except FileNotFoundError:
                return b""
        with f:
            data = f.read(mark.length)
        return data[:data.rfind(b"\n") + 1]

    # -- reading ------------------------------------------------------------------------
    def _chain(self) -> _Chain:
        """The files of the chain, walking back from the current file along ``audit.rotated`` entries."""
        rotated = self.rotated_files()
        files = [self.path]
        seen = {self.name}
        rotated_away = missing = None
        current = self.path
        while True:
            details = _rotated_entry(_parse(_first_line(current) or b""))
            name = details.get("file") if details else None
            number = self._number(str(name)) if name is not None else None
            if number is None or name in seen:
                break  # genesis, or a first line the forward check will judge
            path = self._file(str(name))
            if not os.path.exists(path):
                rotated_away = str(name)
                if any(n < number for n, _ in rotated):
                    missing = rotated_away
                break
            files.insert(0, path)
            seen.add(str(name))
            current = path
        unlinked = [name for _, name in rotated if name not in seen]
        return _Chain(files, rotated_away, missing, unlinked)

    def _open_chain(self) -> Tuple[_Chain, List[Tuple[str, IO[bytes], int]]]:
        """The chain and its files opened with their sizes now (under the lock: a rotation waits)."""
        with self._lock:
            chain = self._chain()
            handles: List[Tuple[str, IO[bytes], int]] = []
            try:
                for path in chain.files:
                    try:
                        f = open(path, "rb")
                    except FileNotFoundError:
                        continue  # only the current file may be missing (an empty log)
                    handles.append((path, f, os.fstat(f.fileno()).st_size))
            except BaseException:
                for _, f, _ in handles:
                    f.close()
                raise
        return chain, handles

    def _scan_report(self) -> VerifyReport:
        chain, handles = self._open_chain()
        try:
            return self._check(chain, handles)
        finally:
            for _, f, _ in handles:
                f.close()

    def _check(self, chain: _Chain, handles: List[Tuple[str, IO[bytes], int]]) -> VerifyReport:
        names = tuple(os.path.basename(path) for path, _, _ in handles)
        sealed: List[int] = []
        sealed_rotated: List[Tuple[str, int]] = []
        torn_tail = None
        total = 0
        prev, seq = GENESIS, 1
        first_seq = 1

        def report(broken: Optional[int] = None, broken_file: Optional[str] = None) -> VerifyReport:
            return VerifyReport(broken, sealed, torn_tail, total, broken_file, names, tuple(sealed_rotated),
                                chain.rotated_away, first_seq, tuple(chain.unlinked), chain.missing)

        if chain.missing is not None:
            return report(1, names[0] if names else self.name)
        previous: Optional[Tuple[str, int, int]] = None  # name, lines, bytes of the file before
        for index, (path, f, size) in enumerate(handles):
            name = os.path.basename(path)
            current = path == self.path
            count = 0
            for number, raw, following in _lines(f, size):
                total += 1
                count = number
                if number == 1:
                    entry = _parse(raw)
                    details = _rotated_entry(entry) if raw.endswith(b"\n") else None
                    if index == 0 and chain.rotated_away is not None:
                        # the oldest kept file continues one the cap dropped: its first entry starts the chain
                        if (details is None or details.get("file") != chain.rotated_away
                                or not isinstance(entry.get("seq"), int) or not isinstance(entry.get("prev"), str)):
                            return report(1, name)
                        prev, seq = entry["prev"], entry["seq"]
                        first_seq = seq
                    elif previous is not None:
                        if details is None or (details.get("file"), details.get("lines"), details.get("bytes"),
                                               details.get("last_seq"), details.get("last_hash")) != (
                                previous[0], previous[1], previous[2], seq - 1, prev):
                            return report(1, name)
                if following is not None and raw.endswith(b"\n") and _seals(_parse(following), raw[:-1], prev, seq):
                    (sealed.append(number) if current else sealed_rotated.append((name, number)))
                    continue
                if not raw.endswith(b"\n"):
                    if not current:
                        return report(number, name)
                    torn_tail = number
                    return report()
                entry = _parse(raw)
                if entry is None or entry.get("prev") != prev or entry.get("seq") != seq:
                    return report(number, name)
                prev, seq = line_hash(raw), seq + 1
            previous = (name, count, size)
        return report()

    def verify_report(self) -> VerifyReport:
        """Check the whole chain over the kept files: the first broken line, the sealed torn lines before it."""
        return self._scan_report()

    def verify(self) -> Optional[int]:
        """None when the chain holds (sealed torn lines included); else the 1-based number of the first broken line
        (in ``verify_report().broken_file``)."""
        return self.verify_report().broken

    def entries(self) -> Iterator[Dict[str, Any]]:
        """Every readable entry of the chain's files in order (for listing; ``verify()`` checks the chain).

        Torn lines are skipped: a line followed by its seal, a last line without newline,
        and lines that are not JSON objects.
        """
        _, handles = self._open_chain()
        try:
            for _, f, size in handles:
                yield from _entries(f, size)
        finally:
            for _, f, _ in handles:
                f.close()

    def last_entries(self, count: int) -> List[Dict[str, Any]]:
        """The last ``count`` readable entries (newest last), reading only the newest files needed."""
        _, handles = self._open_chain()
        out: List[Dict[str, Any]] = []
        try:
            for _, f, size in reversed(handles):
                if len(out) >= count:
                    break
                out = list(_entries(f, size)) + out
        finally:
            for _, f, _ in handles:
                f.close()
        return out[-count:] if count > 0 else []


def _entries(f: IO[bytes], size: int) -> Iterator[Dict[str, Any]]:
    for _, raw, following in _lines(f, size):
        if not raw.endswith(b"\n"):
            return
        entry = _parse(following) if following is not None else None
        if entry is not None and entry.get("action") == SEAL_ACTION and _seals(
                entry, raw[:-1], entry.get("prev"), entry.get("seq")):
            continue
        entry = _parse(raw)
        if entry is not None:
            yield entry


def _lines(f: IO[bytes], size: int) -> Iterator[Tuple[int, bytes, Optional[bytes]]]:
    """(number, line, next line) for the lines in the first ``size`` bytes of ``f``, lines with their newline."""
    f.seek(0)
    left = [size]

    def read() -> Optional[bytes]:
        if left[0] <= 0:
            return None
        raw = f.readline(left[0])
        if not raw:
            return None
        left[0] -= len(raw)
        return raw

    raw = read()
    number = 0
    while raw is not None:
        number += 1
        following = read()
        yield number, raw, following
        raw = following


def _lines_of(path: str) -> Iterator[Tuple[int, bytes, Optional[bytes]]]:
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        yield from _lines(f, os.fstat(f.fileno()).st_size)


def _count_lines(path: str, size: int) -> int:
    """The number of newlines in the first ``size`` bytes of the file."""
    count = 0
    with open(path, "rb") as f:
        left = size
        while left > 0:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            count += chunk.count(b"\n")
            left -= len(chunk)
    return count


def _first_line(path: str) -> Optional[bytes]:
    """The file's first complete line without its newline (None: no file, or no complete line)."""
    try:
        with open(path, "rb") as f:
            raw = f.readline(_TAIL_BYTES)
    except FileNotFoundError:
        return None
    return raw[:-1] if raw.endswith(b"\n") else None


def _last_complete_line(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            return _last_line(f, _last_newline(f, size) + 1)
    except FileNotFoundError:
        return None


def _rename(src: str, dst: str) -> None:
    """One rename of a rotation (a module function, so that a test can make it fail)."""
    os.replace(src, dst)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _size_of(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _last_newline(f: Any, end: int) -> int:
    """The offset of the last ``\\n`` before ``end`` in the open file ``f`` (-1: none)."""
    pos = end
    while pos > 0:
        start = max(0, pos - _TAIL_BYTES)
        f.seek(start)
        i = f.read(pos - start).rfind(b"\n")
        if i >= 0:
            return start + i
        pos = start
    return -1


def _last_line(f: Any, end: int) -> Optional[bytes]:
    """The complete line ending at ``end`` (its newline at ``end - 1``), without the newline; None at 0."""
    if end <= 0:
        return None
    start = _last_newline(f, end - 1) + 1
    f.seek(start)
    return f.read(end - 1 - start)
