"""docs/screenshots/27_timeline.png (and 1024/): the 时间线 page over a real site at T+5 of 第一场次.

Run by tools/screenshots.py after its walks (``python3 tools/shot_timeline.py SIZE X OUT``):
a real authorized site (platform simulator, dongle emulator) whose wall clock is moved to
five minutes after the first session's start with two rooms not started, so the page, the
title bar's 告警 N and the alarm lines show what an administrator would see then (the status
bar's clock shows the site's moved clock). The window, site and camera: tools/scene.py.
"""
from scene import MovedScene, in_exam

from tests.integration.live_helpers import room_codes
from tests.support.ui import pump_until

scene = MovedScene(rooms=8, sessions=2, candidates=6)
core, root = scene.core, scene.root
shell = scene.open_shell()
scene.move_to(scene.at(5))
for c in room_codes(scene.env)[:6]:
    core.verification.start_permit(c, "1")
    in_exam(core, c)
core.timeline.tick()
scene.show_clock()
shell.show("时间线")
page = shell.current
pump_until(root, lambda: page.table.cells() and page.alarm.cget("text") and shell.alarms.text, what="page")
scene.shoot("27_timeline")
scene.close()
