"""The drill's step ``proofs`` (issue 16): every session's 考点数据完整性证明, checked end to end.

``check_proofs(drill)`` runs after the upload and the platform check of ``kd.drill.Drill``
and fills ``drill.proofs`` (merged into the drill's report). For each session of the day:

1. the upload built and kept a proof (``core.upload.proofs.status``: ``DATA/proofs``);
2. it is exported: the kept file copied to ``WORK/proofs/考点数据完整性证明(<site>-<session>).json``;
3. it verifies here, with nothing but the simulator's platform key (``kd.formats.proof.verify``);
4. its copy next to the external backup (``WORK/external/KDRESULT-…/``) is the same file;
5. the simulator received it with the session's ``upload_status`` (waited for: the outbox
   sends it in the background), its own verification found it good and its roster check
   (``platform``: roster and package against the package it published,
   ``kd.formats.proofroster``) passed.

Report fields: ``proofs_verified`` (sessions whose proof verified both here and at the
simulator, roster check included) and ``proof_files`` (the exported proofs; ``main.py drill`` empties the list
when it removes the work folder). Each failed check is a drill failure
``proof <session>: …``, a proof that does not verify naming its first failing check (for a
room that never uploaded, ``--no-upload``: ``result: 考场 <room> 没有回收的结果包…``).
"""

import logging
import os
import shutil
from typing import Any, Dict, List, Optional

from kd.core import names
from kd.formats import proof as proof_format
from kd.formats.signing import TrustedKeys

log = logging.getLogger(__name__)

#: how long to wait for the outbox to deliver the proofs to the simulator (seconds, at most)
SEND_TIMEOUT = 60.0


def check_proofs(drill: Any) -> None:
    """The step ``proofs`` of ``drill`` (see the module docstring)."""
    site = drill.site
    flow = site.core.upload.proofs
    sim = site.simulator
    trusted = TrustedKeys([sim.public_key])
    folder = os.path.join(drill.work, "proofs")
    os.makedirs(folder, exist_ok=True)
    files: List[str] = []
    local: Dict[str, str] = {}  # session → the proof's hash, for the ones that verify here
    drill.proofs = {"proofs_verified": 0, "proof_files": files}
    for sid in drill.sessions:
        summary = flow.status(sid)
        if summary is None:
            drill.fail("proof {}: the upload built no proof".format(sid))
            continue
        path = os.path.join(folder, os.path.basename(summary["path"]))
        shutil.copyfile(summary["path"], path)
        files.append(path)
        with open(path, "rb") as f:
            data = f.read()
        verdict = proof_format.verify(data, trusted)
        if not verdict.ok:
            drill.fail("proof {}: {}".format(sid, verdict.message()))
            continue
        external = summary.get("external") or {}
        if not external.get("ok") or _read(external.get("path")) != data:
            drill.fail("proof {}: its copy next to the external backup is not the kept proof ({})".format(
                sid, external.get("problem") or external.get("path")))
        local[sid] = proof_format.document_sha256(data)
    if not local:
        return
    at_platform = _wait_for_platform(drill, sim, local)
    verified = 0
    for sid, sha in local.items():
        line = at_platform.get(sid)
        if line is None:
            drill.fail("proof {}: the simulator did not receive it (sha256 {})".format(sid, sha[:16]))
        elif not line["ok"]:
            drill.fail("proof {}: the simulator's verification failed: {}".format(sid, line["message"]))
        elif not (line.get("platform") or {}).get("ok"):
            drill.fail("proof {}: the platform's roster check failed: {}".format(
                sid, (line.get("platform") or {}).get("message")))
        else:
            verified += 1
    drill.proofs["proofs_verified"] = verified


def _read(path: Optional[str]) -> Optional[bytes]:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _wait_for_platform(drill: Any, sim: Any, wanted: Dict[str, str]) -> Dict[str, Dict[str, Any]]:
    """Wait until the simulator holds a proof line of each session with the wanted hash; what it holds."""
    found: Dict[str, Dict[str, Any]] = {}

    def arrived() -> bool:
        for line in sim.proofs.all():
            if wanted.get(line.get("session_id")) == line.get("sha256"):
                found[line["session_id"]] = line
        return len(found) == len(wanted)

    sub = drill.site.hub.subscribe([names.OUTBOX_SENT, names.OUTBOX_FAILED, names.OUTBOX_DEFERRED])
    try:
        drill.wait("the proofs at the platform", arrived, sub, timeout=SEND_TIMEOUT)
    except Exception as e:  # noqa: BLE001 - DrillFailed: the missing ones are named by the caller
        log.warning("drill: %s", e)
    finally:
        sub.close()
    return found
