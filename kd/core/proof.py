"""考点数据完整性证明 (issue 16): the per-session proof built from the stores, signed, kept, exported.

``ProofService(ctx, incidents, extra_time)`` (built once in ``kd.core.services``):

- ``preview(session_id)``: the checks that can run before the upload (考后上报 第一步):
  roster against the recovered results and their attendance, incidents decided, the
  external backup once one was made (``kd.formats.proof.run_checks`` stage ``preview``).
  Each failure names the room (and ticket) and what to do. Changes nothing. Each result
  file is read once (its attendance kept by SHA-256: a spool file's name is its hash);
  ``build`` reads every one again.
- ``build(session_id, actor)``: gathers the proof body from the stores (the package's
  signed ``manifest.json`` text, publish time and roster; per room the recovered result's
  sha256/size and the attendance read from the result file in the spool, the valid
  external backup's copy, the platform receipt's signed bytes, the room's incidents and
  补时; the audit log's head), runs every check, has the site's dongle sign it
  (``ctx.dongle_or_raise().sign``), keeps it (``store``) and audits ``proof.signed``;
  returns the document (a dict, docs/formats.md "考点数据完整性证明").
- ``store(doc)``: writes it durably to ``DATA/proofs/<file name>`` (``fileio.write_file_durably``
  under ``ctx.files_lock``; the folder is derived data, docs/storage.md); its path.
- ``export(session_id, folder, actor)``: ``build`` and a copy into ``folder``; the copy's path
  (audited ``proof.exported``).
- ``verify_file(path, trusted=None)`` / ``stored(session_id)``: ``kd.formats.proof.verify``
  of a file (default: ``ctx.trusted``) / of the kept proof (None when there is none).

Raises ``UserError``: no package loaded, an unknown session, a package loaded before the
signed manifest was kept (load it again), no dongle (``LockError``), a folder that cannot
be written (``StoreError``).
"""

import base64
import logging
import os
import threading
from typing import Any, Dict, List, Optional, Set, Tuple

from kd import fileio
from kd.core import model, names
from kd.core.context import Context
from kd.core.incidentdraft import CATEGORY_LABELS, Category
from kd.errors import FormatError, StoreError, UserError
from kd.formats import proof as P
from kd.formats.result import load_result
from kd.formats.signing import TrustedKeys
from kd.formats.timeutil import format_time

log = logging.getLogger(__name__)

#: result files whose attendance the preview keeps (a site has at most rooms x sessions of them)
MAX_CACHED = 4000

REMEDY_RELOAD = ("请在“导入考务”中重新导入本考点的考场数据包（在线导入或手工导入同一个数据包；"
                 "考场注册与回收的结果不受影响），再生成证明。")



def _category(code: Any) -> Any:
    """An incident's category as people read it (设备故障…); an unknown code as it is."""
    try:
        return CATEGORY_LABELS[Category(code)]
    except ValueError:
        return code


class ProofService:
    def __init__(self, ctx: Context, incidents: Any, extra_time: Any) -> None:
        self.ctx = ctx
        self.incidents = incidents
        self.extra_time = extra_time
        #: (sha256, room, session) -> attendance read from that result file (content-addressed, so it
        #: cannot change): the preview reads each file once; ``build`` always reads them again
        self._attendance_cache: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
        self._cache_lock = threading.Lock()

    # -- gathering -----------------------------------------------------------------------
    def _gather(self, session_id: str, stage: str) -> Dict[str, Any]:
        """The proof body without ``checks`` (stage ``final``: the package's manifest text is required)."""
        ctx = self.ctx
        with ctx.lock:
            manifest = ctx.manifest()
            meta = ctx.stores.exam.get(model.PACKAGE, model.PACKAGE_META) or {}
            if manifest is None:
                raise UserError("尚未导入考务数据，无法生成考点数据完整性证明。", "请先在“导入考务”中导入考场数据包。")
            session = next((s for s in manifest["sessions"] if s["id"] == session_id), None)
            if session is None:
                raise UserError("考场数据包中没有场次 {}。".format(session_id),
                                "请检查场次编号（见“导入考务”的场次列表）。")
            envelope = meta.get("manifest_envelope")
            if stage == P.FINAL and not isinstance(envelope, str):
                raise UserError("本机保存的考场数据包没有监控平台签名的清单（在此版本之前导入）。", REMEDY_RELOAD)
            roster = sorted(({"ticket": c["ticket"], "room": c["room"], "seat": c["seat"]}
                             for c in manifest["candidates"] if c["session"] == session_id),
                            key=lambda c: (c["room"], c["seat"], c["ticket"]))
            runtime = ctx.stores.runtime
            held = {doc["room"]: doc for doc in runtime.all(model.ROOM_SESSIONS) if doc.get("session") == session_id}
            wanted: Set[str] = {str(c["room"]) for c in roster} | {r for r, doc in held.items() if doc.get("result")}
            codes = sorted(wanted)
            backup = runtime.get(model.CHECKS, model.EXTERNAL)
            copies = {f["room"]: f for f in (backup or {}).get("files", []) if f.get("session") == session_id}
            incidents = {code: self.incidents.list(session=session_id, room=code) for code in codes}
            grants = {code: self.extra_time.grants(room=code, session=session_id) for code in codes}
            site_code = manifest["site_code"]
            body: Dict[str, Any] = {
                "format_version": P.FORMAT_VERSION, "kind": P.KIND, "site_code": site_code,
                "session_id": session_id, "session_name": session["name"], "created_at": format_time(ctx.now()),
                "package": {"manifest": envelope or "", "manifest_sha256": meta.get("manifest_sha256", ""),
                            "publish_time": meta.get("publish_time", manifest["publish_time"])},
                "roster": roster, "rooms": [],
            }
            rooms = [self._room(code, held.get(code), backup, copies.get(code), incidents[code], grants[code])
                     for code in codes]
        for room in rooms:  # the result files are read outside ctx.lock (the LAN goes on answering)
            if room["result"] is not None:
                room["attendance"] = self._attendance(site_code, room["code"], session_id, room["result"]["sha256"],
                                                      cached=stage == P.PREVIEW)
        body["rooms"] = rooms
        seq, head = ctx.audit.head()
        body["audit"] = {"seq": seq, "head": head}
        return body

    @staticmethod
    def _room(code: str, doc: Optional[Dict[str, Any]], backup: Optional[Dict[str, Any]],
              copy: Optional[Dict[str, Any]], incidents: List[Dict[str, Any]],
              grants: List[Dict[str, Any]]) -> Dict[str, Any]:
        res = (doc or {}).get("result")
        upload = (doc or {}).get("upload")
        receipt = None
        if upload and upload.get("receipt"):
            receipt = {"file_id": upload.get("file_id"), "received_at": upload.get("received_at"),
                       "document": base64.b64decode(upload["receipt"]).decode("utf-8")}
        return {
            "code": code,
            "result": None if not res else {"sha256": res["sha256"], "size": res["size"],
                                            "received_at": res.get("received_at"), "source": res.get("source")},
            "attendance": [],
            "backup": None if (copy is None or backup is None) else {
                "folder": backup.get("folder"), "name": copy.get("name"), "sha256": copy["sha256"],
                "size": copy["size"], "verified_at": backup.get("verified_at"), "valid": bool(backup.get("valid"))},
            "receipt": receipt,
            "incidents": [{"id": str(i["id"]), "category": _category(i.get("category")), "state": i["state"],
                           "start": i.get("start"), "end": i.get("end"), "description": i.get("description")}
                          for i in incidents],
            "extra_time": [{"id": str(g["id"]), "minutes": g.get("minutes"), "granted_at": g.get("granted_at"),
                            "reason": g.get("reason")} for g in grants],
        }

    def _attendance(self, site: str, room: str, session: str, digest: str, cached: bool) -> List[Dict[str, Any]]:
        """参考/缺考 per ticket as the recovered result package says (read and checked from the spool;
        ``cached``: as read before, if it was). A file that cannot be read gives none (the
        ``attendance`` check then names every ticket of the room)."""
        key = (digest, room, session)
        if cached:
            with self._cache_lock:
                known = self._attendance_cache.get(key)
            if known is not None:
                return [dict(entry) for entry in known]
        try:
            result = load_result(self.ctx.spool.path(digest), site_code=site, room_code=room, session_id=session)
        except (FormatError, OSError) as e:
            log.error("proof: result %s of room %s session %s cannot be read from the spool: %s",
                      digest[:16], room, session, e)
            return []
        attendance = [{"ticket": c["ticket"], "status": c["status"]} for c in result.candidates]
        with self._cache_lock:
            if len(self._attendance_cache) >= MAX_CACHED:
                self._attendance_cache.clear()
            self._attendance_cache[key] = attendance
        return [dict(entry) for entry in attendance]

    # -- the operations --------------------------------------------------------------------
    def preview(self, session_id: str) -> List[P.Check]:
        """The checks before the upload (module docstring); changes nothing."""
        body = self._gather(session_id, P.PREVIEW)
        return P.run_checks(body, self.ctx.trusted, P.PREVIEW, manifest=self.ctx.manifest())

    def build(self, session_id: str, actor: str) -> Dict[str, Any]:
        """Gather, check, sign with the site's dongle, keep; the document (module docstring)."""
        body = self._gather(session_id, P.FINAL)
        checks = P.run_checks(body, self.ctx.trusted, P.FINAL)
        body["checks"] = [c.as_dict() for c in checks]
        dongle = self.ctx.dongle_or_raise()
        doc = P.seal(body, dongle.sign)
        path = self.store(doc)
        failed = [c for c in checks if not c.ok]
        self.ctx.record(actor, names.PROOF_SIGNED, session=session_id, path=path, sha256=P.digest(body).hex(),
                        rooms=len(body["rooms"]), candidates=len(body["roster"]), ok=not failed,
                        failure=failed[0].text() if failed else None)
        log.info("proof of session %s built: %d rooms, %d candidates, %s", session_id, len(body["rooms"]),
                 len(body["roster"]), "all checks hold" if not failed else failed[0].text())
        return doc

    def path_of(self, session_id: str) -> str:
        """Where the kept proof of a session lives: ``DATA/proofs/考点数据完整性证明(<site>-<session>).json``."""
        return os.path.join(self.ctx.folder.proofs_dir, P.file_name(self.ctx.site_code() or "site", session_id))

    def store(self, doc: Dict[str, Any]) -> str:
        """Keep ``doc`` in the data folder (durably: tmp, fsync, rename); its path."""
        path = self.path_of(doc["body"]["session_id"])
        self._write(path, P.encode(doc))
        return path

    def _write(self, path: str, data: bytes) -> None:
        try:
            with self.ctx.files_lock:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fileio.write_file_durably(path, data)
        except OSError as e:
            raise StoreError("无法写入考点数据完整性证明：{}".format(path),
                             "请检查所选文件夹（U盘）是否可写、空间是否足够，然后重试。", detail=repr(e)) from e

    def export(self, session_id: str, folder: str, actor: str) -> str:
        """Build the proof and write a copy into ``folder`` (created if needed); the copy's path."""
        doc = self.build(session_id, actor)
        path = os.path.join(os.path.abspath(folder), P.file_name(doc["body"]["site_code"], session_id))
        self._write(path, P.encode(doc))
        self.ctx.record(actor, names.PROOF_EXPORTED, session=session_id, path=path,
                        sha256=P.digest(doc["body"]).hex())
        return path

    def verify_file(self, path: str, trusted: Optional[TrustedKeys] = None) -> P.Verdict:
        """``kd.formats.proof.verify`` of the file at ``path`` (default keys: the site's trusted ones)."""
        try:
            with open(path, "rb") as f:
                data = f.read(P.MAX_BYTES + 1)
        except OSError as e:
            raise StoreError("无法读取考点数据完整性证明：{}".format(path), "请检查文件路径后重试。",
                             detail=repr(e)) from e
        return P.verify(data, self.ctx.trusted if trusted is None else trusted)

    def stored(self, session_id: str) -> Optional[P.Verdict]:
        """The verdict of the kept proof of a session; None when none was built."""
        path = self.path_of(session_id)
        if not os.path.exists(path):
            return None
        return self.verify_file(path)
