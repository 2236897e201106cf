"""Login and settings: PBKDF2 records, admin/888 only once, persisted back-off, site code rules.

Real stores on a temporary data folder; time comes from an injected clock (no sleeps).
PBKDF2 at 600,000 iterations costs ~0.35 s per hash, so each test makes few of them.
"""

import datetime

import pytest

from kd.app import open_context
from kd.core import accounts as A
from kd.core import model
from kd.core.accounts import AccountService, LoginFailed, PasswordChangeRequired, PasswordRejected, SetupRefused
from kd.formats.timeutil import CST

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


@pytest.fixture
def ctx(tmp_path, clock):
    c = open_context(str(tmp_path / "data"), clock=clock)
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
    assert ctx.stores.settings.get(model.ACCOUNTS, "admin") is None

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
