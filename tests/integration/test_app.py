"""The running App in drill mode: platform simulator, drill dongle, core, LAN service, ticks."""

import socket

from kd.app import App
from kd.core import model


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
