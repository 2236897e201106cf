"""The append-only audit log: hash-chained JSON lines, torn tails sealed, never cut.

Each line (UTF-8, ``\\n``-terminated) is one JSON object (compact, ``ensure_ascii=False``)::

    {"seq":1,"time":"2026-11-26T08:00:00+08:00","actor":"admin",
     "action":"package.loaded","details":{...},"prev":"<hex>"}

``prev`` is the SHA-256 of the previous entry's line bytes (without its newline); the
first entry's ``prev`` is 64 zeros. ``seq`` counts entries from 1. Changing, removing or
reordering a line breaks the chain at that line; ``verify()`` names the first broken line.

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
included, is the first broken line. The format is in docs/formats.md ("审计日志").
"""

import datetime
import hashlib
import json
import logging
import os
import threading
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

from kd.errors import StoreError

log = logging.getLogger(__name__)

GENESIS = "0" * 64
SEAL_ACTION = "audit.torn_tail_sealed"
SEAL_ACTOR = "system"
_TAIL_BYTES = 1 << 16
_dump = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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


class VerifyReport(NamedTuple):
    """What ``verify_report()`` found: line numbers are 1-based lines of the file."""

    #: the first line where the chain breaks (tampering or damage); None when it holds
    broken: Optional[int]
    #: torn lines (power cut, full disk) sealed by the seal entry on the next line
    sealed: List[int]
    #: the last line has no newline and no seal yet (sealed at the next open or append)
    torn_tail: Optional[int]
    #: lines checked (all of them, or up to the first broken one)
    lines: int

    @property
    def ok(self) -> bool:
        return self.broken is None


class AuditLog:
    """The audit log at ``path``; ``append`` from any thread."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        #: the file's size after the last durable entry: everything beyond it is unacknowledged
        self._size = 0
        self._last_hash, self._seq = GENESIS, 0
        try:
            self._recover_tail(at_open=True)
        except OSError as e:
            raise StoreError(
                "无法读取审计日志：{}（{}）".format(self.path, e.strerror or e),
                "请检查该文件和数据目录的访问权限，或暂时关闭杀毒软件的实时扫描后重试。",
                detail=repr(e),
            ) from e

    # -- the tail -----------------------------------------------------------------------
    def _recover_tail(self, at_open: bool = False) -> None:
        """Read the chain's end from disk; seal a torn last line. Sets size, seq and last hash.

        At open, a seal that cannot be written yet (a full disk) is logged and left to the
        next append, so that the log can still be read.
        """
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

    def _count_entries(self) -> int:
        """Complete lines, less one torn line per seal entry (when the last line is unreadable)."""
        count = 0
        for _, raw, _ in self._lines():
            if not raw.endswith(b"\n"):
                break
            entry = _parse(raw)
            count += 0 if entry is not None and entry.get("action") == SEAL_ACTION else 1
        return count

    def _seal(self, torn: bytes, size: int) -> None:
        """Terminate the torn bytes at the end of the file and append their seal entry."""
        entry = {
            "seq": self._seq + 1,
            "time": _now(),
            "actor": SEAL_ACTOR,
            "action": SEAL_ACTION,
            "details": {"torn_bytes": len(torn), "torn_sha256": hashlib.sha256(torn).hexdigest()},
            "prev": self._last_hash,
        }
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
    def append(self, actor: str, action: str, details: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Write one entry durably and return it.

        Raises ``StoreError`` when it cannot be written (the file is as before the call).
        """
        with self._lock:
            try:
                if _size_of(self.path) != self._size:  # a failed append left bytes we could not remove
                    self._recover_tail()
                entry = {
                    "seq": self._seq + 1,
                    "time": _now(),
                    "actor": actor,
                    "action": action,
                    "details": details or {},
                    "prev": self._last_hash,
                }
                line = _dump(entry).encode("utf-8")
                self._write(line + b"\n", self._size)
            except OSError as e:
                raise StoreError(
                    "无法写入审计日志：{}（{}）".format(self.path, getattr(e, "strerror", None) or e),
                    "请检查磁盘空间（磁盘可能已满）和数据目录的写入权限后重试；这次操作没有完成。",
                    detail=repr(e),
                ) from e
            self._size += len(line) + 1
            self._seq += 1
            self._last_hash = line_hash(line)
            return entry

    # -- reading ------------------------------------------------------------------------
    def _lines(self) -> Iterator[Tuple[int, bytes, Optional[bytes]]]:
        """(number, line, next line) for every line of the file, lines with their newline."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        with f:
            it = iter(f)
            raw = next(it, None)
            number = 0
            while raw is not None:
                number += 1
                following = next(it, None)
                yield number, raw, following
                raw = following

    def _walk(self) -> Iterator[Tuple[int, bytes, Optional[Dict[str, Any]], str]]:
        """Each line with its verdict: ``entry``, ``sealed`` (torn, seal follows), ``torn`` or ``broken``.

        Stops after the first ``broken`` line.
        """
        prev, seq = GENESIS, 1
        for number, raw, following in self._lines():
            if following is not None and raw.endswith(b"\n") and _seals(_parse(following), raw[:-1], prev, seq):
                yield number, raw, None, "sealed"
                continue
            if not raw.endswith(b"\n"):
                yield number, raw, None, "torn"
                return
            entry = _parse(raw)
            if entry is None or entry.get("prev") != prev or entry.get("seq") != seq:
                yield number, raw, entry, "broken"
                return
            yield number, raw, entry, "entry"
            prev, seq = line_hash(raw), seq + 1

    def _scan_report(self) -> VerifyReport:
        broken = torn = None
        sealed: List[int] = []
        lines = 0
        for number, _, _, verdict in self._walk():
            lines = number
            if verdict == "sealed":
                sealed.append(number)
            elif verdict == "torn":
                torn = number
            elif verdict == "broken":
                broken = number
        return VerifyReport(broken, sealed, torn, lines)

    def entries(self) -> Iterator[Dict[str, Any]]:
        """Every readable entry in file order (for listing; ``verify()`` checks the chain).

        Torn lines are skipped: a line followed by its seal, a last line without newline,
        and lines that are not JSON objects.
        """
        for _, raw, following in self._lines():
            if not raw.endswith(b"\n"):
                return
            entry = _parse(following) if following is not None else None
            if entry is not None and entry.get("action") == SEAL_ACTION and _seals(
                    entry, raw[:-1], entry.get("prev"), entry.get("seq")):
                continue
            entry = _parse(raw)
            if entry is not None:
                yield entry

    def verify_report(self) -> VerifyReport:
        """Check the whole chain: the first broken line, and the sealed torn lines before it."""
        with self._lock:
            return self._scan_report()

    def verify(self) -> Optional[int]:
        """None when the chain holds (sealed torn lines included); else the 1-based number of the first broken line."""
        return self.verify_report().broken


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
