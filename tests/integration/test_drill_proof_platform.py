"""The drill counts a proof as verified at the simulator only when the platform's own check
(its roster and package against the package it published, docs/platform-api.md §6.1) passed.

A whole drill in-process where the platform publishes a new package after the site loaded
its own and before the upload: every proof still verifies with the platform key alone
(the site's package was platform-signed), but it names a package the platform no longer
publishes, so the simulator's ``package_platform`` check fails and the day is not ok.
"""

import os

from kd.drill import Drill, DrillOptions
from kd.formats import proof as P
from kd.formats.signing import TrustedKeys
from kd.platform.simdata import read_public_key


class RepublishedBeforeUpload(Drill):
    """The drill with one platform event: a new package (sessions moved) just before 上报."""

    def _upload(self) -> None:
        self.site.simulator.republish_at(24 * 60)
        super()._upload()


def test_a_proof_of_a_package_no_longer_published_is_not_counted_verified(tmp_path):
    work = str(tmp_path)
    report = RepublishedBeforeUpload(DrillOptions(rooms=2, sessions=1, candidates=3), work).run()
    assert report["ok"] is False and report["proofs_verified"] == 0, report["failures"]
    [failure] = [f for f in report["failures"] if f.startswith("proof 1: ")]
    assert failure.startswith("proof 1: the platform's roster check failed: package_platform: "), failure
    # here, with the platform key alone, the proof is good: only the platform could tell
    [path] = report["proof_files"]
    key = read_public_key(os.path.join(work, "data", "drill", "platform", "platform.pub"))
    verdict = P.verify(open(path, "rb").read(), TrustedKeys([key]))
    assert verdict.ok, verdict.message()
