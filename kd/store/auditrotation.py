"""Rotating the audit log by size and capping its rotated files, each step safe to be killed after.

``Rotation`` is the part of ``kd.store.audit.AuditLog`` that rotates: its methods run
under the log's lock and move the log's chain state (size, seq, last hash) on.
``finish_rotation()`` completes or undoes, at open, a rotation a kill interrupted. The
steps, the ``audit.rotated`` and ``audit.capped`` entries and the limits are in the
docstring of ``kd.store.audit`` ("Rotation", "The cap") and in docs/formats.md ("审计日志").
"""

import logging
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from kd import fileio
from kd.store.auditfiles import (
    CAPPED_ACTION,
    NEW_SUFFIX,
    ROTATED_ACTION,
    SYSTEM_ACTOR,
    TAIL_BYTES,
    AuditFiles,
    count_lines,
    encode_entry,
    first_line,
    last_complete_line,
    line_hash,
    parse_entry,
    rotated_details,
    size_of,
)

log = logging.getLogger(__name__)

#: after a failed rotation, the next try waits until the file grew by this much
ROTATE_RETRY_BYTES = 1024 * 1024

#: what the log tells its listener after the lock is released: (action, details)
Notes = List[Tuple[str, Dict[str, Any]]]


def _rename(src: str, dst: str) -> None:
    """One rename of a rotation (a module function, so that a test can make it fail)."""
    os.replace(src, dst)


def finish_rotation(names: AuditFiles) -> None:
    """Complete or undo a rotation a kill interrupted (see the docstring of ``kd.store.audit``)."""
    path = names.path
    new = path + NEW_SUFFIX
    if not os.path.lexists(new):
        return
    if os.path.lexists(path):
        log.warning("audit log %s: removing %s, left by a rotation interrupted before its rename "
                    "(nothing was rotated)", path, os.path.basename(new))
        os.remove(new)
        return
    with open(new, "rb") as f:
        head = f.readline(TAIL_BYTES)
    details = rotated_details(parse_entry(head)) if head.endswith(b"\n") else None
    name = str(details.get("file")) if details else ""
    if details is None or names.number(name) is None or size_of(names.file(name)) != details.get("bytes"):
        log.error("audit log %s: removing %s: it does not continue a kept rotated file", path,
                  os.path.basename(new))
        os.remove(new)
        return
    log.warning("audit log %s: finishing a rotation a kill interrupted (%s was rotated)", path, name)
    os.replace(new, path)
    fileio.fsync_dir(names.dir)


class Rotation:
    """Rotation and the cap, as a base of ``AuditLog`` (which sets these attributes and methods)."""

    path: str
    name: str
    dir: str
    names: AuditFiles
    keep: int
    max_total: int
    #: the current file's size after the last durable entry, the last entry's seq and line hash
    _size: int
    _seq: int
    _last_hash: str
    #: no rotation is tried before the file has this size (moved on after a failed rotation)
    _rotate_after: int
    _entry: Callable[[str, str, Optional[Dict[str, Any]]], Dict[str, Any]]
    _commit: Callable[[Dict[str, Any]], Dict[str, Any]]

    def _rotate(self, notes: Notes) -> bool:
        """Rotate the current file (lock held); False when it could not be done (logged; goes on in place).

        Raises ``OSError`` only when the current file was renamed but the new one could not
        take its name: the next append (or open) finishes the rotation.
        """
        name = self.names.next_rotated_name()
        target = self.names.file(name)
        new = self.path + NEW_SUFFIX
        details = {"file": name, "lines": count_lines(self.path, self._size), "bytes": self._size,
                   "last_seq": self._seq, "last_hash": self._last_hash}
        entry = self._entry(SYSTEM_ACTOR, ROTATED_ACTION, details)
        line = encode_entry(entry).encode("utf-8")
        try:
            with open(new, "wb") as f:
                f.write(line + b"\n")
                f.flush()
                os.fsync(f.fileno())
            if os.path.lexists(target):
                raise FileExistsError(target)
            _rename(self.path, target)
        except OSError as e:
            fileio.remove_quietly(new)
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

    def _cap(self, notes: Notes) -> None:
        """Drop the oldest rotated files beyond ``keep`` files or ``max_total`` bytes (lock held)."""
        files = [(name, size_of(self.names.file(name))) for _, name in self.names.rotated_files()]
        while files and (len(files) > self.keep or sum(size for _, size in files) > self.max_total):
            name, size = files.pop(0)
            path = self.names.file(name)
            first, last = first_line(path), last_complete_line(path)
            head, tail = parse_entry(first or b""), parse_entry(last or b"")
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
