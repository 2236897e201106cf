"""Shared bits of the benchmark scripts (not a benchmark itself: dev.py skips ``_*.py``).

Timing (``median_ms``, ``interleaved_median_ms``), the one JSON line (``emit``), the
package benchmarks' arguments and package (``package_args``, ``write_site_package``), a
scratch data folder (``scratch_context``), a synthetic two-session site's rooms, sessions
and candidates (``two_session_site``), and the LAN benchmarks' site: a loaded site
(``loaded_site``), its ``LanServer`` (``start_lan_server``), a room's registration code
(``reg_code``) and the child process of proctors (``run_child``).
"""

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def median_ms(fn: Callable[[], object], repeat: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    samples: List[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)


def interleaved_median_ms(fns: List[Callable[[], object]], repeat: int, warmup: int = 5) -> List[float]:
    """Median ms of each of ``fns``, timed in turn in the same loop so drift hits all alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples: List[List[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, samples):
            start = time.perf_counter()
            fn()
            out.append((time.perf_counter() - start) * 1000.0)
    return [statistics.median(s) for s in samples]


def emit(**fields: object) -> None:
    """Print the one JSON line a benchmark reports."""
    print(json.dumps(fields, ensure_ascii=False), flush=True)


def write_site_package(path: str, rooms: int, room_kib: int) -> Any:
    """Write a signed site package of ``rooms`` rooms (random room files of ``room_kib`` KiB,
    2 sessions, 40 candidates per room) to ``path``; return the ``TrustedKeys`` that verify it."""
    from kd.formats.package import build_package
    from kd.formats.signing import Signer, TrustedKeys
    from tests.unit.formats_helpers import make_manifest

    platform, lock = Signer.generate(), Signer.generate()
    manifest = make_manifest(lock, rooms=rooms, sessions=2, per_room=40)
    files = {room["code"]: os.urandom(room_kib * 1024) for room in manifest["rooms"]}
    with open(path, "wb") as out:
        out.write(build_package(platform, manifest, files))
    return TrustedKeys([platform.public_key])


def two_session_site(site: str, rooms: int, per_room: int, start: str,
                     second_start: str) -> Tuple[List[str], List[Dict[str, Any]], List[Dict[str, Any]]]:
    """``(codes, sessions, candidates)`` of a synthetic site: ``rooms`` rooms ``<site>001``..., sessions S1
    (at ``start``) and S2 (at ``second_start``) of 120 minutes and subject K1, ``per_room`` candidates
    per room and session (ticket ``<room><session><seat:02>``, seats from 1)."""
    codes = ["{}{:03d}".format(site, r) for r in range(1, rooms + 1)]
    sessions = [{"id": "S1", "name": "第一场次", "start": start, "duration_min": 120, "subjects": ["K1"]},
                {"id": "S2", "name": "第二场次", "start": second_start, "duration_min": 120, "subjects": ["K1"]}]
    candidates = [{"ticket": "{}{}{:02d}".format(code, s["id"], i), "name": "考生{}".format(i), "room": code,
                   "session": s["id"], "seat": i, "subject": "K1", "id_card": "110101199001011234"}
                  for s in sessions for code in codes for i in range(1, per_room + 1)]
    return codes, sessions, candidates


def store_package(ctx: Any, site: str, codes: List[str], sessions: List[Dict[str, Any]],
                  candidates: List[Dict[str, Any]], publish_time: str, loaded_at: str) -> None:
    """A synthetic loaded package in ``ctx``'s exam store: manifest and meta (one subject K1, 4 KiB rooms)."""
    from kd.core import model  # noqa: PLC0415 - after the path set-up the benchmarks do first

    manifest = {"format_version": 1, "site_code": site, "exam_name": "职业技能鉴定", "publish_time": publish_time,
                "lock": {"id": "L1", "public_key": "A" * 43 + "="}, "rooms": [{"code": c, "name": c} for c in codes],
                "subjects": [{"code": "K1", "name": "科目一"}], "sessions": sessions,
                "candidate_count": len(candidates), "candidates": candidates,
                "members": [{"name": "rooms/{}.dat".format(c), "size": 4096, "sha256": "0" * 64} for c in codes]}
    exam = ctx.stores.exam
    with exam.transaction():
        exam.put(model.PACKAGE, model.MANIFEST, manifest)
        exam.put(model.PACKAGE, model.PACKAGE_META, {"publish_time": publish_time, "loaded_at": loaded_at,
                                                     "source": "online", "verified_at": loaded_at,
                                                     "zip_sha256": "1" * 64, "manifest_sha256": "2" * 64})


def package_args(description: str, rounds: int) -> argparse.Namespace:
    """The package benchmarks' ``--rounds N --rooms N --room-kib N`` (defaults: ``rounds``, 100, 1024)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--room-kib", type=int, default=1024)
    return parser.parse_args()


@contextlib.contextmanager
def scratch_context(prefix: str) -> Iterator[Any]:
    """An open ``kd.site`` context on a fresh temporary data folder; closed and removed after."""
    from kd.app import open_context

    folder = tempfile.mkdtemp(prefix=prefix)
    try:
        ctx = open_context(folder)
        try:
            yield ctx
        finally:
            ctx.stores.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def loaded_site(tmp: str, rooms: int, candidates: int) -> Iterator[Any]:
    """The LAN benchmarks' site in ``tmp`` (platform simulator, dongle emulator, ``rooms`` rooms of
    1 session, ``candidates`` per room, 1 KB room files), its package loaded online; yields the context."""
    from kd.core.loading import LoadingService
    from tests.support.env import make_env

    env = make_env(tmp, rooms=rooms, sessions=1, candidates=candidates, room_kb=1)
    try:
        LoadingService(env.ctx).load_online("bench")
        yield env.ctx
    finally:
        env.close()


def start_lan_server(ctx: Any, host: str) -> Any:
    """A started ``LanServer`` on ``host`` (any free port) over the site's core services."""
    from kd.core.monitor import MonitorService
    from kd.core.outbox import Outbox
    from kd.core.recovery import RecoveryService
    from kd.core.registration import RegistrationService
    from kd.core.verification import VerificationService
    from kd.lan.server import LanOptions, LanServer

    outbox = Outbox(ctx)
    return LanServer(ctx, registration=RegistrationService(ctx), verification=VerificationService(ctx),
                     monitor=MonitorService(ctx, outbox), recovery=RecoveryService(ctx, outbox),
                     options=LanOptions(host=host, port=0)).start()


def reg_code(ctx: Any, room: str) -> str:
    """The registration code (注册码) the site holds for ``room``."""
    from kd.core import model

    return str(ctx.stores.runtime.get(model.ROOMS, room)["reg_code"])


def run_child(script: str, args: List[str], timeout: float) -> Dict[str, Any]:
    """Run ``script --child ARGS`` with this Python; the JSON object of its last output line.

    A child that fails ends the benchmark with its standard error."""
    out = subprocess.run([sys.executable, os.path.abspath(script), "--child"] + args, capture_output=True,
                         text=True, timeout=timeout, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    result: Dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result
