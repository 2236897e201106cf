"""The append-only audit log: hash-chained JSON lines.

Each line (UTF-8, ``\\n``-terminated) is one JSON object::

    {"seq": 1, "time": "2026-11-26T08:00:00+08:00", "actor": "admin",
     "action": "package.loaded", "details": {...}, "prev": "<hex>"}

``prev`` is the SHA-256 of the previous line's bytes (without its newline); the first
line's ``prev`` is 64 zeros. ``seq`` counts from 1. Changing, removing or reordering a
line breaks the chain at that line; ``verify()`` names the first broken line.

``append()`` writes the line, flushes and fsyncs before it returns. A torn last line (a
crash mid-append, never acknowledged) is cut off when the log is opened, with a warning.
"""

import datetime
import hashlib
import json
import logging
import os
import threading
from typing import Any, Dict, Iterator, Optional, Tuple

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_TAIL_BYTES = 1 << 16


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


class AuditLog:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._last_hash, self._seq = self._recover_tail()

    def _recover_tail(self) -> Tuple[str, int]:
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return GENESIS, 0
        with open(self.path, "r+b") as f:
            start = max(0, size - _TAIL_BYTES)
            f.seek(start)
            tail = f.read()
            if tail and not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n") + 1  # 0 when the torn line is the only one
                log.warning("audit log %s: cutting a torn last line (%d bytes)", self.path, len(tail) - cut)
                f.truncate(start + cut)
                f.flush()
                os.fsync(f.fileno())
                tail = tail[:cut]
            lines = tail.splitlines()
            if not lines:
                return GENESIS, 0
            last = lines[-1]
            try:
                seq = int(json.loads(last.decode("utf-8"))["seq"])
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                log.error("audit log %s: last line unreadable; appending after it (verify() will name it)", self.path)
                f.seek(0)
                seq = sum(1 for _ in f)
            return line_hash(last), seq

    def append(self, actor: str, action: str, details: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Write one entry durably and return it."""
        with self._lock:
            entry = {
                "seq": self._seq + 1,
                "time": _now(),
                "actor": actor,
                "action": action,
                "details": details or {},
                "prev": self._last_hash,
            }
            line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            with open(self.path, "ab") as f:
                f.write(line + b"\n")
                f.flush()
                os.fsync(f.fileno())
            self._seq += 1
            self._last_hash = line_hash(line)
            return entry

    def entries(self) -> Iterator[Dict[str, Any]]:
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as f:
            for raw in f:
                yield json.loads(raw.decode("utf-8"))

    def verify(self) -> Optional[int]:
        """None when the chain holds; else the 1-based number of the first broken line."""
        prev = GENESIS
        if not os.path.exists(self.path):
            return None
        with self._lock, open(self.path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    entry = json.loads(raw.decode("utf-8"))
                    ok = isinstance(entry, dict) and entry.get("prev") == prev and entry.get("seq") == number
                except (ValueError, UnicodeDecodeError):
                    ok = False
                if not ok or not raw.endswith(b"\n"):
                    return number
                prev = line_hash(raw)
        return None
