"""The hash-chained audit log."""

import json

from kd.store.audit import GENESIS, AuditLog


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


def test_torn_last_line_is_cut_on_open(tmp_path):
    path = str(tmp_path / "audit.log")
    log = AuditLog(path)
    log.append("admin", "a")
    log.append("admin", "b")
    with open(path, "ab") as f:
        f.write(b'{"seq":3,"time":"2026')
    log = AuditLog(path)
    assert log.verify() is None
    assert log.append("admin", "c")["seq"] == 3
    assert log.verify() is None
