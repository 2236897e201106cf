"""docs/screenshots/31_incident_sheet.png: the printed 考场情况记录单 (kd.core.incidentsheet) of one room.

``python3 tools/shot_incident_sheet.py [OUT_DIR]`` (default docs/screenshots): a real authorized
site (platform simulator, dongle emulator) whose wall clock is moved through 第一场次: the room
starts on its permit, loses its connection for 18 minutes (drafted by the site, confirmed, 补时
18 minutes on site), a candidate's computer fails (by hand, one candidate), a second outage
brings the total to 33 minutes (a second confirmation with the dongle), the room ends; then the
sheet is written and rendered by ``wkhtmltoimage`` (a tool for this picture only, not a
dependency of the product: ``apt-get install wkhtmltopdf``) at the width of an A4 page on screen.
What it shares with the screenshot scenes (the outage draft, the heartbeat): tools/scene.py.
"""

import datetime
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

from scene import ROOT, first_session, in_exam, outage_draft

from kd.core import incidentsheet
from kd.formats.timeutil import parse_time
from tests.integration.live_helpers import authorized_env
from tests.support.clocks import ShiftedWall

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "screenshots")
tool = shutil.which("wkhtmltoimage")
if tool is None:
    sys.exit("wkhtmltoimage not found (apt-get install wkhtmltopdf)")
wall = ShiftedWall()
env = authorized_env(pathlib.Path(tempfile.mkdtemp()), clock=wall, rooms=4, sessions=2, candidates=6)
try:
    core = env.core
    core.verification.verify_online("1", "admin")
    session = first_session(env)
    start = parse_time(session["start"])
    room = sorted({c["room"] for c in env.ctx.manifest()["candidates"] if c["session"] == "1"})[0]
    core.verification.start_permit(room, "1")
    wall.offset += start - env.ctx.now()
    in_exam(core, room)

    def at(minutes: float) -> datetime.datetime:
        return start + datetime.timedelta(minutes=minutes)

    wall.offset += at(50) - env.ctx.now()
    (first,) = core.incidents.store_drafts([outage_draft(room, at(20), at(38))])
    core.incidents.confirm(first["id"], "admin", "交换机断电，已恢复")
    core.extra_time.grant(room, "1", 18, actor="admin", reason="网络中断 18 分钟", incident_ids=[first["id"]])
    ticket = next(c["ticket"] for c in env.ctx.manifest()["candidates"] if c["room"] == room and c["session"] == "1")
    core.incidents.add(room=room, session="1", category="device", start=at(41), end=at(47),
                       description="考生机蓝屏，换备用机后继续作答", actor="admin", candidates=[ticket])
    wall.offset += at(75) - env.ctx.now()
    (second,) = core.incidents.store_drafts([outage_draft(room, at(60), at(74) - datetime.timedelta(seconds=30))])
    core.incidents.confirm(second["id"], "admin", "同一交换机再次断电")
    env.emulator.dongle.set_clock_offset(wall.offset.total_seconds())  # the lock's clock reads the moved day too
    core.extra_time.grant(room, "1", 15, actor="admin", reason="网络中断 14 分钟（合计超过 30 分钟）",
                          incident_ids=[second["id"]], confirmed=True)
    end = at(int(session["duration_min"]) + 33)
    wall.offset += end - env.ctx.now()
    in_exam(core, room, ended=True)
    folder = tempfile.mkdtemp()
    page = incidentsheet.write_sheet(core, "1", room, folder)
    os.makedirs(out, exist_ok=True)
    target = os.path.join(out, "31_incident_sheet.png")
    subprocess.run([tool, "--quiet", "--width", "900", "--enable-local-file-access", page, target], check=True)
    from PIL import Image  # noqa: PLC0415 - the raw picture is ~4 MB: 64 colours are enough for a sheet
    with Image.open(target) as raw:
        small = raw.convert("RGB").quantize(colors=64)
    small.save(target, optimize=True)
    print(target)
finally:
    env.close()
