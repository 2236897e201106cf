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
    assert log.verify() is None and AuditLog(path).verify_report()[:4] == (None, [], None, 4)


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


# -- rotation -----------------------------------------------------------------------------------
def small_log(tmp_path, **kw):
    kw.setdefault("max_bytes", 4000)  # about 16 entries of fill_log
    kw.setdefault("keep", 3)
    kw.setdefault("max_total", 10 ** 6)
    return AuditLog(str(tmp_path / "audit.log"), **kw)


def fill_log(log, n, start=0):
    for i in range(start, start + n):
        log.append("admin", "step", {"i": i, "pad": "x" * 60})


def names(tmp_path):
    return sorted(n for n in os.listdir(str(tmp_path)) if n.startswith("audit.log"))


def first_entry(path):
    return json.loads(lines_of(path)[0])


def test_rotation_carries_the_chain_across_files(tmp_path):
    log = small_log(tmp_path)
    fill_log(log, 40)  # ~240 bytes each: a file holds about 16
    assert names(tmp_path) == ["audit.log", "audit.log.1", "audit.log.2"]
    for name in names(tmp_path):
        assert os.path.getsize(str(tmp_path / name)) <= 4000
    # the new file's first entry links to the last line of the one before, and says so
    for before, after in (("audit.log.1", "audit.log.2"), ("audit.log.2", "audit.log")):
        old = lines_of(str(tmp_path / before))
        head = first_entry(str(tmp_path / after))
        assert head["action"] == "audit.rotated" and head["actor"] == "system"
        assert head["prev"] == line_hash(old[-2]) == head["details"]["last_hash"]
        assert head["details"] == {"file": before, "lines": len(old) - 1, "bytes": os.path.getsize(
            str(tmp_path / before)), "last_seq": json.loads(old[-2])["seq"], "last_hash": line_hash(old[-2])}
        assert head["seq"] == json.loads(old[-2])["seq"] + 1  # seq goes on across files
    report = log.verify_report()
    assert report.ok and report.files == ("audit.log.1", "audit.log.2", "audit.log")
    assert report.rotated_away is None and report.first_seq == 1 and report.unlinked == ()
    steps = [e["details"]["i"] for e in log.entries() if e["action"] == "step"]
    assert steps == list(range(40))
    assert [e["details"]["i"] for e in log.last_entries(3)] == [37, 38, 39]
    last = max(e["seq"] for e in log.entries())
    reopened = small_log(tmp_path)  # reopening goes on from the current file's end
    assert reopened.append("admin", "after")["seq"] == last + 1
    assert reopened.verify() is None


def test_the_cap_drops_the_oldest_file_with_an_alarm(tmp_path, caplog):
    log = small_log(tmp_path, keep=2)
    told = []
    log.notify = lambda action, details: told.append((action, details))
    with caplog.at_level(logging.CRITICAL):
        fill_log(log, 60)
    kept = names(tmp_path)
    assert kept[0] == "audit.log" and len(kept) == 3 and "audit.log.1" not in kept
    capped = [d for a, d in told if a == "audit.capped"]
    assert [d["file"] for d in capped] == ["audit.log.{}".format(n) for n in range(1, len(capped) + 1)]
    assert capped[0]["first_seq"] == 1 and capped[0]["kept_files"] == 2 and capped[0]["keep"] == 2
    assert any("AUDIT LOG CAPPED" in r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL)
    logged = [e for e in log.entries() if e["action"] == "audit.capped"]
    assert [e["details"]["file"] for e in logged][-1] == capped[-1]["file"]  # audited in the log as well
    assert [a for a, _ in told].count("audit.rotated") == len(capped) + 2
    report = log.verify_report()
    assert report.ok and report.rotated_away == capped[-1]["file"] and report.first_seq > 1
    assert report.files == tuple(kept[1:]) + ("audit.log",)
    # a byte cap too: two files of ~4000 bytes do not fit 6000
    log = small_log(tmp_path / "b", keep=10, max_total=6000)
    fill_log(log, 60)
    assert len(names(tmp_path / "b")) == 2 and log.verify() is None


def test_verify_names_the_rotated_file_where_the_chain_breaks(tmp_path):
    log = small_log(tmp_path, keep=5)
    fill_log(log, 40)
    path = str(tmp_path / "audit.log.1")

    def edit(line):
        entry = json.loads(line)
        entry["details"]["i"] = 99
        return compact(entry) + b"\n"

    tamper(path, 3, edit)
    report = log.verify_report()
    assert (report.broken_file, report.broken) == ("audit.log.1", 4)
    tamper(path, 3, edit)  # (the same again: still broken)
    lines = lines_of(path)
    tamper(path, len(lines) - 1, edit)  # the last line: the next file's link no longer matches
    assert log.verify_report().broken_file in ("audit.log.1", "audit.log.2")


def test_a_changed_last_line_of_a_rotated_file_breaks_the_next_files_link(tmp_path):
    log = small_log(tmp_path, keep=5)
    fill_log(log, 40)
    path = str(tmp_path / "audit.log.1")
    lines = open(path, "rb").read().splitlines(keepends=True)
    open(path, "wb").write(b"".join(lines[:-1]))  # the last entry removed
    report = log.verify_report()
    assert (report.broken_file, report.broken) == ("audit.log.2", 1)


def test_a_missing_file_in_the_middle_is_not_rotated_away(tmp_path):
    log = small_log(tmp_path, keep=5)
    fill_log(log, 60)
    assert "audit.log.3" in names(tmp_path)
    os.remove(str(tmp_path / "audit.log.2"))
    report = log.verify_report()
    assert not report.ok and report.missing == "audit.log.2" and report.broken_file == "audit.log.3"
    os.remove(str(tmp_path / "audit.log.1"))  # now it is like the cap dropped the two oldest
    report = log.verify_report()
    assert report.ok and report.rotated_away == "audit.log.2" and report.files[0] == "audit.log.3"


def test_files_not_on_the_chain_are_listed(tmp_path):
    """系统恢复 brings back the backup's audit.log: rotated files made since are not on its chain."""
    log = small_log(tmp_path)
    fill_log(log, 5)
    backup = open(str(tmp_path / "audit.log"), "rb").read()
    fill_log(log, 30, start=5)
    open(str(tmp_path / "audit.log"), "wb").write(backup)
    log = small_log(tmp_path)
    report = log.verify_report()
    assert report.ok and report.files == ("audit.log",) and report.unlinked == ("audit.log.1", "audit.log.2")
    fill_log(log, 20)  # rotating again: a new number, never one in use
    report = log.verify_report()
    assert report.ok and "audit.log.3" in report.files and set(report.unlinked) >= {"audit.log.2"}


def test_mark_reads_the_frozen_file_after_a_rotation(tmp_path):
    log = small_log(tmp_path)
    fill_log(log, 3)
    mark = log.mark()
    frozen = open(mark.path, "rb").read()
    fill_log(log, 20, start=3)
    assert "audit.log.1" in names(tmp_path)
    assert log.marked_bytes(mark) == frozen


# -- a rotation interrupted -------------------------------------------------------------------------
def big(log, i):
    """An entry long enough to rotate a ``rotated_log``."""
    log.append("admin", "step", {"i": i, "pad": "x" * 400})


def rotated_log(tmp_path):
    """A log whose next ``big`` entry rotates it; returns (log, the current file's bytes, entries)."""
    log = small_log(tmp_path)
    path = str(tmp_path / "audit.log")
    fill_log(log, 1)
    one, n = os.path.getsize(path), 1
    while os.path.getsize(path) + 2 * one <= log.max_bytes:
        fill_log(log, 1, start=n)
        n += 1
    assert names(tmp_path) == ["audit.log"]
    return log, open(path, "rb").read(), n


def test_killed_before_the_rename_nothing_was_rotated(tmp_path):
    log, before, n = rotated_log(tmp_path)
    new = str(tmp_path / "audit.log.new")
    open(new, "wb").write(b'{"seq":14,"time":"2026-11-26T08:00:00+08:00","actor":"sys')  # step 1, torn
    log = small_log(tmp_path)
    assert names(tmp_path) == ["audit.log"] and open(str(tmp_path / "audit.log"), "rb").read() == before
    big(log, n)
    assert names(tmp_path) == ["audit.log", "audit.log.1"] and log.verify() is None


def test_killed_between_the_renames_the_rotation_is_finished(tmp_path, monkeypatch):
    log, before, n = rotated_log(tmp_path)
    import kd.store.auditrotation as audit_module

    real = audit_module._rename
    calls = []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise PermissionError(13, "held by another program", dst)
        real(src, dst)

    monkeypatch.setattr(audit_module, "_rename", second_fails)
    with pytest.raises(StoreError):
        big(log, n)
    monkeypatch.setattr(audit_module, "_rename", real)
    # the state a kill between the two renames leaves: no audit.log, audit.log.new next to audit.log.1
    assert names(tmp_path) == ["audit.log.1", "audit.log.new"]
    assert open(str(tmp_path / "audit.log.1"), "rb").read() == before
    reopened = small_log(tmp_path)  # at open (a restart) ...
    assert names(tmp_path) == ["audit.log", "audit.log.1"] and reopened.verify() is None
    assert first_entry(str(tmp_path / "audit.log"))["action"] == "audit.rotated"
    # ... and in process: the next append finishes it too
    log2, _, n = rotated_log(tmp_path / "b")
    monkeypatch.setattr(audit_module, "_rename", second_fails)
    calls.clear()
    with pytest.raises(StoreError):
        big(log2, n)
    monkeypatch.setattr(audit_module, "_rename", real)
    assert log2.append("admin", "step", {"i": n})["seq"] == n + 2  # n entries, the rotation entry, this one
    assert log2.verify() is None and names(tmp_path / "b") == ["audit.log", "audit.log.1"]


def test_a_rename_refused_goes_on_in_the_same_file(tmp_path, monkeypatch, caplog):
    """Windows refuses to rename a file another program holds open: logged, retried 1 MiB later."""
    log, _, n = rotated_log(tmp_path)
    import kd.store.auditrotation as audit_module

    def refuse(src, dst):
        raise PermissionError(13, "held by another program", src)

    monkeypatch.setattr(audit_module, "_rename", refuse)
    with caplog.at_level(logging.ERROR):
        for i in range(n, n + 5):
            big(log, i)
    assert names(tmp_path) == ["audit.log"] and log.verify() is None
    assert sum("could not rotate" in r.getMessage() for r in caplog.records) == 1  # not once per append
    assert [e["details"]["i"] for e in log.entries()][-1] == n + 4


def test_stale_new_file_without_a_kept_predecessor_is_dropped(tmp_path):
    path = str(tmp_path / "audit.log.new")
    open(path, "wb").write(compact({"seq": 5, "time": "t", "actor": "system", "action": "audit.rotated",
                                    "details": {"file": "audit.log.7", "bytes": 10}, "prev": GENESIS}) + b"\n")
    log = small_log(tmp_path)
    assert names(tmp_path) == [] and log.append("admin", "a")["seq"] == 1
