"""系统备份 (manual §6.1): a signed ``.bak`` of the data folder, written and read back.

``BackupService(ctx, accounts).backup(folder, note, actor)`` writes a ``.bak``
(``kd.formats.backup``, docs/formats.md) with the content of the three stores, every
spool file, the room data files and the audit log, signed by the site's dongle (the one
the loaded site package names). ``kd.core.system.SystemService.backup`` delegates here.

Locking (a proctor's heartbeat is never blocked by the copy, DESIGN §4):

1. under ``ctx.files_lock`` (held to the end of step 3: no package install, restore or
   clear swaps the files away meanwhile) and, briefly, ``ctx.lock``: the checks (password
   changed, package loaded, the package's dongle attached) and the frozen inputs — the
   three store bodies as bytes, the list of spool files (content-addressed: immutable once
   written), the list of room files, the audit log's length N, and which room and session
   each spool file holds (for the messages);
2. outside ``ctx.lock``: the copy into ``<name>.part`` (fsynced, renamed, folder fsynced).
   Each spool file is re-hashed just before it is copied; a damaged one (bit rot, a
   truncated file) is left out, logged at ERROR with its path and named in the result,
   and every other member is still backed up. The audit log is append-only: exactly its
   first N bytes are copied (cut back to the last complete line);
3. the read-back: the file's cached pages are dropped first (``kd.fileio.drop_cache``;
   on Windows the whole file is also read with ``FILE_FLAG_NO_BUFFERING`` and compared
   with a cached read), then every member is re-read against the manifest and the
   signature checked; a backup that does not verify is deleted and reported;
4. under ``ctx.lock``: the audit record ``system.backed_up``.

Lock order: ``ctx.files_lock`` before ``ctx.lock``, never the other way round.

The result is a ``BackupResult``: a ``str`` (the path, what callers always got) carrying
``damaged`` (the spool files left out, each with the rooms and sessions it holds),
``warnings`` (Chinese lines for the administrator, with how to recover those results
again), ``members``, ``size`` and ``read_back`` (how the read-back read the file).
"""

import base64
import logging
import os
import re
from typing import Any, BinaryIO, Dict, Iterator, List, NamedTuple, Optional, Tuple

import kd

# The backup reads the data folder's files themselves, so it uses the store's file
# primitives directly.
from kd import fileio as fsutil
from kd.core import model, names
from kd.core.accounts import AccountService
from kd.core.context import Context
from kd.core.labels import result_label
from kd.core.ports import DongleSignature
from kd.core.records import JsonObject
from kd.errors import FormatError, UserError
from kd.formats import backup as bak
from kd.formats.timeutil import format_time
from kd.store.database import DB_FILES
from kd.store.spool import Spool

log = logging.getLogger(__name__)

ROOM_FILE_RE = re.compile(r"[0-9A-Za-z_.-]{1,100}", re.ASCII)


class SystemRefused(UserError):
    """A system operation is not allowed now (unreported data, wrong mode, wrong confirmation)."""


class BackupError(UserError):
    """A backup could not be written or did not verify after writing."""


def recover_again_remedy(rooms: List[str], then: str) -> str:
    """How to get a damaged result back into the spool, then ``then`` (e.g. 重新备份)."""
    rooms_text = "、".join(dict.fromkeys(rooms)) or "相应考场"
    return ("请在考场 {} 的监考机上重新“上报”，或导出结果包后在“数据回收”中手工“回收”"
            "（同一结果包会替换本机已损坏的文件），然后{}。".format(rooms_text, then))


def spool_owners(ctx: Context) -> Dict[str, List[Dict[str, str]]]:
    """Spool file hash → the results that refer to it (``{"room", "session", "kind"}``). Call under ctx.lock."""
    owners: Dict[str, List[Dict[str, str]]] = {}
    runtime = ctx.stores.runtime
    for doc in runtime.all(model.ROOM_SESSIONS):
        sha = (doc.get("result") or {}).get("sha256")
        if sha:
            owners.setdefault(sha, []).append({"room": str(doc.get("room")), "session": str(doc.get("session")),
                                               "kind": "result"})
    for doc in runtime.all(model.RESULT_CONFLICTS):
        if doc.get("sha256"):
            owners.setdefault(doc["sha256"], []).append({"room": str(doc.get("room")),
                                                         "session": str(doc.get("session")), "kind": "conflict"})
    return owners


def damaged_entry(sha: str, path: str, problem: str, owners: List[Dict[str, str]]) -> JsonObject:
    """One damaged spool file as results and messages list it."""
    labels = [result_label(o["room"], o["session"]) + ("（被拒绝的结果包）" if o["kind"] == "conflict" else "")
              for o in owners]
    return {"sha256": sha, "path": path, "problem": problem, "results": owners,
            "label": "、".join(labels) if labels else "未登记的结果文件 {}…".format(sha[:12])}


class BackupResult(str):
    """The path of the written ``.bak`` (a ``str``), with what the backup left out and how it was checked."""

    damaged: List[Dict[str, Any]]
    warnings: List[str]
    members: int
    size: int
    read_back: str

    def __new__(cls, path: str, *, damaged: List[Dict[str, Any]], warnings: List[str], members: int, size: int,
                read_back: str) -> "BackupResult":
        self = super().__new__(cls, path)
        self.damaged, self.warnings, self.members, self.size, self.read_back = (
            damaged, warnings, members, size, read_back)
        return self

    def as_dict(self) -> JsonObject:
        return {"path": str(self), "damaged": self.damaged, "warnings": self.warnings, "members": self.members,
                "size": self.size, "read_back": self.read_back, "complete": not self.damaged}


class _Frozen(NamedTuple):
    """The inputs of one backup, taken under ctx.lock."""

    dbs: List[Tuple[str, bytes]]
    spool: Spool
    spool_files: List[Tuple[str, str]]  # (sha256, path)
    rooms: List[Tuple[str, str]]        # (member name, path)
    audit: Any                          # the audit log's AuditMark (None: no audit log yet)
    owners: Dict[str, List[Dict[str, str]]]


def _open_output(path: str) -> BinaryIO:
    """The file the backup is written through (a module function: tests slow the medium down with it)."""
    return open(path, "wb")  # noqa: SIM115 - the caller closes it


class BackupService:
    """系统备份."""

    def __init__(self, ctx: Context, accounts: Optional[AccountService] = None) -> None:
        self.ctx = ctx
        self.accounts = accounts or AccountService(ctx)

    def backup(self, folder: str, note: str, actor: str) -> BackupResult:
        """Write a signed ``.bak`` into ``folder``; return its path (a ``BackupResult``).

        Damaged spool files do not stop the backup: they are left out and listed in
        ``damaged`` and ``warnings``. Raises ``SystemRefused`` (no site package loaded:
        nothing names the dongle that signs), ``LockError`` (dongle missing or not the
        package's), ``BackupError`` (folder not writable, disk full, read-back failed,
        a data file unreadable), ``PasswordChangeRequired``.
        """
        note = (note or "").strip()
        if len(note) > bak.MAX_NOTE_CHARS or any(ord(c) < 32 for c in note):
            raise SystemRefused("备注过长或含控制字符（至多 {} 个字符）。".format(bak.MAX_NOTE_CHARS),
                                "请修改备注后重试。")
        ctx = self.ctx
        with ctx.files_lock:
            with ctx.lock:
                self.accounts.require_changed(actor)
                manifest = ctx.manifest()
                if not manifest or not isinstance(manifest.get("lock"), dict):
                    raise SystemRefused("尚未导入考务数据，无法进行系统备份。",
                                        "系统备份由考务数据包中登记的机考锁签名；请先完成“导入考务”。")
                lock = {"id": manifest["lock"]["id"], "public_key": manifest["lock"]["public_key"]}
                public_key = base64.b64decode(lock["public_key"])
                dongle = ctx.dongle_or_raise()
                dongle.verify(lock["id"], public_key)
                site = ctx.site()
                now = ctx.now()
                header = {"site_code": site.get("site_code") or "", "mode": site.get("mode", model.FORMAL),
                          "exam_name": str(manifest.get("exam_name") or ""), "note": note,
                          "created_at": format_time(now), "app_version": kd.__version__, "lock": lock}
                frozen = self._freeze()
            stem = "系统备份({})_{}".format(header["site_code"] or "未设置", now.strftime("%Y%m%d-%H%M%S"))
            damaged: List[Dict[str, Any]] = []
            path, written = self._write(folder, stem, header, frozen, dongle, damaged)
            try:
                read_back = self._check_written(path, public_key)
            except (UserError, OSError) as e:
                fsutil.remove_quietly(path)
                raise BackupError("备份文件写入后校验失败，已删除：{}。".format(path),
                                  "请检查存储介质后重新备份，或换一个文件夹/U 盘。", detail=repr(e)) from e
            size = os.path.getsize(path)
        warnings = _damage_warnings(damaged)
        with ctx.lock:
            ctx.record(actor, names.SYSTEM_BACKED_UP, path=path, note=note, members=len(written["members"]), size=size,
                       damaged=[{"sha256": d["sha256"], "label": d["label"], "problem": d["problem"]}
                                for d in damaged])
        return BackupResult(path, damaged=damaged, warnings=warnings, members=len(written["members"]), size=size,
                            read_back=read_back)

    # -- 1. freeze (under ctx.lock) ----------------------------------------------------------
    def _freeze(self) -> _Frozen:
        ctx = self.ctx
        dbs = [("db/{}.json".format(name), self._db_body(name)) for name in DB_FILES]
        spool = ctx.spool
        spool_files = [(sha, spool.path(sha)) for sha in spool.list()]
        rooms: List[Tuple[str, str]] = []
        folder = os.path.join(ctx.data_dir, "rooms")
        if os.path.isdir(folder):
            for name in sorted(os.listdir(folder)):
                full = os.path.join(folder, name)
                if os.path.isfile(full) and ROOM_FILE_RE.fullmatch(name) and ".part" not in name:
                    rooms.append(("rooms/" + name, full))
        # where the log ends now; read later even if the log was rotated meanwhile
        audit = ctx.audit.mark() if os.path.exists(ctx.audit.path) else None
        return _Frozen(dbs, spool, spool_files, rooms, audit, spool_owners(ctx))

    def _db_body(self, name: str) -> bytes:
        """The current durable tables of store ``name`` (the body of its newest generation)."""
        return getattr(self.ctx.stores, name).durable_body()

    # -- 2. copy (outside ctx.lock) ----------------------------------------------------------
    def _sources(self, frozen: _Frozen, damaged: List[Dict[str, Any]]) -> Iterator[Tuple[str, bak.Source]]:
        """The members in order; a spool file that does not hash to its name is left out (into ``damaged``)."""
        yield from frozen.dbs
        for sha, path in frozen.spool_files:
            problem = frozen.spool.damage(sha)
            if problem is not None:
                entry = damaged_entry(sha, path, problem, frozen.owners.get(sha, []))
                log.error("system backup: spool file %s is damaged (%s), left out of the backup; it holds %s",
                          path, problem, entry["label"])
                damaged.append(entry)
                continue
            yield "spool/{}.dat".format(sha), path
        yield from frozen.rooms
        if frozen.audit is not None:
            yield bak.AUDIT, self.ctx.audit.marked_bytes(frozen.audit)

    def _write(self, folder: str, stem: str, header: Dict[str, Any], frozen: _Frozen, dongle: Any,
               damaged: List[Dict[str, Any]]) -> Tuple[str, Dict[str, Any]]:
        try:
            os.makedirs(folder, exist_ok=True)
            path = _free_name(folder, stem)
            part = path + ".part"
            try:
                with _open_output(part) as f:
                    written = bak.write(f, header, self._sources(frozen, damaged),
                                        lambda d: bak.Seal(*dongle.sign(d)))
                    f.flush()
                    os.fsync(f.fileno())
                fsutil.replace(part, path)
                fsutil.fsync_dir(os.path.dirname(os.path.abspath(path)))
            except BaseException:
                fsutil.remove_quietly(part)
                raise
        except FormatError as e:  # the manifest check: e.g. a spool file changed between its check and its copy
            raise BackupError("系统备份未完成（{}）。".format(e.cause),
                              "请重新进行系统备份；如仍失败，请联系技术支持。", detail=e.detail or e.cause) from e
        except OSError as e:
            source = getattr(e, "filename", None)
            if isinstance(source, str) and fsutil.inside(source, self.ctx.data_dir):
                raise BackupError("无法读取数据目录中的文件：{}，未生成备份。".format(source),
                                  "请检查本机硬盘（数据目录）后重试；如该文件已损坏，请联系技术支持。",
                                  detail=repr(e)) from e
            raise BackupError("无法写入备份文件到 {}。".format(folder),
                              "请检查该文件夹（如 U 盘）是否可写、空间是否足够，然后重试。", detail=repr(e)) from e
        return path, written

    # -- 3. read back ------------------------------------------------------------------------
    def _check_written(self, path: str, public_key: bytes) -> str:
        """Verify the written file as read from the medium; return how it was read (``kd.fileio.READ_*``)."""
        how = fsutil.READ_CACHE_DROPPED if fsutil.drop_cache(path) else fsutil.READ_CACHED
        with bak.BackupFile(path) as f:
            f.verify_all()
            check_signature(self.ctx, f, public_key)
        if how == fsutil.READ_CACHED:  # Windows: compare what the medium returns with what the cache holds
            cached, _ = fsutil.sha256_file(path)
            medium, _, how = fsutil.sha256_uncached(path)
            if medium != cached:
                raise bak.refuse("从存储介质读回的内容与写入的内容不一致")
        return how


def check_signature(ctx: Context, f: bak.BackupFile, public_key: bytes) -> None:
    """Raise a ``FormatError`` unless ``f`` is sealed by the dongle whose key is ``public_key``."""
    dongle = ctx.dongle_or_raise()
    sig = DongleSignature(f.seal.lock_id, f.seal.clock_ms, f.seal.signature)
    if f.seal.lock_id != f.lock_id or not dongle.check_signature(public_key, f.digest, sig):
        raise bak.refuse("机考锁签名无效，文件可能被篡改或不是本考点的备份")


def _damage_warnings(damaged: List[Dict[str, Any]]) -> List[str]:
    if not damaged:
        return []
    rooms = [r["room"] for d in damaged for r in d["results"]]
    return ["以下考试结果在本机保存的文件已损坏，未能备份：{}。其余数据已完整备份。".format(
                "；".join("{}（{}）".format(d["label"], d["problem"]) for d in damaged)),
            recover_again_remedy(rooms, "重新进行系统备份")]


def _free_name(folder: str, stem: str) -> str:
    path = os.path.join(folder, stem + bak.SUFFIX)
    n = 2
    while os.path.exists(path) or os.path.exists(path + ".part"):
        path = os.path.join(folder, "{}-{}{}".format(stem, n, bak.SUFFIX))
        n += 1
    return path
