"""Kill ``main.py load --zip`` before every file operation (and at random): old or new, never a mix.

A data folder holds an older site package (3 rooms); ``load --zip`` installs a newer
one (the sessions moved, so every room file changed, and a fourth room). The command
runs under ``killpoint.py``, which SIGKILLs it just before its N-th file operation in
the data folder, for every N the command has; then random-time kills. After each kill
the folder is opened as the next start opens it (``DataFolder.finish_interrupted`` and
the stores) and must hold exactly the old package or exactly the new one: manifest,
meta, the room files (hash by hash), the runtime's rooms, sessions and room-sessions,
every room with its registration code (the old rooms keep theirs), and nothing left
of the staging.
"""

import copy
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from kd.core import model
from kd.platform.signer import write_offline_files
from kd.store.datafolder import DataFolder
from tests.support.cli import MAIN, ROOT, child_env, cli_env, configure, with_password

KILLPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "killpoint.py")
RANDOM_KILLS = int(os.environ.get("KD_LOAD_RANDOM_KILLS", "12"))

pytestmark = pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")


def run(env, data, args, kill_at=0, kill_after=None):
    """The command under killpoint.py; admin's password on stdin when it asks (written at once)."""
    args, stdin = with_password(args)
    argv = [sys.executable, KILLPOINT, str(kill_at), data, MAIN, "--data-dir", data, "--lock", env.lock_url] + args
    proc = subprocess.Popen(argv, cwd=ROOT, env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, encoding="utf-8")
    try:
        out, err = proc.communicate(stdin, timeout=120 if kill_after is None else kill_after)
    except subprocess.TimeoutExpired:
        if kill_after is None:
            raise
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def newer_package(env, out):
    """The simulator's site with a fourth room and the sessions moved: a newer package."""
    site = env.sim.data.site
    first = site["rooms"][0]
    code = first["code"][:-3] + "{:03d}".format(len(site["rooms"]) + 1)
    site["rooms"].append(dict(first, code=code, name="第{}考场".format(len(site["rooms"]) + 1)))
    extra = []
    for c in site["candidates"]:
        if c["room"] == first["code"]:
            extra.append(dict(copy.deepcopy(c), room=code, ticket="9" + c["ticket"][1:]))
    site["candidates"].extend(extra)
    time.sleep(1.1)  # the publish time has a resolution of one second
    env.sim.republish_at(120)
    return write_offline_files(env.sim.data, out, ["package"])[0]


def state_of(data):
    """Open ``data`` as a start would, then describe what it holds (or fail the test)."""
    folder = DataFolder(data)
    folder.finish_interrupted()
    stores = folder.open_stores()
    try:
        manifest = stores.exam.get(model.PACKAGE, model.MANIFEST)
        meta = stores.exam.get(model.PACKAGE, model.PACKAGE_META)
        rooms = stores.runtime.items(model.ROOMS)
        sessions = stores.runtime.items(model.SESSIONS)
        room_sessions = stores.runtime.items(model.ROOM_SESSIONS)
    finally:
        stores.close()
    leftovers = [n for n in os.listdir(data) if n in (".tx", "tx.journal") or n.startswith(("rooms.", ".restore"))]
    assert not leftovers, leftovers
    files = {}
    if os.path.isdir(folder.rooms_dir):
        for name in sorted(os.listdir(folder.rooms_dir)):
            with open(os.path.join(folder.rooms_dir, name), "rb") as f:
                files[name] = hashlib.sha256(f.read()).hexdigest()
    return {"publish_time": manifest and manifest["publish_time"], "meta_publish": meta and meta["publish_time"],
            "files": files, "rooms": {k: v["reg_code"] for k, v in rooms.items()},
            "sessions": sorted(sessions), "room_sessions": sorted(room_sessions),
            "manifest_rooms": manifest and {r["code"]: r for r in manifest["rooms"]},
            "members": manifest and {m["name"]: m["sha256"] for m in manifest["members"]}}


def check_consistent(state):
    """Internally consistent: meta, files, runtime tables all belong to the manifest."""
    assert state["publish_time"] == state["meta_publish"]
    codes = sorted(state["manifest_rooms"])
    assert sorted(state["rooms"]) == codes
    assert all(len(reg) == 8 for reg in state["rooms"].values())
    assert sorted(state["files"]) == [c + ".dat" for c in codes]
    for code in codes:
        assert state["files"][code + ".dat"] == state["members"]["rooms/{}.dat".format(code)], code


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("load-crash")
    env = cli_env(root, rooms=3, sessions=2, candidates=4, room_kb=8)
    try:
        old_zip = write_offline_files(env.sim.data, str(root / "old"), ["package"])[0]
        new_zip = newer_package(env, str(root / "new"))
        template = configure(env, "template")
        rc, out, err = run(env, template, ["load", "--zip", old_zip])
        assert rc == 0, err
        old = state_of(template)
        check_consistent(old)
        probe = str(root / "probe")
        shutil.copytree(template, probe)
        rc, out, err = run(env, probe, ["load", "--zip", new_zip])
        assert rc == 0, err
        count = int(err.rsplit("KILLPOINT-COUNT", 1)[1].split()[0])
        new = state_of(probe)
        check_consistent(new)
        assert new["publish_time"] != old["publish_time"] and len(new["rooms"]) == 4
        yield env, root, template, new_zip, old, new, count
    finally:
        env.close()


def check_old_or_new(data, old, new):
    state = state_of(data)
    check_consistent(state)
    if state["publish_time"] == old["publish_time"]:
        assert state == old
        return "old"
    assert state["publish_time"] == new["publish_time"]
    # the new package: the old rooms kept their registration codes
    assert {k: v for k, v in state["rooms"].items() if k in old["rooms"]} == old["rooms"]
    assert dict(state, rooms=None) == dict(new, rooms=None)
    return "new"


@pytest.mark.timeout(900)  # one main.py per file operation of a load: 80 s here, more on a slow machine
def test_kill_before_every_file_operation(site):
    env, root, template, new_zip, old, new, count = site
    assert count > 10
    seen = {"old": 0, "new": 0}
    for n in range(1, count + 1):
        data = str(root / "kill-{}".format(n))
        shutil.copytree(template, data)
        rc, _out, err = run(env, data, ["load", "--zip", new_zip], kill_at=n)
        assert rc in (-signal.SIGKILL, 0), err
        seen[check_old_or_new(data, old, new)] += 1
        shutil.rmtree(data)
    assert seen["old"] and seen["new"], seen
    print("load --zip: {} file operations, {} kills ended old, {} new".format(count, seen["old"], seen["new"]))


def test_kill_at_random_times(site):
    env, root, template, new_zip, old, new, _count = site
    rng = random.Random(11)
    for n in range(RANDOM_KILLS):
        data = str(root / "random-{}".format(n))
        shutil.copytree(template, data)
        run(env, data, ["load", "--zip", new_zip], kill_after=0.3 + rng.random() * 1.5)
        check_old_or_new(data, old, new)
        shutil.rmtree(data)
    # after a kill past the commit point, the next command finishes the install before it runs
    data = str(root / "again")
    for n in range(site[-1], 0, -1):  # the last kill point that leaves the journal
        shutil.rmtree(data, ignore_errors=True)
        shutil.copytree(template, data)
        rc, _out, _err = run(env, data, ["load", "--zip", new_zip], kill_at=n)
        if os.path.exists(os.path.join(data, "tx.journal")):
            break
    assert rc == -signal.SIGKILL and os.path.exists(os.path.join(data, "tx.journal"))
    rc, _out, err = run(env, data, ["status"])
    assert rc == 0, err
    assert not os.path.exists(os.path.join(data, "tx.journal"))
    rc, _out, err = run(env, data, ["load", "--zip", new_zip])
    assert rc == 0, err
    assert check_old_or_new(data, old, new) == "new"


def test_manifest_is_json(site):
    _env, _root, template, _zip, _old, _new, _count = site
    with open(os.path.join(template, "kaodian-data.json"), encoding="utf-8") as f:
        doc = json.load(f)
    assert doc["format"] == "kd-data-folder" and doc["stores"] == ["settings", "exam", "runtime"]
