"""The atomic storage: generations, recovery, refusal, failed writes."""

import logging
import os

import pytest

from kd.errors import StoreCorruptError, StoreError
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


def test_roundtrip_and_previous_generation(tmp_path):
    path = make(tmp_path)
    assert keys(path) == [0, 1, 2]
    tables, _ = atomic.decode(open(path + ".prev", "rb").read())
    assert sorted(tables["rooms"]) and len(tables["rooms"]) == 2  # one change behind


def test_new_store_is_empty_and_writes_nothing_until_a_change(tmp_path):
    db = Database.open(str(tmp_path / "x.json"))
    assert db.all("rooms") == []
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_corrupt_main_is_recovered_from_previous(tmp_path, caplog, damage):
    path = make(tmp_path)
    data = open(path, "rb").read()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        i = len(data) - 5
        data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
    elif damage == "empty":
        data = b""
    else:
        data = b"\x00\xff not json"
    open(path, "wb").write(data)
    with caplog.at_level(logging.CRITICAL):
        assert keys(path) == [0, 1]  # the previous generation
    assert any("CORRUPT" in r.getMessage() for r in caplog.records)
    kept = [n for n in os.listdir(str(tmp_path)) if ".corrupt-" in n]
    assert len(kept) == 1 and open(str(tmp_path / kept[0]), "rb").read() == data
    assert keys(path) == [0, 1]  # the main file was rewritten good


def test_both_generations_corrupt_refuses_and_touches_nothing(tmp_path):
    path = make(tmp_path)
    for p in (path, path + ".prev"):
        raw = open(p, "rb").read()
        open(p, "wb").write(raw[:-3])
    before = {n: open(str(tmp_path / n), "rb").read() for n in os.listdir(str(tmp_path))}
    with pytest.raises(StoreCorruptError) as info:
        Database.open(path)
    assert path in str(info.value)
    after = {n: open(str(tmp_path / n), "rb").read() for n in os.listdir(str(tmp_path))}
    assert after == before


def test_corrupt_main_without_previous_refuses(tmp_path):
    path = str(tmp_path / "settings.json")
    open(path, "wb").write(b'{"_default": {}}')  # plain TinyDB JSON: no header
    with pytest.raises(StoreCorruptError):
        Database.open(path)
    assert open(path, "rb").read() == b'{"_default": {}}'


def test_missing_main_after_interrupted_rename_uses_previous(tmp_path):
    path = make(tmp_path)
    os.replace(path, path + ".prev")  # crash between the two renames
    open(path + ".tmp", "wb").write(b"half")
    assert keys(path) == [0, 1, 2]
    assert os.path.exists(path) and not os.path.exists(path + ".tmp")


def test_failed_write_leaves_memory_and_disk_at_last_durable_state(tmp_path):
    path = make(tmp_path)
    db = Database.open(path)
    os.mkdir(path + ".tmp")  # the temp file cannot be created: a real OSError on write
    with pytest.raises(StoreError) as info:
        db.put("rooms", "9", {"n": 9})
    assert "无法保存数据" in str(info.value)
    assert sorted(d["n"] for d in db.all("rooms")) == [0, 1, 2]
    os.rmdir(path + ".tmp")
    assert keys(path) == [0, 1, 2]
    db.put("rooms", "3", {"n": 3})  # and the store keeps working afterwards
    assert keys(path) == [0, 1, 2, 3]


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
    assert db.find("rooms", n=5) == []
    with db.transaction():
        db.put("rooms", "5", {"n": 5})
        db.put("rooms", "6", {"n": 6})
    tables, _ = atomic.decode(open(path + ".prev", "rb").read())
    assert len(tables["rooms"]) == 1  # the block was a single generation
    assert keys(path) == [0, 5, 6]
