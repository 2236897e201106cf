"""The hash-chained audit log: chain, tampering, torn tails sealed, a full disk."""

import errno
import hashlib
import json
import logging
import os
import subprocess

import pytest

from kd.errors import StoreError
from kd.store.audit import GENESIS, AuditLog, line_hash


def test_chain_and_reopen(tmp_path):
    path = str(tmp_path / "audit.log")
    log = AuditLog(path)
    first = log.append("admin", "login", {"ip": "127.0.0.1"})
    assert first["prev"] == GENESIS and first["seq"] == 1
    log.append("system", "package.loaded", {"site": "11003", "名称": "考场"})
    log = AuditLog(path)
    third = log.append("admin", "logout")
    assert third["seq"] == 3
    assert log.verify() is None
    assert [e["action"] for e in log.entries()] == ["login", "package.loaded", "logout"]


def tamper(path, number, change):
    lines = open(path, "rb").read().splitlines(keepends=True)
    lines[number - 1] = change(lines[number - 1])
    open(path, "wb").write(b"".join(lines))


def test_verify_names_first_broken_line(tmp_path):
    path = str(tmp_path / "audit.log")
    log = AuditLog(path)
    for i in range(5):
        log.append("admin", "step", {"i": i})

    def edit(line):
        entry = json.loads(line)
        entry["details"]["i"] = 99
        return json.dumps(entry, separators=(",", ":")).encode() + b"\n"

    tamper(path, 3, edit)
    assert log.verify() == 4  # line 3 changed, so line 4's prev no longer matches


def test_removed_line_is_detected(tmp_path):
    path = str(tmp_path / "audit.log")
    log = AuditLog(path)
    for i in range(4):
        log.append("admin", "step", {"i": i})
    tamper(path, 2, lambda line: b"")
    assert log.verify() == 2


def lines_of(path):
    return open(path, "rb").read().split(b"\n")


def compact(entry):
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def two_entries(tmp_path):
    path = str(tmp_path / "audit.log")
    log = AuditLog(path)
    log.append("admin", "a")
    log.append("admin", "b")
    return path


TORN = b'{"seq":3,"time":"2026-11-26T08:00:00+08:00","actor":"ad'


def test_torn_last_line_is_sealed_on_open_not_cut(tmp_path, caplog):
    path = two_entries(tmp_path)
    with open(path, "ab") as f:
        f.write(TORN)
    with caplog.at_level(logging.CRITICAL):
        log = AuditLog(path)
    assert any("not tampering" in r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL)
    lines = lines_of(path)
    assert lines[2] == TORN  # the evidence is kept
    seal = json.loads(lines[3])
    assert seal["seq"] == 3 and seal["actor"] == "system" and seal["action"] == "audit.torn_tail_sealed"
    assert seal["details"] == {"torn_bytes": len(TORN), "torn_sha256": hashlib.sha256(TORN).hexdigest()}
    assert seal["prev"] == line_hash(lines[1])
    report = log.verify_report()
    assert report.broken is None and report.sealed == [3] and report.torn_tail is None
    assert log.verify() is None
    assert log.append("admin", "c")["seq"] == 4
    assert AuditLog(path).verify_report().sealed == [3]  # sealed once: reopening adds nothing
    assert len(lines_of(path)) == 6
    assert [e["action"] for e in log.entries()] == ["a", "b", "audit.torn_tail_sealed", "c"]


def test_a_whole_entry_without_its_newline_is_sealed_too(tmp_path):
    path = two_entries(tmp_path)
    last = lines_of(path)[1]
    whole = compact({"seq": 3, "time": "2026-11-26T08:00:00+08:00", "actor": "admin", "action": "x",
                     "details": {}, "prev": line_hash(last)})
    with open(path, "ab") as f:
        f.write(whole)  # killed before the newline: never acknowledged
    log = AuditLog(path)
    assert log.verify_report().sealed == [3] and log.verify() is None
    assert [e["action"] for e in log.entries()] == ["a", "b", "audit.torn_tail_sealed"]


def test_a_torn_only_line_is_sealed_from_genesis(tmp_path):
    path = str(tmp_path / "audit.log")
    open(path, "wb").write(b'{"seq":1,"ti')
    log = AuditLog(path)
    seal = json.loads(lines_of(path)[1])
    assert seal["prev"] == GENESIS and seal["seq"] == 1
    assert log.verify() is None and log.append("admin", "a")["seq"] == 2


def test_torn_bytes_found_before_an_append_are_sealed_first(tmp_path):
    """In-process: a failed append whose bytes could not be removed is sealed by the next one."""
    path = str(tmp_path / "audit.log")
    log = AuditLog(path)
    log.append("admin", "a")
    with open(path, "ab") as f:
        f.write(b'{"seq":2,"time":"2026-11-2')
    assert log.verify_report().torn_tail == 2  # not yet sealed, not tampering
    assert log.verify() is None
    assert log.append("admin", "b")["seq"] == 3
    assert log.verify_report().sealed == [2] and log.verify() is None
    assert [e["action"] for e in log.entries()] == ["a", "audit.torn_tail_sealed", "b"]


def forge(path, change):
    """Seal a torn tail, then rewrite its seal line with ``change(seal)``."""
    with open(path, "ab") as f:
        f.write(TORN)
    AuditLog(path)
    lines = lines_of(path)
    seal = json.loads(lines[3])
    change(seal)
    lines[3] = compact(seal)
    open(path, "wb").write(b"\n".join(lines))


@pytest.mark.parametrize("change", [
    lambda s: s["details"].update(torn_sha256="0" * 64),
    lambda s: s["details"].update(torn_bytes=3),
    lambda s: s.update(prev=GENESIS),
    lambda s: s.update(seq=9),
    lambda s: s.update(actor="admin"),
], ids=["hash", "length", "prev", "seq", "actor"])
def test_a_forged_seal_is_tampering(tmp_path, change):
    path = two_entries(tmp_path)
    forge(path, change)
    assert AuditLog(path).verify() == 3


def test_a_seal_inserted_to_hide_a_line_breaks_the_chain(tmp_path):
    path = str(tmp_path / "audit.log")
    log = AuditLog(path)
    for i in range(4):
        log.append("admin", "step", {"i": i})
    lines = lines_of(path)
    fake = compact({"seq": 2, "time": "2026-11-26T08:00:00+08:00", "actor": "system",
                    "action": "audit.torn_tail_sealed",
                    "details": {"torn_bytes": len(lines[1]), "torn_sha256": hashlib.sha256(lines[1]).hexdigest()},
                    "prev": line_hash(lines[0])})
    open(path, "wb").write(b"\n".join(lines[:2] + [fake] + lines[2:]))
    assert log.verify() == 4  # line 2 "sealed" by the fake, but line 4 chains to line 2, not to the seal


# -- a real full disk ---------------------------------------------------------------------------
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs: a file system that really fills up (needs root on Linux)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not os.path.exists("/proc/filesystems"):
        pytest.skip("mounting a tmpfs needs root on Linux")
    mount = tmp_path / "tiny"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                              capture_output=True, text=True, timeout=30)
    except OSError as e:
        pytest.skip("cannot run mount: {}".format(e))
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here: {}".format(done.stderr.strip()))
    try:
        yield str(mount)
    finally:
        subprocess.run(["umount", str(mount)], check=True, timeout=30)


def fill(folder):
    """Write a filler file until the disk is full; return its path."""
    filler = os.path.join(folder, "filler")
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(b"\0" * PAGE)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                return filler


def test_append_on_a_full_disk_leaves_no_partial_line(tiny_disk):
    path = os.path.join(tiny_disk, "audit.log")
    log = AuditLog(path)
    for i in range(3):
        log.append("admin", "step", {"i": i})
    good = open(path, "rb").read()
    filler = fill(tiny_disk)
    with pytest.raises(StoreError) as info:  # longer than the free rest of the file's last page
        log.append("admin", "big", {"text": "考" * PAGE})
    assert "无法写入审计日志" in str(info.value) and "磁盘空间" in str(info.value)
    assert open(path, "rb").read() == good  # the partial line was removed
    os.remove(filler)
    assert log.append("admin", "after", {"i": 3})["seq"] == 4
    assert log.verify() is None and AuditLog(path).verify_report() == (None, [], None, 4)


def test_torn_tail_on_a_full_disk_is_sealed_by_the_next_append(tiny_disk):
    path = os.path.join(tiny_disk, "audit.log")
    log = AuditLog(path)
    log.append("admin", "a")
    size = os.path.getsize(path)
    with open(path, "ab") as f:  # a torn line that ends exactly on a page: the seal needs a new page
        f.write(b'{"seq":2,"x":"' + b"y" * (PAGE - size - 14))
    assert os.path.getsize(path) == PAGE
    filler = fill(tiny_disk)
    log = AuditLog(path)  # opens (the seal waits), the log can be read
    assert os.path.getsize(path) == PAGE and log.verify_report().torn_tail == 2
    with pytest.raises(StoreError):
        log.append("admin", "b")
    assert os.path.getsize(path) == PAGE
    os.remove(filler)
    assert log.append("admin", "b")["seq"] == 3
    report = AuditLog(path).verify_report()
    assert report.broken is None and report.sealed == [2]


def test_an_unreadable_last_line_is_appended_after_and_named_by_verify(tmp_path):
    path = two_entries(tmp_path)
    with open(path, "ab") as f:
        f.write(b"not json\n")  # damage, not a torn tail: it has its newline
    log = AuditLog(path)
    assert log.append("admin", "c")["seq"] == 4
    assert log.verify() == 3
