"""The proctor simulator through a storage failure at commit and a lost commit reply.

One room, one session (so nothing else writes the runtime DB while it is blocked). When
the last chunk of the result arrives the runtime DB is made unwritable (a folder where it
writes its next generation); the commit answers ``E_STORAGE`` and the DB is given back
(on ``lan.commit_failed``); the proctor waits ``retry_after`` and commits again without
resending; that commit's reply is lost (the server cuts the room's connection on
``lan.committed``); the proctor begins again, is told ``committed`` and commits once more.
"""

import os
import threading

from kd.core import model
from kd.core.authorization import AuthorizationService
from kd.lan.simulator import SimOptions, Simulation, rooms_from_site_info
from tests.integration.lan_support import LanSite
from tests.integration.live_helpers import sync


def test_simulator_rides_out_a_storage_error_and_a_lost_commit_reply(tmp_path):
    site = LanSite(tmp_path / "site", rooms=1, sessions=1, storage_retry_after=0.1)
    try:
        blocker = os.path.join(site.ctx.data_dir, "db", "runtime.json.tmp")
        seen = {"chunks": 0, "failed": [], "committed": 0}
        lock = threading.Lock()

        def on_upload(event):  # the last chunk is in: the disk "fills up" before the commit
            with lock:
                if event.data["offset"] == event.data["size"] and not seen["failed"] and not os.path.exists(blocker):
                    os.mkdir(blocker)

        def on_failed(event):  # the administrator frees the disk
            with lock:
                seen["failed"].append(event.data)
                if os.path.isdir(blocker):
                    os.rmdir(blocker)

        def on_committed(event):  # the network drops the first successful commit's reply
            with lock:
                seen["committed"] += 1
                if seen["committed"] == 1:
                    site.server.disconnect_room(event.data["room"])

        site.ctx.hub.on("lan.upload", on_upload)
        site.ctx.hub.on("lan.commit_failed", on_failed)
        site.ctx.hub.on("lan.committed", on_committed)

        paths = site.registration.export_site_info(str(tmp_path / "usb"), "admin", "127.0.0.1", site.port)
        session = site.ctx.manifest()["sessions"][0]["id"]
        AuthorizationService(site.ctx).authorize_online(session, "admin")
        sync(site.env)
        site.verification.verify_online(session, "admin")
        rooms = rooms_from_site_info(paths["kdinfo"], 1)
        sim = Simulation("127.0.0.1", site.port, rooms, SimOptions(
            speed=90 * 60 / 0.5, result_mb=0.3, work_dir=str(tmp_path / "proctors"), permit_every=0.1)).start()
        try:
            report = sim.wait(60)
        finally:
            sim.stop()
        assert report["ok"], report["failures"]
        assert [f["code"] for f in seen["failed"]] == ["E_STORAGE"] and seen["failed"][0]["kept"] is True
        assert seen["committed"] == 1  # recorded once; the second commit answered from the record
        assert report["upload_retries"] == 2  # after E_STORAGE, after the lost reply
        result = report["results"][0]
        doc = site.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(result["room"], result["session"]))
        assert doc["result"]["sha256"] == result["sha256"]
        assert site.ctx.spool.verify(result["sha256"])
        assert site.server.partial_uploads() == []
    finally:
        if os.path.isdir(blocker):
            os.rmdir(blocker)
        site.close()
