"""The platform simulator's wire behaviour (docs/platform-api.md) with plain requests, its CLI and the signer."""

import datetime
import hashlib
import os
import queue
import subprocess
import sys
import threading

import requests

from kd.formats import documents
from kd.formats.package import load_package
from kd.formats.signing import TrustedKeys
from kd.formats.timeutil import CST
from kd.platform import signer
from kd.platform.simdata import SimData, read_public_key
from tests.support.simclient import simulator_fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T = (2.0, 10.0)


sim, http = simulator_fixtures(T, rooms=2, sessions=2, candidates=3, room_kb=8)


def error_code(resp):
    return resp.json()["error"]["code"]


def test_errors_are_json_with_a_chinese_message(sim, http):
    r = requests.get(sim.url + "/api/v1/site/package", timeout=T)
    assert r.status_code == 401 and error_code(r) == "unauthorized"
    assert "登录" in r.json()["error"]["message"]
    r = http.get(sim.url + "/api/v1/nothing", timeout=T)
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = http.delete(sim.url + "/api/v1/reports", timeout=T)
    assert r.status_code == 405
    r = http.post(sim.url + "/api/v1/reports", data=b"{not json", timeout=T,
                  headers={"Idempotency-Key": "key-12345678"})
    assert r.status_code == 400 and error_code(r) == "bad_json"


def test_report_needs_an_idempotency_key_and_a_known_kind(sim, http):
    url = sim.url + "/api/v1/reports"
    r = http.post(url, json={"kind": "seal_check", "data": {}}, timeout=T)
    assert r.status_code == 400 and error_code(r) == "idempotency_key_required"
    r = http.post(url, json={"kind": "bogus", "data": {}}, headers={"Idempotency-Key": "key-12345678"}, timeout=T)
    assert r.status_code == 400 and error_code(r) == "bad_report_kind"
    r = http.post(url, json={"kind": "seal_check", "data": {}, "site_code": "99999"},
                  headers={"Idempotency-Key": "key-12345678"}, timeout=T)
    assert r.status_code == 403
    r = http.post(url, json={"kind": "seal_check", "data": {"ok": 1}}, headers={"Idempotency-Key": "key-12345678"},
                  timeout=T)
    assert r.status_code == 201 and r.json()["duplicate"] is False
    assert sim.received()["reports"][0]["report"]["data"] == {"ok": 1}


def test_upload_protocol_offsets_and_commit(sim, http):
    payload = os.urandom(300000)
    sha = hashlib.sha256(payload).hexdigest()
    base = sim.url + "/api/v1/uploads"
    r = http.post(base, json={"session_id": "1", "room_code": "11003001", "file_id": "f1",
                              "size": len(payload), "sha256": sha}, timeout=T)
    assert r.status_code == 201
    state = r.json()
    uid = state["upload_id"]
    assert (state["offset"], state["state"], state["chunk_size"] > 0) == (0, "open", True)
    # the same file again: the same upload
    again = http.post(base, json={"session_id": "1", "room_code": "11003001", "file_id": "f1",
                                  "size": len(payload), "sha256": sha}, timeout=T)
    assert again.status_code == 200 and again.json()["upload_id"] == uid

    def put(offset, data, claimed=None):
        return http.put(f"{base}/{uid}/data", data=data, timeout=T,
                        headers={"Upload-Offset": str(offset if claimed is None else claimed)})

    assert put(0, payload[:100000]).json()["offset"] == 100000
    wrong = put(0, payload[:1000])
    assert wrong.status_code == 409 and error_code(wrong) == "offset_mismatch" and wrong.json()["offset"] == 100000
    early = http.post(f"{base}/{uid}/commit", json={}, timeout=T)
    assert early.status_code == 409 and error_code(early) == "incomplete"
    beyond = put(100000, payload[100000:] + b"x")
    assert beyond.status_code == 413
    assert put(100000, payload[100000:]).json()["offset"] == len(payload)
    done = http.post(f"{base}/{uid}/commit", json={}, timeout=T).json()
    assert done["state"] == "committed"
    receipt = documents.load_upload_receipt(done["receipt"].encode(), TrustedKeys([sim.public_key]), "11003",
                                            sha256=sha, size=len(payload))
    assert receipt.file_id == "f1"
    assert http.get(f"{base}/{uid}", timeout=T).json()["receipt"] == done["receipt"]
    late = put(len(payload), b"more")
    assert late.status_code == 409 and error_code(late) == "already_committed"


def test_upload_whose_bytes_do_not_match_is_discarded(sim, http):
    base = sim.url + "/api/v1/uploads"
    r = http.post(base, json={"session_id": "1", "room_code": "11003001", "file_id": "f2",
                              "size": 10, "sha256": "0" * 64}, timeout=T)
    uid = r.json()["upload_id"]
    assert http.put(f"{base}/{uid}/data", data=b"0123456789", headers={"Upload-Offset": "0"},
                    timeout=T).status_code == 200
    bad = http.post(f"{base}/{uid}/commit", json={}, timeout=T)
    assert bad.status_code == 422 and error_code(bad) == "hash_mismatch"
    assert http.get(f"{base}/{uid}", timeout=T).json()["offset"] == 0
    unknown = http.post(base, json={"session_id": "7", "room_code": "11003001", "file_id": "f",
                                    "size": 1, "sha256": "0" * 64}, timeout=T)
    assert unknown.status_code == 404


def test_faults_and_inspection_over_http(sim):
    r = requests.post(sim.url + "/_sim/faults", json={"refuse": 503}, timeout=T)
    assert r.json()["refuse"] == 503
    refused = requests.get(sim.url + "/api/v1/ping", timeout=T)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "监控平台" in refused.json()["error"]["message"]
    assert requests.get(sim.url + "/_sim/received", timeout=T).status_code == 200  # never faulted
    assert requests.post(sim.url + "/_sim/faults", json={"refuse": 42}, timeout=T).status_code == 400
    requests.post(sim.url + "/_sim/faults", json={}, timeout=T)
    assert requests.get(sim.url + "/api/v1/ping", timeout=T).json()["ok"] is True
    seen = requests.get(sim.url + "/_sim/received", timeout=T).json()
    assert [r["status"] for r in seen["requests"] if r["path"] == "/api/v1/ping"] == [503, 200]


def test_republish_moves_the_publish_time_forward(sim, http):
    before = http.get(sim.url + "/api/v1/site/package/info", timeout=T).json()
    after = requests.post(sim.url + "/_sim/republish", json={}, timeout=T).json()
    info = http.get(sim.url + "/api/v1/site/package/info", timeout=T).json()
    assert info["publish_time"] == after["publish_time"] >= before["publish_time"]
    package = http.get(sim.url + "/api/v1/site/package", timeout=T)
    assert hashlib.sha256(package.content).hexdigest() == info["sha256"] == package.headers["X-KD-SHA256"]
    assert package.headers["X-KD-Publish-Time"] == info["publish_time"]


def test_data_folder_keeps_keys_and_public_key_file(tmp_path):
    folder = str(tmp_path / "p")
    first = SimData(folder, rooms=1, room_kb=4)
    assert first.created
    assert read_public_key(first.public_key_path) == first.public_key
    second = SimData(folder)
    assert not second.created and second.public_key == first.public_key
    assert second.site == first.site
    assert oct(os.stat(os.path.join(folder, "platform.key")).st_mode & 0o777) == "0o600"


def test_signer_writes_verifiable_offline_files(tmp_path):
    data_dir, out = str(tmp_path / "p"), str(tmp_path / "out")
    assert signer.main(["--data", data_dir, "--out", out, "--rooms", "2", "--room-kb", "4",
                        "--first-start-in", "30"]) == 0
    names = sorted(os.listdir(out))
    assert names == ["11003-1.KDV", "11003-1.PTQ", "11003-2.KDV", "11003-2.PTQ", "11003-package.zip",
                     "platform.pub"]
    trusted = TrustedKeys([read_public_key(os.path.join(out, "platform.pub"))])
    package = load_package(os.path.join(out, "11003-package.zip"), trusted, "11003")
    start = package.session_start("1")
    with open(os.path.join(out, "11003-1.PTQ"), "rb") as f:
        auth = documents.load_session_authorization(f.read(), trusted, "11003", start, session_id="1")
    assert auth.session_name == "第一场次"
    with open(os.path.join(out, "11003-1.KDV"), "rb") as f:
        verification = documents.load_authorization_verification(
            f.read(), trusted, "11003", start - datetime.timedelta(minutes=30), session_id="1",
            lock_id=package.lock_id)
    assert verification.lock_id == package.lock_id
    assert signer.main(["--data", data_dir, "--out", out, "--session", "5"]) == 2
    assert not [n for n in os.listdir(out) if n.endswith(".part")]


def test_simulator_cli_serves_and_prints_its_key(tmp_path):
    data_dir = str(tmp_path / "cli")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kd.platform.simulator", "--port", "0", "--data", data_dir, "--rooms", "2",
         "--room-kb", "4", "--fail-every", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, encoding="utf-8")
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        first = lines.get(timeout=30)
        url = first.split()[1]
        assert url.startswith("http://127.0.0.1:")
        key_line = lines.get(timeout=10)
        with open(os.path.join(data_dir, "platform.pub"), encoding="ascii") as f:
            assert f.read().strip() in key_line
        statuses = [requests.get(url + "/api/v1/ping", timeout=T).status_code for _ in range(4)]
        assert statuses == [200, 503, 200, 503]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_listens_on_loopback_and_signs_sync_tickets(sim):
    assert sim.httpd.server_address[0] == "127.0.0.1"
    now = datetime.datetime.now(CST)
    ticket = sim.data.sync_ticket(sim.data.lock_id, now)
    assert documents.load_sync_ticket(ticket, TrustedKeys([sim.public_key]), now).lock_id == sim.data.lock_id
