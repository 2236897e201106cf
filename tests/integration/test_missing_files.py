"""A data folder knows what it holds: deleted, rolled-back or unreadable DB files are refused by name.

Through real ``main.py`` processes (platform simulator over HTTP, dongle emulator over
``socket://``): a start never opens a deleted store as empty (``admin``/``888`` again,
drill mode again, registrations gone) and never rolls back in silence; ``repair-db`` is
the explicit way out, and it is audited.
"""

import json
import os

import pytest

from kd.store.audit import AuditLog
from tests.support.cli import cli_env, configure, kd, ok
from tests.support.fixtures import closed_after


def slots(data, name):
    return [os.path.join(data, "db", name + ".json" + s) for s in (".0", ".1")]


def generation(path):
    with open(path, "rb") as f:
        return json.loads(f.readline())["gen"]


env = closed_after(cli_env)


@pytest.fixture
def site(env):
    data = configure(env, "site")
    ok(kd(env, data, "load", "--json"))
    return data


def listing(data):
    return sorted(os.listdir(os.path.join(data, "db")))


@pytest.mark.parametrize("name", ["settings", "exam", "runtime"])
def test_a_deleted_store_is_refused_and_nothing_is_recreated(env, site, name):
    for path in slots(site, name):
        if os.path.exists(path):
            os.remove(path)
    before = listing(site)
    proc = kd(env, site, "status")
    assert proc.returncode == 2, proc.stderr
    assert name + ".json" in proc.stderr and "repair-db" in proc.stderr and "内部错误" not in proc.stderr
    assert listing(site) == before  # not opened as an empty store


def test_a_deleted_newer_generation_is_refused(env, site):
    newest = max((p for p in slots(site, "runtime") if os.path.exists(p)), key=generation)
    assert generation(newest) >= 2
    os.remove(newest)
    proc = kd(env, site, "rooms", "--json")
    assert proc.returncode == 2 and os.path.basename(newest) in proc.stderr, proc.stderr


def test_an_unreadable_store_file_is_named(env, site):
    path = slots(site, "exam")[0]
    if os.path.exists(path):
        os.remove(path)
    os.mkdir(path)  # an OS error on read, even for root
    proc = kd(env, site, "status")
    assert proc.returncode == 2, proc.stderr
    assert "exam.json" in proc.stderr and "内部错误" not in proc.stderr


def test_repair_db_is_the_explicit_way_out(env, site):
    newest = max((p for p in slots(site, "runtime") if os.path.exists(p)), key=generation)
    os.remove(newest)
    assert kd(env, site, "status").returncode == 2
    wrong = kd(env, site, "repair-db", "exam", "--stdin")
    assert wrong.returncode == 2 and "不是出问题的那一个" in wrong.stderr
    refused = kd(env, site, "repair-db", "runtime", "--stdin")  # no confirmation on stdin
    assert refused.returncode == 2 and "未确认" in refused.stderr
    assert kd(env, site, "status").returncode == 2
    done = kd(env, site, "repair-db", "runtime", "--stdin", stdin="runtime\n")  # after admin's password
    assert done.returncode == 0, done.stderr
    ok(kd(env, site, "status"))
    ok(kd(env, site, "rooms", "--json"))  # the accepted older generation opens normally from now on
    entries = [e for e in AuditLog(os.path.join(site, "audit.log")).entries() if e["action"] == "store.repaired"]
    assert len(entries) == 1 and entries[0]["details"]["store"] == "runtime"
    assert entries[0]["details"]["password_checked"] is True


def test_repair_db_asks_the_password_unless_settings_is_the_broken_store(env, site):
    newest = max((p for p in slots(site, "runtime") if os.path.exists(p)), key=generation)
    os.rename(newest, newest + ".aside")
    before = sorted(os.listdir(os.path.join(site, "db")))
    for wrong in (kd(env, site, "repair-db", "runtime", "--stdin", password="wrong-password", stdin="runtime\n"),
                  kd(env, site, "repair-db", "runtime", "--stdin", password=None, stdin="runtime\n")):
        assert wrong.returncode == 2 and ("账号或密码错误" in wrong.stderr or "--password-stdin" in wrong.stderr), \
            wrong.stderr
        assert "已按现有文件打开" not in wrong.stdout
    assert sorted(os.listdir(os.path.join(site, "db"))) == before
    assert kd(env, site, "status").returncode == 2  # still refused: nothing was accepted
    actions = [e["action"] for e in AuditLog(os.path.join(site, "audit.log")).entries()]
    assert "store.repaired" not in actions and actions[-1] == "account.login_failed"
    # settings gone: the accounts are gone with it, so only the typed name confirms
    os.rename(newest + ".aside", newest)
    for path in slots(site, "settings"):
        os.remove(path)
    refused = kd(env, site, "repair-db", "settings", "--stdin", "--password-stdin", password=None,
                 stdin="x\nsettings\n")
    assert refused.returncode == 2 and "不询问管理员密码" in refused.stderr, refused.stderr
    done = kd(env, site, "repair-db", "settings", "--stdin", stdin="settings\n")
    assert done.returncode == 0, done.stderr
    entries = [e for e in AuditLog(os.path.join(site, "audit.log")).entries() if e["action"] == "store.repaired"]
    assert [(e["details"]["store"], e["details"]["password_checked"]) for e in entries] == [("settings", False)]
