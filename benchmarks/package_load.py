"""Benchmark: verify + load a realistic site package vs a bare read + sha256 of its members.

Builds once, into a temp file, a package of 100 rooms x 2 sessions x 40 candidates with
about 1 MiB of random bytes per room (random: room files do not compress). Then, in
alternation, ``load_package`` (every check of docs/formats.md §2.4, hashing every
member) and the baseline (open the zip, read every member in 1 MiB chunks, sha256 each).
Prints one JSON line: medians in ms and their ratio (target: at most 2).

Usage: ``.venv/bin/python benchmarks/package_load.py [--rounds N] [--rooms N] [--room-kib N]``
"""

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from _common import write_site_package  # noqa: E402

from kd.formats.package import load_package  # noqa: E402


def baseline(path: str) -> int:
    total = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            digest = hashlib.sha256()
            with zf.open(info) as member:
                while True:
                    chunk = member.read(1024 * 1024)
                    if not chunk:
                        break
                    digest.update(chunk)
                    total += len(chunk)
            digest.hexdigest()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--room-kib", type=int, default=1024)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "package.zip")
        trusted = write_site_package(path, args.rooms, args.room_kib)
        size = os.path.getsize(path)
        load_package(path, trusted, "11003")  # warm the page cache for both
        baseline(path)
        loads, bares = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            package = load_package(path, trusted, "11003")
            loads.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            baseline(path)
            bares.append((time.perf_counter() - t0) * 1000)
        assert len(package.candidates) == args.rooms * 2 * 40
    ms, base = statistics.median(loads), statistics.median(bares)
    print(json.dumps({"bench": "package_load", "ms": round(ms, 1), "baseline_ms": round(base, 1),
                      "ratio": round(ms / base, 2), "rooms": args.rooms, "package_bytes": size,
                      "rounds": args.rounds}))


if __name__ == "__main__":
    main()
