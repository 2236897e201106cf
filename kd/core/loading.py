"""导入考务 (manual §3.1): load the site package online or from a ``.zip``, and show it.

``LoadingService(ctx)``:

- ``load_online(actor)``: download the site package from the platform (the client
  verifies it: signature, site code, rollback against the loaded publish time, members)
  and install it. When the platform is unreachable or refuses, the ``PlatformError``
  tells the user to 手工导入 the ``.zip`` (the UI then opens the import dialog).
- ``import_zip(path, actor)``: the same from a file the user chose (``load_package``
  with ``ctx.trusted``, the site code and the loaded publish time).
- ``snapshot()``: the table of §3.1 (考场代码 | 场次数 | 数据载入时间 | 是否通过校验 |
  校验通过的时间) with the footer (考场数据包发布时间, load time, 校验通过 time).
- ``rooms()``, ``sessions()``, ``room_detail(code)`` (查看: sessions, candidates with
  seats), ``print_door_sheet(room, session)`` (门贴座次表: printable HTML file path).

Installing is one journaled transaction of the data folder (``kd.store.datafolder``):
the package is fully verified before anything is written; the room files are extracted
(and re-verified) into the transaction's staging, which replaces ``DATA/rooms`` as a
whole; the exam DB's ``package`` table (``manifest``, ``meta``) and the runtime DB's
``rooms``, ``sessions``, ``room_sessions`` tables are staged beside it; the journal
commits. A failed step rolls everything back, and after a kill at any point the next
start finishes or rolls back, so the folder holds entirely the old package or entirely
the new one, never a mix. Registration codes (8 capital letters from ``secrets``)
are made for new rooms; rooms that still exist in a newer package keep their code and
registration; rooms that are gone are dropped.
"""

import logging
import os
import secrets
import string
from typing import Any, Dict, List, Optional, Tuple

from kd import fileio
from kd.core import lifecycle, model, names, records
from kd.core.context import Context
from kd.core.lifecycle import SessionEvent
from kd.core.records import JsonObject
from kd.core.snapshots import LoadingRow, LoadingSnapshot
from kd.errors import FormatError, PlatformRefused, PlatformUnreachable, StoreError, UserError
from kd.formats.package import REMEDY as PACKAGE_REMEDY
from kd.formats.package import SitePackage, load_package, room_member_name
from kd.formats.timeutil import format_time, parse_time

log = logging.getLogger(__name__)

REG_CODE_LETTERS = string.ascii_uppercase
REG_CODE_LENGTH = 8
ROOMS_DIR = "rooms"
DOWNLOADS_DIR = "downloads"
MANUAL_REMEDY = "请点击“手工导入”，选择监控平台提供的考场数据包文件（.zip）。"

COLUMNS = ["考场代码", "场次数", "数据载入时间", "是否通过校验", "校验通过的时间"]


class NotLoaded(UserError):
    """No site package is loaded yet (导入考务 not done)."""


def new_reg_code() -> str:
    """A registration code: 8 capital letters from ``secrets`` (e.g. ``FBLDUFBO``)."""
    return "".join(secrets.choice(REG_CODE_LETTERS) for _ in range(REG_CODE_LENGTH))




def not_loaded() -> NotLoaded:
    return NotLoaded("尚未导入考务（考场数据包未载入）。",
                     "请先在“导入考务”中点击“载入”，或手工导入考场数据包（.zip）。")


class LoadingService:
    """导入考务: load, verify and install the site package; its tables and printouts."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- paths -------------------------------------------------------------------------
    @property
    def rooms_dir(self) -> str:
        return self.ctx.folder.rooms_dir

    def room_file_path(self, room_code: str) -> str:
        """Where the room's verified data file lives (``DATA/rooms/<room>.dat``)."""
        return self.ctx.folder.room_file(room_code)

    # -- loading -----------------------------------------------------------------------
    def _site_code(self) -> str:
        code = self.ctx.site_code()
        if not code:
            raise UserError("尚未设置考点代码。", "请先登录并在“系统设置”中填写考点代码。")
        return code

    def _loaded_publish_time(self) -> Optional[str]:
        meta = self.ctx.stores.exam.get(model.PACKAGE, model.PACKAGE_META)
        return meta.get("publish_time") if meta else None

    def load_online(self, actor: str) -> JsonObject:
        """Download the site package from the platform and install it; returns ``snapshot()``.

        Raises ``PlatformUnreachable`` / ``PlatformRefused`` (remedy: 手工导入 the .zip),
        ``FormatError`` (bad, foreign or older package), ``StoreError``. Nothing changes
        on failure.
        """
        self._site_code()
        platform = self.ctx.platform_or_raise("“手工导入”导入考场数据包文件（.zip）")
        folder = self.ctx.folder.downloads_dir
        os.makedirs(folder, exist_ok=True)
        with self.ctx.lock:
            loaded = self._loaded_publish_time()
        try:
            downloaded = platform.download_package(folder, loaded)
        except (PlatformUnreachable, PlatformRefused) as e:
            log.warning("online load failed: %s (%s)", e.cause, e.detail)
            raise type(e)("从监控平台载入考场数据失败：" + e.cause, MANUAL_REMEDY, detail=e.detail) from e
        try:
            self._install(downloaded.package, downloaded.path, "online", actor)
        finally:
            try:
                os.remove(downloaded.path)
            except OSError:
                log.warning("could not remove the downloaded package %s", downloaded.path)
        return self.snapshot()

    def import_zip(self, path: str, actor: str) -> JsonObject:
        """手工导入: verify and install the site package file ``path``; returns ``snapshot()``.

        Raises ``FormatError`` (missing, unreadable, bad signature, other site, older than
        the loaded package, damaged members), ``StoreError``. Nothing changes on failure.
        """
        site_code = self._site_code()
        if not os.path.isfile(path):
            raise FormatError("找不到考场数据包文件：{}".format(path), "请选择监控平台提供的考场数据包文件（.zip）。")
        with self.ctx.lock:
            loaded = self._loaded_publish_time()
        package = load_package(path, self.ctx.trusted, site_code, loaded)
        self._install(package, path, "manual", actor)
        return self.snapshot()

    def _install(self, package: SitePackage, zip_path: str, source: str, actor: str) -> None:
        """Install a verified package as one journaled transaction of the data folder.

        The room files are extracted (and re-verified) into the transaction's staging
        outside ``ctx.lock`` (a large package takes a while and the LAN service must go on
        answering); the new exam and runtime tables are computed and the swap runs under
        it (``kd.store.datafolder``: after a kill at any point the folder is entirely the
        old package or entirely the new one).
        """
        ctx = self.ctx
        verified_at = format_time(ctx.now())
        try:
            zip_sha = fileio.sha256_file(zip_path)[0]
        except OSError as e:
            raise StoreError("无法读取考场数据包文件：{}".format(zip_path), "请检查文件后重试。", detail=repr(e)) from e
        with ctx.files_lock:
            tx = ctx.folder.begin("load")
            try:
                try:
                    package.extract_rooms(tx.stage("rooms"))
                except OSError as e:
                    raise StoreError("无法写入考场数据文件（{}）。".format(self.rooms_dir),
                                     "请检查磁盘空间和写入权限后重试。", detail=repr(e)) from e
                with ctx.lock:
                    self._check_not_older(package)
                    self._commit(tx, package, zip_sha, source, verified_at, actor)
            except BaseException:
                if os.path.exists(tx.dir):
                    tx.abort()
                raise

    def _check_not_older(self, package: SitePackage) -> None:
        """Refuse a package older than the loaded one (another load may have finished meanwhile)."""
        loaded = self._loaded_publish_time()
        if loaded is not None and package.published_at < parse_time(loaded, "publish_time", "考场数据包"):
            raise FormatError("考场数据包校验失败：数据包发布时间 {} 早于已载入数据包的发布时间 {}，"
                              "不能回退到旧版本".format(package.publish_time, loaded), PACKAGE_REMEDY)

    def _commit(self, tx: Any, package: SitePackage, zip_sha: str, source: str, verified_at: str,
                actor: str) -> None:
        """Stage both DBs' new tables beside the room files and swap it all in. Under ``ctx.lock``."""
        ctx = self.ctx
        loaded_at = format_time(ctx.now())
        exam, runtime = ctx.stores.exam, ctx.stores.runtime
        meta = {"publish_time": package.publish_time, "loaded_at": loaded_at, "source": source,
                "verified_at": verified_at, "zip_sha256": zip_sha, "manifest_sha256": package.manifest_sha256,
                # the platform-signed manifest.json as is: the completeness proof carries it (kd/core/proof.py)
                "manifest_envelope": package.manifest_raw.decode("utf-8")}
        rooms, sessions, room_sessions = self._runtime_records(package, ctx.manifest())
        tx.set_tables("exam", {model.PACKAGE: {model.MANIFEST: package.manifest, model.PACKAGE_META: meta}},
                      {model.PACKAGE: exam.items(model.PACKAGE)})
        tx.set_tables("runtime", {model.ROOMS: rooms, model.SESSIONS: sessions, model.ROOM_SESSIONS: room_sessions},
                      {t: runtime.items(t) for t in (model.ROOMS, model.SESSIONS, model.ROOM_SESSIONS)})
        try:
            tx.commit({"exam": exam, "runtime": runtime})
        except OSError as e:
            raise StoreError("无法替换考场数据文件夹（{}）。".format(self.rooms_dir),
                             "请关闭正在使用考场数据文件的程序（如杀毒软件、资源管理器窗口）后重试；原有数据保持不变。",
                             detail=repr(e)) from e
        ctx.record(actor, names.PACKAGE_LOADED, source=source, site_code=package.site_code,
                   publish_time=package.publish_time, manifest_sha256=package.manifest_sha256,
                   zip_sha256=zip_sha, rooms=len(package.rooms), sessions=len(package.sessions),
                   candidates=len(package.candidates))

    def _runtime_records(self, package: SitePackage, old_manifest: Optional[records.Manifest]) -> Tuple[
            Dict[str, records.Room], Dict[str, records.Session], Dict[str, records.RoomSession]]:
        """New ``rooms``, ``sessions`` and ``room_sessions`` tables for ``package``.

        Existing records of rooms and sessions that are still in the package are kept
        (registration, authorization, progress); new ones start empty.
        """
        runtime = self.ctx.stores.runtime
        old_rooms = {doc["code"]: doc for doc in records.rooms(runtime)}
        old_sessions = {doc["id"]: doc for doc in records.sessions(runtime)}
        old_rs = {records.rs_key_of(doc): doc for doc in records.room_sessions(runtime)}
        rooms: Dict[str, records.Room] = {}
        used = {doc.get("reg_code") for doc in old_rooms.values()}
        for code in package.room_codes:
            room = old_rooms.get(code)
            if room is None:
                reg = new_reg_code()
                while reg in used:
                    reg = new_reg_code()
                used.add(reg)
                room = records.new_room(code, reg)
            rooms[code] = room
        old_defs = {s["id"]: s for s in (old_manifest or {}).get("sessions", [])}
        sessions: Dict[str, records.Session] = {}
        for definition in package.sessions:
            sid = definition["id"]
            doc = old_sessions.get(sid)
            before = old_defs.get(sid)
            if doc is not None and before is not None and any(
                    before.get(k) != definition.get(k) for k in ("name", "start", "duration_min")):
                log.warning("session %s changed in the new package: its authorization and verification are void", sid)
                doc = lifecycle.apply_session(doc, SessionEvent.VOID)
            sessions[sid] = doc if doc is not None else records.new_session(sid)
        room_sessions: Dict[str, records.RoomSession] = {}
        pairs = sorted({(c["room"], c["session"]) for c in package.candidates})
        for room_code, sid in pairs:
            key = model.rs_key(room_code, sid)
            room_sessions[key] = old_rs.get(key) or records.new_room_session(room_code, sid)
        for key, rs in old_rs.items():
            if key not in room_sessions and lifecycle.recovered(rs):
                log.warning("keeping the result record %s of a room/session no longer in the package", key)
                room_sessions[key] = rs
        return rooms, sessions, room_sessions

    # -- reading -----------------------------------------------------------------------
    def manifest(self) -> records.Manifest:
        """The loaded manifest; ``NotLoaded`` before 导入考务."""
        manifest = self.ctx.manifest()
        if manifest is None:
            raise not_loaded()
        return manifest

    def meta(self) -> Optional[Dict[str, Any]]:
        return self.ctx.stores.exam.get(model.PACKAGE, model.PACKAGE_META)

    def loaded(self) -> bool:
        return self.meta() is not None

    def rooms(self) -> List[records.RoomDef]:
        """The package's rooms (``code``, ``name``, ...), or [] before loading."""
        manifest = self.ctx.manifest()
        return list(manifest["rooms"]) if manifest else []

    def sessions(self) -> List[records.SessionDef]:
        """The package's sessions (``id``, ``name``, ``start``, ``duration_min``, ``subjects``), or []."""
        manifest = self.ctx.manifest()
        return list(manifest["sessions"]) if manifest else []

    def session(self, session_id: str) -> records.SessionDef:
        for session in self.sessions():
            if session["id"] == session_id:
                return session
        raise UserError("没有场次 {}。".format(session_id), "请选择考场数据包中的场次。")

    def room_data_sha256(self, room_code: str) -> Optional[str]:
        """The signed SHA-256 of a room's data file in the loaded package (None if unknown)."""
        name = room_member_name(room_code)
        return self.ctx.manifest_view(
            lambda m: next((e["sha256"] for e in m.get("members", []) if e["name"] == name), None))

    def _room_verified(self, manifest: records.Manifest, code: str) -> bool:
        """The room file is in place with its signed size (hashes were checked when written)."""
        name = room_member_name(code)
        for entry in manifest.get("members", []):
            if entry["name"] == name:
                try:
                    return os.path.getsize(self.room_file_path(code)) == entry["size"]
                except OSError:
                    return False
        return False

    def view(self) -> LoadingSnapshot:
        """The §3.1 table and footer (``kd.core.snapshots.LoadingSnapshot``)."""
        with self.ctx.lock:
            manifest = self.ctx.manifest()
            meta = self.meta()
        if not manifest or not meta:
            return LoadingSnapshot(loaded=False, columns=tuple(COLUMNS), rooms=(), site_code=self.ctx.site_code(),
                                   exam_name=None, publish_time=None, loaded_at=None, verified_at=None, source=None)
        counts: Dict[str, set] = {}
        for cand in manifest["candidates"]:
            counts.setdefault(cand["room"], set()).add(cand["session"])
        rows = []
        for room in manifest["rooms"]:
            code = room["code"]
            ok = self._room_verified(manifest, code)
            rows.append(LoadingRow(code=code, name=room.get("name", ""), session_count=len(counts.get(code, ())),
                                   loaded_at=meta["loaded_at"], verified=ok,
                                   verified_at=meta["verified_at"] if ok else None))
        return LoadingSnapshot(loaded=True, columns=tuple(COLUMNS), rooms=tuple(rows), site_code=manifest["site_code"],
                               exam_name=manifest["exam_name"], publish_time=meta["publish_time"],
                               loaded_at=meta["loaded_at"], verified_at=meta["verified_at"], source=meta["source"],
                               manifest_sha256=meta["manifest_sha256"])

    def snapshot(self) -> JsonObject:
        """The §3.1 table and footer as plain JSON (``view().as_dict()``)."""
        return self.view().as_dict()

    def room_detail(self, room_code: str) -> JsonObject:
        """查看: the room's sessions with their candidates (by seat). ``UserError`` for an unknown room."""
        manifest = self.manifest()
        room = next((r for r in manifest["rooms"] if r["code"] == room_code), None)
        if room is None:
            raise UserError("考场数据包中没有考场 {}。".format(room_code), "请从考场列表中选择考场。")
        subjects = {s["code"]: s["name"] for s in manifest["subjects"]}
        sessions = []
        for session in manifest["sessions"]:
            cands = sorted((c for c in manifest["candidates"]
                            if c["room"] == room_code and c["session"] == session["id"]), key=lambda c: c["seat"])
            if not cands:
                continue
            sessions.append({
                "id": session["id"], "name": session["name"], "start": session["start"],
                "duration_min": session["duration_min"],
                "candidates": [{"seat": c["seat"], "ticket": c["ticket"], "name": c["name"],
                                "subject": c.get("subject"), "subject_name": subjects.get(c.get("subject") or "", "")}
                               for c in cands],
            })
        return {"code": room_code, "name": room.get("name", ""), "seats": room.get("seats"),
                "exam_name": manifest["exam_name"], "site_code": manifest["site_code"], "sessions": sessions}

    def print_door_sheet(self, room_code: str, session_id: Optional[str] = None) -> str:
        """门贴座次表 of a room (one session, or every session of the room) as an HTML file; its path.

        The UI opens the path with ``webbrowser``. Raises ``UserError`` for an unknown
        room or session, ``StoreError`` when the file cannot be written.
        """
        from kd.core import printing  # noqa: PLC0415 - only needed when printing

        detail = self.room_detail(room_code)
        if session_id is not None:
            detail["sessions"] = [s for s in detail["sessions"] if s["id"] == session_id]
            if not detail["sessions"]:
                raise UserError("考场 {} 在场次 {} 没有考生。".format(room_code, session_id), "请选择该考场的场次。")
        html = printing.door_sheet_html(detail)
        name = "门贴座次表-{}{}.html".format(room_code, "-" + session_id if session_id else "")
        return printing.write_page(self.ctx.data_dir, name, html)
