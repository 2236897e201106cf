"""Login and settings: PBKDF2 records, admin/888 only once, persisted back-off, site code rules.

Real stores on a temporary data folder; time comes from an injected clock (no sleeps).
PBKDF2 at 600,000 iterations costs ~0.35 s per hash, so each test makes few of them.
系统设置 checks the site code against the dongle emulator over ``socket://`` (a real
``LockDriver`` and ``DonglePort``); an unwritable settings DB is made for real: a folder
where the store writes its temp file, or a full tmpfs.
"""

import datetime
import logging
import os
import subprocess

import pytest

from kd.app import open_context
from kd.core import accounts as A
from kd.core import model
from kd.core.accounts import AccountService, LoginFailed, PasswordChangeRequired, PasswordRejected, SetupRefused
from kd.errors import LockError
from kd.events import EventHub
from kd.formats.timeutil import CST
from kd.lock.coreport import DonglePort
from kd.lock.driver import EVENT_DETACHED, LockDriver
from kd.lock.emulator import LockEmulator
from kd.store.database import open_stores

WAIT = 10.0

NEW = "Kd-2026!pass"


class Clock:
    def __init__(self) -> None:
        self.t = datetime.datetime(2026, 6, 13, 7, 30, tzinfo=CST)

    def __call__(self) -> datetime.datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += datetime.timedelta(seconds=seconds)


@pytest.fixture
def clock():
    return Clock()


class Dongle:
    """The dongle emulator (registered to ``site``) over ``socket://`` behind the core's port."""

    def __init__(self, folder, site="11003", old_firmware=False):
        self.emulator = LockEmulator(str(folder), site_code=site)
        self.emulator.old_firmware = old_firmware
        self.hub = EventHub()
        self.driver = LockDriver(self.emulator.start_tcp(), self.hub, timeout=WAIT, keepalive=None).start()
        self.port = DonglePort(self.driver)

    def close(self):
        self.driver.stop()
        self.emulator.stop()


@pytest.fixture
def dongle(tmp_path):
    d = Dongle(tmp_path / "lock")
    yield d
    d.close()


@pytest.fixture
def ctx(tmp_path, clock, dongle):
    c = open_context(str(tmp_path / "data"), clock=clock, dongle=dongle.port)
    yield c
    c.stores.close()


def changed_admin(ctx) -> None:
    """An admin whose password was already changed (no hash needed for the setup rules)."""
    ctx.stores.settings.put(model.ACCOUNTS, "admin", dict(A.default_account(), must_change=False, hash="0" * 64))


def test_default_hash_is_888_at_the_minimum_work_factor():
    assert A.ITERATIONS >= 600000 and A.MIN_ITERATIONS >= 600000
    assert A.hash_password("888", A.DEFAULT_SALT, A.MIN_ITERATIONS) == A.DEFAULT_HASH
    assert len(A.DEFAULT_SALT) == A.SALT_BYTES == 16


def test_default_admin_logs_in_once_and_must_change(ctx):
    svc = AccountService(ctx)
    assert svc.login("admin", "888") == {"user": "admin", "must_change": True}
    with pytest.raises(PasswordChangeRequired):
        svc.require_changed("admin")
    with pytest.raises(PasswordChangeRequired):
        svc.setup("11003", model.FORMAL, "admin")
    assert ctx.site_code() is None
    # the new password's rules are checked before any hash and change nothing
    for new, confirm in (("12345", None), ("888", None), ("888", "888"), (NEW, NEW + "x"), (" " + NEW, None)):
        with pytest.raises(PasswordRejected):
            svc.change_password("admin", "888", new, confirm)
    with pytest.raises(PasswordRejected):  # same as the old one
        svc.change_password("admin", "abcdef", "abcdef")
    # the login was recorded (as a failure first, then cleared): still the default account
    stored = ctx.stores.settings.get(model.ACCOUNTS, "admin")
    assert stored == A.default_account() and stored["hash"] == A.DEFAULT_HASH

    assert svc.change_password("admin", "888", NEW, NEW) == {"user": "admin", "must_change": False}
    doc = ctx.stores.settings.get(model.ACCOUNTS, "admin")
    assert doc["iterations"] >= 600000 and len(bytes.fromhex(doc["salt"])) == 16
    assert NEW not in str(doc) and doc["hash"] != A.DEFAULT_HASH and doc["must_change"] is False
    svc.require_changed("admin")  # passes now
    with pytest.raises(LoginFailed):
        svc.login("admin", "888")  # the default is gone
    assert svc.login("admin", NEW) == {"user": "admin", "must_change": False}
    actions = [e["action"] for e in ctx.audit.entries()]
    assert actions == ["account.login", "account.password_changed", "account.login_failed", "account.login"]
    assert "hash" not in str(list(ctx.audit.entries()))


def test_backoff_is_exponential_capped_and_survives_a_restart(tmp_path, clock):
    assert [A.backoff_seconds(n) for n in range(1, 8)] == [0, 0, 1, 2, 4, 8, 16]
    assert A.backoff_seconds(13) == 900 and A.backoff_seconds(10 ** 6) == A.MAX_BACKOFF_S == 900
    data = str(tmp_path / "data")
    ctx = open_context(data, clock=clock)
    svc = AccountService(ctx)
    for _ in (1, 2):
        with pytest.raises(LoginFailed) as e:
            svc.login("admin", "wrong")
        assert e.value.wait_s == 0
    with pytest.raises(LoginFailed) as e:
        svc.login("admin", "wrong")
    assert e.value.wait_s == 1 and "1 秒" in str(e.value)
    with pytest.raises(LoginFailed) as e:  # even the right password waits
        svc.login("admin", "888")
    assert e.value.wait_s == 1 and "登录失败次数过多" in str(e.value)
    clock.advance(1)
    with pytest.raises(LoginFailed) as e:
        svc.login("admin", "wrong")
    assert e.value.wait_s == 2 and "已连续失败 4 次" in str(e.value)
    doc = ctx.stores.settings.get(model.ACCOUNTS, "admin")
    assert doc["failures"] == 4 and doc["locked_until"]
    ctx.stores.close()

    # a restart (new context on the same folder) does not reset the back-off
    ctx2 = open_context(data, clock=clock)
    try:
        svc2 = AccountService(ctx2)
        clock.advance(1.5)
        with pytest.raises(LoginFailed) as e:
            svc2.login("admin", "888")
        assert e.value.wait_s == 1
        with pytest.raises(LoginFailed):
            svc2.change_password("admin", "888", NEW)  # passwd is behind the same back-off
        clock.advance(0.5)
        assert svc2.login("admin", "888")["must_change"] is True
        doc = ctx2.stores.settings.get(model.ACCOUNTS, "admin")
        assert doc["failures"] == 0 and doc["locked_until"] is None
    finally:
        ctx2.stores.close()


def test_unknown_user_and_wrong_password_answer_alike(ctx):
    svc = AccountService(ctx)
    for _ in range(3):
        with pytest.raises(LoginFailed) as known:
            svc.login("admin", "nope")
        with pytest.raises(LoginFailed) as unknown:
            svc.login("nobody", "nope")
        assert str(known.value) == str(unknown.value) and known.value.wait_s == unknown.value.wait_s
    assert known.value.wait_s == 1
    assert ctx.stores.settings.get(model.ACCOUNTS, "nobody") is None  # nothing stored for unknown names
    with pytest.raises(LoginFailed) as e:
        svc.login("nobody", "x")
    assert "登录失败次数过多" in str(e.value)


@pytest.mark.parametrize("code", ["110", "12345678901", "11003a", "1l003", "", "１１００３", "11 003"])
def test_site_code_format_is_checked(ctx, code):
    changed_admin(ctx)
    with pytest.raises(SetupRefused):
        AccountService(ctx).setup(code, model.FORMAL, "admin")
    assert ctx.site() == {}


def test_site_code_is_fixed_after_setup_and_mode_only_changes_by_to_formal(ctx):
    changed_admin(ctx)
    svc = AccountService(ctx)
    assert svc.needs_setup()
    with pytest.raises(SetupRefused):
        svc.setup("11003", "exam", "admin")
    with pytest.raises(SetupRefused):
        svc.setup("11003", model.MOCK, "admin", platform_url="ftp://x")
    out = svc.setup("11003", "模拟考试", "admin", platform_url="http://127.0.0.1:1/", platform_password="pw")
    assert out["mode"] == model.MOCK and not svc.needs_setup()
    site = ctx.site()
    assert site["site_code"] == "11003" and site["platform_password"] == "pw" and site["configured_at"]
    with pytest.raises(SetupRefused) as e:
        svc.setup("11004", model.MOCK, "admin")
    assert "不能修改" in str(e.value)
    with pytest.raises(SetupRefused):
        svc.setup("11003", model.FORMAL, "admin")
    svc.setup("11003", model.MOCK, "admin", platform_url="http://127.0.0.1:2/")
    assert ctx.site()["platform_url"] == "http://127.0.0.1:2/" and ctx.site()["platform_password"] == "pw"
    assert ctx.site()["configured_at"] == site["configured_at"]
    snap = svc.snapshot()
    assert snap["needs_setup"] is False and snap["accounts"][0]["user"] == "admin"


# -- 系统设置 and the dongle's site (issue 12 item 3) -------------------------------------------
def test_setup_refuses_a_site_code_the_dongle_is_not_registered_to(ctx):
    changed_admin(ctx)
    svc = AccountService(ctx)
    with pytest.raises(SetupRefused) as e:
        svc.setup("11004", model.FORMAL, "admin")
    assert e.value.cause == "考点代码 11004 与机考锁登记的考点（11003）不一致。"
    assert e.value.remedy == "请核对考点代码，或插入本考点的机考锁。"
    assert ctx.site() == {} and svc.needs_setup()
    assert "system.set_up" not in [x["action"] for x in ctx.audit.entries()]
    out = svc.setup("11003", model.FORMAL, "admin")
    assert out["dongle_site"] == "11003" and ctx.site_code() == "11003"
    assert [x["details"]["dongle_site"] for x in ctx.audit.entries() if x["action"] == "system.set_up"] == ["11003"]


def test_setup_without_a_dongle_or_with_an_unregistered_one_is_refused(tmp_path, clock, dongle):
    blank = Dongle(tmp_path / "blank", site=None)
    ctx = open_context(str(tmp_path / "data"), clock=clock, dongle=blank.port)
    try:
        changed_admin(ctx)
        svc = AccountService(ctx)
        with pytest.raises(LockError) as e:
            svc.setup("11003", model.FORMAL, "admin")
        assert "没有登记到任何考点" in e.value.cause and blank.emulator.lock_id in e.value.cause
        assert ctx.site() == {}
        sub = blank.hub.subscribe([EVENT_DETACHED])
        blank.emulator.unplug()
        assert sub.wait_for(lambda ev: True, WAIT) is not None
        with pytest.raises(LockError) as e:
            svc.setup("11003", model.FORMAL, "admin")
        assert "未检测到机考锁" in e.value.cause and ctx.site() == {}
        ctx.dongle = None  # a context without a dongle port refuses alike
        with pytest.raises(LockError):
            svc.setup("11003", model.FORMAL, "admin")
        assert ctx.site() == {}
    finally:
        ctx.stores.close()
        blank.close()


def test_setup_with_a_dongle_too_old_to_report_its_site_is_accepted_and_logged(tmp_path, clock, caplog):
    old = Dongle(tmp_path / "old", site="11003", old_firmware=True)
    ctx = open_context(str(tmp_path / "data"), clock=clock, dongle=old.port)
    try:
        changed_admin(ctx)
        assert old.driver.info.firmware == "emu-1.0" and old.driver.info.site_code is None
        with caplog.at_level(logging.WARNING, logger="kd.core.accounts"):
            out = AccountService(ctx).setup("11004", model.FORMAL, "admin")  # cannot be checked
        assert out["site_code"] == "11004" and out["dongle_site"] is None
        assert any("does not report the site" in r.getMessage() and "11004" in r.getMessage() for r in caplog.records)
        setup = [x for x in ctx.audit.entries() if x["action"] == "system.set_up"]
        assert len(setup) == 1 and setup[0]["details"]["dongle_site"] is None
    finally:
        ctx.stores.close()
        old.close()


# -- failed logins when the settings DB cannot be written (issue 12 item 7) -------------------------
NOT_RECORDED = "无法记录登录失败次数，已拒绝登录"


def login_refused(svc, user, password):
    with pytest.raises(LoginFailed) as e:
        svc.login(user, password)
    return e.value


def test_an_unrecordable_failure_refuses_the_login_even_with_the_right_password(ctx, clock):
    """A folder where the settings DB writes its temp file: every write fails (as root, chmod would not)."""
    svc = AccountService(ctx)
    with pytest.raises(LoginFailed):  # a counted failure while the store works
        svc.login("admin", "wrong")
    blocker = ctx.folder.store_path("settings") + ".tmp"
    os.mkdir(blocker)
    before = [open(p, "rb").read() for p in sorted(_slots(ctx))]
    for user, password in (("admin", "wrong"), ("admin", "888"), ("admin", "888"), ("nobody", "x")):
        e = login_refused(svc, user, password)
        assert NOT_RECORDED in e.cause and "磁盘空间" in e.remedy and e.wait_s == 0, (user, password)
        assert isinstance(e, A.LoginNotRecorded)
    with pytest.raises(A.LoginNotRecorded):  # 修改密码 checks the old password behind the same door
        svc.change_password("admin", "888", NEW, NEW)
    assert [open(p, "rb").read() for p in sorted(_slots(ctx))] == before  # nothing half-written
    refused = [x for x in ctx.audit.entries() if x["action"] == "account.login_not_recorded"]
    assert len(refused) == 1  # one audit line per outage, not per attempt
    assert not any(x["action"] == "account.login" for x in ctx.audit.entries())

    os.rmdir(blocker)  # recording works again: so does the login, and the count starts where it was
    assert svc.login("admin", "888") == {"user": "admin", "must_change": True}
    doc = ctx.stores.settings.get(model.ACCOUNTS, "admin")
    assert doc["failures"] == 0 and doc["locked_until"] is None


def _slots(ctx):
    base = ctx.folder.store_path("settings")
    return [base + ".0", base + ".1"]


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs (the suite runs as root and mounting works; skipped where it does not)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: {}".format(proc.stderr.decode(errors="replace").strip()))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(folder):
    """Fill the file system of ``folder`` to the last byte; the filler's path."""
    path = os.path.join(str(folder), "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:  # ENOSPC: on with smaller pieces, to the last byte
                pass
    finally:
        os.close(fd)
    return path


def test_a_full_disk_refuses_the_login_until_space_is_freed(full_disk, clock, dongle):
    data = str(full_disk / "data")
    ctx = open_context(data, clock=clock, dongle=dongle.port)
    try:
        svc = AccountService(ctx)
        for _ in range(3):  # the third failure starts the back-off (1 s), on disk
            with pytest.raises(LoginFailed):
                svc.login("admin", "wrong")
        clock.advance(1)
        filler = fill(full_disk)
        for password in ("wrong", "888"):
            e = login_refused(svc, "admin", password)
            assert NOT_RECORDED in e.cause, password
        os.remove(filler)
        e = login_refused(svc, "admin", "wrong")  # counted again, from the 3 on disk
        assert "已连续失败 4 次" in e.cause and e.wait_s == 2
    finally:
        ctx.stores.close()
    stores = open_stores(data)  # the back-off was on disk before the answer
    try:
        doc = stores.settings.get(model.ACCOUNTS, "admin")
        assert doc["failures"] == 4 and doc["locked_until"]
    finally:
        stores.close()


def test_the_failure_is_on_disk_before_the_password_is_checked(ctx, clock, monkeypatch):
    """Record first, check second: the attempt is a failure on disk while PBKDF2 runs."""
    svc = AccountService(ctx)
    seen = []
    real = A.hash_password

    def spy(password, salt, iterations):
        stores = open_stores(ctx.data_dir)  # what a kill at this moment would leave
        try:
            doc = stores.settings.get(model.ACCOUNTS, "admin")
        finally:
            stores.close()
        seen.append(doc["failures"])
        return real(password, salt, iterations)

    monkeypatch.setattr(A, "hash_password", spy)  # the real hash, observed
    for _ in range(3):
        with pytest.raises(LoginFailed):
            svc.login("admin", "wrong")
    clock.advance(1)
    assert svc.login("admin", "888")["must_change"] is True
    assert seen == [1, 2, 3, 4]
    assert ctx.stores.settings.get(model.ACCOUNTS, "admin")["failures"] == 0

