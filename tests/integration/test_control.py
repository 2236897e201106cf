"""The command line reaches a running site (issue 13 item 4): real ``main.py`` processes.

A real ``main.py --headless`` holds a drill data folder (the drill platform and dongle
emulator it starts itself, ``--lan-port 0``); real ``main.py <command>`` processes run
against it over the control channel (kd.control), and a real proctor client talks to its
LAN service. Checked: the same output and exit codes as on the folder (``status``, user
errors, compared with the same commands once the instance stopped), live monitoring,
``revoke`` with the password (the proctor is cut off), a wrong password (exit 2, the
back-off of the login, audited), stdin lines and a terminal prompt, ``load --zip`` with
a path relative to the command line, and the commands that still need the folder (exit 3).
"""

import datetime
import hashlib
import json
import os
import re
import select
import signal
import subprocess
import sys

import pytest

from kd.core import model
from kd.core.accounts import ITERATIONS
from kd.formats.timeutil import CST, format_time
from kd.lan.client import LanError, ProctorClient
from kd.platform.signer import write_offline_files
from kd.platform.simdata import SimData
from kd.store.database import open_stores

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAIN = os.path.join(ROOT, "main.py")
SITE = "11003"
PASSWORD = "exam-day-2026"  # noqa: S105 - test accounts' passwords
OPS_PASSWORD = "ops-2026-pw"  # noqa: S105
CLERK_PASSWORD = "clerk-2026-pw"  # noqa: S105
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", re.M)


def account(user, password, **extra):
    salt = os.urandom(16)
    doc = {"user": user, "salt": salt.hex(), "iterations": ITERATIONS,
           "hash": hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS).hex(),
           "must_change": False, "failures": 0, "locked_until": None, "changed_at": "2026-11-20T08:00:00+08:00"}
    doc.update(extra)
    return doc


def prepare(data):
    """A drill data folder after first login: site 11003 (mock), a small drill platform, three accounts."""
    stores = open_stores(data)
    try:
        stores.settings.put(model.SETTINGS, model.SITE, {
            "site_code": SITE, "mode": model.MOCK, "drill": True,
            "configured_at": format_time(datetime.datetime.now(CST))})
        stores.settings.put(model.ACCOUNTS, "admin", account("admin", PASSWORD))
        # as after nine wrong passwords whose last wait is over: the next failure waits 2 min 8 s
        stores.settings.put(model.ACCOUNTS, "ops", account("ops", OPS_PASSWORD, failures=9))
        stores.settings.put(model.ACCOUNTS, "clerk", account("clerk", CLERK_PASSWORD))
    finally:
        stores.close()
    return SimData(os.path.join(data, "drill", "platform"), site_code=SITE, rooms=2, sessions=1, candidates=3,
                   room_kb=4)


def environment():
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    for name in ("KD_DATA_DIR", "KD_LOCK_URL", "KD_LAN_PORT"):
        env.pop(name, None)
    return env


def kd(data, *args, stdin="", cwd=ROOT):
    """``main.py --data-dir data args`` with ``stdin`` (never a terminal); the finished process."""
    return subprocess.run([sys.executable, MAIN, "--data-dir", data] + list(args), input=stdin, cwd=cwd,
                          env=environment(), capture_output=True, text=True, encoding="utf-8", timeout=120)


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc


def logless(stderr):
    """stderr without the drill-mode start lines a process that opens the folder logs, timestamps blanked."""
    lines = [line for line in stderr.splitlines(True) if not (TIMESTAMP.match(line) and "演练模式" in line)]
    return TIMESTAMP.sub("T ", "".join(lines))


class Running:
    def __init__(self, root):
        self.root = str(root)
        self.data = os.path.join(self.root, "data")
        self.sim = prepare(self.data)
        self.before = kd(self.data, "status")  # on the folder, before any instance holds it
        self.err_path = os.path.join(self.root, "headless.err")
        self._err = open(self.err_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, MAIN, "--data-dir", self.data, "--lan-port", "0", "--headless"],
                                     stdout=subprocess.PIPE, stderr=self._err, cwd=ROOT, env=environment(),
                                     text=True, encoding="utf-8")
        for line in self.proc.stdout:
            found = re.search(r"考场通讯端口 (\d+)", line)
            if found:
                self.lan_port = int(found.group(1))
                break
        else:
            raise AssertionError("the headless site never ran: " + open(self.err_path, encoding="utf-8").read())
        self.rc = None

    def stop(self):
        if self.rc is None:
            if os.name == "nt":
                self.proc.terminate()
            else:
                self.proc.send_signal(signal.SIGTERM)
            self.proc.communicate(timeout=120)
            self.rc = self.proc.returncode
            self._err.close()
        return self.rc


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    running = Running(tmp_path_factory.mktemp("control"))
    try:
        running.status_there = kd(running.data, "status")  # through the instance, before anything changed
        loaded = ok(kd(running.data, "load", "--password-stdin", stdin=PASSWORD + "\n"))
        assert "联网载入" in loaded.stdout
        rooms = json.loads(ok(kd(running.data, "rooms", "--json", "--password-stdin", stdin=PASSWORD + "\n")).stdout)
        running.codes = {r["code"]: r["reg_code"] for r in rooms["registration"]["rooms"]}
        assert len(running.codes) == 2
        yield running
    finally:
        running.stop()


def test_status_is_the_same_as_on_the_folder(site):
    assert os.path.exists(os.path.join(site.data, "control.json"))
    ok(site.before)
    there = site.status_there
    assert (there.returncode, there.stdout, there.stderr) == (0, site.before.stdout, "")
    assert "考点代码：11003" in there.stdout


def test_monitor_shows_a_live_proctor_and_revoke_cuts_it_off(site):
    room, other = sorted(site.codes)
    proctor = ProctorClient("127.0.0.1", site.lan_port)
    try:
        proctor.register(room, site.codes[room])
        proctor.heartbeat({"session": "1", "logged_in": 2, "in_exam": 1})
        monitor = json.loads(ok(kd(site.data, "monitor", "--json")).stdout)
        rows = {r["room"]: r for r in monitor["rows"]}
        assert rows[room]["connected"] and rows[room]["ip"] == "127.0.0.1"
        assert (rows[room]["logged_in"], rows[room]["in_exam"]) == (2, 1)
        assert not rows[other]["connected"]
        revoked = kd(site.data, "revoke", room, "--password-stdin", stdin=PASSWORD + "\n")
        assert (revoked.returncode, revoked.stdout) == (0, "已撤销考场 {} 的注册。\n".format(room)), revoked.stderr
        with pytest.raises(LanError):  # its connection was cut
            proctor.heartbeat({"session": "1", "logged_in": 2, "in_exam": 1})
        with pytest.raises(LanError) as info:  # and its token is no more
            proctor.heartbeat({"session": "1", "logged_in": 2, "in_exam": 1})
        assert info.value.code == "E_AUTH"
    finally:
        proctor.close()
    monitor = json.loads(ok(kd(site.data, "monitor", "--json")).stdout)
    assert not {r["room"]: r for r in monitor["rows"]}[room]["connected"]
    audit = json.loads(ok(kd(site.data, "audit", "--json", "--last", "10")).stdout)
    assert {"actor": "admin", "action": "registration.revoked"}.items() <= audit[-1].items()
    assert audit[-2]["action"] == "account.login" and audit[-2]["actor"] == "admin"


def test_a_wrong_password_is_exit_2_and_backs_off_like_the_login(site):
    room = sorted(site.codes)[1]
    refused = kd(site.data, "revoke", room, "--password-stdin", stdin="guess\n")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.endswith("账号或密码错误。\n请检查账号和密码后重新输入（默认账号 admin）。\n")
    rooms = json.loads(ok(kd(site.data, "rooms", "--json", "--password-stdin", stdin=PASSWORD + "\n")).stdout)
    assert {r["code"]: r for r in rooms["registration"]["rooms"]}[room]["reg_code"] == site.codes[room]
    tenth = kd(site.data, "revoke", room, "--user", "ops", "--password-stdin", stdin="guess-10\n")
    assert tenth.returncode == 2 and "已连续失败 10 次" in tenth.stderr and "请在 2 分 8 秒 后重试" in tenth.stderr, \
        tenth.stderr
    right = kd(site.data, "revoke", room, "--user", "ops", "--password-stdin", stdin=OPS_PASSWORD + "\n")
    assert right.returncode == 2 and "登录失败次数过多，暂时不能登录。" in right.stderr, right.stderr
    audit = json.loads(ok(kd(site.data, "audit", "--json", "--last", "4")).stdout)
    failed = [e for e in audit if e["action"] == "account.login_failed"]
    assert [(e["actor"], e["details"]["failures"]) for e in failed][-1] == ("ops", 10)


def test_stdin_lines_reach_the_command(site):
    new = "clerk-new-pw-1"
    changed = kd(site.data, "passwd", "--user", "clerk", "--stdin",
                 stdin="{}\n{}\n{}\n".format(CLERK_PASSWORD, new, new))
    assert (changed.returncode, changed.stdout) == (0, "密码已修改：clerk\n"), changed.stderr
    ok(kd(site.data, "rooms", "--user", "clerk", "--password-stdin", stdin=new + "\n"))
    short = kd(site.data, "passwd", "--user", "clerk", "--stdin", stdin=new + "\n")  # two lines missing
    assert short.returncode == 2 and "标准输入中缺少新密码" in short.stderr


def on_terminal(data, args, typed_first, password):
    """``main.py args`` with a real pseudo-terminal as stdin and controlling terminal.

    ``typed_first`` is typed at once (a line ``input()`` reads); ``password`` once the
    password prompt shows on the terminal. Returns (exit code, terminal text, stdout, stderr).
    """
    master, slave = os.openpty()
    wrapper = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
               "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", wrapper, MAIN, "--data-dir", data] + list(args),
                            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=environment(),
                            start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        if typed_first:
            os.write(master, typed_first.encode() + b"\n")
        while "密码：".encode() not in seen:
            ready, _, _ = select.select([master], [], [], 60)
            assert ready, "no prompt: " + seen.decode("utf-8", "replace")
            seen += os.read(master, 1024)
        os.write(master, password.encode() + b"\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
    return proc.returncode, seen.decode("utf-8", "replace"), out.decode("utf-8"), err.decode("utf-8")


@pytest.mark.skipif(os.name == "nt", reason="a POSIX pseudo-terminal")
def test_terminal_prompts_are_asked_on_the_command_lines_terminal(site):
    rc, terminal, out, err = on_terminal(site.data, ["rooms", "--json"], "", PASSWORD)
    assert rc == 0, err
    assert "账号 admin 的密码：" in terminal and PASSWORD not in terminal  # typed without echo
    assert set(json.loads(out)) == {"loading", "registration"}  # stdout holds the JSON only
    # login on a terminal: input() asks the account (its prompt on stdout), getpass the password
    rc, terminal, out, err = on_terminal(site.data, ["login"], "admin", PASSWORD)
    assert (rc, out) == (0, "账号：登录成功：admin\n"), err
    assert "密码：" in terminal and PASSWORD not in terminal


def test_load_zip_takes_its_path_from_the_command_lines_folder(site):
    offline = os.path.join(site.root, "offline")
    zip_path = next(p for p in write_offline_files(site.sim, offline, ["package"]) if p.endswith(".zip"))
    loaded = kd(site.data, "load", "--zip", os.path.basename(zip_path), "--password-stdin", stdin=PASSWORD + "\n",
                cwd=offline)
    assert loaded.returncode == 0 and "（手工导入）" in loaded.stdout, loaded.stderr
    missing = kd(site.data, "load", "--zip", "nothing.zip", "--password-stdin", stdin=PASSWORD + "\n", cwd=offline)
    assert missing.returncode == 2 and os.path.join(offline, "nothing.zip") in missing.stderr


def test_commands_that_need_the_folder_are_refused_with_exit_3(site):
    for args in (["init", "--confirm", SITE], ["restore", "x.bak"], ["to-formal", "--yes"]):
        refused = kd(site.data, *args)  # refused before any password is asked (stdin is empty)
        assert refused.returncode == 3 and "已经在运行" in refused.stderr and "须重新启动" in refused.stderr, \
            refused.stderr
    for args in (["repair-db", "runtime"], ["sync-lock", "--password-stdin"]):
        refused = kd(site.data, *args)
        assert refused.returncode == 3 and "已经在运行" in refused.stderr, refused.stderr


def test_the_client_of_the_protocol_doc_runs_a_command(site):
    """docs/control-protocol.md §8, as printed there, against the running instance."""
    doc = open(os.path.join(ROOT, "docs", "control-protocol.md"), encoding="utf-8").read()
    code = doc.split("## 8. A minimal client (Python)")[1].split("```python\n")[1].split("```")[0]
    script = os.path.join(site.root, "doc_client.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write("DATA_DIR = {!r}\n".format(site.data) + code)
    proc = subprocess.run([sys.executable, script], input="", capture_output=True, text=True, encoding="utf-8",
                          env=environment(), timeout=120)
    assert (proc.returncode, proc.stdout) == (0, ok(kd(site.data, "status")).stdout), proc.stderr


def test_same_output_and_exit_codes_as_on_the_folder(site):
    """The same commands through the instance, then on the folder once it stopped: the same answers."""
    missing = os.path.join(site.root, "missing.zip")
    commands = [
        (["status"], ""),
        (["results"], ""),
        (["audit", "--verify"], ""),
        (["revoke", "NOSUCH", "--password-stdin"], PASSWORD + "\n"),
        (["load", "--zip", missing, "--password-stdin"], PASSWORD + "\n"),
        (["authorize", "--ptq", missing, "--password-stdin"], PASSWORD + "\n"),
        (["rooms"], ""),  # asks, and stdin is no terminal
    ]
    terminal = os.name != "nt"  # and one on a terminal: input() and getpass
    remote = [kd(site.data, *args, stdin=stdin) for args, stdin in commands]
    login_there = on_terminal(site.data, ["login"], "admin", PASSWORD) if terminal else None
    assert site.stop() == 0
    assert not os.path.exists(os.path.join(site.data, "control.json")) or os.name == "nt"
    local = [kd(site.data, *args, stdin=stdin) for args, stdin in commands]
    if terminal:
        login_here = on_terminal(site.data, ["login"], "admin", PASSWORD)
        assert login_there[0] == login_here[0] == 0 and login_there[2] == login_here[2], (login_there, login_here)
    assert [p.returncode for p in remote] == [0, 0, 0, 2, 2, 2, 2]
    for (args, _), there, here in zip(commands, remote, local):
        assert (there.returncode, there.stdout, logless(there.stderr)) == \
            (here.returncode, here.stdout, logless(here.stderr)), args
