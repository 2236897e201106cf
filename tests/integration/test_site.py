"""``kd.site.open_site``: the one way every start opens a site (real folder, real stores,
the drill platform over HTTP, the dongle emulator over ``socket://``, real LAN sockets)."""

import base64
import os
import socket
import threading

import pytest

import main
from kd import cli
from kd.app import App
from kd.core import model
from kd.core.registration import ROOM_MAX_FAILURES, RegistrationService
from kd.errors import RegistrationRefused, StoreClosedError
from kd.formats.signing import key_id_of
from kd.lan.server import LanServiceError
from kd.lock import gate as G
from kd.site import LanOptions, open_site
from kd.store.database import Database
from kd.store.datafolder import DataFolder
from tests.support.env import make_env

DRILL = {"rooms": 2, "sessions": 1, "candidates": 2, "room_kb": 4}
LOCAL = LanOptions(host="127.0.0.1", port=0)


pytestmark = pytest.mark.usefixtures("no_env_lock")


def configured(data_dir, **site):
    """A data folder after 系统设置 (no package loaded)."""
    stores = DataFolder(data_dir).open_stores()
    try:
        stores.settings.put(model.SETTINGS, model.SITE, dict({"site_code": "11003", "mode": model.FORMAL}, **site))
    finally:
        stores.close()


class SiteReads:
    """Counts the reads of ``settings/site`` made by this thread, through the real ``Database.get``."""

    def __init__(self, monkeypatch):
        self.count = 0
        real = Database.get
        me = threading.current_thread()

        def get(db, table, key):
            if (table, key) == (model.SETTINGS, model.SITE) and threading.current_thread() is me:
                self.count += 1
            return real(db, table, key)

        monkeypatch.setattr(Database, "get", get)


def dongle_released():
    """The dongle driver hands pyserial's ``socket://`` close (which sleeps 0.3 s) to a
    ``lock-close`` thread of its own; the emulator serves one host at a time: wait for it."""
    for t in threading.enumerate():
        if t.name == "lock-close":
            t.join(10)


def started_threads(before):
    """Threads alive now that were not before (after the dongle's port was released)."""
    dongle_released()
    return sorted(t.name for t in threading.enumerate() if t not in before and t.is_alive())


# --- opening --------------------------------------------------------------------------


def test_a_fresh_folder_opens_in_drill_mode(tmp_path):
    data = str(tmp_path / "data")
    site = open_site(data, lan=LOCAL, drill_site=DRILL)
    try:
        assert os.path.exists(os.path.join(data, "kaodian-data.json"))  # the folder knows what it holds
        assert site.drill and site.config.drill and site.config.site_code is None
        sim = site.simulator
        assert sim is not None and site.gate.drill and site.gate.emulator is not None
        settings = site.ctx.site()
        assert settings["drill"] is True and settings["platform_url"] == sim.url
        assert site.config.platform_url == sim.url and key_id_of(sim.public_key) in site.config.trusted_keys
        assert site.ctx.trusted is site.config.trusted_keys and site.ctx.folder is site.folder
        assert site.ctx.dongle.attached() and site.ctx.lan is site.lan and site.lan.listening()
        assert site.ctx.platform.probe()
        core = site.core
        # every service built once, siblings handed in
        assert core.registration.loading is core.loading and core.authorization.loading is core.loading
        assert core.seal.outbox is core.outbox and core.monitor.outbox is core.outbox
        assert core.recovery.outbox is core.outbox and core.upload.outbox is core.outbox
        assert core.upload.recovery is core.recovery and core.backup.accounts is core.accounts
        assert site.lan.registration is core.registration and site.lan.loading is core.loading
        assert site.lan.monitor is core.monitor and site.lan.recovery is core.recovery
        assert site.lan.verification is core.verification
        assert site.lan.services.extra_time is core.extra_time  # 补时 rides the heartbeat reply
    finally:
        site.close()


def test_a_configured_site_opens_with_its_dongle_and_no_drill_peers(tmp_path, emu):
    data = str(tmp_path / "data")
    key = base64.b64encode(b"k" * 32).decode("ascii")
    configured(data, platform_url="http://127.0.0.1:9", platform_password="pw", trusted_keys=[key, "not base64!"])
    site = open_site(data, lock_url=emu.url)
    try:
        config = site.config
        assert not site.drill and site.simulator is None and site.lan is None
        assert (config.site_code, config.mode, config.platform_url, config.platform_password) == \
            ("11003", model.FORMAL, "http://127.0.0.1:9", "pw")
        assert key_id_of(b"k" * 32) in config.trusted_keys and len(config.trusted_keys) == 1  # the bad entry skipped
        assert site.gate.requirement == config.requirement == G.Requirement("11003", None, drill=False)
        assert site.gate.emulator is None and site.gate.info.lock_id == emu.lock_id
        assert site.ctx.dongle.lock_id() == emu.lock_id
    finally:
        site.close()


def test_the_drill_flag_survives_setup_and_the_next_open(tmp_path):
    data = str(tmp_path / "data")
    site = open_site(data, drill_site=DRILL)
    try:
        site.core.accounts.change_password("admin", "888", "drill-2026")
        site.core.accounts.setup(site.simulator.site_code, model.MOCK, "admin")
    finally:
        site.close()
    again = open_site(data, drill_site=DRILL)
    try:
        assert again.drill and again.config.site_code == again.simulator.site_code
        assert again.gate.requirement.drill and again.gate.requirement.site_code == again.config.site_code
    finally:
        again.close()


# --- one sequence for every start ---------------------------------------------------------


def test_cli_headless_gui_and_env_read_the_settings_once(tmp_path, emu, monkeypatch):
    data = str(tmp_path / "data")
    configured(data)
    reads = SiteReads(monkeypatch)
    # the CLI: the handler sees the site open_site made
    opts = main.build_parser().parse_args(["--data-dir", data, "--lock", emu.url, "status"])
    seen = []
    opts.handler = lambda s: seen.append((reads.count, s.site.gate.requirement, s.site.config.requirement)) or 0
    assert cli.run(opts, data) == 0
    assert seen == [(1, G.Requirement("11003", None, drill=False), G.Requirement("11003", None, drill=False))]
    # --headless: main.py's own opening
    dongle_released()
    reads.count = 0
    headless = main.build_parser().parse_args(["--data-dir", data, "--lock", emu.url, "--lan-port", "0", "--headless"])
    site = main.open_headless(headless, data)
    try:
        assert reads.count == 1 and site.gate.requirement is site.config.requirement
        assert site.lan.listening() and site.core.outbox.running
    finally:
        site.close()
    # the GUI's App
    dongle_released()
    reads.count = 0
    app = App(data, lock_url=emu.url, lan_host="127.0.0.1", lan_port=0, probe_s=3600.0)
    try:
        app.start()
        assert reads.count == 1 and app.gate.requirement is app.site.config.requirement
    finally:
        app.stop()
    # the tests' Env (its own platform client and dongle driver, no gate)
    reads.count = 0
    env = make_env(tmp_path / "env", rooms=1, sessions=1, candidates=1)
    try:
        assert reads.count == 1 and env.site.gate is None and env.ctx.platform is env.client
        assert not env.site.drill and key_id_of(env.sim.public_key) in env.ctx.trusted
    finally:
        env.close()


# --- closing ------------------------------------------------------------------------------


def test_close_ends_every_thread_it_started_and_the_stores_refuse_writes(tmp_path):
    data = str(tmp_path / "data")
    before = set(threading.enumerate())
    site = open_site(data, lan=LOCAL, ticks=True, tick_s=0.01, probe_s=0.01, drill_site=DRILL)
    sub = site.hub.subscribe(["net.status", "lan.connected"])
    proctor = socket.create_connection(("127.0.0.1", site.lan.port()), timeout=10)
    try:
        assert sub.wait_for(lambda e: e.name == "lan.connected", timeout=10) is not None
        assert sub.wait_for(lambda e: e.name == "net.status" and e.data["ok"], timeout=10) is not None
        names = started_threads(before)
        assert {"monitor-tick", "net-probe", "kd-outbox", "lan-accept"} <= set(names)
        assert any(n.startswith("lan-127.0.0.1:") for n in names)
        stores = site.stores
        site.close()
        assert started_threads(before) == []
        with pytest.raises(StoreClosedError):
            stores.runtime.put(model.OUTBOX, "x", {"id": "x"})
        with pytest.raises(StoreClosedError):
            site.stores.settings.get(model.SETTINGS, model.SITE)
        site.close()  # idempotent
    finally:
        sub.close()
        proctor.close()
        site.close()


def test_a_failed_open_closes_what_it_opened(tmp_path):
    data = str(tmp_path / "data")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    before = set(threading.enumerate())
    try:
        with pytest.raises(LanServiceError):  # after the drill platform, the gate and the core
            open_site(data, lan=LanOptions(host="127.0.0.1", port=taken.getsockname()[1]), ticks=True,
                      drill_site=DRILL)
        assert started_threads(before) == []
    finally:
        taken.close()
    site = open_site(data, drill_site=DRILL)  # the stores were closed: the folder opens again
    site.close()


def test_a_site_without_the_dongle_is_refused_and_leaves_nothing_running(tmp_path):
    data = str(tmp_path / "data")
    configured(data)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    url = "socket://127.0.0.1:{}".format(s.getsockname()[1])
    s.close()
    before = set(threading.enumerate())
    with pytest.raises(G.LockGateError) as e:
        open_site(data, lock_url=url, lan=LOCAL, ticks=True)
    assert e.value.exit_code == 4 and started_threads(before) == []


# --- the registration rate limit belongs to the service ---------------------------------------


def test_the_rate_limit_is_the_services_own(tmp_path):
    env = make_env(tmp_path, rooms=1, sessions=1, candidates=1)
    try:
        env.core.loading.load_online("admin")
        room = env.ctx.stores.runtime.all(model.ROOMS)[0]
        shared = env.core.registration
        for _ in range(ROOM_MAX_FAILURES):
            with pytest.raises(RegistrationRefused):
                shared.register(room["code"], "WRONGCOD", "10.0.1.1")
        with pytest.raises(RegistrationRefused) as info:
            shared.register(room["code"], room["reg_code"], "10.0.1.1")
        assert "次数过多" in info.value.cause
        # another instance (no module-global state) has counts of its own
        other = RegistrationService(env.ctx, loading=env.core.loading)
        assert other.register(room["code"], room["reg_code"], "10.0.1.1")["token"]
    finally:
        env.close()
