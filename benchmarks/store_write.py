"""store_write: one durable state change in a runtime DB sized for 100 rooms x 2 sessions.

Compared, in the same run and folder, with the bare atomic write it is built on: write a
file of the same size, flush, fsync, ``os.replace``, fsync the folder (``baseline_ms``;
without the folder fsync a replace is not durable on POSIX, so that is the honest floor
of any durable write). The same without the folder fsync is reported too
(``bare_nodirsync_ms``, ``ratio_nodirsync``). Prints
``{"bench": "store_write", "ms": .., "baseline_ms": .., "ratio": .., ...}``.
Target: ratio ≤ 1.5.
"""

import itertools
import os
import secrets
import string
import tempfile

from _common import emit, interleaved_median_ms, median_ms

from kd.store.database import Database

ROOMS, SESSIONS, REPEAT = 100, 2, 300


def populate(db: Database) -> None:
    letters = string.ascii_uppercase
    with db.transaction():
        for r in range(1, ROOMS + 1):
            code = "11003{:03d}".format(r)
            db.put("rooms", code, {
                "code": code, "name": "第{}考场".format(r),
                "reg_code": "".join(secrets.choice(letters) for _ in range(8)),
                "ip": "192.168.1.{}".format(r), "token": secrets.token_hex(16),
                "registered_at": "2026-11-26T07:{:02d}:00+08:00".format(r % 60), "data_imported": True,
            })
            for s in range(1, SESSIONS + 1):
                db.put("room_sessions", "{}/{}".format(code, s), {
                    "room": code, "session": s, "state": "考试中", "candidates": 40, "logged_in": 38,
                    "started_at": "2026-11-26T09:00:00+08:00", "ended_at": None, "result_sha256": None,
                    "reported": False, "recovered": 0,
                })
        for n in range(50):
            db.put("outbox", str(n), {"kind": "room_status", "key": secrets.token_hex(16), "tries": 0,
                                      "body": {"room": "11003{:03d}".format(n % ROOMS + 1), "state": "考试中"}})


def main() -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("KD_BENCH_DIR")) as folder:
        db = Database.open(os.path.join(folder, "runtime.json"))
        populate(db)
        counter = itertools.count()

        def change() -> None:
            n = next(counter)
            db.update("room_sessions", "11003{:03d}/1".format(n % ROOMS + 1), {"logged_in": n % 41})

        change()
        size = max(os.path.getsize(os.path.join(folder, "runtime.json" + s)) for s in (".0", ".1"))
        payload = os.urandom(size)
        bare_path = os.path.join(folder, "bare.json")

        def bare(dirsync: bool = True) -> None:
            tmp = bare_path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, bare_path)
            if dirsync and os.name != "nt":
                fd = os.open(folder, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)

        # change and bare are both fully durable, so neither leaves work for the other's fsync;
        # the no-folder-fsync variant leaves its rename in the journal for the next fsync to pay,
        # so it is timed on its own, after them
        ms, baseline = interleaved_median_ms([change, bare], REPEAT)
        nodirsync = median_ms(lambda: bare(False), REPEAT)
        db.close()
    emit(bench="store_write", ms=round(ms, 3), baseline_ms=round(baseline, 3), ratio=round(ms / baseline, 2),
         bare_nodirsync_ms=round(nodirsync, 3), ratio_nodirsync=round(ms / nodirsync, 2), db_bytes=size)


if __name__ == "__main__":
    main()
