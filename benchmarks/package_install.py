"""Benchmark: 导入考务 (``LoadingService.import_zip``) vs its floor, verify + extract alone.

Builds once a package of 100 rooms x 2 sessions x 40 candidates with about 1 MiB of
random bytes per room, and a data folder with the site configured. Then, in
alternation: ``import_zip`` (verify, extract to staging, swap the room folder, write the
exam and runtime DBs, audit) and the baseline ``load_package`` + ``extract_rooms`` into a
scratch folder. Prints one JSON line with both medians and their ratio (the cost of
installing on top of the unavoidable verify + extract; target: at most 1.5).

Usage: ``.venv/bin/python benchmarks/package_install.py [--rounds N] [--rooms N] [--room-kib N]``
"""

import os
import shutil
import tempfile

from _common import emit, interleaved_median_ms, package_args, write_site_package

from kd.app import open_context
from kd.core import model
from kd.core.loading import LoadingService
from kd.formats.package import load_package


def main() -> None:
    args = package_args(__doc__.splitlines()[0], rounds=5)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "package.zip")
        trusted = write_site_package(path, args.rooms, args.room_kib)
        ctx = open_context(os.path.join(tmp, "data"), trusted=trusted)
        ctx.stores.settings.put(model.SETTINGS, model.SITE, {"site_code": "11003", "mode": model.FORMAL})
        svc = LoadingService(ctx)
        scratch = os.path.join(tmp, "scratch")
        snaps = []

        def install() -> None:
            snaps.append(svc.import_zip(path, "bench"))

        def bare() -> None:
            load_package(path, trusted, "11003").extract_rooms(scratch)
            shutil.rmtree(scratch)

        # one untimed round warms the page cache and the DBs
        ms, base = interleaved_median_ms([install, bare], args.rounds, warmup=1)
        snap = snaps[-1]
        assert len(snap["rooms"]) == args.rooms and all(r["verified"] for r in snap["rooms"])
        ctx.stores.close()
    emit(bench="package_install", ms=round(ms, 1), baseline_ms=round(base, 1), ratio=round(ms / base, 2),
         rooms=args.rooms, rounds=args.rounds)

if __name__ == "__main__":
    main()
