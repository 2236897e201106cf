"""20 proctors each uploading a 50 MB result package at once, vs a bare loopback socket copy.

The site and the ``LanServer`` run in this process; the 20 proctors run as threads in a
child process (``ProctorClient.upload``: begin, 1 MiB chunks, commit). ``mb_s`` counts
from the first byte to the last commit reply, so it includes what a commit does: the
server hands each ``.part`` file to ``RecoveryService.receive`` (spool copy, fsync, SHA-256,
result check, record) before it answers. ``baseline_mb_s``: the same 20 x 50 MB sent by
the same child process over 20 plain TCP connections to threads here that receive into a
buffer and write each byte to a file (no framing, no hashing, no fsync). Prints one JSON
line: ``{"bench": "lan_upload", "proctors": 20, "mb_each": 50, "mb_s", "baseline_mb_s", "ratio"}``.
"""

import datetime
import hashlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
from typing import Any, Dict

from _common import ROOT, emit, loaded_site, reg_code, run_child, start_lan_server

PROCTORS = 20
MB_EACH = 50
MiB = 1024 * 1024


def child(mode: str, host: str, port: int, spec_file: str) -> None:
    """Upload every package at once (``lan``) or send its bytes on a bare socket (``raw``)."""
    from kd.lan.client import ProctorClient

    with open(spec_file, encoding="utf-8") as f:
        spec = json.load(f)
    errors = []
    clients = []
    for i, item in enumerate(spec["uploads"]):
        if mode == "lan":
            c = ProctorClient(host, port, timeout=120, source_address=("127.0.2.{}".format(i + 1), 0))
            c.register(item["room"], item["reg_code"])
            clients.append(c)
    barrier = threading.Barrier(len(spec["uploads"]) + 1)

    def lan(i: int, item: dict) -> None:
        barrier.wait()
        try:
            clients[i].upload(item["path"], item["session"])
        except Exception as e:  # noqa: BLE001 - counted and reported
            errors.append(repr(e))

    def raw(i: int, item: dict) -> None:
        with open(item["path"], "rb") as f:
            data = f.read()
        s = socket.create_connection((host, port))
        barrier.wait()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # the receiver's acknowledgement after it wrote everything
        s.close()

    target = lan if mode == "lan" else raw
    threads = [threading.Thread(target=target, args=(i, item)) for i, item in enumerate(spec["uploads"])]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "errors": errors}))


def raw_receiver(folder: str) -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(PROCTORS)

    def serve(conn: socket.socket, n: int) -> None:
        buf = bytearray(MiB)
        view = memoryview(buf)
        with conn, open(os.path.join(folder, "raw-{}".format(n)), "wb") as f:
            while True:
                got = conn.recv_into(view)
                if not got:
                    break
                f.write(view[:got])
            conn.sendall(b"k")

    def accept() -> None:
        for n in range(PROCTORS):
            conn, _ = server.accept()
            threading.Thread(target=serve, args=(conn, n), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server


def uploaded(mode: str, port: int, spec: str) -> Dict[str, Any]:
    """The child's figures for ``mode`` against ``127.0.0.1:port``; an upload error ends the benchmark."""
    result = run_child(__file__, [mode, "127.0.0.1", str(port), spec], timeout=900)
    if result["errors"]:
        raise SystemExit("upload errors: {}".format(result["errors"][:3]))
    return result


def main() -> None:
    from kd.core import model
    from kd.formats.result import PRESENT, build_result
    from kd.formats.timeutil import CST

    with tempfile.TemporaryDirectory() as tmp, loaded_site(tmp, rooms=PROCTORS, candidates=4) as ctx:
        manifest = ctx.manifest()
        session = manifest["sessions"][0]
        uploads = []
        for n, room in enumerate(manifest["rooms"]):
            people = [c for c in manifest["candidates"] if c["room"] == room["code"]]
            per = MB_EACH * MiB // len(people)
            cands = [{"ticket": c["ticket"], "subject": c["subject"], "status": PRESENT,
                      "answer": (hashlib.sha256("{}{}".format(n, c["ticket"]).encode()).digest() *
                                 (per // 32 + 1))[:per]} for c in people]
            data = build_result(site_code=manifest["site_code"], room_code=room["code"],
                                session_id=session["id"], created_at=datetime.datetime.now(CST),
                                candidates=cands, subjects=session["subjects"])
            path = os.path.join(tmp, "result-{}.zip".format(room["code"]))
            with open(path, "wb") as f:
                f.write(data)
            uploads.append({"room": room["code"], "session": session["id"], "path": path,
                            "reg_code": reg_code(ctx, room["code"]), "size": len(data)})
        total_mb = sum(u["size"] for u in uploads) / MiB
        spec = os.path.join(tmp, "uploads.json")
        with open(spec, "w", encoding="utf-8") as f:
            json.dump({"uploads": uploads}, f)

        raw_dir = os.path.join(tmp, "raw")
        os.makedirs(raw_dir)
        receiver = raw_receiver(raw_dir)
        baseline = uploaded("raw", receiver.getsockname()[1], spec)
        receiver.close()
        for name in os.listdir(raw_dir):
            os.remove(os.path.join(raw_dir, name))

        server = start_lan_server(ctx, "0.0.0.0")  # noqa: S104 - 127.0.2.x clients
        lan = uploaded("lan", server.port(), spec)
        server.stop()
        received = [d for d in ctx.stores.runtime.all(model.ROOM_SESSIONS) if d.get("result")]
        if len(received) != PROCTORS:
            raise SystemExit("only {} of {} results recorded".format(len(received), PROCTORS))
    mb_s = total_mb / lan["seconds"]
    baseline_mb_s = total_mb / baseline["seconds"]
    emit(bench="lan_upload", proctors=PROCTORS, mb_each=MB_EACH, mb_s=round(mb_s, 1),
         baseline_mb_s=round(baseline_mb_s, 1), ratio=round(mb_s / baseline_mb_s, 3))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        sys.path.insert(0, ROOT)
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        main()
