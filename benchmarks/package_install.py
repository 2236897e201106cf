"""Benchmark: 导入考务 (``LoadingService.import_zip``) vs its floor, verify + extract alone.

Builds once a package of 100 rooms x 2 sessions x 40 candidates with about 1 MiB of
random bytes per room, and a data folder with the site configured. Then, in
alternation: ``import_zip`` (verify, extract to staging, swap the room folder, write the
exam and runtime DBs, audit) and the baseline ``load_package`` + ``extract_rooms`` into a
scratch folder. Prints one JSON line with both medians and their ratio (the cost of
installing on top of the unavoidable verify + extract; target: at most 1.5).

Usage: ``.venv/bin/python benchmarks/package_install.py [--rounds N] [--rooms N] [--room-kib N]``
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from _common import write_site_package  # noqa: E402

from kd.app import open_context  # noqa: E402
from kd.core import model  # noqa: E402
from kd.core.loading import LoadingService  # noqa: E402
from kd.formats.package import load_package  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--room-kib", type=int, default=1024)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "package.zip")
        trusted = write_site_package(path, args.rooms, args.room_kib)
        ctx = open_context(os.path.join(tmp, "data"), trusted=trusted)
        ctx.stores.settings.put(model.SETTINGS, model.SITE, {"site_code": "11003", "mode": model.FORMAL})
        svc = LoadingService(ctx)
        scratch = os.path.join(tmp, "scratch")

        def bare() -> None:
            load_package(path, trusted, "11003").extract_rooms(scratch)
            shutil.rmtree(scratch)

        svc.import_zip(path, "bench")  # warm the page cache and the DBs
        bare()
        installs, bares = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            snap = svc.import_zip(path, "bench")
            installs.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            bare()
            bares.append((time.perf_counter() - t0) * 1000)
        assert len(snap["rooms"]) == args.rooms and all(r["verified"] for r in snap["rooms"])
        ctx.stores.close()
    ms, base = statistics.median(installs), statistics.median(bares)
    print(json.dumps({"bench": "package_install", "ms": round(ms, 1), "baseline_ms": round(base, 1),
                      "ratio": round(ms / base, 2), "rooms": args.rooms, "rounds": args.rounds}))


if __name__ == "__main__":
    main()
