"""Shared bits of the benchmark scripts (not a benchmark itself: dev.py skips ``_*.py``)."""

import json
import os
import statistics
import sys
import time
from typing import Any, Callable, List

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
