"""The atomic storage: generations, recovery, refusal, failed writes, incremental encoding."""

import json
import logging
import os
import time

import pytest

from kd.errors import StoreCorruptError, StoreError, StoreMissingError
from kd.store import atomic
from kd.store.database import Database


def make(tmp_path, n=3):
    path = str(tmp_path / "runtime.json")
    db = Database.open(path)
    for i in range(n):
        db.put("rooms", str(i), {"n": i, "名称": "考场{}".format(i)})
    db.close()
    return path


def keys(path):
    return sorted(d["n"] for d in Database.open(path).all("rooms"))


def slot(path, gen):
    return path + atomic.SLOTS[gen % 2]


def read_slot(path, gen):
    got_gen, tables, _ = atomic.decode(open(slot(path, gen), "rb").read())
    assert got_gen == gen
    return tables


def test_roundtrip_and_previous_generation(tmp_path):
    path = make(tmp_path)
    assert keys(path) == [0, 1, 2]
    assert len(read_slot(path, 3)["rooms"]) == 3
    assert len(read_slot(path, 2)["rooms"]) == 2  # the previous generation, one change behind
    assert sorted(os.listdir(str(tmp_path))) == ["runtime.json.0", "runtime.json.1"]


def test_new_store_is_empty_and_writes_nothing_until_a_change(tmp_path):
    db = Database.open(str(tmp_path / "x.json"))
    assert db.all("rooms") == []
    assert os.listdir(str(tmp_path)) == []


def damage(data, how):
    if how == "truncate":
        return data[: len(data) // 2]
    if how == "flip":
        i = len(data) - 5
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
    if how == "empty":
        return b""
    return b"\x00\xff not json"


@pytest.mark.parametrize("how", ["truncate", "flip", "empty", "garbage"])
def test_corrupt_current_generation_is_recovered_from_previous(tmp_path, caplog, how):
    path = make(tmp_path)
    bad = damage(open(slot(path, 3), "rb").read(), how)
    open(slot(path, 3), "wb").write(bad)
    with caplog.at_level(logging.CRITICAL):
        assert keys(path) == [0, 1]  # the previous generation
    assert any("CORRUPT" in r.getMessage() for r in caplog.records)
    kept = [n for n in os.listdir(str(tmp_path)) if ".corrupt-" in n]
    assert len(kept) == 1 and open(str(tmp_path / kept[0]), "rb").read() == bad
    assert keys(path) == [0, 1]  # and it stays recovered: the good state is current again
    db = Database.open(path)
    db.put("rooms", "7", {"n": 7})
    assert keys(path) == [0, 1, 7]


def test_corrupt_previous_generation_is_set_aside_and_nothing_lost(tmp_path, caplog):
    path = make(tmp_path)
    open(slot(path, 2), "wb").write(b"junk")
    with caplog.at_level(logging.CRITICAL):
        assert keys(path) == [0, 1, 2]
    assert any("CORRUPT" in r.getMessage() for r in caplog.records)


def test_both_generations_corrupt_refuses_and_touches_nothing(tmp_path):
    path = make(tmp_path)
    for gen in (2, 3):
        raw = open(slot(path, gen), "rb").read()
        open(slot(path, gen), "wb").write(raw[:-3])
    before = {n: open(str(tmp_path / n), "rb").read() for n in os.listdir(str(tmp_path))}
    with pytest.raises(StoreCorruptError) as info:
        Database.open(path)
    assert path in str(info.value)
    after = {n: open(str(tmp_path / n), "rb").read() for n in os.listdir(str(tmp_path))}
    assert after == before


def test_foreign_file_without_previous_refuses(tmp_path):
    path = str(tmp_path / "settings.json")
    open(path + ".0", "wb").write(b'{"_default": {}}')  # plain TinyDB JSON: no header
    with pytest.raises(StoreCorruptError):
        Database.open(path)
    assert open(path + ".0", "rb").read() == b'{"_default": {}}'


def test_interrupted_write_leaves_last_generation(tmp_path):
    path = make(tmp_path)
    open(path + ".tmp", "wb").write(b"half a generation")  # killed before the replace
    assert keys(path) == [0, 1, 2]
    assert not os.path.exists(path + ".tmp")


def test_failed_write_leaves_memory_and_disk_at_last_durable_state(tmp_path):
    path = make(tmp_path)
    db = Database.open(path)
    os.mkdir(path + ".tmp")  # the temp file cannot be created: a real OSError on write
    with pytest.raises(StoreError) as info:
        db.put("rooms", "9", {"n": 9})
    assert "无法保存数据" in str(info.value)
    assert sorted(d["n"] for d in db.all("rooms")) == [0, 1, 2]
    assert db.get("rooms", "9") is None
    os.rmdir(path + ".tmp")
    assert keys(path) == [0, 1, 2]
    db.put("rooms", "3", {"n": 3})  # and the store keeps working afterwards
    db.update("rooms", "0", {"n": 10})
    assert keys(path) == [1, 2, 3, 10]


def test_unserialisable_value_is_refused_before_touching_state(tmp_path):
    path = make(tmp_path)
    db = Database.open(path)
    with pytest.raises(TypeError):
        db.put("rooms", "9", {"n": object()})
    db.put("rooms", "3", {"n": 3})
    assert keys(path) == [0, 1, 2, 3]


def test_transaction_is_one_write_or_none(tmp_path):
    path = make(tmp_path, n=1)
    db = Database.open(path)
    with pytest.raises(RuntimeError):
        with db.transaction():
            db.put("rooms", "5", {"n": 5})
            assert db.find("rooms", n=5)
            raise RuntimeError("abort")
    assert db.find("rooms", n=5) == [] and db.get("rooms", "5") is None
    with db.transaction():
        db.put("rooms", "5", {"n": 5})
        db.put("rooms", "6", {"n": 6})
    assert len(read_slot(path, 2)["rooms"]) == 3  # the block was a single generation
    assert keys(path) == [0, 5, 6]


def test_incremental_encoding_matches_a_full_encoding(tmp_path):
    """Whatever sequence of changes, the file body equals json of the in-memory tables."""
    path = str(tmp_path / "x.json")
    db = Database.open(path)
    for i in range(30):
        db.put("a", str(i), {"i": i, "t": "文本\"\n"})
    for i in range(0, 30, 3):
        db.update("a", str(i), {"changed": True})
    for i in range(0, 30, 4):
        db.delete("a", str(i))
    db.put("a", "new", {"x": 1})
    db.replace_table("b", {"k": {"v": 1}})
    db.put("b", "k2", {"v": 2})
    with db.transaction():
        db.put("c", "1", {"v": [1, 2]})
        db.delete("a", "1")
    db.replace_table("b", {})
    gen = db._storage._gen
    _, tables, body = atomic.decode(open(slot(path, gen), "rb").read())
    assert json.loads(body) == db._storage.read()
    fresh = Database.open(path)
    assert fresh.all("a") == db.all("a") and fresh.all("b") == [] and fresh.get("c", "1") == {"v": [1, 2]}
    assert fresh.get("a", "1") is None and fresh.get("a", "3") == {"i": 3, "t": "文本\"\n", "changed": True}


# -- missing files, deleted generations, unreadable files ---------------------------------------
def test_must_exist_refuses_a_store_without_files_and_creates_nothing(tmp_path):
    path = str(tmp_path / "db" / "settings.json")
    with pytest.raises(StoreMissingError) as info:
        Database.open(path, must_exist=True)
    text = str(info.value)
    assert "db/settings.json" in text.replace(os.sep, "/") and "repair-db settings" in text
    assert "restore" in text and "数据文件缺失或被回退" in text
    assert not os.path.exists(str(tmp_path / "db")) or os.listdir(str(tmp_path / "db")) == []


def test_create_store_writes_generations_1_and_2_once(tmp_path):
    path = str(tmp_path / "exam.json")
    assert atomic.create_store(path) is True
    assert sorted(os.listdir(str(tmp_path))) == ["exam.json.0", "exam.json.1"]
    assert read_slot(path, 1) == {} and read_slot(path, 2) == {}
    db = Database.open(path, must_exist=True)
    assert db.tables() == [] and db.generation == 2
    db.put("t", "k", {"v": 1})
    db.close()
    assert atomic.create_store(path) is False  # an existing store is left as it is
    assert keys_of(path, "t") == [{"v": 1}]


def keys_of(path, table):
    return Database.open(path).all(table)


@pytest.mark.parametrize("deleted_gen", [3, 2])
def test_a_deleted_generation_is_refused_by_name(tmp_path, deleted_gen):
    path = make(tmp_path)  # generation 2 in .0, 3 in .1
    os.remove(slot(path, deleted_gen))
    for must_exist in (False, True):
        with pytest.raises(StoreMissingError) as info:
            Database.open(path, must_exist=must_exist)
        text = str(info.value)
        assert os.path.basename(slot(path, deleted_gen)) in text
        assert "第 {} 代".format(5 - deleted_gen) in text  # the generation that was found
        assert "repair-db runtime" in text
    assert not os.path.exists(slot(path, deleted_gen))  # nothing was touched


def test_single_first_generation_is_not_a_rollback(tmp_path):
    path = make(tmp_path, n=1)
    assert sorted(os.listdir(str(tmp_path))) == ["runtime.json.1"]
    assert Database.open(path, must_exist=True).all("rooms") == [{"n": 0, "名称": "考场0"}]


def test_accept_damage_opens_what_is_there_and_rewrites_both_slots(tmp_path, caplog):
    path = make(tmp_path)
    os.remove(slot(path, 3))
    with caplog.at_level(logging.CRITICAL):
        db = Database.open(path, accept_damage=True)
    assert sorted(d["n"] for d in db.all("rooms")) == [0, 1]  # generation 2: the last change is gone
    assert any("accept" in r.getMessage().lower() and r.levelno == logging.CRITICAL for r in caplog.records)
    assert db.generation == 3 and os.path.exists(slot(path, 3)) and os.path.exists(slot(path, 2))
    db.close()
    assert keys(path) == [0, 1]  # and it opens normally from now on


def test_accept_damage_without_files_creates_an_empty_store(tmp_path):
    path = str(tmp_path / "runtime.json")
    db = Database.open(path, must_exist=True, accept_damage=True)
    assert db.tables() == [] and os.listdir(str(tmp_path)) == ["runtime.json.1"]
    db.close()
    assert Database.open(path, must_exist=True).generation == 1


def test_accept_damage_with_both_generations_corrupt_keeps_them_and_opens_empty(tmp_path):
    path = make(tmp_path)
    for gen in (2, 3):
        open(slot(path, gen), "wb").write(b"junk")
    db = Database.open(path, accept_damage=True)
    assert db.all("rooms") == []
    kept = sorted(n for n in os.listdir(str(tmp_path)) if ".corrupt-" in n)
    assert len(kept) == 2 and all(open(str(tmp_path / n), "rb").read() == b"junk" for n in kept)
    db.close()
    assert keys(path) == []


def test_accept_damage_on_a_sound_store_changes_nothing(tmp_path):
    path = make(tmp_path)
    before = {n: open(str(tmp_path / n), "rb").read() for n in os.listdir(str(tmp_path))}
    assert sorted(d["n"] for d in Database.open(path, accept_damage=True).all("rooms")) == [0, 1, 2]
    assert {n: open(str(tmp_path / n), "rb").read() for n in os.listdir(str(tmp_path))} == before


def test_crash_inside_corrupt_recovery_still_opens(tmp_path, caplog):
    """An older version renamed the corrupt slot aside, then rewrote it: a kill in between
    leaves one slot and ``<slot>.corrupt-<time>`` — a recovery to finish, not a rollback."""
    path = make(tmp_path)
    kept = "{}.corrupt-{}".format(slot(path, 3), time.strftime("%Y%m%d-%H%M%S"))
    os.replace(slot(path, 3), kept)
    with caplog.at_level(logging.CRITICAL):
        assert keys(path) == [0, 1]
    assert os.path.exists(slot(path, 3)) and os.path.exists(slot(path, 2)) and os.path.exists(kept)
    assert keys(path) == [0, 1]


def test_an_old_corrupt_leftover_does_not_excuse_a_later_deletion(tmp_path):
    path = make(tmp_path)
    open(slot(path, 3) + ".corrupt-20200101-000000", "wb").write(b"junk from long ago")
    os.remove(slot(path, 3))
    with pytest.raises(StoreMissingError):
        Database.open(path)


def test_unreadable_generation_file_is_a_store_error_naming_it(tmp_path):
    path = make(tmp_path)
    os.remove(slot(path, 3))
    os.mkdir(slot(path, 3))  # a real OSError on open (IsADirectoryError; PermissionError on Windows)
    with pytest.raises(StoreError) as info:
        Database.open(path)
    text = str(info.value)
    assert not isinstance(info.value, (StoreMissingError, StoreCorruptError))
    assert "无法读取数据文件" in text and os.path.basename(slot(path, 3)) in text and "权限" in text
    assert "杀毒软件" in text and ("IsADirectoryError" in info.value.detail or "PermissionError" in info.value.detail)


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="chmod 000 blocks reads only for non-root POSIX")
def test_chmod_000_generation_file_is_a_store_error(tmp_path):
    path = make(tmp_path)
    os.chmod(slot(path, 3), 0)
    try:
        with pytest.raises(StoreError) as info:
            Database.open(path)
        assert "无法读取数据文件" in str(info.value)
    finally:
        os.chmod(slot(path, 3), 0o600)
