"""Screenshots of every screen in drill mode (``python3 dev.py screenshots``), 1366x768 PNGs.

Runs under a display (dev.py starts Xvfb ``-screen 0 1366x768x24``): the start gate's
refusal, the start screens, then the whole exam day through the UI (tests/support/day.py:
the same walk as the GUI walkthrough test), the 更多 menu and 修改密码, and a few pages at
1024x700. Writes docs/screenshots/NN_name.png. Tray off (``KD_NO_TRAY=1``).
"""

import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ["KD_NO_TRAY"] = "1"

from PIL import ImageGrab  # noqa: E402

from tests.support.day import ExamDay  # noqa: E402
from tests.support.ui import ScriptedDialogs, pump_until  # noqa: E402

OUT = os.path.join(ROOT, "docs", "screenshots")


class Camera:
    def __init__(self, root):
        self.root = root
        self.taken = []

    def __call__(self, name, width=1366, height=768):
        for _ in range(5):
            self.root.update()
        image = ImageGrab.grab(bbox=(0, 0, width, height), xdisplay=os.environ.get("DISPLAY"))
        path = os.path.join(OUT, name + ".png")
        image.save(path)
        self.taken.append(path)
        print(path, flush=True)


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


def main():
    from kd.views.start import make_window

    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    work = tempfile.mkdtemp(prefix="kd-shots-")
    root = make_window()
    root.geometry("1366x768+0+0")
    shoot = Camera(root)
    dialogs = ScriptedDialogs(root)
    day = ExamDay(root, os.path.join(work, "data"), work, dialogs, shot=shoot, wrong_logins=3, speed=90.0,
                  timeout=90.0)
    try:
        gate(root, work, shoot)
        day.start()
        day.load()
        shell = day.shell
        more = shell.more.menu
        more.post(1200, 40)
        shoot("17_more_menu")
        more.unpost()
        shell.more.change_password()
        pump_until(root, lambda: shell.more.password_dialog.winfo_viewable(), 10, "password dialog")
        shoot("18_password_dialog")
        shell.more.password_dialog.destroy()
        day.export_site_info()
        day.proctors()
        day.authorize()
        day.seal()
        day.verify()
        day.results()
        tool = day.upload()
        tool.destroy()
        day.shell.current.upload_dialog.destroy()
        root.geometry("1024x700+0+0")
        for label, name in (("考场管理", "19_monitor_1024"), ("数据回收", "20_recovery_1024"),
                            ("考场注册", "21_register_1024"), ("导入考务", "22_load_1024")):
            day.show(label)
            shoot(name, 1024, 700)
    finally:
        day.close()
        root.destroy()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
