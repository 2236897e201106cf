"""A completeness-proof verifier written from docs/formats.md alone, against proofs a real site built.

``verify`` below uses nothing of ``kd``: ``json``, ``hashlib``, ``base64`` and PyNaCl for
Ed25519, following docs/formats.md §1 (the signed envelope), §3.4 (the receipt) and
"考点数据完整性证明" (the document, the signed bytes, the checks and their order, the five
verification steps). The site side is real (platform simulator over HTTP, dongle emulator,
the core services): its proof must verify here with the platform key alone, and a proof
changed and signed again by the site's own dongle must fail here on the same check
(id, room, ticket) as in ``kd.formats.proof``.
"""

import base64
import hashlib
import json

import nacl.exceptions
import nacl.signing
import pytest

from kd.formats import proof as site_proof  # only to re-sign a changed body with the real dongle
from tests.support.env import make_env
from tests.support.fixtures import closed_after
from tests.support.results import deliver, pairs, result_package

env = closed_after(lambda tmp_path: make_env(tmp_path, rooms=3, sessions=1, candidates=4, room_kb=2))


# -- the verifier, from the document --------------------------------------------------------------
def canonical(obj):
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def ed25519_ok(public_key, message, signature):
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
        return True
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False


def envelope_body(text, kind, keys):
    """§1: a kd-signed/1 envelope of ``kind`` signed by one of ``keys`` (key id → key); its body, or None."""
    try:
        env_ = json.loads(text)
        key = keys.get(env_["key_id"])
        message = b"kaodian-signed-v1\0" + kind.encode() + b"\0" + env_["body"].encode("utf-8")
        if env_["format"] != "kd-signed/1" or env_["kind"] != kind or key is None:
            return None
        if not ed25519_ok(key, message, base64.b64decode(env_["sig"])):
            return None
        return json.loads(env_["body"])
    except (ValueError, KeyError, TypeError):
        return None


def checks_of(body, keys):
    """The document's checks table, in its order: a list of (id, ok, room, ticket)."""
    out = []
    package = body["package"]
    head = envelope_body(package["manifest"], "site_package", keys)
    good = (head is not None and hashlib.sha256(package["manifest"].encode()).hexdigest() == package["manifest_sha256"]
            and head["site_code"] == body["site_code"] and head["publish_time"] == package["publish_time"]
            and any(s["id"] == body["session_id"] for s in head["sessions"]) and "lock" in head)
    out.append(("manifest", good, None, None))
    manifest_rooms = {r["code"] for r in (head or {}).get("rooms", [])}
    part, seen = [], set()
    for e in body["roster"]:
        if e["ticket"] in seen or e["room"] not in manifest_rooms:
            part.append(("roster", False, e["room"], e["ticket"]))
        seen.add(e["ticket"])
    out += part or [("roster", True, None, None)]
    owner, of_room = {}, {}
    for e in body["roster"]:
        owner.setdefault(e["ticket"], e["room"])
        of_room.setdefault(e["room"], []).append(e["ticket"])
    codes = [r["code"] for r in body["rooms"]]
    part = []
    for code in sorted(set(codes)):
        if codes.count(code) > 1:
            part.append(("rooms", False, code, None))
        if code not in manifest_rooms or code not in of_room:
            part.append(("rooms", False, code, None))
    part += [("rooms", False, code, None) for code in sorted(set(of_room) - set(codes))]
    out += part or [("rooms", True, None, None)]
    table = {k: [] for k in ("result", "attendance", "backup", "receipt", "result_hash", "incidents")}
    for room in sorted(body["rooms"], key=lambda r: r["code"]):
        code, result = room["code"], room["result"]
        table["result"].append(("result", result is not None, code, None))
        if result is not None:
            part, counted = [], {}
            for e in room["attendance"]:
                counted[e["ticket"]] = counted.get(e["ticket"], 0) + 1
                if (owner.get(e["ticket"]) != code or e["status"] not in ("参考", "缺考")
                        or counted[e["ticket"]] == 2):
                    part.append(("attendance", False, code, e["ticket"]))
            part += [("attendance", False, code, t) for t in of_room.get(code, []) if t not in counted]
            table["attendance"] += part or [("attendance", True, code, None)]
            backup = room["backup"]
            table["backup"].append(("backup", backup is not None and backup["valid"] is True, code, None))
            signed = None
            if room["receipt"] is not None:
                signed = envelope_body(room["receipt"]["document"], "upload_receipt", keys)
                if signed is not None and (signed["site_code"], signed["session_id"], signed["room_code"]) != (
                        body["site_code"], body["session_id"], code):
                    signed = None
            table["receipt"].append(("receipt", signed is not None, code, None))
            want = (result["sha256"], result["size"])
            same = all((o["sha256"], o["size"]) == want for o in (backup, signed) if o is not None)
            table["result_hash"].append(("result_hash", same, code, None))
        part = [("incidents", False, code, None) for i in room["incidents"]
                if i["state"] not in ("confirmed", "dismissed")]
        table["incidents"] += part or [("incidents", True, code, None)]
    for key in table:
        out += table[key]
    return out


def verify(data, platform_keys):
    """The five steps; the first failure as (id, room, ticket), or None for a good proof."""
    keys = {hashlib.sha256(k).hexdigest()[:16]: k for k in platform_keys}
    doc = json.loads(data.decode("utf-8"))
    assert doc["format"] == "kd-proof/1"
    body, sig = doc["body"], doc["signature"]
    checks = checks_of(body, keys)
    if not checks[0][1]:
        return ("manifest", None, None)
    head = envelope_body(body["package"]["manifest"], "site_package", keys)
    digest = hashlib.sha256(canonical(body)).digest()
    message = (b"kaodian-lock-challenge-v1\0" + sig["lock_id"].encode("ascii") + b"\0" + digest + b"\0"
               + str(sig["clock_ms"]).encode("ascii"))
    if sig["lock_id"] != head["lock"]["id"] or not ed25519_ok(
            base64.b64decode(head["lock"]["public_key"]), message, base64.b64decode(sig["signature"])):
        return ("signature", None, None)
    for cid, ok, room, ticket in checks:
        if not ok:
            return (cid, room, ticket)
    recorded = [(c["id"], c["ok"], c["room"], c["ticket"]) for c in body["checks"]]
    return None if recorded == checks else ("checks", None, None)


# -- against the real site ------------------------------------------------------------------------
@pytest.fixture
def proof(env, external_dir):
    env.core.loading.load_online("admin")
    for room, session in pairs(env.ctx):
        deliver(env.core.recovery, room, session, result_package(env.ctx, room, session))
    env.core.upload.backup_external(external_dir, "admin")
    env.core.upload.upload("1", "admin")
    return env.core.proof.build("1", "admin")


def test_the_site_s_proof_verifies_with_the_documented_rules_alone(env, proof):
    data = site_proof.encode(proof)
    assert verify(data, [env.sim.public_key]) is None
    recomputed = checks_of(proof["body"], {hashlib.sha256(env.sim.public_key).hexdigest()[:16]: env.sim.public_key})
    assert [tuple(c[k] for k in ("id", "ok", "room", "ticket")) for c in proof["body"]["checks"]] == recomputed
    assert verify(data, [nacl.signing.SigningKey.generate().verify_key.encode()]) == ("manifest", None, None)


@pytest.mark.parametrize("change", ["attendance", "hash", "receipt", "after"])
def test_a_changed_proof_fails_here_as_it_fails_on_the_site(env, proof, change):
    body = proof["body"]
    if change == "attendance":
        body["rooms"][0]["attendance"][0]["ticket"] = body["rooms"][1]["attendance"][0]["ticket"]
    elif change == "hash":
        body["rooms"][1]["result"]["size"] += 1
    elif change == "receipt":
        body["rooms"][2]["receipt"] = body["rooms"][1]["receipt"]
    if change == "after":  # changed after signing: the old signature stays
        entry = body["rooms"][0]["attendance"][0]
        entry["status"] = "缺考" if entry["status"] == "参考" else "参考"
        data = site_proof.encode(proof)
    else:  # a site that lies: signed again by its own dongle
        data = site_proof.encode(site_proof.seal(body, env.core.ctx.dongle.sign))
    ours = verify(data, [env.sim.public_key])
    first = site_proof.verify(data, env.trusted).first
    assert ours is not None and ours == (first.id, first.room, first.ticket)
    assert ours[0] == {"attendance": "attendance", "hash": "result_hash", "receipt": "receipt",
                       "after": "signature"}[change]
