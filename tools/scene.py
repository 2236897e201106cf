"""The shared setup of the screenshot scenes (tools/shot_*.py), so each scene keeps only what is its own.

A scene runs as ``python3 tools/shot_NAME.py SIZE X OUT`` (tools/screenshots.py starts each
after its walks, ``SCENES``); importing this module puts the repository on ``sys.path`` and
turns the tray off (``KD_NO_TRAY=1``), so a scene imports it before anything of ``kd``.

- ``Scene(make_env)``: the main window at SIZE (x=X) over a real site, ``make_env(work)``
  (``tests.integration.live_helpers``: ``loaded_env`` / ``authorized_env`` in the temporary
  folder ``work``), its ``Core`` started and a LAN server on 127.0.0.1 (``serve_lan``: the
  status bar reads 通讯: 运行, as on a running site), scripted dialogs (``.dialogs``) and the
  camera into OUT (``.shoot(name)``); ``.open_shell()`` opens the shell (user admin), ``.close()``
  stops it all.
- ``MovedScene(**sizes)``: a ``Scene`` over an ``authorized_env`` of ``sizes`` whose wall clock
  the scene moves (``.wall``, ``.move_to(when)``), verified online (授权验证 of 第一场次);
  ``.start`` is 第一场次's 开考时间, ``.at(minutes)`` a time that far into it; its shell's
  status bar clock reads the site's moved clock, as the real one would at that time of the day,
  set at each move (``.show_clock()``; it does not tick, so each run takes the same picture).
- ``first_session(env)``, ``outage_draft(room, begin, end)`` (the 网络中断 draft the site's tick
  writes), ``in_exam(core, room, ended=False)`` (a room's heartbeat of 第一场次, 6 candidates):
  the parts of a day the scenes and tools/shot_incident_sheet.py (a picture without a window) share.
"""

import datetime
import os
import pathlib
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ["KD_NO_TRAY"] = "1"

from kd.core.incidents import Category, Draft, Kind  # noqa: E402
from kd.formats.timeutil import CST, format_time, parse_time  # noqa: E402

#: the shell's log file of every scene
LOG = os.path.join(tempfile.gettempdir(), "kd-shot.log")


def first_session(env):
    """第一场次 of the site's manifest (its ``start``, ``duration_min``, ...)."""
    return next(s for s in env.ctx.manifest()["sessions"] if s["id"] == "1")


def outage_draft(room, begin, end):
    """A drafted 网络中断 of ``room`` in 第一场次 from ``begin`` to ``end``, as the site's tick drafts it."""
    text = "考场 {} 与考点机失去连接 {} 秒。".format(room, int((end - begin).total_seconds()))
    return Draft("outage|{}|1|{}".format(room, format_time(begin)), Kind.OUTAGE, Category.NETWORK, room, "1",
                 begin, end, text)


def in_exam(core, room, ended=False):
    """``room``'s heartbeat in 第一场次: started, its 6 candidates in the exam (or none once ``ended``)."""
    core.monitor.heartbeat(room, {"session_id": "1", "started": True, "ended": ended, "logged_in": 6,
                                  "in_exam": 0 if ended else 6})


class Scene:
    """The window, site, core, LAN server, dialogs and camera of one scene (see the module docstring)."""

    def __init__(self, make_env, argv=None):
        from screenshots import Camera, serve_lan

        from kd.core.services import Core
        from kd.views.start import make_window
        from tests.support.ui import ScriptedDialogs

        argv = sys.argv[1:] if argv is None else argv
        self.size, self.x, self.out = argv[0], int(argv[1]), argv[2]
        self.width, self.height = (int(v) for v in self.size.split("x"))
        self.root = make_window()
        self.root.geometry("{}x{}+{}+0".format(self.width, self.height, self.x))
        self.work = pathlib.Path(tempfile.mkdtemp())
        self.env = make_env(self.work)
        self.core = Core(self.env.ctx).start()
        self.lan = serve_lan(self.core)  # the status bar as on a running site: 通讯: 运行
        self.dialogs = ScriptedDialogs(self.root)
        self.shoot = Camera(self.root, self.x, self.width, self.height, self.out)
        self.shell = None

    def open_shell(self):
        """The main window's shell (user admin, the scripted dialogs, no browser)."""
        from kd.views.shell import Shell

        self.shell = Shell(self.root, self.core, dialogs=self.dialogs, user="admin", log_path=LOG,
                           on_exit=lambda r: None, browser=lambda u: None)
        return self.shell

    def close(self):
        if self.shell is not None:
            self.shell.close()
        self.lan.stop()
        self.core.stop()
        self.env.close()
        self.root.destroy()


class MovedScene(Scene):
    """A scene over an authorized site whose wall clock it moves (see the module docstring)."""

    def __init__(self, argv=None, **sizes):
        from tests.integration.live_helpers import authorized_env
        from tests.support.clocks import ShiftedWall

        self.wall = ShiftedWall()
        super().__init__(lambda work: authorized_env(work, clock=self.wall, **sizes), argv)
        self.core.verification.verify_online("1", "admin")
        self.start = parse_time(first_session(self.env)["start"])

    def at(self, minutes):
        """``minutes`` after 第一场次's 开考时间."""
        return self.start + datetime.timedelta(minutes=minutes)

    def move_to(self, when):
        """The site's clock (``env.ctx.now()``) moved to read ``when`` now (the status bar's clock with it)."""
        self.wall.offset += when - self.env.ctx.now()
        self.show_clock()

    def show_clock(self):
        """The status bar's clock set to the site's clock now (it stays there until the next move)."""
        if self.shell is not None:
            self.shell.status.labels["clock"].configure(
                text=self.env.ctx.now().astimezone(CST).strftime("%Y-%m-%d %H:%M:%S"))

    def open_shell(self):
        shell = super().open_shell()
        # its every-second tick reads the system clock, hours away from the scene's: the clock shows
        # the site's, as the real one would at that time of the day, and the pictures are the same each run
        shell.status._clock.cancel()
        self.show_clock()
        return shell
