"""The audit log's files and lines: names, line hashes, entry parsing, reading lines from the end or the start.

The building blocks ``kd.store.audit`` (the writer), ``kd.store.auditrotation`` (rotation
and the cap) and ``kd.store.auditchain`` (verification across files) share. The format of
the lines and of the rotated files is in the docstring of ``kd.store.audit`` and in
docs/formats.md ("审计日志"): ``audit.log`` is the current file, ``audit.log.<n>`` (``n``
from 1, the higher the newer) the rotated ones, ``audit.log.new`` the next current file
while a rotation is under way.
"""

import datetime
import hashlib
import json
import os
import re
from typing import IO, Any, Dict, Iterator, List, Optional, Tuple

GENESIS = "0" * 64
SEAL_ACTION = "audit.torn_tail_sealed"
ROTATED_ACTION = "audit.rotated"
CAPPED_ACTION = "audit.capped"
SEAL_ACTOR = SYSTEM_ACTOR = "system"
NEW_SUFFIX = ".new"
#: lines are read back in blocks of this size; a first line longer than this is not an ``audit.rotated`` entry
TAIL_BYTES = 1 << 16
#: one entry as its line's bytes are made of (compact JSON, non-ASCII kept), without the newline
encode_entry = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def line_hash(line: bytes) -> str:
    """The SHA-256 (hex) of a line, without its newline: the next entry's ``prev``."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def now_text() -> str:
    """The ``time`` of a new entry: local time with its offset, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


def parse_entry(raw: bytes) -> Optional[Dict[str, Any]]:
    """The entry a line holds; None when it is not a JSON object in UTF-8."""
    try:
        entry = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return entry if isinstance(entry, dict) else None


def seals(entry: Optional[Dict[str, Any]], torn: bytes, prev: Any, seq: Any) -> bool:
    """Whether ``entry`` is the seal of the torn line ``torn`` (without newline) after ``prev``, numbered ``seq``."""
    if entry is None or entry.get("action") != SEAL_ACTION or entry.get("actor") != SEAL_ACTOR:
        return False
    details = entry.get("details")
    return (isinstance(details, dict) and entry.get("prev") == prev and entry.get("seq") == seq
            and details.get("torn_bytes") == len(torn)
            and details.get("torn_sha256") == hashlib.sha256(torn).hexdigest())


def rotated_details(entry: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The details of an ``audit.rotated`` entry (None for any other line)."""
    if entry is None or entry.get("action") != ROTATED_ACTION or entry.get("actor") != SYSTEM_ACTOR:
        return None
    details = entry.get("details")
    return details if isinstance(details, dict) else None


class AuditFiles:
    """The names of one audit log: the current file at ``path`` and its rotated files next to it."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.dir, self.name = os.path.split(self.path)
        self._rotated_re = re.compile(r"^{}\.([1-9][0-9]{{0,8}})$".format(re.escape(self.name)))

    def rotated_files(self) -> List[Tuple[int, str]]:
        """The rotated files kept next to the log: (number, name), oldest first."""
        out: List[Tuple[int, str]] = []
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return out
        for name in names:
            m = self._rotated_re.match(name)
            if m is not None:
                out.append((int(m.group(1)), name))
        return sorted(out)

    def next_rotated_name(self) -> str:
        """The name the current file gets at the next rotation (a number is never reused)."""
        rotated = self.rotated_files()
        return "{}.{}".format(self.name, rotated[-1][0] + 1 if rotated else 1)

    def file(self, name: str) -> str:
        """The path of the file ``name`` in the log's folder."""
        return os.path.join(self.dir, name)

    def number(self, name: object) -> Optional[int]:
        """The number of a rotated file's name; None for any other value."""
        m = self._rotated_re.match(name) if isinstance(name, str) else None
        return int(m.group(1)) if m is not None else None


def readable_entries(f: IO[bytes], size: int) -> Iterator[Dict[str, Any]]:
    """The readable entries in the first ``size`` bytes of ``f``: sealed torn lines, a torn last line
    and lines that are not JSON objects are skipped."""
    for _, raw, following in read_lines(f, size):
        if not raw.endswith(b"\n"):
            return
        entry = parse_entry(following) if following is not None else None
        if entry is not None and entry.get("action") == SEAL_ACTION and seals(
                entry, raw[:-1], entry.get("prev"), entry.get("seq")):
            continue
        entry = parse_entry(raw)
        if entry is not None:
            yield entry


def read_lines(f: IO[bytes], size: int) -> Iterator[Tuple[int, bytes, Optional[bytes]]]:
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


def lines_of(path: str) -> Iterator[Tuple[int, bytes, Optional[bytes]]]:
    """``read_lines`` over the whole file at ``path`` (nothing when there is no file)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        yield from read_lines(f, os.fstat(f.fileno()).st_size)


def count_lines(path: str, size: int) -> int:
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


def first_line(path: str) -> Optional[bytes]:
    """The file's first complete line without its newline (None: no file, or no complete line)."""
    try:
        with open(path, "rb") as f:
            raw = f.readline(TAIL_BYTES)
    except FileNotFoundError:
        return None
    return raw[:-1] if raw.endswith(b"\n") else None


def last_complete_line(path: str) -> Optional[bytes]:
    """The file's last complete line without its newline (None: no file, or no complete line)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            return last_line(f, last_newline(f, size) + 1)
    except FileNotFoundError:
        return None


def size_of(path: str) -> int:
    """The file's size; 0 when there is none."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def last_newline(f: IO[bytes], end: int) -> int:
    """The offset of the last ``\\n`` before ``end`` in the open file ``f`` (-1: none)."""
    pos = end
    while pos > 0:
        start = max(0, pos - TAIL_BYTES)
        f.seek(start)
        i = f.read(pos - start).rfind(b"\n")
        if i >= 0:
            return start + i
        pos = start
    return -1


def last_line(f: IO[bytes], end: int) -> Optional[bytes]:
    """The complete line ending at ``end`` (its newline at ``end - 1``), without the newline; None at 0."""
    if end <= 0:
        return None
    start = last_newline(f, end - 1) + 1
    f.seek(start)
    return f.read(end - 1 - start)
