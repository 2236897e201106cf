"""考场监控's messages name a session as the tables do (第一场次), not ``场次 1`` (issue 14)."""

import pytest

from kd.core.monitor import MonitorService
from kd.core.outbox import Outbox
from kd.errors import StateRefused
from tests.integration.live_helpers import loaded_env


def test_an_end_without_a_start_names_the_session(tmp_path):
    env = loaded_env(tmp_path, rooms=1, sessions=1, first_start_in=30)
    try:
        monitor = MonitorService(env.ctx, Outbox(env.ctx))
        room = env.ctx.manifest()["rooms"][0]["code"]
        with pytest.raises(StateRefused) as refused:
            monitor.heartbeat(room, {"session_id": "1", "started": False, "ended": True})
        assert "考场 {} 第一场次尚未开考".format(room) in refused.value.cause
        assert "场次 1" not in refused.value.cause
        assert monitor.session_name("1") == "第一场次" and monitor.session_name("9") == "场次 9"
    finally:
        env.close()
