"""``proof export`` and ``proof verify`` through real ``main.py`` processes (issue 16).

A site loads its package from the platform simulator over HTTP, recovers every room by
hand, backs up to the external folder, uploads; ``proof export`` has the dongle emulator
sign the proof. ``proof verify`` then checks it with the platform key alone: good (exit
0, also while another process holds the data folder); a site that changed one attendance
entry, one result hash or one receipt and signed again with its own dongle (exit 2,
naming the check, the room and the ticket); a file changed after signing (signature); a
wrong ``--trust`` key (manifest).
"""

import base64
import json
import os

import pytest

from kd.events import EventHub
from kd.formats import proof as P
from kd.formats.signing import Signer
from kd.lock.coreport import DonglePort
from kd.lock.driver import LockDriver
from kd.store.instance import InstanceLock
from tests.support.cli import backed_up, cli_env, kd, ok
from tests.support.env import SITE
from tests.support.fixtures import closed_after

env = closed_after(lambda tmp_path: cli_env(tmp_path, rooms=3, sessions=1, candidates=4, room_kb=4))


@pytest.fixture
def proof_file(env, tmp_path, external_dir):
    data = backed_up(env, "site", tmp_path, external_dir)
    ok(kd(env, data, "upload"))
    out = str(tmp_path / "proofs")
    refused = kd(env, data, "proof", "export", "--session", "1", out, password=None)
    assert refused.returncode == 2 and "--password-stdin" in refused.stderr and not os.path.exists(out)
    done = json.loads(ok(kd(env, data, "proof", "export", "--session", "1", out, "--json")).stdout)
    assert done["ok"] and done["path"] == os.path.join(out, "考点数据完整性证明({}-1).json".format(SITE))
    assert os.path.exists(os.path.join(data, "proofs", os.path.basename(done["path"])))  # kept in the data folder
    return data, done["path"]


def resigned(env, path, change):
    """The proof with ``change(body)`` applied and signed again by the site's own dongle (the emulator)."""
    with open(path, "rb") as f:
        doc = json.loads(f.read().decode("utf-8"))
    detail = change(doc["body"])
    driver = LockDriver(env.lock_url, EventHub(), keepalive=None).start(wait=True)
    try:
        data = P.encode(P.seal(doc["body"], DonglePort(driver).sign))
    finally:
        driver.stop()
    changed = path[:-5] + "-changed.json"
    with open(changed, "wb") as f:
        f.write(data)
    return changed, detail


def test_a_good_proof_verifies_with_the_folder_s_platform_key_without_password_or_lock(env, proof_file):
    data, path = proof_file
    got = ok(kd(env, data, "proof", "verify", path, password=None))
    assert got.stdout.startswith("验证通过：证明有效：考点 {}，场次 1，3 个考场".format(SITE)), got.stdout
    held = InstanceLock(data)
    held.acquire()  # a window holds the folder: verify reads only the file and the settings files
    try:
        again = json.loads(ok(kd(env, data, "proof", "verify", path, "--json", password=None)).stdout)
    finally:
        held.release()
    assert again["ok"] and again["failures"] == []


def _attendance(body):
    room = body["rooms"][0]
    entry = room["attendance"][-1]
    entry["ticket"] = body["roster"][-1]["ticket"]  # a candidate of another room, twice
    return "attendance: 考场 {} 准考证号 {}".format(room["code"], entry["ticket"])


def _result_hash(body):
    room = body["rooms"][1]
    room["result"]["sha256"] = "f" * 64
    return "result_hash: 考场 {}".format(room["code"])


def _receipt(body):
    room = body["rooms"][2]
    room["receipt"] = body["rooms"][0]["receipt"]  # another room's receipt
    return "receipt: 考场 {}".format(room["code"])


@pytest.mark.parametrize("change", [_attendance, _result_hash, _receipt])
def test_one_changed_entry_signed_again_makes_verify_exit_2_naming_it(env, proof_file, change):
    data, path = proof_file
    changed, named = resigned(env, path, change)
    got = kd(env, data, "proof", "verify", changed, password=None)
    assert got.returncode == 2, got.stdout + got.stderr
    first = got.stdout.splitlines()[0]
    assert first.startswith("验证未通过：" + named), got.stdout


def test_a_file_changed_after_signing_fails_on_the_signature(env, proof_file):
    data, path = proof_file
    with open(path, "rb") as f:
        doc = json.loads(f.read().decode("utf-8"))
    doc["body"]["session_name"] += "（改）"
    changed = path[:-5] + "-edited.json"
    with open(changed, "wb") as f:
        f.write(P.encode(doc))
    got = kd(env, data, "proof", "verify", changed, password=None)
    assert got.returncode == 2 and got.stdout.startswith("验证未通过：signature: "), got.stdout


def test_a_wrong_trust_key_fails_on_the_manifest_and_the_right_one_passes(env, proof_file):
    data, path = proof_file
    wrong = base64.b64encode(Signer.generate().public_key).decode("ascii")
    got = kd(env, data, "proof", "verify", path, "--trust", wrong, password=None)
    assert got.returncode == 2 and got.stdout.startswith("验证未通过：manifest: "), got.stdout
    key_file = os.path.join(os.path.dirname(path), "platform.key")
    with open(key_file, "wb") as f:
        f.write(env.sim.public_key)
    ok(kd(env, data, "proof", "verify", path, "--trust", key_file, password=None))
