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
The window, site and camera: tools/scene.py.
"""
import datetime

from scene import MovedScene, in_exam, outage_draft
from screenshots import box_shot

from kd.core.incidents import Category, Draft, Kind
from tests.integration.live_helpers import room_codes
from tests.support.ui import pump_until

scene = MovedScene(rooms=8, sessions=2, candidates=6)
core, root, env, start, at = scene.core, scene.root, scene.env, scene.start, scene.at
shell = scene.open_shell()
codes = sorted(room_codes(env))
late = codes[6]
for c in codes[:6]:
    core.verification.start_permit(c, "1")
scene.move_to(start)
for c in codes[:6]:
    in_exam(core, c)
scene.wall.offset += datetime.timedelta(minutes=8)
core.verification.start_permit(late, "1")
in_exam(core, late)
ticket = next(c["ticket"] for c in env.ctx.manifest()["candidates"] if c["room"] == codes[0] and c["session"] == "1")
scene.move_to(at(70))
core.incidents.add(room=codes[0], session="1", category="device", start=at(21), end=at(27),
                   description="考生机蓝屏，换备用机后继续作答", actor="admin", candidates=[ticket])
granted, lost, drafted = core.incidents.store_drafts([
    outage_draft(codes[2], at(32), at(44) - datetime.timedelta(seconds=25)),
    outage_draft(codes[4], at(40), at(58)),
    outage_draft(codes[1], at(61), at(64) - datetime.timedelta(seconds=10))])
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

scene.show_clock()
shell.show("考场情况")
page = shell.current
pump_until(root, lambda: len(page.table.cells()) == 6, what="the records")
page.table.select_index([r[0] for r in page.table.cells()].index(drafted["id"]))
root.update()
scene.shoot("28_incidents")

page.buttons["登记情况"].invoke()
form = page.form
form.fill(room=codes[3], category=Category.CANDIDATE, start=at(66).astimezone(start.tzinfo).strftime("%Y-%m-%d %H:%M"),
          description="考生突发身体不适，经校医处理后返回考场继续考试")
pump_until(root, form.winfo_viewable, what="the form")
scene.shoot("29_incident_form")
form.close()

page.table.select_index([r[0] for r in page.table.cells()].index(lost["id"]))
root.update()
box_shot(root, shell.loop, scene.shoot, "30_extra_time_box", "否", page.buttons["补时"].invoke)
scene.close()
