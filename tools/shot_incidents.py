"""docs/screenshots/28_incidents.png, 29_incident_form.png, 30_extra_time_box.png (and 1024/): 考场情况.

Run by tools/screenshots.py after its walks (``python3 tools/shot_incidents.py SIZE X OUT``):
a real authorized site (platform simulator, dongle emulator) whose wall clock is moved to
70 minutes into 第一场次, with what a day could have brought: a drafted 网络中断 (待确认) and a
late start drafted by the site, a 网络中断 confirmed and its 补时 granted, a 设备故障 of one
candidate registered by hand, a drafted 未经许可开考 dismissed with a note. The records go
through the core (``incidents.store_drafts`` is the site's tick's own path, ``add``,
``confirm``, ``dismiss``, ``extra_time.grant``). Pictures: the page with the drafted outage
selected, the 登记情况 form being filled, and the real 补时 question (kd.views.dialogs, answered
否) for a confirmed outage of 18 minutes. The status bar's clock shows the site's moved clock.
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

from kd.core.incidents import Category, Draft, Kind  # noqa: E402
from kd.core.services import Core  # noqa: E402
from kd.formats.timeutil import CST, format_time, parse_time  # noqa: E402
from kd.views.dialogs import Dialogs, _Box  # noqa: E402
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
scripted = ScriptedDialogs(root)
shell = Shell(root, core, dialogs=scripted, user="admin", log_path=LOG, on_exit=lambda r: None, browser=lambda u: None)
start = parse_time(next(s for s in env.ctx.manifest()["sessions"] if s["id"] == "1")["start"])
codes = sorted(room_codes(env))
late = codes[6]
for c in codes[:6]:
    core.verification.start_permit(c, "1")
wall.offset += start - env.ctx.now()
for c in codes[:6]:
    core.monitor.heartbeat(c, {"session_id": "1", "started": True, "ended": False, "logged_in": 6, "in_exam": 6})
wall.offset += datetime.timedelta(minutes=8)
core.verification.start_permit(late, "1")
core.monitor.heartbeat(late, {"session_id": "1", "started": True, "ended": False, "logged_in": 6, "in_exam": 6})
wall.offset += start + datetime.timedelta(minutes=70) - env.ctx.now()


def at(minutes):
    return start + datetime.timedelta(minutes=minutes)


def outage(room, begin, end):
    text = "考场 {} 与考点机失去连接 {} 秒。".format(room, int((end - begin).total_seconds()))
    return Draft("outage|{}|1|{}".format(room, format_time(begin)), Kind.OUTAGE, Category.NETWORK, room, "1",
                 begin, end, text)


ticket = next(c["ticket"] for c in env.ctx.manifest()["candidates"] if c["room"] == codes[0] and c["session"] == "1")
core.incidents.add(room=codes[0], session="1", category="device", start=at(21), end=at(27),
                   description="考生机蓝屏，换备用机后继续作答", actor="admin", candidates=[ticket])
granted, lost, drafted = core.incidents.store_drafts([
    outage(codes[2], at(32), at(44) - datetime.timedelta(seconds=25)),
    outage(codes[4], at(40), at(58)),
    outage(codes[1], at(61), at(64) - datetime.timedelta(seconds=10))])
core.incidents.confirm(granted["id"], "admin", "交换机断电，已恢复")
core.extra_time.grant(codes[2], "1", 12, actor="admin", reason="考场情况记录 {}：丢失 12 分钟".format(granted["id"]),
                      incident_ids=[granted["id"]])
core.incidents.confirm(lost["id"], "admin")
core.incidents.store_drafts([Draft("late_start|{}|1".format(late), Kind.LATE_START, Category.STAFF, late, "1", start,
                                   at(8), "考场 {} 晚于开考时间 8 分钟开考。".format(late))])
(bad,) = core.incidents.store_drafts([Draft("unpermitted|{}|1".format(codes[5]), Kind.UNPERMITTED, Category.STAFF,
                                            codes[5], "1", at(0), at(0),
                                            "考场 {} 未经许可开考（开考前未获得开考许可）。".format(codes[5]))])
core.incidents.dismiss(bad["id"], "admin", "监考机时钟偏差误报，已核实按时获得许可")

# the status bar's clock reads the site's (moved) clock, as the real one would at that time of the day
shell.status._tick = lambda: shell.status.labels["clock"].configure(
    text=env.ctx.now().astimezone(CST).strftime("%Y-%m-%d %H:%M:%S"))
shell.status._tick()
shell.show("考场情况")
page = shell.current
pump_until(root, lambda: len(page.table.cells()) == 6, what="the records")
page.table.select_index([r[0] for r in page.table.cells()].index(drafted["id"]))
root.update()
shoot = Camera(root, x, w, h, out)
shoot("28_incidents")

page.buttons["登记情况"].invoke()
form = page.form
form.fill(room=codes[3], category=Category.CANDIDATE, start=at(66).astimezone(start.tzinfo).strftime("%Y-%m-%d %H:%M"),
          description="考生突发身体不适，经校医处理后返回考场继续考试")
pump_until(root, form.winfo_viewable, what="the form")
shoot("29_incident_form")
form.close()

page.table.select_index([r[0] for r in page.table.cells()].index(lost["id"]))
root.update()
shell.loop.dialogs = Dialogs(root)
done = []


def poll():
    box = next((b for b in root.winfo_children() if isinstance(b, _Box) and b.winfo_viewable()), None)
    if box is None:
        root.after(50, poll)
        return
    shoot("30_extra_time_box")
    done.append(True)
    next(b for b in box.buttons if str(b.cget("text")) == "否").invoke()


root.after(50, poll)
page.buttons["补时"].invoke()
pump_until(root, lambda: done, what="the 补时 question")
shell.loop.dialogs = scripted
shell.close()
lan.stop()
core.stop()
env.close()
root.destroy()
