"""The data folder: its manifest, refusing missing stores, and journaled file transactions on real files."""

import json
import os

import pytest

from kd.errors import StoreError, StoreMissingError
from kd.store import datafolder as df
from kd.store.datafolder import DataFolder


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_new_folder_gets_a_manifest_and_its_stores(tmp_path):
    folder = DataFolder(str(tmp_path / "data"))
    os.makedirs(folder.root)
    stores = folder.open_stores()
    stores.close()
    doc = json.loads(read(folder.path(df.MANIFEST)))
    assert doc["format"] == "kd-data-folder" and doc["stores"] == ["settings", "exam", "runtime"]
    for name in doc["stores"]:  # every listed store exists as a file from the start
        assert os.path.exists(folder.store_path(name) + ".1")


@pytest.mark.parametrize("name", ["settings", "exam", "runtime"])
def test_a_deleted_store_is_refused_by_name(tmp_path, name):
    folder = DataFolder(str(tmp_path))
    stores = folder.open_stores()
    stores.settings.put("settings", "site", {"site_code": "11003"})
    stores.close()
    for suffix in (".0", ".1"):
        if os.path.exists(folder.store_path(name) + suffix):
            os.remove(folder.store_path(name) + suffix)
    with pytest.raises(StoreMissingError) as e:
        folder.open_stores()
    assert name + ".json" in e.value.cause
    stores = folder.open_stores(accept=(name,))  # the explicit way out
    stores.close()
    folder.open_stores().close()  # and from then on it opens normally


def test_deleted_newer_generation_is_refused(tmp_path):
    folder = DataFolder(str(tmp_path))
    stores = folder.open_stores()
    for i in range(3):
        stores.runtime.put("acks", str(i), {"i": i})
    stores.close()
    slots = [folder.store_path("runtime") + s for s in (".0", ".1")]
    newest = max(slots, key=lambda p: json.loads(open(p, "rb").read().split(b"\n", 1)[0])["gen"])
    os.remove(newest)
    with pytest.raises(StoreMissingError):
        folder.open_stores()


def test_older_folder_without_manifest_is_migrated(tmp_path):
    from kd.store.database import open_stores

    stores = open_stores(str(tmp_path))  # what a version before the manifest left
    stores.settings.put("settings", "site", {"site_code": "11003"})
    stores.close()
    folder = DataFolder(str(tmp_path))
    stores = folder.open_stores()
    assert stores.settings.get("settings", "site") == {"site_code": "11003"}
    stores.close()
    assert json.loads(read(folder.path(df.MANIFEST))).get("migrated") is True


def test_exam_files_without_any_store_are_refused(tmp_path):
    write(str(tmp_path / "audit.log"), '{"seq":1}\n')
    with pytest.raises(StoreMissingError):
        DataFolder(str(tmp_path)).open_stores()


def make_tx(folder, stores, new_rooms):
    tx = folder.begin("load")
    for name, text in new_rooms.items():
        write(os.path.join(tx.stage("rooms"), name), text)
    tx.set_tables("exam", {"package": {"manifest": {"v": 2}}}, {"package": stores.exam.items("package")})
    tx.set_tables("runtime", {"rooms": {k: {"code": k} for k in new_rooms}}, {"rooms": stores.runtime.items("rooms")})
    return tx


@pytest.fixture
def loaded(tmp_path):
    folder = DataFolder(str(tmp_path / "data"))
    os.makedirs(folder.root)
    stores = folder.open_stores()
    write(folder.room_file("r1"), "old r1")
    stores.exam.put("package", "manifest", {"v": 1})
    stores.runtime.put("rooms", "r1.dat", {"code": "r1.dat"})
    stores.runtime.put("outbox", "x", {"kept": True})
    yield folder, stores
    stores.close()


def state(folder, stores):
    rooms = sorted(os.listdir(folder.rooms_dir)) if os.path.isdir(folder.rooms_dir) else None
    return (rooms, stores.exam.get("package", "manifest"), sorted(stores.runtime.items("rooms")),
            stores.runtime.get("outbox", "x"))


def test_commit_swaps_items_and_tables(loaded):
    folder, stores = loaded
    tx = make_tx(folder, stores, {"r1.dat": "new r1", "r2.dat": "new r2"})
    tx.commit({"exam": stores.exam, "runtime": stores.runtime})
    assert state(folder, stores) == (["r1.dat", "r2.dat"], {"v": 2}, ["r1.dat", "r2.dat"], {"kept": True})
    assert read(folder.room_file("r1")) == "new r1"
    assert not os.path.exists(folder.path(df.TX_DIR)) and not os.path.exists(folder.path(df.JOURNAL))


@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_failed_step_rolls_everything_back(loaded, monkeypatch, fail_at):
    folder, stores = loaded
    before = state(folder, stores)
    calls = []
    real = df._move

    def move(src, dst):
        calls.append(src)
        if len(calls) == fail_at:
            raise OSError("injected: the file is held by another program")
        real(src, dst)

    monkeypatch.setattr(df, "_move", move)
    tx = make_tx(folder, stores, {"r1.dat": "new r1", "r2.dat": "new r2"})
    with pytest.raises(OSError):
        tx.commit({"exam": stores.exam, "runtime": stores.runtime})
    monkeypatch.setattr(df, "_move", real)
    assert state(folder, stores) == before and read(folder.room_file("r1")) == "old r1"
    assert not os.path.exists(folder.path(df.JOURNAL))


def test_a_failed_table_write_rolls_the_items_back(loaded, monkeypatch):
    folder, stores = loaded
    before = state(folder, stores)
    tx = make_tx(folder, stores, {"r2.dat": "new r2"})
    real = df.apply_tables
    calls = []

    def apply(db, tables):
        calls.append(db)
        if len(calls) == 2:  # exam written, runtime fails: exam must be put back
            raise StoreError("injected: disk full")
        real(db, tables)

    monkeypatch.setattr(df, "apply_tables", apply)
    with pytest.raises(StoreError):
        tx.commit({"exam": stores.exam, "runtime": stores.runtime})
    assert state(folder, stores) == before


def killed_after_the_commit_point(folder, tx):
    """Killed right after the journal was written, before any swap: the load rolls forward."""


def killed_midway_back(folder, tx):
    """Killed between the two renames of a roll-back: the load rolls back."""
    df._move(folder.rooms_dir, os.path.join(tx.dir, "old", "rooms"))
    tx.direction = "back"
    tx._write_journal()


@pytest.mark.parametrize("killed, expected", [
    (killed_after_the_commit_point, (["r2.dat"], {"v": 2}, ["r2.dat"], {"kept": True})),
    (killed_midway_back, (["r1.dat"], {"v": 1}, ["r1.dat"], {"kept": True})),
])
def test_finish_interrupted_after_the_journal(loaded, killed, expected):
    folder, stores = loaded
    tx = make_tx(folder, stores, {"r2.dat": "new r2"})
    tx.items = [{"name": "rooms", "had": True}]
    tx._write_journal()
    killed(folder, tx)
    stores.close()
    assert folder.finish_interrupted() == "load"
    again = folder.open_stores()
    try:
        assert state(folder, again) == expected
    finally:
        again.close()


def test_unfinished_staging_without_journal_is_dropped(loaded):
    folder, stores = loaded
    make_tx(folder, stores, {"r2.dat": "new r2"})
    os.makedirs(folder.path("rooms.new-1234"))  # a load of the version before the journal
    assert folder.finish_interrupted() is None
    assert not os.path.exists(folder.path(df.TX_DIR)) and not os.path.exists(folder.path("rooms.new-1234"))
    assert state(folder, stores)[0] == ["r1.dat"]


def test_begin_refuses_while_a_journal_waits(loaded):
    folder, stores = loaded
    make_tx(folder, stores, {"r2.dat": "x"})._write_journal()
    with pytest.raises(StoreError):
        folder.begin("load")
