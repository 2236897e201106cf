"""The platform simulator's side of the completeness proof (docs/platform-api.md §6.1), over HTTP.

An ``upload_status`` report may carry ``data.proof``: the simulator verifies it with its own
platform key (``kd.formats.proof.verify``), keeps it and the verdict (``received/proofs``),
and ``GET /_sim/received`` lists the verdicts. A good proof is checked end to end in
tests/integration/test_proof_flow.py (a real site's upload); here: what a platform must do
with any proof it is sent.
"""

import json

import requests

from kd.formats import proof as proof_format
from tests.support.simclient import simulator_fixtures

T = 10


sim, http = simulator_fixtures(T, rooms=2, sessions=1, candidates=3, room_kb=8)


def report(http, sim, key, data):
    return http.post(sim.url + "/api/v1/reports", json={"kind": "upload_status", "session_id": "1", "data": data},
                     headers={"Idempotency-Key": key}, timeout=T)


def test_a_proof_that_does_not_verify_is_kept_with_its_failing_check(sim, http):
    forged = {"format": proof_format.FORMAT, "body": {"site_code": "11003", "session_id": "1", "padding": "x" * 400000},
              "signature": {"lock_id": "KDLOCK-11003-01", "clock_ms": 1, "signature": "AAAA"}}
    r = report(http, sim, "key-proof-0001", {"session_id": "1", "files": 0, "uploaded": 0, "receipts": [],
                                             "proof": forged})
    assert r.status_code == 201, r.text  # larger than the 256 KB of other JSON bodies: a report may be 16 MiB
    seen = requests.get(sim.url + "/_sim/received", timeout=T).json()
    [line] = seen["proofs"]
    assert line["report_id"] == r.json()["report_id"] and line["session_id"] == "1"
    assert line["ok"] is False and line["message"].startswith("format: ")
    assert line["failures"][0]["id"] == "format" and line["sha256"] == proof_format.digest(forged["body"]).hex()
    stored = sim.proofs.document(line)
    assert json.loads(stored.decode("utf-8")) == forged and line["size"] == len(stored)

    # the same report again (a retry): recorded once, the proof kept once
    again = report(http, sim, "key-proof-0001", {"session_id": "1", "files": 0, "uploaded": 0, "receipts": [],
                                                 "proof": forged})
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert len(sim.received()["proofs"]) == 1


def test_a_proof_that_is_not_an_object_is_refused_and_a_status_without_one_keeps_none(sim, http):
    r = report(http, sim, "key-proof-0002", {"session_id": "1", "proof": "not a document"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    assert report(http, sim, "key-proof-0003", {"session_id": "1", "files": 1}).status_code == 201
    assert sim.received()["proofs"] == []
    assert [line["report"]["data"] for line in sim.received()["reports"]] == [{"session_id": "1", "files": 1}]
