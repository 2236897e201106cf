"""Benchmark: verify + load a realistic site package vs a bare read + sha256 of its members.

Builds once, into a temp file, a package of 100 rooms x 2 sessions x 40 candidates with
about 1 MiB of random bytes per room (random: room files do not compress). Then, in
alternation, ``load_package`` (every check of docs/formats.md §2.4, hashing every
member) and the baseline (open the zip, read every member in 1 MiB chunks, sha256 each).
Prints one JSON line: medians in ms and their ratio (target: at most 2).

Usage: ``.venv/bin/python benchmarks/package_load.py [--rounds N] [--rooms N] [--room-kib N]``
"""

import hashlib
import os
import tempfile
import zipfile

from _common import emit, interleaved_median_ms, package_args, write_site_package

from kd.formats.package import load_package


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
    args = package_args(__doc__.splitlines()[0], rounds=7)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "package.zip")
        trusted = write_site_package(path, args.rooms, args.room_kib)
        size = os.path.getsize(path)
        packages = []

        def load() -> None:
            packages.append(load_package(path, trusted, "11003"))

        # one untimed round warms the page cache for both
        ms, base = interleaved_median_ms([load, lambda: baseline(path)], args.rounds, warmup=1)
        assert len(packages[-1].candidates) == args.rooms * 2 * 40
    emit(bench="package_load", ms=round(ms, 1), baseline_ms=round(base, 1), ratio=round(ms / base, 2),
         rooms=args.rooms, package_bytes=size, rounds=args.rounds)

if __name__ == "__main__":
    main()
