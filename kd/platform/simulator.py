"""The monitoring platform simulator: docs/platform-api.md served on loopback, with faults.

    python -m kd.platform.simulator --port 8600 --data DIR [--site 11003 --rooms 30
        --sessions 2 --candidates 40 --first-start-in 60 --duration 90 --room-kb 1024
        --password kaodian] [--refuse 503|close --slow S --drip S --drop-after N
        --drop-count K --fail-every N]

On first run it makes its keys and a demo site in DIR (``kd.platform.simdata``), then
serves every endpoint of docs/platform-api.md on 127.0.0.1 with a
``ThreadingHTTPServer`` (HTTP/1.1, keep-alive). It prints its public key and writes it
to ``DIR/platform.pub`` for the app's drill mode. What it receives is kept under
``DIR/received`` (``kd.platform.simstore``).

Tests use it in-process: ``with start_simulator(data_dir, port=0, ...) as sim:`` gives a
running ``SimulatorServer`` (``sim.url``, ``sim.public_key``, ``sim.password``,
``sim.faults.set(...)``, ``sim.received()``), stopped cleanly by ``shutdown()``.

Modules: this one holds the state (``SimulatorServer``: tokens, requests seen, what was
received) and the command line; the endpoints are ``kd.platform.simapi``'s, the HTTP
layer and the faults' plumbing ``kd.platform.simhttp``'s.

Inspection and control (simulator only, never faulted, no auth):
``GET /_sim/received``, ``GET /_sim/faults``, ``POST /_sim/faults`` (JSON with the
arguments of ``Faults.set``), ``POST /_sim/republish`` (new package publish time).
"""

import argparse
import hashlib
import logging
import secrets
import sys
import threading
import time
from typing import Any, ContextManager, Dict, List, Optional, Tuple

from kd.forward import Forward
from kd.platform.faults import Faults
from kd.platform.simapi import ROUTES, TOKEN_TTL, Handler
from kd.platform.simdata import SimData
from kd.platform.simhttp import API, ApiError, SimHTTPServer
from kd.platform.simstore import EventLog, ProofStore, ReportLog, UploadStore

__all__ = ["API", "HOST", "ROUTES", "TOKEN_TTL", "ApiError", "SimulatorServer", "main", "start_simulator"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class SimulatorServer(ContextManager["SimulatorServer"]):
    """A running (or ready to run) simulated platform on 127.0.0.1."""

    def __init__(self, data_dir: str, port: int = 0, **site: Any) -> None:
        self.data = SimData(data_dir, **site)
        self.faults = Faults()
        self.reports = ReportLog(self.data.received_dir)
        self.syncs = EventLog(self.data.received_dir + "/syncs.jsonl")
        self.uploads = UploadStore(self.data.received_dir + "/uploads")
        self.proofs = ProofStore(self.data.received_dir)
        self._tokens: Dict[str, Tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._requests: List[Dict[str, Any]] = []
        self._package_sha: Optional[str] = None
        self._thread: Optional[threading.Thread] = None
        self.httpd = SimHTTPServer((HOST, port), Handler)
        self.httpd.sim = self
        self.port = self.httpd.server_address[1]
        self.url = f"http://{HOST}:{self.port}"

    # -- identity for tests and the CLI ---------------------------------------------

    public_key = Forward[bytes]("data")
    password = Forward[str]("data")
    site_code = Forward[str]("data")

    # -- state used by handlers --------------------------------------------------------

    def new_token(self, site: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (site, time.time() + TOKEN_TTL)
        return token

    def check_token(self, token: str) -> Optional[str]:
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[1] < time.time():
            return None
        return entry[0]

    def expire_tokens(self) -> None:
        """Forget every login (tests: the client must log in again by itself)."""
        with self._lock:
            self._tokens.clear()

    def record_request(self, entry: Dict[str, Any]) -> None:
        with self._lock:
            entry["n"] = len(self._requests) + 1
            self._requests.append(entry)
            if len(self._requests) > 100000:
                del self._requests[:50000]

    def faults_cut_note(self, entry: Dict[str, Any]) -> None:
        entry["fault"] = entry.get("fault") or "cut"

    def package_sha256(self) -> str:
        if self._package_sha is None:
            self._package_sha = hashlib.sha256(self.data.package_bytes()).hexdigest()
        return self._package_sha

    def republish(self) -> None:
        self.data.republish()
        self._package_sha = None

    def republish_at(self, first_start_in: int) -> None:
        """Move the sessions so the first starts in ``first_start_in`` minutes; new package."""
        self.data.reschedule(first_start_in)
        self._package_sha = None

    def requests(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._requests]

    def received(self) -> Dict[str, Any]:
        """What the simulator received: reports, uploads (no bytes), completeness proofs (their
        verdicts; ``ProofStore``), syncs, requests."""
        return {
            "reports": self.reports.all(),
            "proofs": self.proofs.all(),
            "uploads": self.uploads.all(),
            "syncs": self.syncs.all(),
            "requests": self.requests(),
            "faults": self.faults.as_dict(),
        }

    # -- running -------------------------------------------------------------------

    def start(self) -> "SimulatorServer":
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="platform-sim", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def shutdown(self) -> None:
        """Stop serving, end slow responses and open connections, close the socket."""
        self.httpd.stopping.set()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.httpd.close_all()
        self.httpd.server_close()

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def start_simulator(data_dir: str, port: int = 0, **site: Any) -> SimulatorServer:
    """A simulator serving in a background thread (use as a context manager or call ``shutdown()``)."""
    return SimulatorServer(data_dir, port, **site).start()


def _refuse_arg(text: str) -> Any:
    return text if text == "close" else int(text)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kd.platform.simulator",
                                     description="监控平台模拟器（仅 127.0.0.1）")
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--data", required=True, help="模拟器数据目录（密钥、演示考点、收到的上报）")
    parser.add_argument("--site", default="11003", help="考点代码（仅首次运行时生效）")
    parser.add_argument("--rooms", type=int, default=30)
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=40, help="每考场每场次考生数")
    parser.add_argument("--first-start-in", type=int, metavar="MIN",
                        help="第一场次在多少分钟后开考（默认 60；对已有数据目录：重排场次并重新发布数据包）")
    parser.add_argument("--duration", type=int, default=90, metavar="MIN", help="每场次考试时长（分钟）")
    parser.add_argument("--room-kb", type=int, default=1024, help="每个考场数据文件的大小（KB）")
    parser.add_argument("--password", help="平台密码（默认 kaodian）")
    parser.add_argument("--refuse", type=_refuse_arg, help="故障：对每个请求回答此 HTTP 状态，或 close 直接断开")
    parser.add_argument("--slow", type=float, default=0.0, help="故障：每个请求延迟的秒数")
    parser.add_argument("--drip", type=float, default=0.0, metavar="S",
                        help="故障：逐字节收发请求和回答，每字节间隔 S 秒")
    parser.add_argument("--drop-after", type=int, default=0, metavar="BYTES", help="故障：传输 N 字节后断开连接")
    parser.add_argument("--drop-count", type=int, default=1, help="故障：断开的次数")
    parser.add_argument("--fail-every", type=int, default=0, metavar="N", help="故障：每第 N 个请求回答 503")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sim = SimulatorServer(args.data, args.port, site_code=args.site, rooms=args.rooms, sessions=args.sessions,
                          candidates=args.candidates, first_start_in=args.first_start_in or 60,
                          duration=args.duration, room_kb=args.room_kb, password=args.password)
    if args.first_start_in is not None and not sim.data.created:
        sim.republish_at(args.first_start_in)
    sim.faults.set(refuse=args.refuse, slow=args.slow, drip=args.drip, drop_after=args.drop_after,
                   drop_count=args.drop_count, fail_every=args.fail_every)
    sim.data.package_bytes()
    out = sys.stdout
    out.write(f"监控平台模拟器 {sim.url}  考点 {sim.site_code}  平台密码 {sim.password}\n")
    with open(sim.data.public_key_path, encoding="ascii") as f:
        out.write(f"平台公钥 platform public key (base64, key id {sim.data.key_id}): {f.read().strip()}\n")
    out.write(f"  written to {sim.data.public_key_path} (trust it in drill mode)\n")
    out.write("dongle: {} registered to site {} (seed and public key in {})\n".format(
        sim.data.lock_id, sim.data.dongle["site_code"], sim.data.root + "/dongle.json"))
    out.write("sessions: {}\n".format(", ".join("{} {} {}".format(s["id"], s["name"], s["start"])
                                                for s in sim.data.site["sessions"])))
    out.flush()
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
