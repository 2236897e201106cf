"""The address proctors are told: this PC's IPv4 addresses, the administrator's pick, the bind, 封场检测.

Real parts: a real ``LanServer`` on real sockets (``LanSite``), the real drill ``App``
(open_site with its platform simulator and dongle emulator), the real seal check.
"""

import pytest

from kd.app import App
from kd.core import model
from kd.core.outbox import Outbox
from kd.core.seal import FAIL, PASS, SealCheckService
from kd.core.status import StatusService, told_address
from kd.errors import UserError
from kd.lan import addresses
from kd.lan.server import LanOptions
from kd.site import bound_lan
from tests.integration.lan_support import LanSite


def test_lan_addresses_come_first_link_local_and_loopback_last():
    found = ["127.0.1.1", "169.254.3.4", "192.168.1.5", "8.8.4.4", "10.0.0.2", "192.168.1.5", "bogus", "0.0.0.0"]
    assert addresses.order(found) == ["192.168.1.5", "10.0.0.2", "8.8.4.4", "169.254.3.4", "127.0.1.1"]
    # the routing table's pick leads its group
    assert addresses.order(found, routed=["10.0.0.2"])[:2] == ["10.0.0.2", "192.168.1.5"]
    assert addresses.order([]) == ["127.0.0.1"]


def test_this_pcs_addresses_are_bindable_and_the_best_is_first():
    found = addresses.ipv4_addresses()
    assert found and found[0] == addresses.best()
    assert all(addresses.is_local(a) for a in found), found
    assert not addresses.is_local("192.0.2.250") or "192.0.2.250" in found  # TEST-NET-1: not this PC's
    assert not addresses.is_local("not an address")


@pytest.fixture
def lan_site(tmp_path):
    site = LanSite(tmp_path, rooms=2, sessions=1, host="0.0.0.0")  # noqa: S104 - as the window starts it
    yield site
    site.close()


def test_the_probe_is_a_proctors_connect_and_bye(lan_site):
    assert addresses.probe("127.0.0.1", lan_site.port) is None
    lan_site.server.stop()
    why = addresses.probe("127.0.0.1", lan_site.port)
    assert why is not None and "127.0.0.1:{}".format(lan_site.port) in why


def test_the_chosen_address_is_told_remembered_and_audited(lan_site):
    status = StatusService(lan_site.ctx)
    found = lan_site.server.addresses()
    first = status.snapshot()
    assert first.lan_address == found[0] and first.lan_addresses == tuple(found) and first.lan_chosen is None
    pick = found[-1]
    snap = status.choose_address(pick, True, "admin")
    assert snap.lan_address == pick and snap.lan_chosen == pick and snap.lan_bind is True
    site = lan_site.ctx.site()
    assert site["lan_address"] == pick and site["lan_bind"] is True
    assert told_address(lan_site.ctx) == pick
    with pytest.raises(UserError) as e:
        status.choose_address("192.0.2.250", False, "admin")
    assert "不是本机当前的网络地址" in e.value.cause
    with pytest.raises(UserError):
        status.choose_address("本机", False, "admin")
    assert lan_site.ctx.site()["lan_address"] == pick  # refused picks change nothing


def test_an_address_that_went_away_is_not_told(lan_site):
    lan_site.ctx.stores.settings.put(model.SETTINGS, model.SITE,
                                     dict(lan_site.ctx.site(), lan_address="192.0.2.250"))
    assert told_address(lan_site.ctx) == lan_site.server.addresses()[0]


def test_the_bind_follows_the_setting_unless_a_host_was_given():
    every = LanOptions(host="0.0.0.0", port=0)  # noqa: S104
    assert bound_lan(every, {"lan_address": "127.0.0.1", "lan_bind": True}).host == "127.0.0.1"
    assert bound_lan(every, {"lan_address": "127.0.0.1", "lan_bind": False}).host == "0.0.0.0"  # noqa: S104
    assert bound_lan(every, {"lan_address": "192.0.2.250", "lan_bind": True}).host == "0.0.0.0"  # noqa: S104
    one = LanOptions(host="127.0.0.1", port=0)
    assert bound_lan(one, {"lan_address": addresses.best(), "lan_bind": True}).host == "127.0.0.1"


def test_the_running_site_binds_to_the_chosen_address_at_its_next_start(tmp_path):
    app = App(str(tmp_path), lan_port=0, drill_site={"rooms": 2, "room_kb": 4}, probe_s=3600.0).start()
    try:
        assert app.lan.addresses() == addresses.ipv4_addresses()  # every interface
        pick = app.lan.addresses()[0]
        app.core.status.choose_address(pick, True, "admin")
    finally:
        app.stop()
    again = App(str(tmp_path), lan_port=0, drill_site={"rooms": 2, "room_kb": 4}, probe_s=3600.0).start()
    try:
        assert again.lan.addresses() == [pick] and again.lan.address() == pick
        assert again.core.status.snapshot().lan_address == pick
    finally:
        again.stop()


def _seal_item(site):
    result = SealCheckService(site.ctx, Outbox(site.ctx), min_free_bytes=1).run("admin")
    return {i["id"]: i for i in result["items"]}["lan_address"]


def test_seal_check_connects_to_the_address_the_sheet_names(lan_site, tmp_path):
    ctx = lan_site.ctx
    ctx.stores.settings.put(model.SETTINGS, model.SITE, dict(ctx.site(), drill=True))
    StatusService(ctx).choose_address("127.0.0.1", False, "admin")
    before = _seal_item(lan_site)
    assert before["status"] == PASS and "尚未导出考点信息" in before["detail"]
    assert before["label"] == "考点信息表地址可连接"

    lan_site.registration.export_site_info(str(tmp_path / "usb"), "admin", None, lan_site.port)
    sheet = ctx.stores.runtime.get(model.CHECKS, model.SITE_INFO)
    assert (sheet["address"], sheet["port"]) == ("127.0.0.1", lan_site.port)
    html = (tmp_path / "usb" / "考点信息表({}).html".format(ctx.site_code())).read_text(encoding="utf-8")
    assert "127.0.0.1" in html
    item = _seal_item(lan_site)
    assert item["status"] == PASS and "考点信息表上的地址 127.0.0.1:{}".format(lan_site.port) in item["detail"]

    # outside drill mode a loopback address on the sheet reaches no other PC
    ctx.stores.settings.put(model.SETTINGS, model.SITE, dict(ctx.site(), drill=False))
    item = _seal_item(lan_site)
    assert item["status"] == FAIL and "回环地址" in item["detail"] and "导出考点信息" in item["remedy"]
    ctx.stores.settings.put(model.SETTINGS, model.SITE, dict(ctx.site(), drill=True))

    # the sheet names another port than the one served now (a restart on another port)
    ctx.stores.runtime.put(model.CHECKS, model.SITE_INFO, dict(sheet, port=sheet["port"] + 1))
    item = _seal_item(lan_site)
    assert item["status"] == FAIL and "不同" in item["detail"] and "重新“导出考点信息”" in item["remedy"]
    ctx.stores.runtime.put(model.CHECKS, model.SITE_INFO, sheet)

    # the service stopped: nothing answers on the sheet's address
    lan_site.server.stop()
    assert _seal_item(lan_site)["status"] == FAIL
