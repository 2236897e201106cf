"""kd.paths (portable data folder) and kd.events (the hub)."""

import os
import sys
import threading

import pytest

from kd import paths
from kd.errors import DataDirError
from kd.events import EventHub


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.ENV_DATA_DIR, raising=False)
    assert paths.data_dir() == os.path.join(paths.app_dir(), "data")
    assert os.path.exists(os.path.join(paths.app_dir(), "main.py"))  # from source: beside main.py
    monkeypatch.setenv(paths.ENV_DATA_DIR, str(tmp_path / "env"))
    assert paths.data_dir() == str(tmp_path / "env")
    assert paths.data_dir(str(tmp_path / "opt")) == str(tmp_path / "opt")


def test_frozen_paths(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "usb" / "kaodian.exe"))
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / "_MEI123"), raising=False)
    monkeypatch.delenv(paths.ENV_DATA_DIR, raising=False)
    assert paths.data_dir() == str(tmp_path / "usb" / "data")
    assert paths.resource_path("assets", "kaodian.png") == str(tmp_path / "_MEI123" / "assets" / "kaodian.png")


def test_prepare_refuses_an_unwritable_place_in_chinese(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"x")
    with pytest.raises(DataDirError) as info:
        paths.prepare_data_dir(str(blocker / "data"))
    assert "数据目录无法写入" in info.value.cause and "--data-dir" in info.value.remedy
    assert paths.prepare_data_dir(str(tmp_path / "ok")) == str(tmp_path / "ok")
    assert os.listdir(str(tmp_path / "ok")) == []  # the probe file is gone


def test_hub_delivers_to_matching_subscribers_across_threads():
    hub = EventHub()
    rooms = hub.subscribe(["room.registered"])
    everything = hub.subscribe()
    seen = []
    hub.on("room.registered", lambda e: seen.append(e.data["room"]))
    t = threading.Thread(target=lambda: [hub.publish("room.registered", room=str(i)) for i in range(100)])
    t.start()
    hub.publish("lock.detached")
    t.join()
    got = [e.data["room"] for e in iter(lambda: rooms.get(0), None)]
    assert got == [str(i) for i in range(100)] and seen == got
    assert len(everything.drain(1000)) == 101


def test_hub_bounded_queue_and_failing_listener():
    hub = EventHub()
    sub = hub.subscribe(maxlen=3)

    def boom(event):
        raise RuntimeError("listener bug")

    hub.on("x", boom)
    for i in range(5):
        hub.publish("x", i=i)  # the failing listener never reaches the publisher
    assert [e.data["i"] for e in sub.drain()] == [2, 3, 4] and sub.dropped == 2
    sub.close()
    hub.publish("x", i=9)
    assert sub.drain() == []


def test_wait_for_filters_and_times_out():
    hub = EventHub()
    sub = hub.subscribe()
    threading.Thread(target=lambda: [hub.publish("tick", n=n) for n in range(5)]).start()
    assert sub.wait_for(lambda e: e.data["n"] == 4, timeout=5).data["n"] == 4
    assert sub.wait_for(lambda e: True, timeout=0.05) is None
