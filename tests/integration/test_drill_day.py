"""The drill's demo day (issue 14): both sessions can be verified with one 机考锁校时, and
the rule (a sync within the hour before the start) is the same as outside drill mode.

Over real parts: ``open_site`` in drill mode (platform simulator over HTTP, dongle
emulator), the manual's steps through the core.
"""

import datetime

import pytest

from kd.errors import FormatError
from kd.formats import documents
from kd.platform.demo import DRILL_DAY, day_fits_one_sync
from kd.site import open_site


def _day(data, site):
    """Open a drill site, log in, set up, load, authorize, sync once: the core, ready to verify."""
    opened = open_site(str(data), drill_site=site)
    core = opened.core
    core.accounts.login("admin", "888")
    core.accounts.change_password("admin", "888", "drill-2026", "drill-2026")
    core.accounts.setup(opened.simulator.site_code, "mock", "admin")
    core.loading.load_online("admin")
    core.authorization.authorize_online(None, "admin")
    opened.sync_lock()
    return opened


def test_the_default_drill_platform_is_the_drill_day(tmp_path):
    site = open_site(str(tmp_path / "data"))  # what the app opens in drill mode (no site asked for)
    try:
        demo = site.simulator.data.site
        assert len(demo["rooms"]) == DRILL_DAY["rooms"] == 30 and len(demo["sessions"]) == 2
        starts = [datetime.datetime.fromisoformat(s["start"]) for s in demo["sessions"]]
        assert starts[1] - starts[0] == datetime.timedelta(minutes=DRILL_DAY["duration"] + DRILL_DAY["gap"])
        now = datetime.datetime.now(starts[0].tzinfo)
        assert now < starts[0] <= now + datetime.timedelta(minutes=DRILL_DAY["first_start_in"])
        assert day_fits_one_sync(demo["sessions"])
    finally:
        site.close()


def test_both_sessions_of_the_drill_day_verify_with_one_sync(tmp_path):
    site = _day(tmp_path / "data", dict(DRILL_DAY, rooms=2, candidates=2, room_kb=4))
    try:
        for sid in ("1", "2"):
            site.core.verification.verify_online(sid, "admin")
        rows = {s["id"]: s for s in site.core.verification.snapshot()["sessions"]}
        assert rows["1"]["verified"] and rows["2"]["verified"]
    finally:
        site.close()


def test_the_sync_rule_is_not_weakened(tmp_path):
    """A day whose second session starts hours later (the old demo day): its 授权验证 is refused."""
    assert documents.SYNC_WINDOW == datetime.timedelta(hours=1)
    site = _day(tmp_path / "data", {"rooms": 2, "sessions": 2, "candidates": 2, "room_kb": 4,
                                    "first_start_in": 20, "duration": 90, "gap": 60})
    try:
        assert not day_fits_one_sync(site.simulator.data.site["sessions"])
        site.core.verification.verify_online("1", "admin")
        with pytest.raises(FormatError) as refused:
            site.core.verification.verify_online("2", "admin")
        assert "机考锁校时不符合要求" in refused.value.cause
    finally:
        site.close()
