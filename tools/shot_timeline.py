"""docs/screenshots/27_timeline.png (and 1024/): the 时间线 page over a real site at T+5 of 第一场次.

Run by tools/screenshots.py after its walks (``python3 tools/shot_timeline.py SIZE X OUT``):
a real authorized site (platform simulator, dongle emulator) whose wall clock is moved to
five minutes after the first session's start with two rooms not started, so the page, the
title bar's 告警 N and the alarm lines show what an administrator would see then (the status
bar's clock shows the site's moved clock).
"""
import datetime
import os
import pathlib
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))
os.environ["KD_NO_TRAY"] = "1"
from screenshots import Camera, serve_lan  # noqa: E402

from kd.core.services import Core  # noqa: E402
from kd.formats.timeutil import CST, parse_time  # noqa: E402
from kd.views.shell import Shell  # noqa: E402
from kd.views.start import make_window  # noqa: E402
from tests.integration.live_helpers import authorized_env, room_codes  # noqa: E402
from tests.support.clocks import ShiftedWall  # noqa: E402
from tests.support.ui import ScriptedDialogs, pump_until  # noqa: E402

size, x, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
w, h = (int(v) for v in size.split("x"))
root = make_window()
root.geometry("{}x{}+{}+0".format(w, h, x))
wall = ShiftedWall()
env = authorized_env(pathlib.Path(tempfile.mkdtemp()), clock=wall, rooms=8, sessions=2, candidates=6)
core = Core(env.ctx).start()
lan = serve_lan(core)  # the status bar as on a running site: 通讯: 运行
core.verification.verify_online("1", "admin")
LOG = os.path.join(tempfile.gettempdir(), "kd-shot.log")
shell = Shell(root, core, dialogs=ScriptedDialogs(root), user="admin", log_path=LOG,
              on_exit=lambda r: None, browser=lambda u: None)
start = parse_time(next(s for s in env.ctx.manifest()["sessions"] if s["id"] == "1")["start"])
wall.offset += start + datetime.timedelta(minutes=5) - env.ctx.now()
codes = room_codes(env)
for c in codes[:6]:
    core.verification.start_permit(c, "1")
    core.monitor.heartbeat(c, {"session_id": "1", "started": True, "ended": False, "logged_in": 6, "in_exam": 6})
core.timeline.tick()
# the status bar's clock reads the site's (moved) clock, as the real one would at that time of the day
shell.status._tick = lambda: shell.status.labels["clock"].configure(
    text=env.ctx.now().astimezone(CST).strftime("%Y-%m-%d %H:%M:%S"))
shell.status._tick()
shell.show("时间线")
page = shell.current
pump_until(root, lambda: page.table.cells() and page.alarm.cget("text") and shell.alarms.text, what="page")
shoot = Camera(root, x, w, h, out)
shoot("27_timeline")
shell.close()
lan.stop()
core.stop()
env.close()
root.destroy()
