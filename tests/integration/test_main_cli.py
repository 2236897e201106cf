"""main.py as a process: version, data folder errors, single instance, clean shutdown, log."""

import os
import signal
import subprocess
import sys

import pytest

import kd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAIN = os.path.join(ROOT, "main.py")


def start(data_dir, *args):
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    env.pop("KD_DATA_DIR", None)
    return subprocess.Popen(
        [sys.executable, MAIN, "--data-dir", str(data_dir), "--lan-port", "0"] + list(args),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, encoding="utf-8", env=env,
    )


def wait_running(proc):
    for line in proc.stdout:
        if "运行中" in line:
            return line
    raise AssertionError("never ran: " + proc.stderr.read())


def test_version():
    out = subprocess.run([sys.executable, MAIN, "--version"], stdout=subprocess.PIPE, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "kaodian " + kd.__version__


def test_unwritable_data_dir_is_exit_2_with_remedy(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    proc = start(blocker / "data", "--headless")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "数据目录无法写入" in err and "--data-dir" in err


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM")
def test_second_instance_exits_3_and_first_stops_cleanly(tmp_path):
    first = start(tmp_path, "--headless")
    try:
        wait_running(first)
        second = start(tmp_path, "--headless")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 3 and "已经在运行" in err
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 0
    log = open(os.path.join(str(tmp_path), "logs", "kaodian.log"), encoding="utf-8").read().splitlines()
    assert "kaodian {} starting; argv=".format(kd.__version__) in log[0] and "[MainThread]" in log[0]
    assert "stopped cleanly" in log[-1] or any("stopped cleanly" in line for line in log)


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM")
def test_lan_host_binds_the_lan_service_to_one_address(tmp_path):
    proc = start(tmp_path, "--headless", "--lan-host", "127.0.0.1")
    try:
        wait_running(proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    log = open(os.path.join(str(tmp_path), "logs", "kaodian.log"), encoding="utf-8").read()
    assert "LAN service listening on 127.0.0.1:" in log


def test_lan_host_that_is_not_this_pcs_is_exit_2_naming_it(tmp_path):
    env = dict(os.environ, PYTHONIOENCODING="utf-8", KD_LAN_HOST="192.0.2.1")  # TEST-NET-1: never local
    env.pop("KD_DATA_DIR", None)
    out = subprocess.run([sys.executable, MAIN, "--data-dir", str(tmp_path), "--lan-port", "0", "--headless"],
                         capture_output=True, text=True, encoding="utf-8", env=env, timeout=120)
    assert out.returncode == 2 and "192.0.2.1" in out.stderr and "--lan-host" in out.stderr, out.stderr
