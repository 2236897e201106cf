"""导入考务 (§3.1) against the platform simulator over HTTP: online, manual, refusals."""

import datetime
import hashlib
import os
import zipfile

import pytest

from kd.core import model
from kd.core.loading import LoadingService, NotLoaded
from kd.errors import FormatError, PlatformError, StoreError, UserError
from kd.formats.timeutil import format_time
from kd.platform.signer import write_offline_files
from tests.support.env import make_env


@pytest.fixture
def env(tmp_path):
    e = make_env(tmp_path, rooms=3, sessions=2, candidates=5, room_kb=4)
    yield e
    e.close()


def offline_zip(env, name="offline"):
    out = os.path.join(env.root, name)
    paths = write_offline_files(env.sim.data, out, ["package"])
    return next(p for p in paths if p.endswith(".zip"))


def publish_at(env, moment):
    """A new package on the simulator with the publish time ``moment``."""
    env.sim.republish()
    env.sim.data.config["publish_time"] = format_time(moment)


def state(env):
    """Everything loading may change: the DB tables it writes and the room files."""
    ctx = env.ctx
    rooms_dir = os.path.join(env.data_dir, "rooms")
    files = {}
    if os.path.isdir(rooms_dir):
        for name in sorted(os.listdir(rooms_dir)):
            with open(os.path.join(rooms_dir, name), "rb") as f:
                files[name] = hashlib.sha256(f.read()).hexdigest()
    return {
        "exam": ctx.stores.exam.all(model.PACKAGE),
        "rooms": ctx.stores.runtime.all(model.ROOMS),
        "sessions": ctx.stores.runtime.all(model.SESSIONS),
        "rs": ctx.stores.runtime.all(model.ROOM_SESSIONS),
        "files": files,
        "data_dir": sorted(os.listdir(env.data_dir)),
    }


def test_online_load_installs_everything(env):
    svc = LoadingService(env.ctx)
    assert svc.snapshot()["loaded"] is False
    with pytest.raises(NotLoaded):
        svc.room_detail("11003001")
    sub = env.hub.subscribe(["package.loaded"])
    snap = svc.load_online("admin")
    manifest = env.ctx.manifest()
    assert snap["loaded"] and snap["source"] == "online" and snap["site_code"] == "11003"
    assert [r["code"] for r in snap["rooms"]] == [r["code"] for r in manifest["rooms"]]
    assert all(r["verified"] and r["session_count"] == 2 and r["verified_at"] for r in snap["rooms"])
    meta = env.ctx.stores.exam.get(model.PACKAGE, model.PACKAGE_META)
    assert meta["publish_time"] == manifest["publish_time"] == snap["publish_time"]
    assert meta["zip_sha256"] == env.sim.package_sha256()
    # room files are the signed ones
    for entry in manifest["members"]:
        if entry["name"].startswith("rooms/"):
            with open(os.path.join(env.data_dir, entry["name"]), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"]
    rooms = env.ctx.stores.runtime.all(model.ROOMS)
    codes = [r["reg_code"] for r in rooms]
    assert len(rooms) == 3 and len(set(codes)) == 3
    assert all(len(c) == 8 and c.isalpha() and c.isupper() and c.isascii() for c in codes)
    assert {s["id"] for s in env.ctx.stores.runtime.all(model.SESSIONS)} == {"1", "2"}
    assert len(env.ctx.stores.runtime.all(model.ROOM_SESSIONS)) == 6
    assert [e["action"] for e in env.ctx.audit.entries()][-1] == "package.loaded"
    assert sub.get(timeout=1) is not None
    assert not os.listdir(os.path.join(env.data_dir, "downloads"))


def test_manual_import_when_platform_refuses(env):
    path = offline_zip(env)
    env.sim.faults.set(refuse=503)
    svc = LoadingService(env.ctx)
    with pytest.raises(PlatformError) as info:
        svc.load_online("admin")
    assert "手工导入" in info.value.remedy
    assert not svc.loaded()
    snap = svc.import_zip(path, "admin")
    assert snap["loaded"] and snap["source"] == "manual" and len(snap["rooms"]) == 3


def test_bad_package_changes_nothing(env):
    svc = LoadingService(env.ctx)
    svc.load_online("admin")
    before = state(env)
    good = offline_zip(env)
    # one flipped byte in a room file member: the signed hash no longer matches
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("rooms/11003002.dat")
        offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 10
    with open(good, "rb") as f:
        data = bytearray(f.read())
    data[offset] ^= 0x01
    bad = os.path.join(env.root, "bad.zip")
    with open(bad, "wb") as f:
        f.write(data)
    with pytest.raises(FormatError):
        svc.import_zip(bad, "admin")
    not_zip = os.path.join(env.root, "not.zip")
    with open(not_zip, "wb") as f:
        f.write(b"PK\x03\x04 not really a zip")
    with pytest.raises(FormatError):
        svc.import_zip(not_zip, "admin")
    with pytest.raises(FormatError):
        svc.import_zip(os.path.join(env.root, "missing.zip"), "admin")
    assert state(env) == before


def test_rollback_to_an_older_package_refused(env):
    publish_at(env, env.ctx.now() - datetime.timedelta(hours=1))
    old = offline_zip(env, "old")
    publish_at(env, env.ctx.now())
    svc = LoadingService(env.ctx)
    svc.load_online("admin")
    before = state(env)
    with pytest.raises(FormatError) as info:
        svc.import_zip(old, "admin")
    assert "早于" in info.value.cause
    assert state(env) == before


def test_reload_keeps_codes_and_registrations(env):
    svc = LoadingService(env.ctx)
    svc.load_online("admin")
    rt = env.ctx.stores.runtime
    rt.update(model.ROOMS, "11003001", {"ip": "127.0.0.9", "token": "t", "registered_at": "x"})
    rt.update(model.SESSIONS, "1", {"authorized_at": "y"})
    before = {r["code"]: r for r in rt.all(model.ROOMS)}
    publish_at(env, env.ctx.now() + datetime.timedelta(minutes=1))
    snap = svc.load_online("admin")
    after = {r["code"]: r for r in rt.all(model.ROOMS)}
    assert after == before
    assert rt.get(model.SESSIONS, "1")["authorized_at"] == "y"
    assert snap["publish_time"] == env.sim.data.config["publish_time"]


def test_room_detail_and_door_sheet(env):
    svc = LoadingService(env.ctx)
    svc.load_online("admin")
    detail = svc.room_detail("11003002")
    assert [s["id"] for s in detail["sessions"]] == ["1", "2"]
    seats = [c["seat"] for c in detail["sessions"][0]["candidates"]]
    assert seats == sorted(seats) and len(seats) == 5
    with pytest.raises(UserError):
        svc.room_detail("nope")
    path = svc.print_door_sheet("11003002", "1")
    with open(path, encoding="utf-8") as f:
        page = f.read()
    assert "@page" in page and "A4" in page
    first = detail["sessions"][0]["candidates"][0]
    assert first["ticket"] in page and first["name"] in page
    assert detail["sessions"][1]["candidates"][0]["ticket"] not in page
    with pytest.raises(UserError):
        svc.print_door_sheet("11003002", "9")


def test_door_sheet_escapes_html(env):
    from kd.core import printing

    detail = {"code": "R1", "name": "<b>x</b>", "exam_name": "a&b", "sessions": [
        {"id": "1", "name": "s", "start": "t", "duration_min": 1,
         "candidates": [{"seat": 1, "ticket": "T", "name": "<script>alert(1)</script>", "subject_name": "m"}]}]}
    page = printing.door_sheet_html(detail)
    assert "<script>" not in page and "&lt;script&gt;" in page and "a&amp;b" in page


def test_failed_write_puts_everything_back(env):
    """The runtime DB cannot be written (its temp file path is taken by a folder): the
    new package's exam records and room folder are rolled back."""
    svc = LoadingService(env.ctx)
    svc.load_online("admin")
    before = state(env)
    publish_at(env, env.ctx.now() + datetime.timedelta(minutes=1))
    env.sim.data.site["rooms"] = env.sim.data.site["rooms"][:2]  # the new package has other room files
    env.sim.data.site["candidates"] = [c for c in env.sim.data.site["candidates"] if c["room"] != "11003003"]
    blocker = os.path.join(env.data_dir, "db", "runtime.json.tmp")
    os.mkdir(blocker)
    try:
        with pytest.raises(StoreError):
            svc.load_online("admin")
    finally:
        os.rmdir(blocker)
    assert state(env) == before
    snap = svc.load_online("admin")
    assert [r["code"] for r in snap["rooms"]] == ["11003001", "11003002"]
    assert sorted(os.listdir(os.path.join(env.data_dir, "rooms"))) == ["11003001.dat", "11003002.dat"]
