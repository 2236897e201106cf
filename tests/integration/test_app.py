"""The running App (the GUI's, over ``kd.site.open_site``) in drill mode: platform simulator,
drill dongle, core, LAN service, ticks; stopping after a refused start."""

import socket
import threading

import pytest

from kd.app import App
from kd.core import model
from kd.lock.gate import LockGateError
from kd.store.datafolder import DataFolder


def test_drill_app_starts_wires_and_stops(tmp_path):
    app = App(str(tmp_path), lan_host="127.0.0.1", lan_port=0, drill_site={"rooms": 2, "room_kb": 4},
              probe_s=0.05)
    sub = app.hub.subscribe(["net.status"])
    try:
        app.start()
        assert app.drill and app.simulator is not None
        site = app.ctx.site()
        assert site["drill"] is True and site["platform_url"] == app.simulator.url
        assert app.ctx.dongle.attached() and app.ctx.lan is app.lan and app.lan.listening()
        with socket.create_connection(("127.0.0.1", app.lan.port()), timeout=5):
            pass
        assert sub.wait_for(lambda e: e.data["ok"], timeout=10) is not None
        # the drill platform serves this site: loading works end to end
        app.core.accounts.login("admin", "888")
        app.core.accounts.change_password("admin", "888", "drill-2026")
        app.core.accounts.setup("11003", model.MOCK, "admin")
        app.core.loading.load_online("admin")
        assert len(app.core.registration.snapshot()["rooms"]) == 2
    finally:
        app.stop()
    assert not app.lan.listening()
    # a second start on the same folder is still drill (the site was set up against the drill platform)
    again = App(str(tmp_path), lan_host="127.0.0.1", lan_port=0, drill_site={"rooms": 2, "room_kb": 4})
    try:
        again.start()
        assert again.drill and again.ctx.site()["site_code"] == "11003"
        assert again.ctx.dongle.lock_id() == again.ctx.manifest()["lock"]["id"]
    finally:
        again.stop()


def test_stop_after_a_refused_start_and_twice(tmp_path):
    data = str(tmp_path)
    stores = DataFolder(data).open_stores()
    stores.settings.put(model.SETTINGS, model.SITE, {"site_code": "11003", "mode": model.FORMAL})
    stores.close()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    url = "socket://127.0.0.1:{}".format(s.getsockname()[1])
    s.close()
    before = set(threading.enumerate())
    app = App(data, lock_url=url, lan_host="127.0.0.1", lan_port=0)
    with pytest.raises(LockGateError):
        app.start()
    app.stop()
    app.stop()
    assert app.core is None and app.lan is None and not app.drill
    assert [t.name for t in threading.enumerate() if t not in before and t.is_alive()] == []
