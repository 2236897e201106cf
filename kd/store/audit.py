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

This module is the writer (opening, sealing, appending) and the public face; rotation and
the cap are in ``kd.store.auditrotation``, verification across files in
``kd.store.auditchain``, the file names and line primitives in ``kd.store.auditfiles``.
"""

import hashlib
import logging
import os
import threading
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

from kd import fileio
from kd.errors import StoreError
from kd.store.auditchain import Chain, Handle, VerifyReport, check_chain, find_chain
from kd.store.auditfiles import (
    CAPPED_ACTION,
    GENESIS,
    NEW_SUFFIX,
    ROTATED_ACTION,
    SEAL_ACTION,
    SEAL_ACTOR,
    SYSTEM_ACTOR,
    AuditFiles,
    encode_entry,
    last_line,
    last_newline,
    line_hash,
    lines_of,
    now_text,
    parse_entry,
    readable_entries,
    rotated_details,
    size_of,
)
from kd.store.auditrotation import ROTATE_RETRY_BYTES, Notes, Rotation, finish_rotation

__all__ = [
    "CAPPED_ACTION", "GENESIS", "KEEP", "MAX_BYTES", "MAX_TOTAL", "NEW_SUFFIX", "ROTATED_ACTION",
    "ROTATE_RETRY_BYTES", "SEAL_ACTION", "SEAL_ACTOR", "SYSTEM_ACTOR", "AuditLog", "AuditMark", "Notify",
    "VerifyReport", "line_hash",
]

log = logging.getLogger(__name__)

#: a file is rotated when an append would take it past this size
MAX_BYTES = 16 * 1024 * 1024
#: rotated files kept at most
KEEP = 8
#: bytes of rotated files kept at most
MAX_TOTAL = 128 * 1024 * 1024

Notify = Callable[[str, Dict[str, Any]], None]


class AuditMark(NamedTuple):
    """Where the log ended when ``mark()`` was called (for a backup's frozen inputs)."""

    path: str     # the current file then
    length: int   # its size then
    becomes: str  # the name that file gets if it is rotated meanwhile


class AuditLog(Rotation):
    """The audit log at ``path`` (and its rotated files next to it); ``append`` from any thread.

    ``notify(action, details)``, when set, is called (outside the log's lock, in the
    appending thread) for each ``audit.rotated`` and ``audit.capped`` entry the log writes.
    """

    def __init__(self, path: str, *, max_bytes: int = MAX_BYTES, keep: int = KEEP,
                 max_total: int = MAX_TOTAL) -> None:
        self.names = AuditFiles(path)
        self.path, self.dir, self.name = self.names.path, self.names.dir, self.names.name
        self.max_bytes = max_bytes
        self.keep = keep
        self.max_total = max_total
        self.notify: Optional[Notify] = None
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
            raise fileio.access_refused("无法读取审计日志", self.path, e) from e

    def rotated_files(self) -> List[Tuple[int, str]]:
        """The rotated files kept next to the log: (number, name), oldest first."""
        return self.names.rotated_files()

    # -- the tail -----------------------------------------------------------------------
    def _recover_tail(self, at_open: bool = False) -> None:
        """Read the chain's end from disk; seal a torn last line. Sets size, seq and last hash.

        First finishes a rotation a kill interrupted. At open, a seal that cannot be
        written yet (a full disk) is logged and left to the next append, so that the log
        can still be read.
        """
        finish_rotation(self.names)
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            self._size, self._last_hash, self._seq = 0, GENESIS, 0
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            end = last_newline(f, size) + 1  # 0 when there is no complete line
            torn = b""
            if end < size:
                f.seek(end)
                torn = f.read(size - end)
            last = last_line(f, end)
        if last is None:
            last_hash, seq = GENESIS, 0
        else:
            entry = parse_entry(last)
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

    def _count_entries(self) -> int:
        """Entries up to the end of the file (when its last line is unreadable): the seq the chain reached.

        Complete lines, less one torn line per seal entry, after the seq the file's
        ``audit.rotated`` first entry carries on from.
        """
        count = 0
        base = 0
        for number, raw, _ in lines_of(self.path):
            if not raw.endswith(b"\n"):
                break
            entry = parse_entry(raw)
            if number == 1 and entry is not None and rotated_details(entry) is not None \
                    and isinstance(entry.get("seq"), int):
                base = entry["seq"] - 1
            count += 0 if entry is not None and entry.get("action") == SEAL_ACTION else 1
        return base + count

    def _seal(self, torn: bytes, size: int) -> None:
        """Terminate the torn bytes at the end of the file and append their seal entry."""
        entry = self._entry(SEAL_ACTOR, SEAL_ACTION,
                            {"torn_bytes": len(torn), "torn_sha256": hashlib.sha256(torn).hexdigest()})
        line = encode_entry(entry).encode("utf-8")
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
        return {"seq": self._seq + 1, "time": now_text(), "actor": actor, "action": action,
                "details": details or {}, "prev": self._last_hash}

    def _commit(self, entry: Dict[str, Any]) -> Dict[str, Any]:
        """Write ``entry`` (built by ``_entry`` from the current state) at the end of the current file.

        Lock held; no rotation. Raises ``OSError`` (the file is as before).
        """
        line = encode_entry(entry).encode("utf-8")
        self._write(line + b"\n", self._size)
        self._size += len(line) + 1
        self._seq += 1
        self._last_hash = line_hash(line)
        return entry

    def append(self, actor: str, action: str, details: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Write one entry durably and return it (rotating the file first when it is full).

        Raises ``StoreError`` when it cannot be written (the file is as before the call).
        """
        notes: Notes = []
        with self._lock:
            try:
                if size_of(self.path) != self._size:  # a failed append left bytes we could not remove
                    self._recover_tail()
                entry = self._entry(actor, action, details)
                size = len(encode_entry(entry).encode("utf-8")) + 1
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

    def _tell(self, notes: Notes) -> None:
        notify = self.notify
        if notify is None:
            return
        for action, details in notes:
            try:
                notify(action, dict(details))
            except Exception:  # noqa: BLE001 - a listener must not fail the append that already happened
                log.exception("audit log listener failed on %s", action)

    def head(self) -> Tuple[int, str]:
        """(entries so far, SHA-256 of the last entry's line: its successor's ``prev``; GENESIS when empty)."""
        with self._lock:
            return self._seq, self._last_hash

    # -- a frozen copy ------------------------------------------------------------------
    def mark(self) -> AuditMark:
        """Where the log ends now (call it where the backup freezes its inputs)."""
        with self._lock:
            return AuditMark(self.path, size_of(self.path), self.names.file(self.names.next_rotated_name()))

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
    def _open_chain(self) -> Tuple[Chain, List[Handle]]:
        """The chain and its files opened with their sizes now (under the lock: a rotation waits)."""
        with self._lock:
            chain = find_chain(self.names)
            handles: List[Handle] = []
            try:
                for path in chain.files:
                    try:
                        f = open(path, "rb")
                    except FileNotFoundError:
                        continue  # only the current file may be missing (an empty log)
                    handles.append((path, f, os.fstat(f.fileno()).st_size))
            except BaseException:
                for _, handle, _ in handles:
                    handle.close()
                raise
        return chain, handles

    def verify_report(self) -> VerifyReport:
        """Check the whole chain over the kept files: the first broken line, the sealed torn lines before it."""
        chain, handles = self._open_chain()
        try:
            return check_chain(self.names, chain, handles)
        finally:
            for _, f, _ in handles:
                f.close()

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
                yield from readable_entries(f, size)
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
                out = list(readable_entries(f, size)) + out
        finally:
            for _, f, _ in handles:
                f.close()
        return out[-count:] if count > 0 else []
