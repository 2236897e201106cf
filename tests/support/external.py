"""A folder on another volume than the tests' data folders: the "USB stick" of the external backup.

第一步 备份到外部存储 refuses a folder on the data folder's volume, and the tests' data
folders live under ``tmp_path``. On Linux ``/dev/shm`` is a tmpfs, a device of its own;
``KD_TEST_EXTERNAL_DIR`` may name another place. ``external_folder(tmp_path)`` makes a fresh
subfolder there (the caller removes it with ``remove_external``), or skips the test when no
other volume is at hand.
"""

import os
import secrets
import shutil
from typing import Any

import pytest


def external_folder(tmp_path: Any) -> str:
    base = os.environ.get("KD_TEST_EXTERNAL_DIR") or "/dev/shm"
    if not os.path.isdir(base) or os.stat(base).st_dev == os.stat(str(tmp_path)).st_dev:
        pytest.skip("no folder on another volume than {} (set KD_TEST_EXTERNAL_DIR)".format(tmp_path))
    folder = os.path.join(base, "kd-test-external-{}".format(secrets.token_hex(4)))
    os.mkdir(folder)
    return folder


def remove_external(folder: str) -> None:
    for sub, dirs, _files in os.walk(folder):  # a test may leave a read-only folder behind
        for d in dirs:
            os.chmod(os.path.join(sub, d), 0o700)
    shutil.rmtree(folder, ignore_errors=True)
