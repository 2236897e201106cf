"""What the platform simulator receives, kept on disk: reports and resumable uploads.

Layout under the simulator's data folder::

    received/reports.jsonl      one JSON line per accepted report (see ``ReportLog``)
    received/syncs.jsonl        one JSON line per dongle sync ticket issued
    received/uploads/<id>.json  upload metadata (session, room, file id, size, sha256, state, receipt)
    received/uploads/<id>.bin   the bytes received so far (committed: the whole file)
    received/proofs.jsonl       one JSON line per completeness proof received (see ``ProofStore``)
    received/proofs/<report id>.json  that proof's document as received

File names on disk are upload ids made by the simulator, never names chosen by the
client. Every append is flushed and fsynced before the simulator answers, so what it
acknowledged survives a restart (the idempotency index is rebuilt from the log).
"""

import hashlib
import json
import os
import secrets
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from kd.fileio import write_file_durably
from kd.formats.signing import canonical_json


def _append_line(path: str, obj: Dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_lines(path: str) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:  # a torn last line after a crash: ignore it
                continue
    return out


def _write_json(path: str, obj: Dict[str, Any]) -> None:
    write_file_durably(path, json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8"))


class ReportLog:
    """Reports, recorded once per idempotency key.

    Each line: ``{"report_id", "idempotency_key", "body_sha256", "received_at", "report"}``.
    """

    def __init__(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, "reports.jsonl")
        self._lock = threading.Lock()
        self._by_key: Dict[str, Dict[str, Any]] = {}
        for line in _read_lines(self.path):
            self._by_key[line["idempotency_key"]] = line

    def record(self, key: str, report: Dict[str, Any], received_at: str) -> Tuple[str, Dict[str, Any]]:
        """Record ``report`` under ``key``: ("new" | "duplicate" | "conflict", the stored line)."""
        digest = hashlib.sha256(canonical_json(report).encode("utf-8")).hexdigest()
        with self._lock:
            old = self._by_key.get(key)
            if old is not None:
                return ("duplicate" if old["body_sha256"] == digest else "conflict"), old
            line = {
                "report_id": f"R{len(self._by_key) + 1:06d}",
                "idempotency_key": key,
                "body_sha256": digest,
                "received_at": received_at,
                "report": report,
            }
            _append_line(self.path, line)
            self._by_key[key] = line
            return "new", line

    def all(self) -> List[Dict[str, Any]]:
        return _read_lines(self.path)


class ProofStore:
    """Completeness proofs (考点数据完整性证明) that came with ``upload_status`` reports, and the
    simulator's verdict of each (docs/platform-api.md §6.1).

    Each line of ``proofs.jsonl``: ``{"report_id", "site_code", "session_id", "received_at",
    "sha256" (of the proof's canonical body, as the 确认单 prints it; null when unreadable),
    "size" (bytes of the stored document), "ok", "message" (the verdict: the first failure as
    ``<check id>: <message>``, or the summary of a good proof), "failures": [{"id", "ok", "room",
    "ticket", "message"}], "platform": {"ok", "message", "checks"} (the roster and package
    against the published package, ``kd.formats.proofroster.summary``), "file"}`` (``file``:
    the document, ``proofs/<report id>.json``).
    """

    def __init__(self, folder: str) -> None:
        self.folder = os.path.join(folder, "proofs")
        os.makedirs(self.folder, exist_ok=True)
        self.path = os.path.join(folder, "proofs.jsonl")
        self._lock = threading.Lock()

    def add(self, report_id: str, document: bytes, line: Dict[str, Any]) -> Dict[str, Any]:
        """Keep ``document`` as ``proofs/<report_id>.json`` (durably), then its line; the line."""
        name = "{}.json".format(report_id)
        if not (report_id.isalnum() and len(report_id) <= 40):  # report ids are the simulator's own
            raise ValueError("bad report id: {!r}".format(report_id))
        with self._lock:
            write_file_durably(os.path.join(self.folder, name), document)
            stored = dict(line, report_id=report_id, size=len(document), file="proofs/" + name)
            _append_line(self.path, stored)
        return stored

    def all(self) -> List[Dict[str, Any]]:
        return _read_lines(self.path)

    def document(self, line: Dict[str, Any]) -> bytes:
        """The stored document of a line of ``all()``."""
        with open(os.path.join(os.path.dirname(self.folder), line["file"]), "rb") as f:
            return f.read()


class EventLog:
    """A plain append-only JSON-lines log (sync tickets issued, logins)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, obj: Dict[str, Any]) -> None:
        with self._lock:
            _append_line(self.path, obj)

    def all(self) -> List[Dict[str, Any]]:
        return _read_lines(self.path)


class UploadStore:
    """Resumable uploads: metadata + the bytes received so far, one pair of files per upload."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self._lock = threading.Lock()
        self._file_locks: Dict[str, threading.Lock] = {}

    def _meta_path(self, upload_id: str) -> str:
        return os.path.join(self.folder, upload_id + ".json")

    def data_path(self, upload_id: str) -> str:
        return os.path.join(self.folder, upload_id + ".bin")

    def lock_of(self, upload_id: str) -> threading.Lock:
        """The lock that serialises writes to one upload."""
        with self._lock:
            return self._file_locks.setdefault(upload_id, threading.Lock())

    def get(self, upload_id: str) -> Optional[Dict[str, Any]]:
        if not (upload_id.isalnum() and len(upload_id) <= 40):
            return None
        path = self._meta_path(upload_id)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        meta["offset"] = self.offset(upload_id)
        return meta

    def offset(self, upload_id: str) -> int:
        try:
            return os.path.getsize(self.data_path(upload_id))
        except OSError:
            return 0

    def all(self) -> List[Dict[str, Any]]:
        out = []
        for name in sorted(os.listdir(self.folder)):
            if name.endswith(".json"):
                meta = self.get(name[:-5])
                if meta is not None:
                    out.append(meta)
        return out

    def find_or_create(self, site_code: str, session: str, room_code: str, file_id: str, size: int,
                       sha256: str, created_at: str) -> Tuple[bool, Dict[str, Any]]:
        """The upload of exactly this file (same session, room, file id, size, sha256), or a new one."""
        ident = (site_code, session, room_code, file_id, size, sha256)
        with self._lock:
            for meta in self.all():
                if (meta["site_code"], meta["session"], meta["room_code"], meta["file_id"], meta["size"],
                        meta["sha256"]) == ident:
                    return False, meta
            upload_id = "U" + secrets.token_hex(10)
            meta = {
                "upload_id": upload_id,
                "site_code": site_code,
                "session": session,
                "room_code": room_code,
                "file_id": file_id,
                "size": size,
                "sha256": sha256,
                "state": "open",
                "created_at": created_at,
            }
            with open(self.data_path(upload_id), "wb"):
                pass
            _write_json(self._meta_path(upload_id), meta)
            meta["offset"] = 0
            return True, meta

    def save(self, meta: Dict[str, Any]) -> None:
        stored = {k: v for k, v in meta.items() if k != "offset"}
        _write_json(self._meta_path(meta["upload_id"]), stored)

    def append(self, upload_id: str, read: Callable[[], bytes]) -> int:
        """Append what ``read()`` returns until it returns b""; fsync; the new offset.

        Bytes already appended stay when ``read`` raises (a dropped connection), so the
        client can resume from the new offset.
        """
        # unbuffered: every block is in the file (and its size) before the next read, so a
        # client resuming after a cut connection is told the true offset at once
        with open(self.data_path(upload_id), "ab", buffering=0) as f:
            try:
                while True:
                    data = read()
                    if not data:
                        break
                    view = memoryview(data)
                    while view:  # a raw file may take less than asked
                        view = view[f.write(view):]
            finally:
                os.fsync(f.fileno())
        return self.offset(upload_id)

    def hash_of(self, upload_id: str) -> str:
        digest = hashlib.sha256()
        with open(self.data_path(upload_id), "rb") as f:
            for block in iter(lambda: f.read(1024 * 1024), b""):
                digest.update(block)
        return digest.hexdigest()

    def reset(self, upload_id: str) -> None:
        """Throw the received bytes away (the whole file did not match its sha256)."""
        with open(self.data_path(upload_id), "wb") as f:
            f.flush()
            os.fsync(f.fileno())
