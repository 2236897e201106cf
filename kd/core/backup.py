"""系统备份 (manual §6.1): a signed ``.bak`` of the data folder, written and read back.

``BackupService(ctx, accounts).backup(folder, note, actor)`` writes a ``.bak``
(``kd.formats.backup``) with the current content of the three stores, every spool file,
the room data files and the audit log, signed by the site's dongle (the one the loaded
site package names). Written as ``.part``, fsynced, renamed, then read back in full and
its signature checked; a backup that does not verify is deleted and reported.
``kd.core.system.SystemService.backup`` delegates here.
"""

import base64
import logging
import os
import re
from typing import List, Optional, Tuple

import kd

# The backup reads the data folder's files themselves, so it uses the store's file
# primitives directly.
from kd import fileio as fsutil
from kd.core import model
from kd.core.accounts import AccountService
from kd.core.context import Context
from kd.core.ports import DongleSignature
from kd.errors import UserError
from kd.formats import backup as bak
from kd.formats.timeutil import format_time
from kd.store import atomic
from kd.store.database import DB_FILES

log = logging.getLogger(__name__)

ROOM_FILE_RE = re.compile(r"[0-9A-Za-z_.-]{1,100}", re.ASCII)


class SystemRefused(UserError):
    """A system operation is not allowed now (unreported data, wrong mode, wrong confirmation)."""


class BackupError(UserError):
    """A backup could not be written or did not verify after writing."""


class BackupService:
    """系统备份."""

    def __init__(self, ctx: Context, accounts: Optional[AccountService] = None) -> None:
        self.ctx = ctx
        self.accounts = accounts or AccountService(ctx)

    def backup(self, folder: str, note: str, actor: str) -> str:
        """Write a signed ``.bak`` into ``folder``; return its path.

        Raises ``SystemRefused`` (no site package loaded: nothing names the dongle that
        signs), ``LockError`` (dongle missing or not the package's), ``BackupError``
        (folder not writable, disk full, read-back failed), ``PasswordChangeRequired``.
        """
        note = (note or "").strip()
        if len(note) > bak.MAX_NOTE_CHARS or any(ord(c) < 32 for c in note):
            raise SystemRefused("备注过长或含控制字符（至多 {} 个字符）。".format(bak.MAX_NOTE_CHARS),
                                "请修改备注后重试。")
        with self.ctx.lock:
            self.accounts.require_changed(actor)
            manifest = self.ctx.manifest()
            if not manifest or not isinstance(manifest.get("lock"), dict):
                raise SystemRefused("尚未导入考务数据，无法进行系统备份。",
                                    "系统备份由考务数据包中登记的机考锁签名；请先完成“导入考务”。")
            lock = {"id": manifest["lock"]["id"], "public_key": manifest["lock"]["public_key"]}
            public_key = base64.b64decode(lock["public_key"])
            dongle = self.ctx.dongle_or_raise()
            dongle.verify(lock["id"], public_key)
            site = self.ctx.site()
            now = self.ctx.now()
            header = {"site_code": site.get("site_code") or "", "mode": site.get("mode", model.FORMAL),
                      "exam_name": str(manifest.get("exam_name") or ""), "note": note,
                      "created_at": format_time(now), "app_version": kd.__version__, "lock": lock}
            try:
                os.makedirs(folder, exist_ok=True)
                path = _free_name(folder, "系统备份({})_{}".format(header["site_code"] or "未设置",
                                                                   now.strftime("%Y%m%d-%H%M%S")))
                part = path + ".part"
                sources = self._sources()
                try:
                    with open(part, "wb") as f:
                        written = bak.write(f, header, sources, lambda d: bak.Seal(*dongle.sign(d)))
                        f.flush()
                        os.fsync(f.fileno())
                    fsutil.replace(part, path)
                    fsutil.fsync_dir(os.path.dirname(os.path.abspath(path)))
                except BaseException:
                    _quietly_remove(part)
                    raise
            except OSError as e:
                raise BackupError("无法写入备份文件到 {}。".format(folder),
                                  "请检查该文件夹（如 U 盘）是否可写、空间是否足够，然后重试。", detail=repr(e)) from e
            try:
                self._check_written(path, public_key)
            except (UserError, OSError) as e:
                _quietly_remove(path)
                raise BackupError("备份文件写入后校验失败，已删除：{}。".format(path),
                                  "请检查存储介质后重新备份，或换一个文件夹/U 盘。", detail=repr(e)) from e
            size = os.path.getsize(path)
            self.ctx.record(actor, "system.backup", path=path, note=note, members=len(written["members"]),
                            size=size)
            return path

    def _sources(self) -> List[Tuple[str, bak.Source]]:
        """Every member of a backup: the stores' current content, spool, room files, audit log."""
        sources: List[Tuple[str, bak.Source]] = []
        for name in DB_FILES:
            sources.append(("db/{}.json".format(name), self._db_body(name)))
        for sha in self.ctx.spool.list():
            sources.append(("spool/{}.dat".format(sha), self.ctx.spool.path(sha)))
        rooms = os.path.join(self.ctx.data_dir, "rooms")
        if os.path.isdir(rooms):
            for name in sorted(os.listdir(rooms)):
                full = os.path.join(rooms, name)
                if os.path.isfile(full) and ROOM_FILE_RE.fullmatch(name) and ".part" not in name:
                    sources.append(("rooms/" + name, full))
        if os.path.exists(self.ctx.audit.path):
            with open(self.ctx.audit.path, "rb") as f:
                sources.append((bak.AUDIT, f.read()))
        return sources

    def _db_body(self, name: str) -> bytes:
        """The current durable tables of store ``name`` (its newest good generation file)."""
        db = getattr(self.ctx.stores, name)
        base = os.path.join(self.ctx.data_dir, "db", name + ".json")
        with db.transaction():  # holds the store's lock: no write in between
            best: Optional[Tuple[int, bytes]] = None
            for suffix in atomic.SLOTS:
                try:
                    with open(base + suffix, "rb") as f:
                        gen, _tables, body = atomic.decode(f.read())
                except FileNotFoundError:
                    continue
                except atomic.CorruptFile as e:
                    log.warning("backup: skipping corrupt generation %s%s: %s", base, suffix, e)
                    continue
                if best is None or gen > best[0]:
                    best = (gen, body)
        return best[1] if best else b"{}"

    def _check_written(self, path: str, public_key: bytes) -> None:
        with bak.BackupFile(path) as f:
            f.verify_all()
            check_signature(self.ctx, f, public_key)


def check_signature(ctx: Context, f: bak.BackupFile, public_key: bytes) -> None:
    """Raise a ``FormatError`` unless ``f`` is sealed by the dongle whose key is ``public_key``."""
    dongle = ctx.dongle_or_raise()
    sig = DongleSignature(f.seal.lock_id, f.seal.clock_ms, f.seal.signature)
    if f.seal.lock_id != f.lock_id or not dongle.check_signature(public_key, f.digest, sig):
        raise bak.refuse("机考锁签名无效，文件可能被篡改或不是本考点的备份")


def _free_name(folder: str, stem: str) -> str:
    path = os.path.join(folder, stem + bak.SUFFIX)
    n = 2
    while os.path.exists(path) or os.path.exists(path + ".part"):
        path = os.path.join(folder, "{}-{}{}".format(stem, n, bak.SUFFIX))
        n += 1
    return path


def _quietly_remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
