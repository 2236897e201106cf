"""The start gate: kd/lock/gate.py in-process (its requirement read as ``kd.site`` reads it),
and real ``main.py`` subprocesses."""

import base64
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading

import pytest

from kd.core import model
from kd.formats.signing import Signer
from kd.lock import gate as G
from kd.lock import protocol as P
from kd.lock.driver import ExpectedLock
from kd.platform.simdata import SimData
from kd.site import read_config
from kd.store.database import Database
from kd.store.datafolder import DataFolder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAIN = os.path.join(ROOT, "main.py")
WAIT = 30.0
REFUSAL = "考点管理系统需要机考锁才能启动"


def configure_site(data_dir, site_code="11003", lock_id=None, public_key=None):
    """What a configured site with a loaded package leaves in the data folder."""
    folder = os.path.join(data_dir, "db")
    os.makedirs(folder, exist_ok=True)
    db = Database.open(os.path.join(folder, "settings.json"))
    db.put(model.SETTINGS, model.SITE, {"site_code": site_code})
    db.close()
    if lock_id is not None:
        db = Database.open(os.path.join(folder, "exam.json"))
        db.put(model.PACKAGE, model.MANIFEST, {
            "site_code": site_code,
            "lock": {"id": lock_id, "public_key": base64.b64encode(public_key).decode("ascii")},
        })
        db.close()


def requirement(data_dir):
    """The gate's requirement as ``kd.site.open_site`` computes it (the site config, read once)."""
    stores = DataFolder(data_dir).open_stores()
    try:
        return read_config(stores).requirement
    finally:
        stores.close()


def open_gate(data_dir, url=None):
    return G.open_gate(data_dir, url, requirement=requirement(data_dir))


pytestmark = pytest.mark.usefixtures("no_env_lock")


def closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "socket://127.0.0.1:{}".format(port)


# --- in process -----------------------------------------------------------------------


def test_requirement_follows_the_data_folder(tmp_path):
    data = str(tmp_path / "data")
    assert requirement(data) == G.Requirement(None, None, drill=True)
    configure_site(data)
    assert requirement(data) == G.Requirement("11003", None, drill=False)
    key = Signer.generate().public_key
    configure_site(data, lock_id="KDLOCK-11003-01", public_key=key)
    req = requirement(data)
    assert req == G.Requirement("11003", ExpectedLock("KDLOCK-11003-01", key)) and not req.drill


def test_a_package_without_a_usable_lock_entry_is_refused(tmp_path):
    data = str(tmp_path / "data")
    configure_site(data, lock_id="KDLOCK-11003-01", public_key=b"short")
    with pytest.raises(G.LockGateError) as e:
        requirement(data)
    assert e.value.exit_code == 4 and "没有有效的机考锁信息" in e.value.cause


def test_drill_mode_starts_its_own_emulator(tmp_path):
    data = str(tmp_path / "data")
    gate = open_gate(data)
    try:
        assert gate.drill and gate.emulator is not None
        assert gate.info.lock_id == gate.emulator.lock_id
        assert gate.driver.read_id() == gate.emulator.lock_id
    finally:
        gate.close()
    assert os.path.exists(os.path.join(data, "drill", "lock", "dongle.json"))
    again = open_gate(data)  # the same drill dongle on the next start
    try:
        assert again.info.lock_id == gate.info.lock_id
    finally:
        again.close()


def test_drill_dongle_takes_the_drill_platforms_identity_and_key(tmp_path):
    data = str(tmp_path / "data")
    gate = open_gate(data)  # a drill dongle of its own first
    own = gate.info.lock_id
    gate.close()
    sim = SimData(os.path.join(data, "drill", "platform"), rooms=1, sessions=1, candidates=1, room_kb=1)
    gate = open_gate(data)
    try:
        assert own != sim.lock_id
        assert gate.info.lock_id == sim.lock_id
        assert base64.b64encode(gate.info.public_key).decode() == sim.dongle["public_key"]
        assert gate.emulator.dongle.state.trusted_keys == [sim.public_key]
        assert gate.info.site_code == sim.site_code == "11003"  # registered to the drill platform's site
    finally:
        gate.close()


def test_an_older_drill_folder_gets_its_dongle_registered_to_its_site(tmp_path):
    """A drill platform and drill dongle made before SITE existed: same dongle, now with its site."""
    data = str(tmp_path / "data")
    platform_dir = os.path.join(data, "drill", "platform")
    SimData(platform_dir, site_code="11007", rooms=1, sessions=1, candidates=1, room_kb=1)
    identity = os.path.join(platform_dir, "dongle.json")
    with open(identity) as f:
        doc = json.load(f)
    del doc["site_code"]  # as an older simulator wrote it
    with open(identity, "w") as f:
        json.dump(doc, f)
    gate = open_gate(data)  # the drill dongle's state is made without a site (the identity names none)
    try:
        assert gate.info.site == P.SiteReading(P.SITE_NONE) and gate.info.lock_id == doc["lock_id"]
    finally:
        gate.close()
    sim = SimData(platform_dir)  # opening the older folder registers its dongle to its site
    assert sim.dongle["site_code"] == "11007"
    with open(identity) as f:
        assert json.load(f)["site_code"] == "11007"
    gate = open_gate(data)
    try:
        assert gate.info.lock_id == doc["lock_id"] and gate.info.site_code == "11007"
        assert not os.path.exists(os.path.join(data, "drill", "lock", "dongle.json.old"))  # registered, not replaced
    finally:
        gate.close()


def test_configured_site_without_package_takes_any_correct_dongle(tmp_path, emu):
    data = str(tmp_path / "data")
    configure_site(data)
    gate = open_gate(data, emu.url)
    try:
        assert not gate.drill and gate.emulator is None and gate.info.lock_id == emu.lock_id
    finally:
        gate.close()


def test_url_from_the_environment(tmp_path, emu, monkeypatch):
    data = str(tmp_path / "data")
    configure_site(data)
    monkeypatch.setenv(G.ENV_LOCK_URL, emu.url)
    gate = open_gate(data)
    try:
        assert gate.info.url == emu.url
    finally:
        gate.close()


def test_the_packages_dongle_passes_and_others_are_refused(tmp_path, emu):
    data = str(tmp_path / "data")
    configure_site(data, lock_id=emu.lock_id, public_key=emu.public_key)
    open_gate(data, emu.url).close()
    configure_site(data, lock_id="KDLOCK-11003-01", public_key=emu.public_key)
    with pytest.raises(G.LockGateError) as e:
        open_gate(data, emu.url)
    assert e.value.exit_code == 4
    assert e.value.cause.startswith(REFUSAL) and "不是本考点注册的机考锁" in e.value.cause
    configure_site(data, lock_id=emu.lock_id, public_key=Signer.generate().public_key)
    with pytest.raises(G.LockGateError) as e:
        open_gate(data, emu.url)
    assert "身份验证失败" in e.value.cause
    configure_site(data, lock_id=emu.lock_id, public_key=emu.public_key)
    emu.bad_signature = True
    with pytest.raises(G.LockGateError):
        open_gate(data, emu.url)


def test_a_forged_dongle_fails_even_before_a_package(tmp_path, emu):
    data = str(tmp_path / "data")
    configure_site(data)
    emu.bad_signature = True
    with pytest.raises(G.LockGateError) as e:
        open_gate(data, emu.url)
    assert "身份验证失败" in e.value.cause


def test_no_dongle(tmp_path):
    data = str(tmp_path / "data")
    configure_site(data)
    with pytest.raises(G.LockGateError) as e:
        open_gate(data, closed_port_url())
    assert e.value.cause == REFUSAL + "：未检测到机考锁。"
    assert "插入本机 USB 接口" in e.value.remedy and "Connection refused" in (e.value.detail or "")


# --- real main.py ---------------------------------------------------------------------


def run_main(args, data_dir, env_extra=None, wait=WAIT):
    env = {k: v for k, v in os.environ.items() if k not in ("KD_LOCK_URL", "KD_DATA_DIR")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, MAIN, "--data-dir", data_dir, "--lan-port", "0"] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=wait)


class Running:
    """``main.py`` started in the background; ``ready()`` waits for its running line."""

    def __init__(self, args, data_dir):
        env = {k: v for k, v in os.environ.items() if k not in ("KD_LOCK_URL", "KD_DATA_DIR")}
        # port 0: the LAN server takes a free port, never 9190 (which may be in use)
        self.proc = subprocess.Popen([sys.executable, MAIN, "--data-dir", data_dir, "--lan-port", "0"] + args,
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in iter(self.proc.stdout.readline, ""):
            self.lines.put(line)
        self.lines.put(None)

    def ready(self):
        line = self.lines.get(timeout=WAIT)
        assert line is not None, self.proc.stderr.read()
        return line

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(WAIT)
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()


def test_main_refuses_to_start_without_the_dongle(tmp_path):
    # the window's refusal (重试 / 退出, then exit code 4) is tested in tests/gui/test_shell_start.py
    data = str(tmp_path / "data")
    configure_site(data)
    proc = run_main(["--headless", "--lock", closed_port_url()], data)
    assert proc.returncode == 4, proc.stderr
    assert REFUSAL in proc.stderr and "请把本考点注册的机考锁插入" in proc.stderr
    assert "运行中" not in proc.stdout


def test_main_refuses_a_dongle_the_package_does_not_name(tmp_path, emu):
    data = str(tmp_path / "data")
    configure_site(data, lock_id="KDLOCK-11003-01", public_key=Signer.generate().public_key)
    proc = run_main(["--headless", "--lock", emu.url], data)
    assert proc.returncode == 4, proc.stderr
    assert REFUSAL in proc.stderr and "KDLOCK-11003-01" in proc.stderr and emu.lock_id in proc.stderr


def test_main_runs_with_the_packages_dongle(tmp_path, emu):
    data = str(tmp_path / "data")
    configure_site(data, lock_id=emu.lock_id, public_key=emu.public_key)
    app = Running(["--headless", "--lock", emu.url], data)
    try:
        assert "运行中" in app.ready()
    finally:
        assert app.stop() == 0


def test_main_in_drill_mode_brings_its_own_dongle(tmp_path):
    data = str(tmp_path / "data")
    app = Running(["--headless"], data)
    try:
        assert "运行中" in app.ready()
    finally:
        assert app.stop() == 0
    with open(os.path.join(data, "logs", "kaodian.log"), encoding="utf-8") as f:
        assert "演练模式" in f.read()
    assert os.path.exists(os.path.join(data, "drill", "lock", "dongle.json"))
