"""The command line asks the administrator's password (issue 12 item 6), through real ``main.py`` processes.

Every command that changes state or exports data refuses without the password and with
a wrong one: exit 2, and nothing changed — every file of the data folder is the same
(a wrong password only adds its failed login: the account's failure count in the
settings store and one ``account.login_failed`` line in the audit log), no output
folder appears, the platform simulator got no request and the dongle kept its ticket.
Failures back off like the login window's, persisted across processes; the read-only
commands stay open; the terminal prompt (a real pseudo-terminal) and the stdin line
order work. Platform simulator over HTTP, dongle emulator over ``socket://``.
"""

import argparse
import base64
import hashlib
import json
import os
import select
import shutil
import subprocess
import sys

import pytest

from kd import cli
from kd.core import model
from kd.core.accounts import AccountService, LoginFailed
from kd.formats.result import PRESENT, build_result
from kd.platform.signer import write_offline_files
from kd.site import open_context
from kd.store.audit import AuditLog
from kd.store.database import open_stores
from tests.support.cli import MAIN, PARSER, PASSWORD, ROOT, cli_env, configure, kd, ok
from tests.support.env import SITE

#: files that change with every run and hold no exam data
VOLATILE = ("logs", "kaodian.lock")
#: what a login (right or wrong) may change: the account's record (its failure count) and its audit line
LOGIN_FILES = {"audit.log", "db/settings.json.0", "db/settings.json.1"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A configured, loaded site (admin's own password) and the files the commands take."""
    root = tmp_path_factory.mktemp("cli-password")
    env = cli_env(root, rooms=2, sessions=1, candidates=4, room_kb=4)
    try:
        template = configure(env, "template")
        ok(kd(env, template, "load"))
        files = {"room": env.sim.data.manifest()["rooms"][0]["code"]}
        offline = write_offline_files(env.sim.data, str(root / "offline"), ["package", "authorization"])
        files["zip"] = next(p for p in offline if p.endswith(".zip"))
        files["ptq"] = next(p for p in offline if p.endswith(".PTQ"))
        exported = json.loads(ok(kd(env, template, "export-site-info", str(root / "usb"), "--json")).stdout)
        files["kdinfo"] = exported["kdinfo"]
        files["bak"] = json.loads(ok(kd(env, template, "backup", str(root / "usb"), "--json")).stdout)["path"]
        files["result"] = result_package(env, str(root / "result.zip"), files["room"])
        files["key"] = str(root / "platform.pub")
        with open(files["key"], "w", encoding="ascii") as f:
            f.write(base64.b64encode(env.sim.public_key).decode("ascii"))
        yield env, root, template, files
    finally:
        env.close()


def result_package(env, path, room):
    manifest = env.sim.data.manifest()
    people = [c for c in manifest["candidates"] if c["room"] == room and c["session"] == "1"]
    data = build_result(site_code=manifest["site_code"], room_code=room, session_id="1", created_at=env.ctx.now(),
                        candidates=[{"ticket": c["ticket"], "subject": c["subject"], "status": PRESENT,
                                     "answer": c["ticket"].encode() * 10} for c in people])
    with open(path, "wb") as f:
        f.write(data)
    return path


def commands(env, files, out):
    """Every command that asks, with arguments it would run with; ``out`` is a folder that must not appear."""
    return {
        "load": ["load"],
        "load-zip": ["load", "--zip", files["zip"]],
        "rooms": ["rooms", "--json"],  # prints the registration codes
        "export-site-info": ["export-site-info", out],
        "restore-registration": ["restore-registration", files["kdinfo"]],
        "revoke": ["revoke", files["room"]],
        "authorize": ["authorize"],
        "authorize-ptq": ["authorize", "--ptq", files["ptq"]],
        "seal-check": ["seal-check", "--min-free-gb", "0"],
        "verify": ["verify", "--session", "1"],
        "outbox-send": ["outbox", "--send"],
        "recover": ["recover", files["result"]],
        "backup-external": ["backup-external", out],
        "upload": ["upload"],
        "setup-key": ["setup", "--site", SITE, "--mode", "formal",
                      "--platform-key", base64.b64encode(os.urandom(32)).decode("ascii")],
        "backup": ["backup", out],
        "restore": ["restore", files["bak"]],
        "to-formal": ["to-formal", "--yes"],
        "init": ["init", "--confirm", SITE],
        "sync-lock": ["sync-lock", "--lock", env.lock_url, "--platform", env.sim.url, "--site", SITE,
                      "--password", env.sim.password, "--trust", files["key"]],
    }


#: ids of ``commands()`` (pytest needs them before the fixture runs)
ASKING = ["load", "load-zip", "rooms", "export-site-info", "restore-registration", "revoke", "authorize",
          "authorize-ptq", "seal-check", "verify", "outbox-send", "recover", "backup-external", "upload", "setup-key",
          "backup", "restore", "to-formal", "init", "sync-lock"]
#: the commands those ids run (outbox asks with --send only); repair-db is tested in test_missing_files
ASKING_COMMANDS = {"load", "rooms", "export-site-info", "restore-registration", "revoke", "authorize", "seal-check",
                   "verify", "outbox", "recover", "backup-external", "upload", "setup", "backup", "restore",
                   "to-formal", "init", "sync-lock"}


def tree(data):
    """Every file of the data folder (but the log and the lock file) with its SHA-256."""
    out = {}
    for folder, dirs, names in os.walk(data):
        rel = os.path.relpath(folder, data)
        dirs[:] = [d for d in dirs if not (rel == "." and d in VOLATILE)]
        for name in names:
            path = os.path.join(folder, name)
            key = os.path.relpath(path, data).replace(os.sep, "/")
            if key in VOLATILE:
                continue
            with open(path, "rb") as f:
                out[key] = hashlib.sha256(f.read()).hexdigest()
    return out


def settings_of(data):
    stores = open_stores(data, must_exist=True)
    try:
        return {t: stores.settings.items(t) for t in stores.settings.tables()}
    finally:
        stores.close()


def actions(data):
    return [e["action"] for e in AuditLog(os.path.join(data, "audit.log")).entries()]


def copy(root, template, name):
    data = str(root / name)
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(template, data, ignore=shutil.ignore_patterns(*VOLATILE))
    return data


def asking_parsers(parser):
    """Where a command takes ``--password-stdin``: its parser, or, for a command with actions
    (``incident add``...), each action that changes state (``writes``: kd.cli.incidents)."""
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    if not nested:
        return [parser]
    return [p for p in nested[0].choices.values() if p.get_default("writes")]


def test_every_command_is_classified():
    """A command asks (and takes --password-stdin), checks its own password, or is open; the doc lists each."""
    subcommands = PARSER._subparsers._group_actions[0].choices  # noqa: SLF001 - where argparse keeps them
    names = set(subcommands)
    assert names <= ASKING_COMMANDS | cli.OWN_PASSWORD | cli.OPEN_COMMANDS | {"repair-db"}, \
        "classify the new command here and in docs/operations.md"
    for name in names - cli.OWN_PASSWORD - (cli.OPEN_COMMANDS - set(cli.STATE_OPTIONS)):
        for parser in asking_parsers(subcommands[name]):
            assert "--password-stdin" in parser._option_string_actions, name  # noqa: SLF001
    with open(os.path.join(ROOT, "docs", "operations.md"), encoding="utf-8") as f:
        doc = f.read()
    table = doc[doc.index("## 命令行与管理员密码"):]
    table = table[:table.index("\n## ", 3)]
    assert not [n for n in names if "| `{}".format(n) not in table]


@pytest.mark.parametrize("name", ASKING)
def test_refused_without_or_with_a_wrong_password_and_nothing_changes(site, name):
    env, root, template, files = site
    out = str(root / ("out-" + name))
    args = commands(env, files, out)[name]
    assert args[0] in ASKING_COMMANDS and cli.needs_password(PARSER.parse_args(args))
    data = copy(root, template, name)
    before, settings, audit = tree(data), settings_of(data), actions(data)
    requests, ticket = len(env.sim.requests()), env.emulator.dongle.state.ticket

    def unchanged(allowed=frozenset()):
        after = tree(data)
        assert {k for k in set(before) | set(after) if before.get(k) != after.get(k)} <= allowed
        assert not os.path.exists(out)
        assert len(env.sim.requests()) == requests and env.emulator.dongle.state.ticket == ticket

    # no password: stdin is not a terminal and no --password-stdin (a script): refused before anything
    proc = kd(env, data, *args, password=None)
    assert proc.returncode == 2 and "标准输入不是终端" in proc.stderr and "--password-stdin" in proc.stderr, \
        (proc.returncode, proc.stderr)
    unchanged()
    # --password-stdin with nothing on stdin
    proc = kd(env, data, *(args + ["--password-stdin"]), password=None)
    assert proc.returncode == 2 and "标准输入中缺少账号 admin 的密码" in proc.stderr, proc.stderr
    unchanged()
    # a wrong password: a failed login, counted; nothing else
    proc = kd(env, data, *args, password="not-the-password")
    assert proc.returncode == 2 and "账号或密码错误" in proc.stderr, (proc.returncode, proc.stderr)
    unchanged(LOGIN_FILES)
    now = settings_of(data)
    assert now[model.ACCOUNTS]["admin"]["failures"] == 1
    assert {t: v for t, v in now.items() if t != model.ACCOUNTS} == \
        {t: v for t, v in settings.items() if t != model.ACCOUNTS}
    assert actions(data) == audit + ["account.login_failed"]
    shutil.rmtree(data)


def test_backoff_persists_across_processes_and_matches_the_login_window(site):
    env, root, template, files = site
    data = copy(root, template, "backoff")

    def failures():
        return settings_of(data)[model.ACCOUNTS]["admin"]

    for n in (1, 2):  # each process counts, in the settings store
        refused = kd(env, data, "revoke", files["room"], password="guess-{}".format(n))
        assert refused.returncode == 2 and "账号或密码错误。" in refused.stderr, refused.stderr
        assert failures()["failures"] == n and failures()["locked_until"] is None
    stores = open_stores(data, must_exist=True)  # as after nine failures whose last wait is over
    try:
        stores.settings.update(model.ACCOUNTS, "admin", {"failures": 9})
    finally:
        stores.close()
    tenth = kd(env, data, "revoke", files["room"], password="guess-10")
    assert tenth.returncode == 2 and "已连续失败 10 次" in tenth.stderr and "请在 2 分 8 秒 后重试" in tenth.stderr, \
        tenth.stderr
    assert failures()["failures"] == 10 and failures()["locked_until"]
    before = tree(data)
    right = kd(env, data, "revoke", files["room"])  # the right password, another process: still locked
    assert right.returncode == 2 and "登录失败次数过多，暂时不能登录。" in right.stderr and "后重试" in right.stderr, \
        right.stderr
    assert tree(data) == before  # not counted again, and the room is still registered
    ctx = open_context(data)  # the login window's check over the same folder sees the same lock
    try:
        with pytest.raises(LoginFailed) as info:
            AccountService(ctx).login("admin", PASSWORD)
        assert info.value.wait_s > 60
    finally:
        ctx.stores.close()
    assert ok(kd(env, data, "status", password=None)).stdout  # status stays open meanwhile


def test_read_only_commands_stay_open_and_change_nothing(site):
    env, root, template, _files = site
    data = copy(root, template, "open")
    before = tree(data)
    for args in (["status"], ["status", "--json"], ["results"], ["monitor"], ["outbox"], ["audit"],
                 ["audit", "--verify"]):
        assert not cli.needs_password(PARSER.parse_args(args))
        proc = kd(env, data, *args, password=None)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "密码" not in proc.stderr
    assert json.loads(kd(env, data, "status", "--json", password=None).stdout)["site_code"] == SITE
    assert tree(data) == before
    version = subprocess.run([sys.executable, MAIN, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("kaodian ")


def test_the_initial_password_rule_comes_first(site):
    env, root, template, files = site
    data = copy(root, template, "initial")
    stores = open_stores(data, must_exist=True)
    try:
        stores.settings.update(model.ACCOUNTS, "admin", {"must_change": True})
    finally:
        stores.close()
    before = tree(data)
    proc = kd(env, data, "revoke", files["room"])  # refused before the password is even asked
    assert proc.returncode == 2 and "仍在使用初始密码" in proc.stderr, proc.stderr
    assert tree(data) == before


def test_stdin_line_order_of_to_formal(site):
    env, root, _template, _files = site
    data = configure(env, "mock")
    stores = open_stores(data)
    try:
        stores.settings.update(model.SETTINGS, model.SITE, {"mode": model.MOCK})
    finally:
        stores.close()
    ok(kd(env, data, "status"))  # the first start writes the folder manifest and the stores' files
    before = tree(data)
    cancelled = kd(env, data, "to-formal", stdin="no\n")  # line 1 the password, line 2 the confirmation
    assert cancelled.returncode == 2 and "已取消模考转正考" in cancelled.stderr, cancelled.stderr
    after = tree(data)
    assert {k for k in set(after) | set(before) if after.get(k) != before.get(k)} <= LOGIN_FILES
    assert actions(data)[-1] == "account.login"  # the password was right: only its login is recorded
    assert settings_of(data)[model.SETTINGS][model.SITE]["mode"] == model.MOCK
    ok(kd(env, data, "to-formal", "--json", stdin="yes\n"))
    assert json.loads(ok(kd(env, data, "status", "--json")).stdout)["mode"] == "formal"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pseudo-terminal as the controlling terminal")
def test_the_prompt_on_a_terminal(site):
    """Without --password-stdin on a terminal: getpass asks there (not on stdout), no echo."""
    env, root, template, _files = site
    data = copy(root, template, "tty")

    def on_terminal(password, *args):
        master, slave = os.openpty()
        wrapper = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                   "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
        proc_env = dict(os.environ, PYTHONIOENCODING="utf-8")
        proc_env.pop("KD_DATA_DIR", None)
        proc = subprocess.Popen([sys.executable, "-c", wrapper, MAIN, "--data-dir", data, "--lock", env.lock_url]
                                + list(args), stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=ROOT, env=proc_env, start_new_session=True)
        os.close(slave)
        seen = b""
        try:
            while "的密码：".encode() not in seen:  # the prompt, on the terminal
                ready, _, _ = select.select([master], [], [], 60)
                assert ready, "no prompt: " + seen.decode("utf-8", "replace")
                seen += os.read(master, 1024)
            os.write(master, password.encode("utf-8") + b"\n")
            out, err = proc.communicate(timeout=120)
            while select.select([master], [], [], 0)[0]:  # what else the terminal showed (no echo)
                try:
                    chunk = os.read(master, 1024)
                except OSError:  # EIO: the terminal's last process ended
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            os.close(master)
        return proc.returncode, seen.decode("utf-8"), out.decode("utf-8"), err.decode("utf-8")

    rc, terminal, out, err = on_terminal(PASSWORD, "rooms", "--json")
    assert rc == 0, err
    assert "账号 admin 的密码：" in terminal and PASSWORD not in terminal
    assert json.loads(out)["registration"]["rooms"]  # stdout is the JSON alone
    rc, _terminal, out, err = on_terminal("wrong-one", "rooms", "--json")
    assert rc == 2 and "账号或密码错误" in err and out == ""
