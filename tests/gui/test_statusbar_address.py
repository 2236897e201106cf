"""The main window's footer and the status bar's 地址 (the address proctors are told), on a real LAN server.

Before: the footer said ``系统版本：0.1.0    技术服务单位：考点系统技术服务中心    服务电话：400-000-0000``
(placeholders) and the status bar named no address at all.
"""

import pytest

import kd
from kd.core import model
from kd.lan import addresses
from kd.lan.server import LanOptions, LanServer
from kd.views.statusbar import BIND_LABEL
from tests.support.sites import main_window
from tests.support.ui import pump_until

pytestmark = pytest.mark.gui


def _lan(core):
    return LanServer(core.ctx, registration=core.registration, verification=core.verification,
                     monitor=core.monitor, recovery=core.recovery, loading=core.loading,
                     options=LanOptions(host="0.0.0.0", port=0)).start()  # noqa: S104 - as the window starts it


def test_the_footer_shows_the_version_and_only_the_contact_that_is_known(gui_root, scripted, tmp_path):
    with main_window(tmp_path, gui_root, scripted, "secret-1", load=True) as (env, core, shell):
        version = "系统版本: V{}".format(kd.__version__)
        pump_until(gui_root, lambda: not shell.loop.pending and shell.loop.idle(), 10, "the first reads")
        assert shell.footer.cget("text") == version
        contact = {"service_unit": "某某信息技术有限公司", "service_phone": "010-12345678"}
        env.ctx.stores.settings.put(model.SETTINGS, model.SITE, dict(env.ctx.site(), **contact))
        shell.refresh_title()
        want = version + " · 技术服务单位: 某某信息技术有限公司 · 服务电话: 010-12345678"
        pump_until(gui_root, lambda: shell.footer.cget("text") == want, 10, "the footer with the contact")
        # only a phone is known: no 技术服务单位 part
        site = dict(env.ctx.site(), service_unit="")
        env.ctx.stores.settings.put(model.SETTINGS, model.SITE, site)
        shell.refresh_title()
        pump_until(gui_root, lambda: shell.footer.cget("text") == version + " · 服务电话: 010-12345678", 10,
                   "the footer with the phone only")


def test_the_package_names_the_service_contact(gui_root, scripted, tmp_path):
    with main_window(tmp_path, gui_root, scripted, "secret-1", load=True) as (env, core, shell):
        manifest = env.ctx.stores.exam.get(model.PACKAGE, model.MANIFEST)
        manifest["service"] = {"unit": "省考试院技术组", "phone": "0571-8888"}
        env.ctx.stores.exam.put(model.PACKAGE, model.MANIFEST, manifest)
        shell.refresh_title()
        pump_until(gui_root, lambda: "技术服务单位: 省考试院技术组 · 服务电话: 0571-8888" in shell.footer.cget("text"),
                   10, "the package's contact")


def test_the_status_bar_names_the_address_and_the_picker_remembers_it(gui_root, scripted, tmp_path):
    found = addresses.ipv4_addresses()
    if len(found) < 2:
        pytest.skip("this PC has one IPv4 address: nothing to pick")
    with main_window(tmp_path, gui_root, scripted, "secret-1", load=True) as (env, core, shell):
        lan = _lan(core)
        try:
            shell._initial_status()
            bar = shell.status
            pump_until(gui_root, lambda: bar.texts()["address"] == "地址: {}".format(found[0]), 10, "地址")
            assert bar.texts()["port"] == "端口: {}".format(lan.port())
            assert bar.menu_labels() == tuple(found) + (BIND_LABEL,)
            bar.address_menu.invoke(len(found) - 1)  # the last address (loopback here)
            pump_until(gui_root, lambda: env.ctx.site().get("lan_address") == found[-1], 10, "the pick saved")
            pump_until(gui_root, lambda: bar.texts()["address"] == "地址: {}".format(found[-1]), 10, "shown")
            assert env.ctx.site().get("lan_bind") is False
            assert any("考点机地址已设为 {}".format(found[-1]) in text for _kind, text in shell.notes)
            bar.address_menu.invoke(len(found) + 1)  # 仅在此地址上提供考场通讯
            pump_until(gui_root, lambda: env.ctx.site().get("lan_bind") is True, 10, "the bind saved")
            assert core.status.snapshot().lan_address == found[-1]
        finally:
            lan.stop()
        scripted.check()
