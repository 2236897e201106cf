#!/usr/bin/env python3
"""Developer entry point: one command for each job, each doing its own set-up.

    python3 dev.py run [ARGS...]     start the app (drill mode when no site is configured)
    python3 dev.py test [PYTEST...]  run the whole test suite
    python3 dev.py bench             run every benchmarks/*.py, print their JSON lines
    python3 dev.py lint              ruff check + vermin (Python 3.8 floor) + mypy (pyproject.toml [tool.mypy])
    python3 dev.py build             PyInstaller one-file build from kaodian.spec
    python3 dev.py screenshots       a PNG of every screen (drill mode, Xvfb) into docs/screenshots/
    python3 dev.py venv              only create/refresh .venv

Every command first makes sure ``.venv`` exists for the interpreter that runs dev.py
(or ``--python PATH``) and holds the pinned requirements; the install is skipped when
neither the interpreter nor a requirements file changed. Standard library only, and
runnable on Python 3.8.
"""

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")
STAMP = os.path.join(VENV, "kd-installed.json")
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")


def say(msg):
    print("[dev] " + msg, flush=True)


def venv_python():
    if os.name == "nt":
        return os.path.join(VENV, "Scripts", "python.exe")
    return os.path.join(VENV, "bin", "python")


def interpreter_id(python):
    """Version and real path of ``python``, to notice a venv made by another one."""
    out = subprocess.check_output(
        [python, "-c", "import sys, os; print(sys.version); print(os.path.realpath(sys.base_prefix))"],
        universal_newlines=True,
    )
    return " | ".join(out.split("\n")[:2])


def requirements_digest():
    h = hashlib.sha256()
    for name in REQUIREMENTS:
        with open(os.path.join(ROOT, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()


def read_stamp():
    try:
        with open(STAMP, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def ensure_venv(python):
    """Create or refresh .venv for ``python``; skip work when nothing changed."""
    want = {"python": interpreter_id(python), "requirements": requirements_digest()}
    have = read_stamp()
    if have == want and os.path.exists(venv_python()):
        return venv_python()
    if os.path.isdir(VENV) and have.get("python") != want["python"]:
        say("the interpreter changed ({}); recreating .venv".format(want["python"].split(" ")[0]))
        shutil.rmtree(VENV)
    if not os.path.exists(venv_python()):
        say("creating .venv with " + python)
        quiet_call([python, "-m", "venv", VENV])
    say("installing pinned requirements (requirements-dev.txt; the first time takes a minute or two)")
    quiet_call([venv_python(), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                "-r", os.path.join(ROOT, "requirements-dev.txt")])
    with open(STAMP, "w", encoding="utf-8") as f:
        json.dump(want, f)
    return venv_python()


def quiet_call(cmd):
    """Run ``cmd`` from the project root with its output captured; print it only when it fails.

    pip's progress and its notices (``Location ... ignored`` warnings and the like) are
    noise on success; on failure every line it wrote is shown, then
    ``CalledProcessError`` is raised.
    """
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout.decode("utf-8", "replace"))
        sys.stdout.flush()
        raise subprocess.CalledProcessError(proc.returncode, cmd)


def run(cmd, **kw):
    """Run ``cmd`` from the project root; return its exit code."""
    kw.setdefault("cwd", ROOT)
    try:
        return subprocess.call(cmd, **kw)
    except KeyboardInterrupt:
        return 130


def cmd_run(py, args):
    return run([py, os.path.join(ROOT, "main.py")] + args)


def cmd_test(py, args):
    env = dict(os.environ)
    if os.environ.get("KD_REQUIRE_GUI") == "1" and not os.environ.get("DISPLAY") and not shutil.which("Xvfb"):
        say("KD_REQUIRE_GUI=1 but there is no display and no Xvfb: install xvfb (apt-get install -y xvfb)")
        return 1
    return run([py, "-m", "pytest"] + (args or ["tests"]), env=env)


def cmd_bench(py, args):
    scripts = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "*.py")))
    failed = 0
    for script in scripts:
        if os.path.basename(script).startswith("_"):
            continue
        proc = subprocess.run([py, script] + args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        for line in lines:
            print(line, flush=True)
        if proc.returncode != 0 or not lines:
            say(f"benchmark {os.path.basename(script)} failed (exit {proc.returncode})")
            failed += 1
    return 1 if failed else 0


def cmd_lint(py, args):
    bindir = os.path.dirname(py)
    rc = run([os.path.join(bindir, "ruff"), "check", "."] + args)
    rc2 = run([os.path.join(bindir, "vermin"), "-t=3.8-", "--no-tips", "--violations", "kd", "main.py", "dev.py"])
    rc3 = run([os.path.join(bindir, "mypy")])  # the packages and settings: pyproject.toml [tool.mypy]
    return rc or rc2 or rc3


def cmd_build(py, args):
    return run([py, "-m", "PyInstaller", "--noconfirm", "--clean", os.path.join(ROOT, "kaodian.spec")] + args)


def cmd_screenshots(py, args):
    """Run tools/screenshots.py on a fresh Xvfb display (2400x768x24: a 1366x768 and a 1024x768
    window side by side); stops it afterwards."""
    xvfb = shutil.which("Xvfb")
    if not xvfb:
        say("Xvfb is needed for screenshots (apt-get install -y xvfb)")
        return 1
    x_dir = "/tmp/.X11-unix"  # noqa: S108 - where X servers put their sockets
    display = next((n for n in range(91, 200) if not os.path.exists(os.path.join(x_dir, "X{}".format(n)))
                    and not os.path.exists("/tmp/.X{}-lock".format(n))), None)  # noqa: S108
    if display is None:
        say("no free X display number")
        return 1
    server = subprocess.Popen([xvfb, ":{}".format(display), "-screen", "0", "2400x768x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        socket_path = os.path.join(x_dir, "X{}".format(display))
        deadline = time.monotonic() + 15
        while not os.path.exists(socket_path):
            if server.poll() is not None or time.monotonic() > deadline:
                say("Xvfb did not start")
                return 1
            time.sleep(0.1)
        env = dict(os.environ, DISPLAY=":{}".format(display), KD_NO_TRAY="1")
        return run([py, os.path.join(ROOT, "tools", "screenshots.py")] + args, env=env)
    finally:
        server.terminate()
        server.wait(10)


def cmd_venv(py, args):
    return 0


COMMANDS = {
    "run": cmd_run,
    "test": cmd_test,
    "bench": cmd_bench,
    "lint": cmd_lint,
    "build": cmd_build,
    "screenshots": cmd_screenshots,
    "venv": cmd_venv,
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="dev.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter for .venv (default: this one)")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed on to the command")
    opts = parser.parse_args(argv)
    try:
        py = ensure_venv(opts.python)
    except subprocess.CalledProcessError as e:
        say(f"set-up failed: {e}")
        return 1
    return COMMANDS[opts.command](py, opts.args)


if __name__ == "__main__":
    sys.exit(main())
