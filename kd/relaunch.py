"""Restart kaodian as a new process (after 系统初始化, 模考转正考, 系统恢复).

A restart never rebuilds the app inside the process that ran it: the old window, its
ttkbootstrap style, the App's threads and the platform client all end with the old
process. ``main.py`` (GUI route) does, in this order:

1. the window closes and the App stops (``kd.views.start.run`` returns ``RESTART``);
2. the data folder's instance lock is released (``kd.store.instance.InstanceLock``);
3. ``spawn(args, script=...)`` starts the new instance, detached, and this process
   exits 0.

The new instance's command line (``command``):

- from source: ``[sys.executable, *interpreter flags, <absolute path of main.py>, *args]``
  — the entry script's own path (not ``sys.argv[0]``, which may be relative, ``-c`` or
  ``-m``), and the same interpreter flags (``-X utf8``, ``-O`` …);
- frozen (PyInstaller one-file exe): ``[sys.executable, *args]`` (``sys.executable`` is the
  exe; ``sys.argv[0]`` is not needed).

``args`` are the arguments ``main.main`` parsed (``sys.argv[1:]`` for a real start), so
a relative ``--data-dir`` means the same folder: the child starts in the parent's
current directory.

Its environment (``child_env``) is the parent's plus ``KD_RELAUNCHED=1``: the child's
instance lock waits up to ``LOCK_WAIT_S`` seconds for the folder instead of refusing
with exit 3 (``lock_wait_s``; the variable is consumed, so it does not leak further).
Frozen, it also carries ``PYINSTALLER_RESET_ENVIRONMENT=1``: since PyInstaller 6.9 a
process started from ``sys.executable`` is taken for a worker of the same instance and
reuses the parent's unpacked ``_MEIxxxxxx`` folder — which the parent's bootloader
deletes as soon as the parent exits. With the variable the child's bootloader resets
its private ``_PYI_*`` variables and unpacks its own copy: an independent instance.
The library path the bootloader set (``LD_LIBRARY_PATH``, saved as
``LD_LIBRARY_PATH_ORIG``; ``LIBPATH`` on AIX) is put back as the user had it, and
variables that point into the parent's unpacked folder (``TCL_LIBRARY``,
``TK_LIBRARY`` set by the tkinter runtime hook …) are dropped: the child sets its own.
The bootloader's private ``_PYI_*`` variables are left alone (PyInstaller asks that
they are not modified; the reset variable makes the new bootloader drop them). Checked
with a one-file build on Linux: the child unpacks its own folder, outlives the parent's
cleanup, and gets the user's ``LD_LIBRARY_PATH`` back; without the reset variable the
child's bootloader takes itself for a worker of the old instance and fails.

Detached: POSIX ``start_new_session=True`` (its own session: no SIGHUP when the
parent's terminal closes, nothing tied to the parent); Windows
``DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP`` (no console, not in the parent's Ctrl+C
group). stdin and stdout are ``os.devnull``; stderr is inherited on POSIX (a start from
a terminal still shows warnings there) and ``os.devnull`` on Windows (a detached
process cannot use its parent's console). Every descriptor but these is closed.
"""

import logging
import os
import subprocess
import sys
from typing import Any, Dict, List, Mapping, MutableMapping, Optional, Sequence

log = logging.getLogger(__name__)

#: set in the new instance's environment; its instance lock then waits for the folder
RELAUNCHED_ENV = "KD_RELAUNCHED"
#: how long a relaunched instance waits for its predecessor to let go of the data folder
LOCK_WAIT_S = 10.0
#: PyInstaller >= 6.9: "start as a new top-level instance" (unpack again in one-file mode)
PYI_RESET_ENV = "PYINSTALLER_RESET_ENVIRONMENT"
#: library search paths PyInstaller's bootloader prepends to, with the copy it keeps
_LIBRARY_PATHS = (("LD_LIBRARY_PATH", "LD_LIBRARY_PATH_ORIG"), ("LIBPATH", "LIBPATH_ORIG"))


def is_frozen() -> bool:
    """True in the PyInstaller exe."""
    return bool(getattr(sys, "frozen", False))


def interpreter_flags() -> List[str]:
    """The flags this interpreter runs with (``-X utf8``, ``-O`` …), to run the child alike."""
    flags = getattr(subprocess, "_args_from_interpreter_flags", None)  # what multiprocessing uses
    try:
        return list(flags()) if callable(flags) else []
    except Exception:  # noqa: BLE001 - a private helper: without it the child runs with the defaults
        return []


def command(args: Sequence[str], *, script: str, frozen: Optional[bool] = None,
            executable: Optional[str] = None, flags: Optional[Sequence[str]] = None) -> List[str]:
    """The command line of a new instance run with ``args`` (see the module docstring).

    ``script`` is the entry script (main.py) for a run from source; it is made absolute.
    """
    frozen = is_frozen() if frozen is None else frozen
    executable = executable or sys.executable
    if not executable:
        raise OSError("no interpreter or executable to start (sys.executable is empty)")
    if frozen:
        return [executable] + list(args)
    flags = interpreter_flags() if flags is None else list(flags)
    return [executable] + flags + [os.path.abspath(script)] + list(args)


def child_env(environ: Mapping[str, str], *, frozen: Optional[bool] = None,
              unpacked: Optional[str] = None) -> Dict[str, str]:
    """The new instance's environment: ``environ`` plus the relaunch markers (module docstring).

    ``unpacked`` is the one-file exe's unpack folder (``sys._MEIPASS``); variables whose
    value lies inside it are dropped.
    """
    frozen = is_frozen() if frozen is None else frozen
    env = dict(environ)
    env[RELAUNCHED_ENV] = "1"
    if not frozen:
        return env
    env[PYI_RESET_ENV] = "1"
    for name, saved in _LIBRARY_PATHS:
        if saved in env:
            env[name] = env.pop(saved)
        else:
            env.pop(name, None)
    unpacked = unpacked if unpacked is not None else getattr(sys, "_MEIPASS", None)
    if unpacked:
        inside = os.path.normcase(os.path.abspath(unpacked))
        for name in [n for n, v in env.items() if not n.startswith("_PYI_") and _inside(v, inside)]:
            del env[name]  # the bootloader's private _PYI_* variables are left to it (it resets them)
    return env


def _inside(value: str, folder: str) -> bool:
    if not value or not os.path.isabs(value):
        return False
    path = os.path.normcase(os.path.abspath(value))
    return path == folder or path.startswith(folder.rstrip("\\/") + os.sep)


def popen_options() -> Dict[str, Any]:
    """How the child is detached from this process and its streams (module docstring)."""
    options: Dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "close_fds": True}
    if os.name == "nt":  # pragma: no cover - exercised on Windows
        options["stderr"] = subprocess.DEVNULL
        options["creationflags"] = (getattr(subprocess, "DETACHED_PROCESS", 0x00000008)
                                    | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x00000200))
    else:
        options["start_new_session"] = True
    return options


def spawn(args: Sequence[str], *, script: str, cwd: Optional[str] = None) -> "subprocess.Popen[bytes]":
    """Start the new instance (detached) and return its ``Popen``; raises ``OSError`` when it cannot.

    Call it only after this process released the data folder's instance lock.
    """
    argv = command(args, script=script)
    env = child_env(os.environ)
    cwd = cwd or os.getcwd()
    log.info("restarting: spawning %r (cwd %s)", argv, cwd)
    child = subprocess.Popen(argv, cwd=cwd, env=env, **popen_options())  # noqa: S603 - our own program
    log.info("restarting: new instance is pid %d", child.pid)
    return child


def lock_wait_s(environ: Optional[MutableMapping[str, str]] = None) -> float:
    """``LOCK_WAIT_S`` in a relaunched instance (``KD_RELAUNCHED=1``), else 0; consumes the marker."""
    environ = os.environ if environ is None else environ
    return LOCK_WAIT_S if environ.pop(RELAUNCHED_ENV, "") == "1" else 0.0
