"""The platform's roster check of a 考点数据完整性证明 (docs/platform-api.md §6.1), over HTTP.

A real site (platform simulator over HTTP, dongle emulator, real files) builds its proof
after the upload; the proof is sent as an ``upload_status`` report and the simulator
compares its roster (every ticket with room and seat) and package hash with the package it
published (``kd.formats.proofroster``). A site that drops one candidate from both roster
and attendance and signs again with its own dongle makes a proof that verifies with the
platform key alone, but fails the platform's check naming the ticket.
"""

import json

import pytest
import requests

from kd.formats import proof as P
from kd.formats import proofroster as R
from tests.support.env import SITE, make_env
from tests.support.fixtures import closed_after
from tests.support.results import deliver, pairs, result_package

env = closed_after(lambda tmp_path: make_env(tmp_path, rooms=3, sessions=1, candidates=4, room_kb=4))

SESSION = "1"
T = 30


def uploaded_site(env, usb):
    env.core.loading.load_online("admin")
    for room, session in pairs(env.ctx):
        deliver(env.core.recovery, room, session, result_package(env.ctx, room, session))
    env.core.upload.backup_external(usb, "admin")
    env.core.upload.upload(SESSION, "admin")


def resign(env, body):
    """The site's own dongle signs a changed body, its checks recomputed (a site that lies well)."""
    body["checks"] = [c.as_dict() for c in P.run_checks(body, env.trusted)]
    return P.seal(body, env.core.ctx.dongle.sign)


def send(env, doc, key):
    """``doc`` as the proof of an ``upload_status`` report over HTTP; the simulator's line of it
    as ``GET /_sim/received`` shows it."""
    with requests.Session() as s:
        r = s.post(env.sim.url + "/api/v1/login", json={"site_code": SITE, "password": env.sim.password}, timeout=T)
        assert r.status_code == 200, r.text
        s.headers["Authorization"] = "Bearer " + r.json()["token"]
        r = s.post(env.sim.url + "/api/v1/reports", timeout=T, headers={"Idempotency-Key": key},
                   json={"kind": "upload_status", "site_code": SITE, "session_id": SESSION,
                         "data": {"session_id": SESSION, "proof": doc}})
        assert r.status_code == 201, r.text
        report_id = r.json()["report_id"]
    seen = requests.get(env.sim.url + "/_sim/received", timeout=T).json()
    return next(line for line in seen["proofs"] if line["report_id"] == report_id)


def test_a_good_proof_passes_the_platform_s_roster_check(env, external_dir):
    uploaded_site(env, external_dir)
    doc = env.core.proof.build(SESSION, "admin")
    line = send(env, doc, "key-roster-good-1")
    assert line["ok"], line["message"]
    platform = line["platform"]
    assert platform["ok"] is True, platform["message"]
    assert [(c["id"], c["ok"]) for c in platform["checks"]] == [(R.PACKAGE_PLATFORM, True), (R.ROSTER_PLATFORM, True)]
    assert json.loads(env.sim.proofs.document(line).decode("utf-8")) == doc


def drop(body):
    """Drop the last candidate of the second room from the roster and the attendance."""
    room = body["rooms"][1]
    gone = room["attendance"].pop()
    body["roster"] = [c for c in body["roster"] if c["ticket"] != gone["ticket"]]
    return room["code"], gone["ticket"]


def add(body):
    """A ticket the platform never published, in the second room's roster and attendance."""
    room = body["rooms"][1]
    ticket = "99" + room["attendance"][0]["ticket"][2:]
    body["roster"].append({"ticket": ticket, "room": room["code"], "seat": 99})
    body["roster"].sort(key=lambda c: (c["room"], c["seat"], c["ticket"]))
    room["attendance"].append({"ticket": ticket, "status": P.PRESENT})
    return room["code"], ticket


def reseat(body):
    """Two candidates of the second room swap seats in the roster."""
    code = body["rooms"][1]["code"]
    a, b = [c for c in body["roster"] if c["room"] == code][:2]
    a["seat"], b["seat"] = b["seat"], a["seat"]
    return code, min((a, b), key=lambda c: body["roster"].index(c))["ticket"]


@pytest.mark.parametrize("change, words", [
    (drop, "不在考点上报的证明中"), (add, "不在平台发布的场次"), (reseat, "平台发布的是考场"),
])
def test_a_re_signed_roster_verifies_locally_but_fails_at_the_platform_naming_the_ticket(env, external_dir,
                                                                                         change, words):
    uploaded_site(env, external_dir)
    body = env.core.proof.build(SESSION, "admin")["body"]
    room, ticket = change(body)
    doc = resign(env, body)
    local = P.verify(P.encode(doc), env.trusted)
    assert local.ok, local.message()  # the independent verifier cannot tell
    line = send(env, doc, "key-roster-{}-1".format(change.__name__))
    assert line["ok"] is True  # the same verdict at the platform ...
    platform = line["platform"]  # ... but the package it published says otherwise
    assert platform["ok"] is False
    failed = [c for c in platform["checks"] if not c["ok"]]
    assert [(c["id"], c["room"], c["ticket"]) for c in failed][0] == (R.ROSTER_PLATFORM, room, ticket), failed
    assert "准考证号 {}".format(ticket) in failed[0]["message"] and words in failed[0]["message"]
    assert platform["message"].startswith("roster_platform: 准考证号 {}".format(ticket))
    assert [c for c in platform["checks"] if c["id"] == R.PACKAGE_PLATFORM][0]["ok"] is True


def test_a_proof_of_a_package_the_platform_no_longer_publishes_fails_the_package_check(env, external_dir):
    uploaded_site(env, external_dir)
    doc = env.core.proof.build(SESSION, "admin")
    # a new package (the sessions moved: its manifest differs even within the same second)
    env.sim.republish_at(24 * 60)
    line = send(env, doc, "key-roster-republished-1")
    assert line["ok"] is True and line["platform"]["ok"] is False
    first = line["platform"]["checks"][0]
    assert first["id"] == R.PACKAGE_PLATFORM and not first["ok"] and "不是平台为考点" in first["message"]
    # the roster itself is still the published one
    assert [c["ok"] for c in line["platform"]["checks"][1:]] == [True]
