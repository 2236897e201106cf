"""Screenshots of every screen in drill mode (``python3 dev.py screenshots``), at 1366x768 and 1024x768.

``python tools/screenshots.py`` runs the walk twice at once, one process per window size
(1366x768 at x=0 and 1024x768 at x=1376 of one display; dev.py starts Xvfb
``-screen 0 2400x768x24``), each in its own Tk root. ``--size 1024x768 --x 1376`` runs one.
Writes ``docs/screenshots/NN_name.png`` (1366x768) and ``docs/screenshots/1024/NN_name.png``
(1024x768), 256-colour PNGs saved with Pillow's ``optimize=True``. Tray off (``KD_NO_TRAY=1``).

The walk (tests/support/day.py, the same as the GUI walkthrough test): the start gate's
refusal, the start screens with the login countdown, the whole exam day through the UI,
plus the windows the walk does not open by itself: 考场详情 (while the first session runs,
its 时钟偏差 measured by then) and the no-browser window, a
是/否 box (撤销注册, answered 否), the 启动模拟考场 count prompt (确定/取消, answered 取消)
and its 确定 box once the proctors run,
模拟考场进度, the address picker's menu (when this PC has several addresses), 更多 and
修改密码. The real boxes (kd.views.dialogs) are shown for these pictures: the loop's
dialogs are swapped for the real ones while the box is open, and its button pressed.

After the walks, the scenes of ``SCENES`` (tools/shot_timeline.py, tools/shot_incidents.py,
tools/shot_proof.py; their shared setup: tools/scene.py) each build a real site (the first
two with its clock moved into the first session) and take their pictures: 27_timeline,
28_incidents, 29_incident_form, 30_extra_time_box, 33_upload_proof, 34_proof_sheet (the 确认单,
1366x768 run only); then those of ``ONCE`` (tools/shot_incident_sheet.py: 31_incident_sheet,
the printed 考场情况记录单).
Once every result is in, the walk checks that the drill day drafted no incident (it injects none).

The drill follows its schedule (the simulated proctors start each session at its
开考时间, ``speed=None``): the site's first session starts about two minutes after the
walk begins, so 考场管理 is taken before the start (13_monitor_waiting: nobody is 考试中)
and again while the first session runs (13_monitor). No clock is faked.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ["KD_NO_TRAY"] = "1"

from PIL import Image, ImageGrab  # noqa: E402

from tests.support.day import ExamDay  # noqa: E402
from tests.support.ui import ScriptedDialogs, pump_until  # noqa: E402

OUT = os.path.join(ROOT, "docs", "screenshots")
#: (size, x offset on the display, output folder)
SIZES = (("1366x768", 0, OUT), ("1024x768", 1376, os.path.join(OUT, "1024")))
#: the drill site: sessions on a real schedule, the first about two minutes away
#: (``first_start_in`` minutes from the current minute), one minute each, a minute apart
#: the scenes run after the walks (``script SIZE X OUT``): the 时间线 page with open alarms
#: (27_timeline), the 考场情况 page, its 登记情况 form and a 补时 question (28-30)
SCENES = (("shot_timeline.py", "时间线"), ("shot_incidents.py", "考场情况"), ("shot_proof.py", "完整性证明"))
#: scenes taken once, not per window size (``script OUT``): the printed 考场情况记录单 (31_incident_sheet)
ONCE = (("shot_incident_sheet.py", "考场情况记录单"),)
SITE = {"rooms": 12, "sessions": 2, "candidates": 6, "room_kb": 4, "duration": 1, "first_start_in": 3, "gap": 1}


def save(image, path):
    """A flat-colour UI picture as a 256-colour PNG (no dithering: text stays crisp), optimized:
    about a quarter of the RGB file's size."""
    image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                  dither=Image.Dither.NONE).save(path, optimize=True)


def serve_lan(core):
    """A scene's LAN server (127.0.0.1, any free port) over its ``core``, as a running site has:
    the status bar shows 地址, 端口 and 通讯: 运行 (not 停止 in red, which no running site shows).
    Stop it with ``.stop()``."""
    from kd.lan.server import LanOptions, LanServer

    return LanServer(core.ctx, registration=core.registration, verification=core.verification,
                     monitor=core.monitor, recovery=core.recovery, loading=core.loading,
                     options=LanOptions(host="127.0.0.1", port=0), extra_time=core.extra_time,
                     clock_skew=core.clock_skew).start()


class Camera:
    """Grabs the main window's rectangle of the display into ``out/name.png``."""

    def __init__(self, root, x, width, height, out):
        self.root, self.x, self.width, self.height, self.out = root, x, width, height, out
        self.taken = []
        self.after = {}  # name -> extra pictures taken right after it (the walk's own shots)
        self.before = {}  # name -> what to wait for before taking it

    def __call__(self, name):
        wait = self.before.pop(name, None)
        if wait is not None:
            wait()
        for _ in range(5):
            self.root.update()
        image = ImageGrab.grab(bbox=(self.x, 0, self.x + self.width, self.height),
                               xdisplay=os.environ.get("DISPLAY"))
        path = os.path.join(self.out, name + ".png")
        save(image, path)
        self.taken.append(path)
        print(path, flush=True)
        extra = self.after.pop(name, None)
        if extra is not None:
            extra()


def gate(root, work, shoot):
    """A configured site and no dongle: the gate refuses (重试 / 退出)."""
    from kd.app import App
    from kd.store.database import open_stores
    from kd.views.login import GateScreen
    from kd.views.start import StartFlow

    data = os.path.join(work, "gate")
    stores = open_stores(data)
    stores.settings.put("settings", "site", {"site_code": "11003", "mode": "formal"})
    stores.close()
    flow = StartFlow(root, lambda: App(data, lock_url="socket://127.0.0.1:9", lan_host="127.0.0.1", lan_port=0),
                     dialogs=ScriptedDialogs(root))
    flow.begin()
    pump_until(root, lambda: isinstance(flow.screen, GateScreen), 30, "gate screen")
    shoot("02_gate")
    flow.loop.close()
    flow.screen.destroy()


def box_shot(root, loop, shoot, name, answer, open_it):
    """Open a real box (kd.views.dialogs) by ``open_it()``, shoot it, press its button ``answer``:
    the ``loop``'s dialogs are the real ones while it is open (a scene's too, tools/shot_incidents.py)."""
    from kd.views.dialogs import Dialogs, _Box

    scripted, loop.dialogs = loop.dialogs, Dialogs(root)
    done = []

    def poll():
        box = next((w for w in root.winfo_children() if isinstance(w, _Box) and w.winfo_viewable()), None)
        if box is None:
            root.after(50, poll)
            return
        try:
            shoot(name)
        finally:
            done.append(name)
            next(b for b in box.buttons if str(b.cget("text")) == answer).invoke()

    try:
        root.after(50, poll)
        open_it()
        pump_until(root, lambda: done, 30, name)
    finally:
        loop.dialogs = scripted


def real_box(day, shoot, name, answer, open_it):
    """``box_shot`` in the walk's day, which then settles."""
    box_shot(day.root, day.shell.loop, shoot, name, answer, open_it)
    day.settle()


def load_extras(day, shoot):
    """考场详情 of the first room (its 时钟偏差 known: the proctor has sent its clock), and the
    window shown when no browser opens its door sheet."""
    from kd.core.clockskew import shown as shown_skew

    page = day.show("导入考务")
    code = page.table.cells()[0][0]
    day.wait(lambda: day.core.clock_skew.estimate(code) is not None, "the clock of room " + code)
    page.table.select_index(0)
    page.detail_button.invoke()
    detail = day.wait(lambda: getattr(page, "detail_window", None), "room detail")
    unknown = shown_skew(None)
    if str(detail.clock_label.cget("text")).endswith(unknown):
        raise AssertionError("考场详情 shows 时钟偏差 " + unknown)
    day.wait(detail.winfo_viewable, "room detail shown")
    shoot("19_room_detail")
    shell = day.shell
    browser, shell.browser = shell.browser, lambda path: False  # as webbrowser.open answers without a browser
    try:
        detail.door_button.invoke()
        window = day.wait(lambda: shell.opened_failed is not None and shell.opened_failed.winfo_viewable()
                          and shell.opened_failed, "no-browser window")
        shoot("20_no_browser")
        window.destroy()
    finally:
        shell.browser = browser
    detail.destroy()
    day.settle()


def drill_prompt(day, shoot):
    """演练 → 启动模拟考场…: the count prompt (确定/取消, the site's room count filled in), 取消."""
    day.show("考场注册")
    real_box(day, shoot, "21_drill_prompt", "取消", day.shell.drill.start)


def register_extras(day, shoot):
    """A 是/否 box (撤销注册 of a registered room, answered 否) and a 确定 box (启动模拟考场 again)."""
    page = day.show("考场注册")
    page.table.select_index(0)
    real_box(day, shoot, "22_confirm_box", "否", page.revoke_button.invoke)
    real_box(day, shoot, "25_ok_box", "确定", day.shell.drill.start)


def after_the_start(day):
    """Until the status bar's clock reads a few seconds past the first session's 开考时间 (the
    proctors start on the second; the clock label ticks once a second)."""
    from kd.core.labels import shown

    start = shown(min(s["start"] for s in day.core.ctx.manifest()["sessions"]))
    clock = day.shell.status.labels["clock"]
    day.wait(lambda: str(clock.cget("text")) >= start + ":03", "the clock past 开考时间", timeout=120)


def running_extras(day, shoot):
    """While the first session runs: 模拟考场进度, the address picker's menu, and 考场详情 (its
    时钟偏差 measured from the proctor's heartbeats by then) with the no-browser window."""
    drill = day.shell.drill
    drill.show_progress()
    day.wait(lambda: drill.window is not None and drill.window.winfo_viewable(), "progress window")
    shoot("23_drill_progress")
    drill.window.destroy()
    bar = day.shell.status
    if bar.address_button.winfo_ismapped():
        button = bar.address_button
        bar.address_menu.post(button.winfo_rootx(), button.winfo_rooty() - bar.address_menu.winfo_reqheight())
        shoot("24_address_menu")
        bar.address_menu.unpost()
    else:
        print("one address on this PC: no address picker to show", flush=True)
    load_extras(day, shoot)


def alarms_closed(day):
    """Every step before the start done: the timeline's alarms (opened at loading: the drill's
    schedule is minutes away, each step's deadline already past) close at its next tick, and
    the title bar's 告警 N goes; the picture waits for that, not for the tick by chance."""
    timeline = day.core.timeline
    try:
        day.wait(lambda: timeline.open_count() == 0 and day.shell.alarms.count == 0, "alarms closed", timeout=30)
    except AssertionError:
        raise AssertionError("alarms still open before 开考时间: {}".format(
            [a.label for a in timeline.open_alarms()])) from None


def no_incidents(day):
    """The drill injects no incident: the day's end finds none (a false 网络中断 drafted for every
    room would stop the walk at 备份到外部存储, whose completeness checks ask for each draft)."""
    found = [(i["kind"], i["room"], i["session"], i["state"]) for i in day.core.incidents.list()]
    if found:
        raise AssertionError("the drill day drafted incidents nobody injected: {}".format(found))


def walk(size, x, out):
    from kd.views.start import make_window

    width, height = (int(v) for v in size.split("x"))
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        if name.endswith(".png"):
            os.remove(os.path.join(out, name))
    work = tempfile.mkdtemp(prefix="kd-shots-")
    root = make_window()
    root.geometry("{}x{}+{}+0".format(width, height, x))
    shoot = Camera(root, x, width, height, out)
    dialogs = ScriptedDialogs(root)
    day = ExamDay(root, os.path.join(work, "data"), work, dialogs, shot=shoot, site=SITE, wrong_logins=3,
                  speed=None, timeout=300.0)
    shoot.after["09_register"] = lambda: register_extras(day, shoot)
    shoot.before["13_monitor"] = lambda: after_the_start(day)
    shoot.after["13_monitor"] = lambda: running_extras(day, shoot)
    try:
        gate(root, work, shoot)
        day.start()
        day.load()
        day.export_site_info()
        drill_prompt(day, shoot)
        day.proctors()
        day.authorize()
        day.seal()
        day.verify()
        day.show("考场管理")
        rows = day.core.monitor.snapshot()["rows"]
        if any(r["in_exam"] for r in rows):
            raise AssertionError("考试中 before 开考时间: the walk was too slow for the schedule")
        alarms_closed(day)
        shoot("13_monitor_waiting")
        day.results()
        no_incidents(day)
        tool = day.upload()
        tool.destroy()
        day.shell.current.upload_dialog.destroy()
        shell = day.shell
        more = shell.more.menu
        button = more.master
        more.post(button.winfo_rootx(), button.winfo_rooty() + button.winfo_height())
        shoot("17_more_menu")
        more.unpost()
        shell.more.change_password()
        pump_until(root, lambda: shell.more.password_dialog.winfo_viewable(), 10, "password dialog")
        shoot("18_password_dialog")
        shell.more.password_dialog.destroy()
    finally:
        day.close()
        root.destroy()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", help="one window size (WIDTHxHEIGHT); default: each of " +
                        ", ".join(s for s, _, _ in SIZES))
    parser.add_argument("--x", type=int, default=0, help="the window's x on the display (with --size)")
    args = parser.parse_args(argv)
    if args.size:
        out = next((o for s, _, o in SIZES if s == args.size), os.path.join(OUT, args.size))
        return walk(args.size, args.x, out)
    started = time.monotonic()
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    runs = [(size, subprocess.Popen([sys.executable, os.path.abspath(__file__), "--size", size, "--x", str(x)]))
            for size, x, _ in SIZES]
    failed = [size for size, run in runs if run.wait() != 0]
    for size, x, out in SIZES:  # scenes of their own, each over a site whose clock is moved into the exam
        for script, what in SCENES:
            if subprocess.call([sys.executable, os.path.join(ROOT, "tools", script), size, str(x), out]):
                failed.append(size + " " + what)
    for script, what in ONCE:
        if subprocess.call([sys.executable, os.path.join(ROOT, "tools", script), OUT]):
            failed.append(what)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(OUT) for f in files)
    print("screenshots: {} in {:.0f} s, {:.1f} MB{}".format(
        OUT, time.monotonic() - started, total / 1e6, "; FAILED: " + ", ".join(failed) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
