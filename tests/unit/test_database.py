"""The keyed Database API on both storages, and thread safety."""

import os
import threading

import pytest

from kd.errors import StoreClosedError, StoreError, StoreMissingError
from kd.store.atomic import AtomicJSONStorage, create_store
from kd.store.database import DB_FILES, Database, memory_stores, open_stores


@pytest.fixture(params=["memory", "file"])
def db(request, tmp_path):
    if request.param == "memory":
        return Database.in_memory()
    return Database.open(str(tmp_path / "t.json"))


def test_put_get_update_delete(db):
    db.put("rooms", "11003001", {"code": "11003001", "ip": None, "tags": ["a"]})
    assert db.get("rooms", "11003001") == {"code": "11003001", "ip": None, "tags": ["a"]}
    assert db.update("rooms", "11003001", {"ip": "10.0.0.5"})["ip"] == "10.0.0.5"
    db.put("rooms", "11003001", {"code": "11003001"})  # put replaces the whole document
    assert db.get("rooms", "11003001") == {"code": "11003001"}
    with pytest.raises(KeyError):
        db.update("rooms", "nope", {"x": 1})
    assert db.delete("rooms", "11003001") and not db.delete("rooms", "11003001")
    assert db.get("rooms", "11003001") is None


def test_reads_and_writes_are_copies(db):
    doc = {"tags": ["a"]}
    db.put("t", "k", doc)
    doc["tags"].append("changed-by-caller")
    got = db.get("t", "k")
    got["tags"].append("changed-by-reader")
    assert db.get("t", "k") == {"tags": ["a"]}
    db.all("t")[0]["tags"].clear()
    db.find("t", tags=["a"])[0]["tags"].clear()
    assert db.get("t", "k") == {"tags": ["a"]}


def test_find_count_replace_table_clear(db):
    db.replace_table("c", {str(i): {"room": str(i % 3), "i": i} for i in range(9)})
    assert db.count("c") == 9 and len(db.find("c", room="1")) == 3
    db.replace_table("c", {"x": {"room": "9"}})
    assert db.all("c") == [{"room": "9"}]
    db.clear()
    assert db.tables() == []


def test_concurrent_writers_lose_nothing(db):
    def writer(w):
        for i in range(25):
            db.put("w", "{}-{}".format(w, i), {"w": w, "i": i})
            db.update("w", "{}-{}".format(w, i), {"done": True})

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    docs = db.all("w")
    assert len(docs) == 100 and all(d["done"] for d in docs)


def test_open_stores_splits_files(tmp_path):
    stores = open_stores(str(tmp_path))
    stores.settings.put("site", "site", {"code": "11003"})
    stores.runtime.put("rooms", "1", {"ip": "1.2.3.4"})
    stores.close()
    reopened = open_stores(str(tmp_path))
    assert reopened.settings.get("site", "site") == {"code": "11003"}
    assert reopened.exam.tables() == [] and reopened.runtime.count("rooms") == 1
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == ["runtime.json.1", "settings.json.1"]
    assert memory_stores().runtime.all("rooms") == []


WRITES = {
    "put": lambda d: d.put("rooms", "1", {"x": 1}),
    "update": lambda d: d.update("rooms", "0", {"x": 2}),
    "delete": lambda d: d.delete("rooms", "0"),
    "replace_table": lambda d: d.replace_table("rooms", {}),
    "clear": lambda d: d.clear(),
    "transaction": lambda d: d.transaction().__enter__(),
}
READS = {
    "get": lambda d: d.get("rooms", "0"),
    "view": lambda d: d.view("rooms", "0", lambda doc: doc),
    "all": lambda d: d.all("rooms"),
    "items": lambda d: d.items("rooms"),
    "find": lambda d: d.find("rooms", x=0),
    "count": lambda d: d.count("rooms"),
    "tables": lambda d: d.tables(),
}


@pytest.mark.parametrize("call", sorted(WRITES) + sorted(READS))
def test_closed_database_refuses_every_call(db, call):
    db.put("rooms", "0", {"x": 0})
    db.close()
    db.close()  # idempotent
    with pytest.raises(StoreClosedError) as info:
        (WRITES.get(call) or READS[call])(db)
    assert "数据库已关闭" in str(info.value) and isinstance(info.value, StoreError)


def test_closed_store_cannot_overwrite_the_newer_store_of_a_restarted_app(tmp_path):
    path = str(tmp_path / "runtime.json")
    a = Database.open(path)
    a.put("rooms", "1", {"by": "a"})
    a.close()
    b = Database.open(path)  # the restarted app
    b.put("rooms", "2", {"by": "b"})
    with pytest.raises(StoreClosedError):
        a.put("rooms", "3", {"by": "a, after close"})
    b.close()
    c = Database.open(path)
    assert c.get("rooms", "2") == {"by": "b"} and c.get("rooms", "3") is None


def test_closed_storage_refuses_write(tmp_path):
    storage = AtomicJSONStorage(str(tmp_path / "s.json"))
    storage.write({"t": {"1": {"a": 1}}})
    storage.close()
    storage.close()
    with pytest.raises(StoreClosedError):
        storage.write({"t": {}})
    assert sorted(os.listdir(str(tmp_path))) == ["s.json.1"]


def test_open_stores_must_exist(tmp_path):
    with pytest.raises(StoreMissingError) as info:
        open_stores(str(tmp_path), must_exist=True)
    assert "settings.json" in str(info.value)
    for name in DB_FILES:
        create_store(str(tmp_path / "db" / (name + ".json")))
    stores = open_stores(str(tmp_path), must_exist=True)
    assert stores.settings.tables() == [] and stores.runtime.generation == 2
    stores.close()
