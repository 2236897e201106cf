"""``audit --verify``: the handler on a real audit log, and ``main.py`` as a process (drill mode)."""

import argparse
import inspect
import json
import os
import subprocess
import sys
import types

import pytest

from kd.cli import Session
from kd.cli import audit as audit_cli
from kd.errors import UserError
from kd.store.audit import AuditLog

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAIN = os.path.join(ROOT, "main.py")


def sealed_log(data):
    """An audit log with a torn line 3 (a power cut mid-append), sealed at the next open."""
    path = os.path.join(data, "audit.log")
    log = AuditLog(path)
    log.append("admin", "a")
    log.append("admin", "b")
    with open(path, "ab") as f:
        f.write(b'{"seq":3,"time":"2026-11-')
    AuditLog(path).append("admin", "c")
    return path


def forge_seal(path):
    lines = open(path, "rb").read().split(b"\n")
    seal = json.loads(lines[3])
    seal["details"]["torn_sha256"] = "0" * 64
    lines[3] = json.dumps(seal, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    open(path, "wb").write(b"\n".join(lines))


def run_handler(data, *args):
    parser = argparse.ArgumentParser()
    audit_cli.register(parser.add_subparsers(dest="command"))
    opts = parser.parse_args(["audit", "--verify"] + list(args))
    ctx = types.SimpleNamespace(audit=AuditLog(os.path.join(data, "audit.log")))  # the handler uses only the log
    if len(inspect.signature(Session).parameters) == 2:  # Session(opts, site)
        session = Session(opts, types.SimpleNamespace(data_dir=data, ctx=ctx, gate=None, core=None))
    else:  # Session(opts, data_dir, ctx, gate)
        session = Session(opts, data, ctx, None)
    return opts.handler(session)


def test_verify_lists_sealed_torn_lines_and_refuses_tampering(tmp_path, capsys):
    data = str(tmp_path)
    path = sealed_log(data)
    assert run_handler(data) == 0
    assert capsys.readouterr().out.splitlines() == ["审计日志完整。", "第 3 行：断电或磁盘满造成的残缺记录，已封存。"]
    assert run_handler(data, "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "sealed": [3], "torn_tail": None,
                                                   "files": ["audit.log"], "sealed_rotated": [], "rotated_away": None,
                                                   "first_seq": 1, "unlinked": []}
    forge_seal(path)
    with pytest.raises(UserError) as info:
        run_handler(data)
    assert "第 3 行校验失败" in str(info.value)


def main_py(data_dir, *args):
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    for name in ("KD_DATA_DIR", "KD_LOCK_URL"):
        env.pop(name, None)
    return subprocess.run([sys.executable, MAIN, "--data-dir", data_dir] + list(args),
                          cwd=ROOT, env=env, capture_output=True, text=True, encoding="utf-8", timeout=120)


def test_main_py_audit_verify(tmp_path):
    data = str(tmp_path / "data")
    first = main_py(data, "audit", "--verify")  # a new data folder, made the way the app makes it
    assert first.returncode == 0 and first.stdout.splitlines() == ["审计日志完整。"], first.stderr
    path = sealed_log(data)
    done = main_py(data, "audit", "--verify")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["审计日志完整。", "第 3 行：断电或磁盘满造成的残缺记录，已封存。"]
    forge_seal(path)
    done = main_py(data, "audit", "--verify")
    assert done.returncode == 2 and "第 3 行校验失败" in done.stderr, (done.returncode, done.stderr)


def rotated_log(data, keep=2):
    """An audit log rotated several times (tiny files), the cap dropping the oldest."""
    log = AuditLog(os.path.join(data, "audit.log"), max_bytes=2000, keep=keep, max_total=10 ** 6)
    for i in range(40):
        log.append("admin", "step", {"i": i, "pad": "x" * 60})
    return sorted(n for n in os.listdir(data) if n.startswith("audit.log."))


def test_verify_across_rotated_files(tmp_path, capsys):
    data = str(tmp_path)
    kept = rotated_log(data)
    assert len(kept) == 2
    assert run_handler(data) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "审计日志完整。"
    assert out[1] == "已校验 3 个文件：{}、{}、audit.log。".format(*kept)
    assert "已因容量上限被删除" in out[2] and "哈希链从第" in out[2]
    assert run_handler(data, "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["files"] == kept + ["audit.log"] and doc["rotated_away"] and doc["first_seq"] > 1
    lines = open(os.path.join(data, kept[-1]), "rb").read().splitlines()
    path = os.path.join(data, kept[-1])
    open(path, "wb").write(b"\n".join(lines[:2] + lines[3:]) + b"\n")  # a line removed from a rotated file
    with pytest.raises(UserError) as info:
        run_handler(data)
    assert "{} 第 3 行校验失败".format(kept[-1]) in str(info.value)


def test_verify_names_a_missing_file_in_the_middle(tmp_path):
    data = str(tmp_path)
    kept = rotated_log(data, keep=5)
    assert len(kept) >= 3
    os.remove(os.path.join(data, kept[1]))
    with pytest.raises(UserError) as info:
        run_handler(data)
    assert "{} 缺失".format(kept[1]) in str(info.value) and kept[2] in str(info.value)
