"""The completeness proof where the upload shows it (issue 16): 第一步's preview, and after the receipts.

``ProofFlow(ctx, proofs)`` (``proofs``: the core's ``kd.core.proof.ProofService``; built by
``kd.core.services.Core`` and handed to ``kd.core.upload.UploadService``, so the upload
tool, the CLI and the headless upload all do the same):

- ``preview()`` (考后上报 第一步, in a worker): for every session of the package, the proof's
  checks that already fail over what the site holds (``ProofService.preview``): a ticket
  missing from a result, a ticket in the wrong room, an incident not decided…, each naming
  the room and ticket and what to do, while the room's proctor is still there (a room not
  recovered yet is one, with the proof's own remedy). The backup not made yet is what
  第一步 itself does, so that check is left out.
- ``after_upload(session_id, actor) -> (summary, document)``: once a session's receipts are
  in (called by ``UploadService.upload`` after its uploads): ``ProofService.build`` (signed
  by the dongle, kept in ``DATA/proofs/``), then the stored file verified as any
  verifier would (``ProofService.verify_file`` with the site's trusted platform keys), then
  copied next to the external backup (the folder ``checks/external`` records, as
  ``考点数据完整性证明(<site>-<session>).json``) with the same read-back rule as the result
  copies (fsync, read back past the OS cache, same SHA-256 and size). The document rides
  the session's ``upload_status`` report (docs/platform-api.md §6.1). A proof that cannot
  be built (no dongle answering…) is a summary with ``error``, never a failed upload.
- ``sheet(session_id, folder=None) -> path``: the session's 考点数据上报确认单 (A4 HTML,
  ``kd.core.proofsheet``) of its kept proof, verified now, in ``DATA/print/`` (or ``folder``);
  ``UserError`` when no proof was built yet (上报 first).
- ``status(session_id)``: the summary of the session's stored proof (verified again when
  its file's SHA-256 changed), or None: what the upload tool shows after a reopen.

Summary: ``{"session", "ok" (the stored file verifies: signature and every check), "message"
(the verdict: the first failing check as ``<id>: <message>``, or the good proof's line),
"failures": [check dicts, at most ``MAX_LISTED``], "sha256" (of the proof's canonical body:
the 确认单's), "path", "size", "external": {"path", "ok", "problem"} | None, "error"}``.
"""

import hashlib
import json
import logging
import os
import threading
from typing import Any, Dict, List, Optional, Tuple

from kd import fileio
from kd.core import model, names, proofsheet
from kd.core.context import Context
from kd.core.labels import session_label
from kd.core.records import JsonObject
from kd.errors import UserError
from kd.formats import proof as proof_format

log = logging.getLogger(__name__)

#: failing checks kept in a summary (the rest are in the file)
MAX_LISTED = 50
#: the check 第一步 itself is about (the backup not made yet)
STEP1_OWN = (proof_format.BACKUP,)


#: what a session shows once its proof verifies (the upload tool, ``main.py upload``)
PROOF_OK = "上报完成 ✓"


def proof_line(proof: Optional[JsonObject]) -> Tuple[str, bool]:
    """A session's proof summary as one line for people: (text, ok); ("", False) without one."""
    if not proof:
        return "", False
    if proof.get("ok"):
        return "{} 考点数据完整性证明已验证（SHA-256 {}…）".format(PROOF_OK, str(proof.get("sha256"))[:16]), True
    if proof.get("error"):
        return "考点数据完整性证明未能生成：{}".format(proof["error"]), False
    # the first failed check's own Chinese message (it names the room/ticket and the remedy): its id
    # (``result``, ``incidents`` …) stays in the summary's ``message``/``failures`` for logs and JSON
    failures = proof.get("failures") or []
    first = failures[0] if failures and isinstance(failures[0], dict) else {}
    return "考点数据完整性证明未通过：{}".format(first.get("message") or proof.get("message") or ""), False


class ProofFlow:
    """The proof around the upload (see the module docstring)."""

    def __init__(self, ctx: Context, proofs: Any) -> None:
        self.ctx = ctx
        self.proofs = proofs
        self._lock = threading.Lock()
        #: session → ((path, SHA-256 of the file), summary) of the stored proof last verified
        self._known: Dict[str, Tuple[Tuple[str, str], JsonObject]] = {}

    # -- 第一步 ------------------------------------------------------------------------------
    def preview(self) -> JsonObject:
        """The proof checks that fail before the upload, per session, and their lines.

        ``{"ok": bool, "sessions": [{"session", "failures": [check dicts]}], "lines": [...]}``;
        ``lines`` name the session, room and ticket and what to do (at most ``MAX_LISTED``).
        Before 导入考务: no sessions, ok.
        """
        names = self.ctx.manifest_view(lambda m: {s["id"]: s.get("name") for s in m.get("sessions") or []}) or {}
        sessions: List[JsonObject] = []
        lines: List[str] = []
        for sid in names:
            failures = [c for c in self.proofs.preview(sid) if not c.ok and c.id not in STEP1_OWN]
            sessions.append({"session": sid, "failures": [c.as_dict() for c in failures]})
            for check in failures:
                if len(lines) < MAX_LISTED:
                    lines.append("{}：{}".format(session_label(sid, names.get(sid)), check.message))
        total = sum(len(s["failures"]) for s in sessions)
        if total > len(lines):
            lines.append("……共 {} 项，其余见“main.py proof export”导出的证明。".format(total))
        return {"ok": total == 0, "sessions": sessions, "lines": lines}

    # -- after the receipts --------------------------------------------------------------------
    def after_upload(self, session_id: str, actor: str) -> Tuple[JsonObject, Optional[Dict[str, Any]]]:
        """Build, store, verify and copy the session's proof; (summary, the document or None)."""
        try:
            doc = self.proofs.build(session_id, actor)  # kept in DATA/proofs/ by the service
            path = self.proofs.path_of(session_id)
        except UserError as e:
            log.warning("completeness proof of session %s not built: %s", session_id, e.cause)
            return self._error(session_id, e.cause), None
        except Exception:  # noqa: BLE001 - the upload is done: its status report must still go out
            log.exception("completeness proof of session %s: internal error", session_id)
            return self._error(session_id, "内部错误，详见日志文件"), None
        try:
            summary = self._verified(session_id, path)
        except UserError as e:  # the kept file cannot be read back
            log.warning("completeness proof of session %s not read back: %s", session_id, e.cause)
            return self._error(session_id, e.cause), None
        summary["external"] = self._copy_external(path, actor)
        with self._lock:
            key = self._stat(path)
            if key is not None:
                self._known[session_id] = (key, summary)
        log.info("completeness proof of session %s: %s (%s)", session_id, "ok" if summary["ok"] else "FAILS",
                 summary["message"])
        return summary, doc

    def status(self, session_id: str) -> Optional[JsonObject]:
        """The summary of the session's stored proof, or None when there is none."""
        if not self.ctx.site_code():
            return None
        path = self.proofs.path_of(session_id)
        key = self._stat(path)
        if key is None:
            return None
        with self._lock:
            known = self._known.get(session_id)
            if known is not None and known[0] == key:
                return dict(known[1])
        summary = self._verified(session_id, path)
        summary["external"] = known[1].get("external") if known is not None else None
        with self._lock:
            self._known[session_id] = (key, summary)
        return dict(summary)

    def sheet(self, session_id: str, folder: Optional[str] = None) -> str:
        """Write the 确认单 of the session's kept proof; its path (see the module docstring)."""
        path = self.proofs.path_of(session_id) if self.ctx.site_code() else None
        if path is None or not os.path.exists(path):
            raise UserError("{}尚未生成考点数据完整性证明，无法打印确认单。".format(session_label(session_id)),
                            "请先在“考后上报”中上报该场次（收到回执后自动生成证明），再打印确认单。")
        with open(path, "rb") as f:
            data = f.read()
        verdict = proof_format.verify(data, self.ctx.trusted)
        try:
            doc = json.loads(data.decode("utf-8"))
            if not isinstance(doc, dict) or not isinstance(doc.get("body"), dict):
                raise ValueError("no body")
        except ValueError as e:
            raise UserError("本机保存的{}的考点数据完整性证明已损坏，无法打印确认单。".format(
                session_label(session_id)),
                            "请在“考后上报”中重新上报该场次（将重新生成证明），再打印确认单。",
                            detail="{}: {!r}".format(path, e)) from e
        return proofsheet.write_sheet(self.ctx.data_dir, doc, verdict, self.ctx.trusted, folder)

    # -- parts -------------------------------------------------------------------------------
    @staticmethod
    def _stat(path: str) -> Optional[Tuple[str, str]]:
        """What names the file's content (its path and SHA-256), None when it is not there."""
        try:
            digest, _size = fileio.sha256_file(path)
        except OSError:
            return None
        return (path, digest)

    def _verified(self, session_id: str, path: str) -> JsonObject:
        verdict = self.proofs.verify_file(path, self.ctx.trusted)
        try:
            with open(path, "rb") as f:
                data = f.read()
            sha256: Optional[str] = proof_format.document_sha256(data)
        except Exception as e:  # noqa: BLE001 - an unreadable file: its verdict says why
            log.warning("completeness proof %s: no hash (%r)", path, e)
            data, sha256 = b"", None
        return {"session": session_id, "ok": bool(verdict.ok), "message": verdict.message(),
                "failures": [c.as_dict() for c in verdict.failures[:MAX_LISTED]], "sha256": sha256, "path": path,
                "size": len(data), "external": None, "error": None}

    @staticmethod
    def _error(session_id: str, cause: str) -> JsonObject:
        return {"session": session_id, "ok": False, "message": "完整性证明未能生成：{}".format(cause), "failures": [],
                "sha256": None, "path": None, "size": 0, "external": None, "error": cause}

    def _copy_external(self, path: str, actor: str) -> JsonObject:
        """Copy the stored proof into the recorded external backup's folder, read back."""
        backup = self.ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL) or {}
        folder = backup.get("folder")
        if not folder or not backup.get("valid"):
            return {"path": None, "ok": False, "problem": "尚未备份到外部存储（第一步），证明未复制到外部存储。"}
        target = os.path.join(folder, os.path.basename(path))
        try:
            with open(path, "rb") as f:
                data = f.read()
            fileio.write_file_durably(target, data)
            digest, size, _how = fileio.sha256_uncached(target)
        except OSError as e:
            log.warning("completeness proof: copy to the external backup %s failed: %r", folder, e)
            return {"path": target, "ok": False,
                    "problem": "无法把证明复制到外部存储（{}）：请确认U盘或移动硬盘已插好，"
                               "然后重新上报（续报）。".format(folder)}
        if (digest, size) != (hashlib.sha256(data).hexdigest(), len(data)):
            return {"path": target, "ok": False,
                    "problem": "外部存储上的证明读回校验失败（{}）：请更换U盘或移动硬盘后"
                               "重新备份并上报。".format(target)}
        with self.ctx.lock:
            self.ctx.record(actor, names.PROOF_COPIED, path=target, sha256=digest, size=size)
        return {"path": target, "ok": True, "problem": None}


def proofs_of(results: List[JsonObject]) -> Dict[str, JsonObject]:
    """``{session: summary}`` of a list of summaries."""
    return {s["session"]: s for s in results}
