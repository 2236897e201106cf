"""Run ``main.py`` and SIGKILL it just before its N-th file operation under a folder.

    python killpoint.py N FOLDER main.py ARGS...

A Python audit hook (``sys.addaudithook``) counts the operations that change files
under ``FOLDER``: ``open`` for writing, ``os.rename``/``os.replace``, ``os.remove``,
``os.rmdir``, ``os.mkdir``, ``os.truncate``, ``shutil.rmtree`` (each os.* call of
rmtree counts too). Before the N-th one the process kills itself with SIGKILL, as a
power cut or a killed process would end it. ``N = 0`` never kills: the process prints
the number of operations it made as ``KILLPOINT-COUNT <n>`` on stderr when it exits, so a
test can enumerate every kill point.
"""

import atexit
import os
import runpy
import signal
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
EVENTS = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.truncate", "shutil.rmtree", "os.unlink"}


def main() -> None:
    target = int(sys.argv[1])
    folder = os.path.realpath(sys.argv[2])
    script = sys.argv[3]
    count = [0]

    def inside(path: object) -> bool:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return False
        return os.path.realpath(os.path.abspath(path)).startswith(folder + os.sep)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                (isinstance(flags, int) and flags & WRITE_FLAGS)
            if not writing or not inside(path):
                return
        elif event in EVENTS:
            if not args or not inside(args[0]):
                return
        else:
            return
        count[0] += 1
        if count[0] == target:
            os.kill(os.getpid(), signal.SIGKILL)

    atexit.register(lambda: sys.stderr.write("KILLPOINT-COUNT {}\n".format(count[0])))
    sys.argv = [script] + sys.argv[4:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    sys.addaudithook(hook)
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        sys.stderr.flush()
        raise SystemExit(e.code) from None


if __name__ == "__main__":
    main()
