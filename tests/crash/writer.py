"""Crash-test writer: durable writes in a loop, printing each id once it is acknowledged.

    python tests/crash/writer.py DATA_DIR SEED

Each step i: one runtime-DB transaction (a new ``acks`` document and a changed room),
one spool file, one audit line. ``ACK <i> <sha256>`` is printed only after all three
returned, i.e. after they are durable. The test kills this process at random moments.
"""

import hashlib
import io
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from kd.store.audit import AuditLog  # noqa: E402
from kd.store.database import open_stores  # noqa: E402
from kd.store.spool import Spool  # noqa: E402


def main() -> None:
    data_dir, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    stores = open_stores(data_dir)
    spool = Spool(os.path.join(data_dir, "spool"))
    audit = AuditLog(os.path.join(data_dir, "audit.log"))
    if not stores.runtime.count("pad"):  # make each write take long enough to be hit mid-way
        with stores.runtime.transaction():
            for n in range(400):
                stores.runtime.put("pad", str(n), {"room": "11003{:03d}".format(n % 100), "note": "考生" * 300})
    i = stores.runtime.count("acks")
    print("READY", flush=True)
    while True:
        payload = "{}:{}".format(i, rng.random()).encode() * rng.randint(1, 3000)
        digest = hashlib.sha256(payload).hexdigest()
        with stores.runtime.transaction():
            stores.runtime.put("acks", str(i), {"i": i, "sha": digest})
            stores.runtime.put("rooms", str(i % 100), {"last": i, "state": "考试中"})
        spool.put(io.BytesIO(payload), digest, len(payload))
        audit.append("crash-writer", "ack", {"i": i, "sha": digest})
        print("ACK {} {}".format(i, digest), flush=True)
        i += 1


if __name__ == "__main__":
    main()
