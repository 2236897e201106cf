"""Where kaodian keeps its files: computed here and nowhere else (frozen-aware).

- ``app_dir()``: the folder of the exe (PyInstaller) or of ``main.py`` (source tree).
- ``resource_path(rel)``: bundled read-only files (``assets/``): ``sys._MEIPASS`` when
  frozen, the source tree otherwise.
- ``data_dir(override)``: portable data folder, ``data/`` beside ``app_dir()``; the
  ``--data-dir`` option (``override``) and then the ``KD_DATA_DIR`` variable win.
- ``prepare_data_dir(path)``: creates it and proves it writable, or raises
  ``DataDirError`` with a Chinese message that suggests ``--data-dir``.

Layout of a data folder::

    data/
      db/settings.json.{0,1}  db/exam.json.{0,1}  db/runtime.json.{0,1}   (two generations each)
      spool/            result packages, content-addressed
      audit.log         append-only, hash-chained JSON lines
      logs/kaodian.log  rotating log
      kaodian.lock      single-instance lock
"""

import errno
import os
import sys
from typing import Optional

from kd.errors import DataDirError

ENV_DATA_DIR = "KD_DATA_DIR"


def is_frozen() -> bool:
    """True inside the PyInstaller executable."""
    return bool(getattr(sys, "frozen", False))


def app_dir() -> str:
    """The folder that holds the exe, or ``main.py`` when run from source."""
    if is_frozen():
        return os.path.dirname(os.path.abspath(sys.executable))
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resource_path(*parts: str) -> str:
    """Path of a bundled resource, e.g. ``resource_path("assets", "kaodian.png")``."""
    base = getattr(sys, "_MEIPASS", None) if is_frozen() else None
    return os.path.join(base or app_dir(), *parts)


def data_dir(override: Optional[str] = None) -> str:
    """The data folder: ``override`` (``--data-dir``), ``KD_DATA_DIR``, or ``data/``."""
    chosen = override or os.environ.get(ENV_DATA_DIR) or os.path.join(app_dir(), "data")
    return os.path.abspath(os.path.expanduser(chosen))


def prepare_data_dir(path: str) -> str:
    """Create ``path`` if needed and prove it writable; return it.

    Raises ``DataDirError`` (a ``UserError``) when the folder cannot be created or
    written, e.g. when the exe runs from a read-only disc or a locked USB stick.
    """
    probe = os.path.join(path, f".write-test-{os.getpid()}")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"ok")
            f.flush()
            os.fsync(f.fileno())
        os.remove(probe)
    except OSError as e:
        full = e.errno == errno.ENOSPC
        raise DataDirError(
            "数据目录无法写入：{}（{}）".format(path, "磁盘已满" if full else "没有写入权限或介质只读"),
            "请把程序复制到本机硬盘后再运行，或用 --data-dir 指定一个可写的文件夹，"
            "例如：kaodian.exe --data-dir D:\\kaodian-data",
            detail=repr(e),
        ) from e
    return path


def sub_dir(root: str, *parts: str) -> str:
    """``root/parts...``, created if missing."""
    path = os.path.join(root, *parts)
    os.makedirs(path, exist_ok=True)
    return path
