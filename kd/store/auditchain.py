"""Verifying the audit log's hash chain across its kept files (``AuditLog.verify_report()``).

``find_chain()`` walks back from ``audit.log`` along the ``audit.rotated`` first entries
(each names its predecessor) to the oldest kept file of the chain; ``check_chain()`` then
checks the chain forward over those files, oldest first, and names the first broken line.
The rules (sealed torn lines, a file the cap dropped, a file missing in the middle,
rotated files not on the chain) are in the docstring of ``kd.store.audit``, "Verifying
across files", and in docs/formats.md ("审计日志").
"""

import os
from typing import IO, List, NamedTuple, Optional, Tuple

from kd.store.auditfiles import (
    GENESIS,
    AuditFiles,
    first_line,
    line_hash,
    parse_entry,
    read_lines,
    rotated_details,
    seals,
)

#: an opened file of the chain: (path, file, its size when opened)
Handle = Tuple[str, IO[bytes], int]


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


class Chain(NamedTuple):
    files: List[str]                # paths, oldest first, the current file last
    rotated_away: Optional[str]
    missing: Optional[str]
    unlinked: List[str]


def find_chain(names: AuditFiles) -> Chain:
    """The files of the chain, walking back from the current file along ``audit.rotated`` entries."""
    rotated = names.rotated_files()
    files = [names.path]
    seen = {names.name}
    rotated_away = missing = None
    current = names.path
    while True:
        details = rotated_details(parse_entry(first_line(current) or b""))
        name = details.get("file") if details else None
        number = names.number(str(name)) if name is not None else None
        if number is None or name in seen:
            break  # genesis, or a first line the forward check will judge
        path = names.file(str(name))
        if not os.path.exists(path):
            rotated_away = str(name)
            if any(n < number for n, _ in rotated):
                missing = rotated_away
            break
        files.insert(0, path)
        seen.add(str(name))
        current = path
    unlinked = [name for _, name in rotated if name not in seen]
    return Chain(files, rotated_away, missing, unlinked)


def check_chain(names: AuditFiles, chain: Chain, handles: List[Handle]) -> VerifyReport:
    """Check the chain forward over the opened files of ``chain`` (oldest first, the current file last)."""
    opened = tuple(os.path.basename(path) for path, _, _ in handles)
    sealed: List[int] = []
    sealed_rotated: List[Tuple[str, int]] = []
    torn_tail = None
    total = 0
    prev, seq = GENESIS, 1
    first_seq = 1

    def report(broken: Optional[int] = None, broken_file: Optional[str] = None) -> VerifyReport:
        return VerifyReport(broken, sealed, torn_tail, total, broken_file, opened, tuple(sealed_rotated),
                            chain.rotated_away, first_seq, tuple(chain.unlinked), chain.missing)

    if chain.missing is not None:
        return report(1, opened[0] if opened else names.name)
    previous: Optional[Tuple[str, int, int]] = None  # name, lines, bytes of the file before
    for index, (path, f, size) in enumerate(handles):
        name = os.path.basename(path)
        current = path == names.path
        count = 0
        for number, raw, following in read_lines(f, size):
            total += 1
            count = number
            if number == 1:
                entry = parse_entry(raw)
                details = rotated_details(entry) if raw.endswith(b"\n") else None
                if index == 0 and chain.rotated_away is not None:
                    # the oldest kept file continues one the cap dropped: its first entry starts the chain
                    if (entry is None or details is None or details.get("file") != chain.rotated_away
                            or not isinstance(entry.get("seq"), int) or not isinstance(entry.get("prev"), str)):
                        return report(1, name)
                    prev, seq = entry["prev"], entry["seq"]
                    first_seq = seq
                elif previous is not None:
                    if details is None or (details.get("file"), details.get("lines"), details.get("bytes"),
                                           details.get("last_seq"), details.get("last_hash")) != (
                            previous[0], previous[1], previous[2], seq - 1, prev):
                        return report(1, name)
            if following is not None and raw.endswith(b"\n") and seals(parse_entry(following), raw[:-1], prev, seq):
                (sealed.append(number) if current else sealed_rotated.append((name, number)))
                continue
            if not raw.endswith(b"\n"):
                if not current:
                    return report(number, name)
                torn_tail = number
                return report()
            entry = parse_entry(raw)
            if entry is None or entry.get("prev") != prev or entry.get("seq") != seq:
                return report(number, name)
            prev, seq = line_hash(raw), seq + 1
        previous = (name, count, size)
    return report()
