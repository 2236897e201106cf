"""The keyed Database API on both storages, and thread safety."""

import threading

import pytest

from kd.store.database import Database, memory_stores, open_stores


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
