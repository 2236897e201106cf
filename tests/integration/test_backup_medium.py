"""第一步 备份到外部存储 must go to external storage, and its read-back must come from the medium.

The data folder is under ``tmp_path``; ``/dev/shm`` (a tmpfs: another device) stands in
for the USB stick. A folder on the data folder's volume is refused outside a drill, a
folder inside the data folder always; in a drill the same volume is allowed and said.
The read-back primitive is checked against the kernel's page cache itself (``mincore``).
"""

import ctypes
import hashlib
import mmap
import os
import sys

import pytest

from kd import fileio
from kd.core import model
from kd.errors import UserError
from tests.support.fixtures import closed_after
from tests.support.results import pairs, results_env

REFUSED = "请选择 U 盘或移动硬盘上的文件夹"


env = closed_after(lambda tmp_path: results_env(tmp_path, received=True, rooms=2, sessions=1, candidates=3,
                                                room_kb=4))


def set_drill(ctx, drill):
    site = ctx.site()
    site["drill"] = drill
    ctx.stores.settings.put(model.SETTINGS, model.SITE, site)


def test_a_folder_on_the_data_folders_volume_is_refused(env, tmp_path):
    same = tmp_path / "usb"
    same.mkdir()
    assert fileio.same_volume(str(same), env.ctx.data_dir)
    with pytest.raises(UserError) as e:
        env.upload.backup_external(str(same), "admin")
    assert REFUSED in e.value.remedy and "同一个磁盘" in e.value.cause
    assert os.listdir(str(same)) == []
    assert env.ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL) is None


@pytest.mark.parametrize("drill", [False, True])
def test_a_folder_inside_the_data_folder_is_always_refused(env, drill):
    set_drill(env.ctx, drill)
    inside = os.path.join(env.ctx.data_dir, "usb")
    os.mkdir(inside)
    with pytest.raises(UserError) as e:
        env.upload.backup_external(inside, "admin")
    assert "数据目录" in e.value.cause and "U 盘或移动硬盘" in e.value.remedy
    assert os.listdir(inside) == []
    with pytest.raises(UserError, match="数据目录"):
        env.upload.backup_external(env.ctx.data_dir, "admin")
    assert env.ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL) is None


def test_a_drill_may_back_up_on_the_same_volume_and_is_told_so(env, tmp_path):
    set_drill(env.ctx, True)
    same = tmp_path / "usb"
    same.mkdir()
    done = env.upload.backup_external(str(same), "admin")
    assert done["same_volume"] is True and done["complete"] is True
    assert any("演练模式" in w and "同一个磁盘" in w for w in done["warnings"])
    assert len(done["files"]) == len(pairs(env.ctx))
    assert env.ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL)["same_volume"] is True
    assert env.upload.snapshot()["can_upload"] is True


def test_another_volume_is_accepted_and_read_back_past_the_cache(env, external_dir):
    done = env.upload.backup_external(external_dir, "admin")
    assert done["same_volume"] is False and done["complete"] is True
    assert not any("演练模式" in w for w in done["warnings"])
    expected = fileio.READ_UNCACHED if os.name == "nt" else fileio.READ_CACHE_DROPPED
    assert done["read_back"] == expected
    assert env.ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL)["read_back"] == expected


# -- the primitives ---------------------------------------------------------------------------
def test_same_volume_and_inside(tmp_path, external_dir):
    data = tmp_path / "data"
    data.mkdir()
    assert fileio.same_volume(str(tmp_path / "not" / "yet"), str(data))  # the nearest existing parent counts
    assert not fileio.same_volume(external_dir, str(data))
    assert not fileio.same_volume(os.path.join(external_dir, "new", "folder"), str(data))
    assert fileio.inside(str(data / "usb"), str(data)) and fileio.inside(str(data), str(data))
    assert not fileio.inside(str(tmp_path / "data-other"), str(data))
    os.symlink(str(data), str(tmp_path / "link"))
    assert fileio.inside(str(tmp_path / "link" / "usb"), str(data))
    assert fileio.volume_kind(str(tmp_path)) in ("removable", "fixed", "remote", "cdrom", "ramdisk", "unknown")


def resident_pages(path):
    """How many of the file's pages are in the kernel's page cache (``mincore`` on a mapping)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    size = os.path.getsize(path)
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            anchor = ctypes.c_char.from_buffer(mm)  # the mapping's address; no page is touched
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.addressof(anchor), size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
            del anchor
        finally:
            mm.close()
    return sum(v & 1 for v in vec)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and fadvise as on Linux")
def test_drop_cache_empties_the_page_cache_of_a_file_on_a_disk(tmp_path):
    path = str(tmp_path / "copy.bin")
    data = os.urandom(8 * 1024 * 1024)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    with open(path, "rb") as f:
        assert f.read() == data  # now cached
    if resident_pages(path) == 0:
        pytest.skip("this file system keeps no page cache for {}".format(path))
    assert fileio.drop_cache(path) is True
    assert resident_pages(path) == 0  # the next read comes from the disk
    digest, size, how = fileio.sha256_uncached(path)
    assert (digest, size, how) == (hashlib.sha256(data).hexdigest(), len(data), fileio.READ_CACHE_DROPPED)
