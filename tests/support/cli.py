"""``main.py`` as a child process over a test site: the CLI tests' one way to run a command.

- ``cli_env(tmp_path, **sizes)``: a ``make_env`` site whose own dongle driver is stopped
  (the emulator serves one host at a time: the child processes take it).
- ``configure(env, name)``: a data folder ``<env.root>/<name>`` as after first login: the
  env's site settings and ``admin_account()`` (admin's own password ``PASSWORD``, which the
  CLI asks for; the initial one it refuses).
- ``kd(env, data, *args, password=PASSWORD, stdin="")``: ``main.py --data-dir data --lock
  <the env's emulator>`` with ``--password-stdin`` and the password first on stdin when the
  command asks (``with_password``: ``kd.cli.needs_password`` over the real parser);
  ``password=None`` sends none. ``child_env()`` is the environment of every child (no
  ``KD_DATA_DIR``/``KD_LOCK_URL`` of the caller's, UTF-8 output). ``ok(proc)`` asserts exit 0.
- ``export(env, folder, room, session, salt=b"")``: a room's result package written into
  ``folder`` as the proctor machine exports it (the first candidate absent).
- ``backed_up(env, name, tmp_path, external_dir)``: a data folder ``configure``d, by ``main.py``
  commands loaded, every room's session 1 recovered from its export and backed up into
  ``external_dir``: ready for ``main.py upload``. Returns the data folder.
"""

import hashlib
import os
import subprocess
import sys
from typing import Any, Dict, Iterable, List, Optional, Tuple

import main
from kd import cli
from kd.core import model
from kd.formats.result import ABSENT, PRESENT, build_result
from kd.store.database import open_stores
from tests.support.env import make_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAIN = os.path.join(ROOT, "main.py")
ITERATIONS = 600000
PASSWORD = "exam-day-2026"  # noqa: S105 - the test site's admin password (admin_account)
PARSER = main.build_parser()
_ADMIN: Dict[str, Any] = {}


def cli_env(tmp_path: Any, **sizes: Any) -> Any:
    env = make_env(tmp_path, **sizes)
    env.driver.stop()  # the emulator serves one host at a time: leave it to the subprocesses
    return env


def admin_account() -> Dict[str, Any]:
    """The admin account after its first password change (the CLI refuses the initial one)."""
    if not _ADMIN:
        salt = os.urandom(16)
        _ADMIN.update({"user": "admin", "salt": salt.hex(), "iterations": ITERATIONS,
                       "hash": hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, ITERATIONS).hex(),
                       "must_change": False, "failures": 0, "locked_until": None,
                       "changed_at": "2026-11-20T08:00:00+08:00"})
    return dict(_ADMIN)


def configure(env: Any, name: str) -> str:
    """A data folder for the subprocesses as after first login: the env's site settings, admin's own password."""
    data = os.path.join(env.root, name)
    stores = open_stores(data)
    try:
        stores.settings.put(model.SETTINGS, model.SITE, env.ctx.site())
        stores.settings.put(model.ACCOUNTS, "admin", admin_account())
    finally:
        stores.close()
    return data


def with_password(args: Iterable[str], password: Optional[str] = PASSWORD, stdin: str = "") -> Tuple[List[str], str]:
    """``args`` and stdin for a command: ``--password-stdin`` and the password first if the command asks."""
    args = list(args)
    if password is not None and cli.needs_password(PARSER.parse_args(args)):
        return args + ["--password-stdin"], password + "\n" + stdin
    return args, stdin


def child_env() -> Dict[str, str]:
    """The environment of a ``main.py`` child: the caller's, without its data folder and dongle, UTF-8 output."""
    proc_env = dict(os.environ, PYTHONIOENCODING="utf-8")
    proc_env.pop("KD_DATA_DIR", None)
    proc_env.pop("KD_LOCK_URL", None)
    return proc_env


def kd(env: Any, data: str, *args: str, password: Optional[str] = PASSWORD,
       stdin: str = "") -> "subprocess.CompletedProcess[str]":
    """``main.py`` on ``data`` with the env's dongle; stdin is always given (never a terminal)."""
    argv, stdin = with_password(args, password, stdin)
    return subprocess.run([sys.executable, MAIN, "--data-dir", data, "--lock", env.lock_url] + argv, input=stdin,
                          cwd=ROOT, env=child_env(), capture_output=True, text=True, encoding="utf-8", timeout=120)


def ok(proc: "subprocess.CompletedProcess[str]") -> "subprocess.CompletedProcess[str]":
    assert proc.returncode == 0, proc.stderr
    return proc


def export(env: Any, folder: str, room: str, session: str, salt: bytes = b"") -> str:
    """The room's result package as its proctor machine exports it (the first candidate absent)."""
    manifest = env.sim.data.manifest()
    people = sorted((c for c in manifest["candidates"] if c["room"] == room and c["session"] == session),
                    key=lambda c: c["seat"])
    cands = [{"ticket": c["ticket"], "subject": c["subject"], "status": ABSENT if i == 0 else PRESENT,
              "answer": None if i == 0 else salt + c["ticket"].encode() * 100} for i, c in enumerate(people)]
    data = build_result(site_code=manifest["site_code"], room_code=room, session_id=session,
                        created_at=env.ctx.now(), candidates=cands)
    path = os.path.join(folder, "{}-{}{}.zip".format(room, session, "-x" if salt else ""))
    with open(path, "wb") as f:
        f.write(data)
    return path


def backed_up(env: Any, name: str, tmp_path: Any, external_dir: str) -> str:
    """A data folder loaded, session 1 recovered in every room and backed up, all by ``main.py``."""
    data = configure(env, name)
    ok(kd(env, data, "load"))
    exported = os.path.join(str(tmp_path), "exported")
    os.mkdir(exported)
    for room in sorted(r["code"] for r in env.sim.data.manifest()["rooms"]):
        ok(kd(env, data, "recover", export(env, exported, room, "1")))
    ok(kd(env, data, "backup-external", external_dir))
    return data
