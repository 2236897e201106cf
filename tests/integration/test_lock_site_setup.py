"""系统设置 against the plugged-in dongle's site, through ``kd.site.open_site`` as every start
opens a site: the drill platform over HTTP, the drill dongle emulator over ``socket://``
(registered by the drill platform to its site), real stores (issue 12 item 3)."""

import pytest

from kd.core import model
from kd.core.accounts import SetupRefused
from kd.lock import protocol as P
from kd.site import open_site

DRILL = {"rooms": 2, "sessions": 1, "candidates": 2, "room_kb": 4}
NEW = "drill-2026"


pytestmark = pytest.mark.usefixtures("no_env_lock")


def test_a_site_code_other_than_the_dongles_is_refused_at_setup_not_at_load(tmp_path):
    data = str(tmp_path / "data")
    site = open_site(data, drill_site=DRILL)
    try:
        registered = site.simulator.site_code
        assert registered == "11003"
        assert site.gate.info.site == P.SiteReading(P.SITE_REGISTERED, registered)
        assert site.ctx.dongle.site_code() == registered
        accounts = site.core.accounts
        accounts.change_password("admin", "888", NEW)
        before = site.ctx.site()
        with pytest.raises(SetupRefused) as e:
            accounts.setup("11004", model.FORMAL, "admin")
        assert (e.value.cause, e.value.remedy) == ("考点代码 11004 与机考锁登记的考点（11003）不一致。",
                                                   "请核对考点代码，或插入本考点的机考锁。")
        assert site.ctx.site() == before and accounts.needs_setup()  # nothing changed
        out = accounts.setup(registered, model.MOCK, "admin")
        assert out["site_code"] == registered and out["dongle_site"] == registered
        assert site.core.loading.load_online("admin")  # 载入 works: the platform knows this site
    finally:
        site.close()
