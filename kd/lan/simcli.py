"""``python -m kd.lan.simulator``: the command line of the proctor simulator (see ``kd.lan.simulator``).

Prints a summary (``--json``: the report as one JSON object) and exits 0 only when every
proctor finished its day, 1 when one did not, 2 when the site-info file is unusable.
"""

import argparse
import json
import logging
import sys
from typing import Any, List, Optional

from kd.errors import FormatError
from kd.lan import simulator
from kd.lan.simrooms import rooms_from_site_info
from kd.lan.simulator import _DEFAULTS, SimOptions, Simulation


def _address(text: str) -> Any:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. 192.168.1.10:9190")
    return host, int(port)


def main(argv: Optional[List[str]] = None) -> int:
    about = (simulator.__doc__ or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m kd.lan.simulator", description=about)
    parser.add_argument("--server", type=_address, required=True, help="site server HOST:PORT")
    parser.add_argument("--site-info", required=True, help="the exported 考点信息表(<site>).KDINFO")
    parser.add_argument("--rooms", type=int, required=True, help="number of proctors (the first N rooms)")
    parser.add_argument("--result-mb", type=float, default=_DEFAULTS.result_mb, help="answers per result package")
    parser.add_argument("--speed", type=float, default=_DEFAULTS.speed, help="time acceleration of the sessions")
    parser.add_argument("--wrong-code", type=int, default=0, metavar="K", help="K proctors first try a wrong code")
    parser.add_argument("--silent", type=int, default=0, metavar="K", help="K proctors go silent mid-exam")
    parser.add_argument("--silent-s", type=float, default=_DEFAULTS.silent_s, help="how long they stay silent")
    parser.add_argument("--disconnect", type=int, default=0, metavar="K", help="K proctors cut their upload")
    parser.add_argument("--outage", type=int, default=0, metavar="K",
                        help="K proctors lose their connection once mid-exam (closed, then reconnect)")
    parser.add_argument("--outage-s", type=float, default=_DEFAULTS.outage_s,
                        help="how long an outage lasts, in simulated seconds (real: divided by --speed)")
    parser.add_argument("--permit-every", type=float, default=_DEFAULTS.permit_every)
    parser.add_argument("--own-address", action="store_true",
                        help="each proctor connects from its own 127.0.x.y address (server on loopback)")
    parser.add_argument("--on-schedule", action="store_true",
                        help="start each session at its start time, end it by its scheduled end")
    parser.add_argument("--timeout", type=float, default=None, help="give up after this many seconds in all")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(threadName)s %(levelname)s %(message)s")
    try:
        rooms = rooms_from_site_info(args.site_info, args.rooms)
    except FormatError as e:
        print(str(e), file=sys.stderr)
        return 2
    options = SimOptions(result_mb=args.result_mb, speed=args.speed, wrong_code=args.wrong_code,
                         silent=args.silent, silent_s=args.silent_s, disconnect=args.disconnect,
                         outage=args.outage, outage_s=args.outage_s,
                         permit_every=args.permit_every, own_address=args.own_address,
                         on_schedule=args.on_schedule)
    sim = Simulation(args.server[0], args.server[1], rooms, options).start()
    try:
        report = sim.wait(args.timeout)
    except KeyboardInterrupt:
        report = sim.report()
    finally:
        sim.stop()
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print("proctors {rooms}: registered {registered}, data imported {data_imported}, sessions started "
              "{sessions_started}, ended {sessions_ended}, results uploaded {uploads} in {seconds} s".format(**report))
        for failure in report["failures"]:
            print("FAILED", failure)
    return 0 if report["ok"] else 1
