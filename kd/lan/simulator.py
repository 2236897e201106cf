"""N simulated proctor machines (监考机) in one process, speaking KDLAN v1 to a site server.

    python -m kd.lan.simulator --server HOST:PORT --site-info FILE --rooms N
                               [--result-mb M] [--speed X] [--json] [--own-address]
                               [--on-schedule] [--wrong-code K] [--silent K] [--disconnect K]
                               [--outage K] ...

``--site-info`` is the site's exported ``考点信息表(<site>).KDINFO`` (registration codes
per room; ``kd.formats.kdinfo``). Each proctor (one thread, its own ``ProctorClient``):

0. connects from its own address when ``--own-address`` (``SimOptions.own_address``) is
   given and the server is on loopback: proctor ``i`` binds its socket to
   ``loopback_address(i)`` = ``127.0.<i // 253>.<i % 253 + 2>`` (127.0.0.2, 127.0.0.3, ...)
   before it connects, as N machines of a LAN would, so the server's per-address
   connection cap (8) does not stop a drill of 30 rooms; where the system cannot bind
   such an address (macOS has only 127.0.0.1) every proctor uses the system's choice;
1. registers its room with its code (``--wrong-code K``: the first K proctors first
   present a wrong code and must be refused);
2. downloads the room data, checks its hash, reads its candidates (the platform's
   ``kd-room-data/1`` JSON) and confirms the import;
3. for each of the room's sessions in order: heartbeats (every ``heartbeat_s`` / speed,
   at least every 0.2 s) while candidates log in over time; ``--on-schedule``
   (``SimOptions.on_schedule``): first waits, heartbeating, until the session's ``start``
   (开考时间, the register reply's sessions) by the proctor's clock, as a real room
   starts at its start time, and ends at ``start + duration_min`` at the latest (a room
   that starts after that runs ``late_run_s``); asks for the start permit
   every ``--permit-every`` s until granted, runs the session for ``duration_min`` / speed
   plus the 补时 the site approved for the room's session (a heartbeat reply's ``extra_time``:
   its ``total_min`` / speed are added to the session's length, and the next heartbeats carry
   ``extra_time_ack`` with its id until a reply no longer offers it; ``ProctorReport.extra_time``)
   (``--silent K``: the first K proctors send nothing for ``--silent-s`` seconds mid-exam;
   ``--outage K`` (``SimOptions.outage``): the first K proctors lose their connection once in
   the day, ``outage_after_s`` simulated seconds into their first session: the socket closed
   without a goodbye, nothing sent for ``outage_s`` (90) simulated seconds, i.e. ``outage_s``
   / speed real seconds, while the exam goes on; then the next heartbeat reconnects and
   re-binds the room with its token, and the session runs to its end and uploads as any
   other; ``ProctorReport.outages`` / ``outage_real_s``),
   ends it, builds its result package (``kd.formats.result.build_result``, about
   ``--result-mb`` MB of answers) and uploads it (``--disconnect K``: the first K proctors
   drop the connection half-way and resume from the server's offset; ``SimOptions.no_upload``
   K: the first K proctors never upload, a room whose result the site must miss); an ``E_STORAGE``
   (the site server cannot store it yet) is waited out (its ``retry_after``) and the
   upload resumed, a begin answered ``committed`` (a lost commit reply) commits at once;
4. says goodbye.

Prints a summary (``--json``: one JSON object) and exits 0 only when every proctor
finished its day. ``Simulation`` is the same as a library (the drill runs it in-process):
``Simulation(host, port, rooms, options, on_progress=None, clock=None).start()``,
``.wait(timeout)`` → the report, ``.stop()``. ``.progress()`` lists each proctor's
``Progress`` (room, address, phase, session, detail) as it is now; ``on_progress()`` (no
arguments) is called from the proctors' threads after each phase change (the GUI drill
posts a refresh to its Tk loop). The phases, in order: ``connecting``, ``registered``,
``data_imported``, ``waiting`` (for the start time, ``detail``: it), ``permit`` (asking
for the start permit), ``in_exam``, ``uploading``, ``uploaded`` (of a session; then the
next session's ``waiting``), ``done`` or ``failed`` (``detail``: the error). ``clock``
(an aware ``datetime`` now, default the system clock in China Standard Time) is what
``on_schedule`` compares the start times with, and what the heartbeats carry as ``clock``
(docs/lan-protocol.md §4); ``SimOptions.skew_s`` / ``skew_rooms`` put the first K
proctors' clocks ``skew_s`` seconds off (all they do by the clock uses the skewed one).

Where the parts live: this module has the proctor's day (``Proctor``) and ``Simulation``;
``kd.lan.simrecords`` the records (``SimOptions``, ``Progress``, ``PHASES``, ``ProctorReport``,
``RETRY``), ``kd.lan.simrooms`` the rooms and addresses (``rooms_from_site_info``,
``loopback_address``, ``own_addresses_work``), ``kd.lan.simcli`` the command line; the names
of simrecords and simrooms are re-exported here, so ``from kd.lan.simulator import SimOptions`` works.
"""

import datetime
import hashlib
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from kd.errors import FormatError
from kd.formats.result import ABSENT, PRESENT, build_result
from kd.formats.timeutil import CST, parse_time
from kd.lan.client import LanError, ProctorClient
from kd.lan.simrecords import (  # noqa: F401 - the simulator's public names, kept here for its callers
    _DEFAULTS,
    PHASES,
    RETRY,
    MiB,
    ProctorReport,
    Progress,
    SimOptions,
)
from kd.lan.simrooms import (  # noqa: F401 - the simulator's public names, kept here for its callers
    is_loopback,
    loopback_address,
    own_addresses_work,
    rooms_from_site_info,
)

log = logging.getLogger(__name__)


class Proctor(threading.Thread):
    """One room's proctor machine for a whole exam day."""

    def __init__(self, index: int, host: str, port: int, room: Dict[str, Any], options: SimOptions,
                 stop: threading.Event, work_dir: str, address: Optional[str] = None,
                 on_progress: Optional[Callable[[], None]] = None,
                 clock: Optional[Callable[[], datetime.datetime]] = None) -> None:
        super().__init__(name="proctor-{}".format(room["code"]), daemon=True)
        self.index = index
        self.room = room["code"]
        self.reg_code = room["reg_code"]
        self.options = options
        self.stop_event = stop
        self.work_dir = work_dir
        self.address = address
        self.client = ProctorClient(host, port, timeout=options.timeout, connect_timeout=5.0,
                                    source_address=(address, 0) if address else None)
        self.report = ProctorReport(self.room)
        self.on_progress = on_progress
        base = clock or (lambda: datetime.datetime.now(CST))
        self.clock: Callable[[], datetime.datetime] = base
        if index < options.skew_rooms:  # this proctor's clock is skew_s off (SimOptions)
            offset = datetime.timedelta(seconds=options.skew_s)
            self.clock = lambda: base() + offset
            self.report.clock_skew_s = options.skew_s
        self.client.clock = self.clock  # the heartbeats carry it (``clock``, ``rtt_ms``: kd.lan.client)
        self.progress = Progress(self.room, address, "connecting", None, "")
        self.rng = random.Random("{}-{}".format(options.seed, self.room))
        self.state: Dict[str, Any] = {}
        self.candidates: List[Dict[str, Any]] = []
        self.subjects: Dict[str, List[str]] = {}
        self.site_code = ""
        self.silenced = False

    # -- progress -----------------------------------------------------------------------
    def _phase(self, phase: str, session: Optional[str] = None, detail: str = "") -> None:
        self.progress = Progress(self.room, self.address, phase, session, detail)
        if self.on_progress is not None:
            try:
                self.on_progress()
            except Exception:  # noqa: BLE001 - an observer's bug must not end the proctor's day
                log.exception("proctor %s: the progress callback failed", self.room)

    # -- pacing -------------------------------------------------------------------------
    def _pause(self, seconds: float) -> None:
        if self.stop_event.wait(max(0.0, seconds)):
            raise _Stopped()

    def _upload_pause(self, seconds: float) -> None:
        """The client's pause before it resumes an upload (lost connection, ``E_STORAGE``)."""
        self.report.upload_retries += 1
        self._pause(seconds)

    def _hb_interval(self) -> float:
        return min(self.client.heartbeat_s, max(0.2, self.client.heartbeat_s / max(self.options.speed, 1.0)))

    def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        """A request, retried across connection losses (the client reconnects on the next one)
        and storage errors of the site server (after its ``retry_after``), with back-off."""
        deadline = time.monotonic() + self.options.connect_timeout
        pause = 0.2
        while True:
            try:
                return fn(*args, **kw)
            except LanError as e:
                if e.code not in RETRY or time.monotonic() >= deadline:
                    raise
                if e.code == "E_STORAGE":
                    self.report.storage_retries += 1
                else:
                    self.report.reconnects += 1
                wait = min(pause, 5.0)
                if e.retry_after:
                    wait = min(float(e.retry_after), max(0.0, deadline - time.monotonic()))
                self._pause(wait)
                pause *= 2

    # -- the day ------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._day()
            self.report.done = True
        except _Stopped:
            self.report.error = self.report.error or "stopped"
        except LanError as e:
            self.report.error = "{}: {}".format(e.code, e.cause)
            log.warning("proctor %s: %s", self.room, self.report.error)
        except Exception as e:  # noqa: BLE001 - one proctor's bug is its own failure, reported
            self.report.error = "{}: {}".format(type(e).__name__, e)
            log.exception("proctor %s failed", self.room)
        finally:
            self.client.bye()
            if self.report.done:
                self._phase("done")
            else:
                self._phase("failed", self.progress.session, self.report.error or "")

    def _day(self) -> None:
        if self.index < self.options.wrong_code:
            wrong = "".join(chr(65 + (ord(ch) - 64) % 26) for ch in self.reg_code)  # every letter shifted
            try:
                self._call(self.client.register, self.room, wrong)
                self.report.wrong_code_refused = False
            except LanError as e:
                self.report.wrong_code_refused = e.code == "E_REGISTER"
        reply = self._call(self.client.register, self.room, self.reg_code)
        self.report.registered = True
        self._phase("registered")
        self._import_data()
        self._phase("data_imported")
        for session in reply["sessions"]:
            if self.stop_event.is_set():
                raise _Stopped()
            self._session(session)

    def _import_data(self) -> None:
        dest = os.path.join(self.work_dir, "{}.dat".format(self.room))
        got = self._call(self.client.download_data, dest)
        with open(dest, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
        if data.get("room") != self.room:
            raise FormatError("考场数据不是本考场的：{}".format(data.get("room")), "")
        self.candidates = [c for c in data.get("candidates", []) if c.get("room") == self.room]
        self.subjects = {s["id"]: list(s.get("subjects") or []) for s in data.get("sessions", [])}
        self.site_code = str(data.get("site_code"))
        self._call(self.client.data_imported, got["sha256"])
        self.report.data_imported = True
        self.report.data_sha256 = got["sha256"]

    def _beat(self) -> None:
        reply = self._call(self.client.heartbeat, dict(self.state))
        offered = reply.get("extra_time") if isinstance(reply, dict) else None
        if not isinstance(offered, dict):
            self.state.pop("extra_time_ack", None)  # taken (or never offered): stop echoing it
            return
        gid = str(offered.get("id"))
        if gid not in self.report.extra_time_acked:  # apply each grant once, however often it is offered
            sid = str(offered.get("session_id"))
            # the room's total, not a sum of the grants seen: only the latest pending one is offered
            self.report.extra_time[sid] = max(self.report.extra_time.get(sid, 0), int(offered.get("total_min") or 0))
            self.report.extra_time_acked.append(gid)
            log.info("proctor %s: 补时 %s min (total %s) for session %s (grant %s)", self.room,
                     offered.get("minutes"), offered.get("total_min"), sid, gid)
        self.state["extra_time_ack"] = gid

    def _extra_s(self, sid: str) -> float:
        """Seconds the 补时 applied to session ``sid`` adds to its length (minutes / speed)."""
        return self.report.extra_time.get(sid, 0) * 60.0 / max(self.options.speed, 1e-6)

    def _session(self, session: Dict[str, Any]) -> None:
        sid = session["id"]
        people = [c for c in self.candidates if c.get("session") == sid]
        present = [c for c in people if self.rng.random() >= self.options.absent_rate] or people[:1]
        self.state = {"session": sid, "started": False, "ended": False, "candidates": len(people),
                      "logged_in": 0, "in_exam": 0}
        start = parse_time(session["start"], "start") if self.options.on_schedule else None
        if start is not None:
            self._phase("waiting", sid, session["start"])
            self._wait_for(start)
        self._phase("permit", sid)
        # waiting: candidates log in over time; ask for the permit until granted
        give_up = time.monotonic() + self.options.permit_timeout
        next_permit = 0.0
        while True:
            self.state["logged_in"] = min(len(present), self.state["logged_in"] + max(1, len(present) // 5))
            self._beat()
            if time.monotonic() >= next_permit:
                try:
                    self._call(self.client.permit, sid)
                    break
                except LanError as e:
                    if e.code != "E_PERMIT":
                        raise
                    self.report.permit_refusals += 1
                    if time.monotonic() >= give_up:
                        raise
                next_permit = time.monotonic() + self.options.permit_every
            self._pause(self._hb_interval())
        # the exam
        self.state.update(started=True, logged_in=len(present), in_exam=len(present))
        self._beat()
        self.report.started.append(sid)
        self.report.started_at[sid] = self.clock().isoformat()
        self._phase("in_exam", sid)
        base_end = time.monotonic() + self._length(session, start)
        end = base_end + self._extra_s(sid)
        silent = self.index < self.options.silent and not self.silenced
        self.silenced = self.silenced or silent
        outage = self.index < self.options.outage and not self.report.outages  # once a day
        outage_at = time.monotonic() + self.options.outage_after_s / max(self.options.speed, 1e-6)
        while time.monotonic() < end:
            if silent:
                silent = False
                log.info("proctor %s goes silent for %.1f s", self.room, self.options.silent_s)
                self._pause(self.options.silent_s)
                self.report.silent_s += self.options.silent_s
                continue
            if outage and time.monotonic() >= outage_at:
                outage = False
                self._outage(sid)
                continue
            pause = min(self._hb_interval(), max(0.0, end - time.monotonic()))
            if outage:
                pause = min(pause, max(0.0, outage_at - time.monotonic()))
            self._pause(pause)
            self._beat()
            end = base_end + self._extra_s(sid)
        self.state.update(ended=True, in_exam=0)
        self.report.ended_at[sid] = self.clock().isoformat()
        self._beat()
        self.report.ended.append(sid)
        self._phase("uploading", sid)
        self._upload(sid, people, present)
        self._phase("uploaded", sid)

    def _outage(self, sid: str) -> None:
        """The connection lost for ``outage_s`` simulated seconds: closed, nothing sent, then the
        next request reconnects (``ProctorClient`` re-binds the room with its token)."""
        seconds = self.options.outage_s / max(self.options.speed, 1e-6)
        log.info("proctor %s loses its connection for %.2f s (session %s)", self.room, seconds, sid)
        self.client.close()
        began = time.monotonic()
        try:
            self._pause(seconds)
        finally:
            self.report.outages += 1
            self.report.outage_real_s += time.monotonic() - began

    def _wait_for(self, start: datetime.datetime) -> None:
        """Heartbeat (candidates logging in) until the proctor's clock reaches ``start``."""
        present = self.state["candidates"]
        while True:
            left = (start - self.clock()).total_seconds()
            if left <= 0:
                return
            self.state["logged_in"] = min(present, self.state["logged_in"] + max(1, present // 10))
            self._beat()
            self._pause(min(left, self.client.heartbeat_s))

    def _length(self, session: Dict[str, Any], start: Optional[datetime.datetime]) -> float:
        """Seconds the session runs: ``duration_min`` / speed; on schedule not past its scheduled end."""
        minutes = float(session.get("duration_min", 90))
        length = minutes * 60.0 / max(self.options.speed, 1e-6)
        if start is None:
            return length
        left = (start + datetime.timedelta(minutes=minutes) - self.clock()).total_seconds()
        return min(length, left) if left > 0 else self.options.late_run_s

    def _package(self, sid: str, people: List[Dict[str, Any]], present: List[Dict[str, Any]]) -> str:
        ids = {id(c) for c in present}
        per = int(self.options.result_mb * MiB / max(1, len(present)))
        cands = []
        for c in sorted(people, key=lambda c: c.get("seat", 0)):
            answer = None
            if id(c) in ids:
                seed = hashlib.sha256("{}|{}|{}".format(self.options.seed, sid, c["ticket"]).encode()).digest()
                answer = (seed * (per // 32 + 1))[:max(per, 1)]
            cands.append({"ticket": c["ticket"], "subject": c.get("subject"),
                          "status": PRESENT if id(c) in ids else ABSENT, "answer": answer})
        data = build_result(site_code=self.site_code, room_code=self.room, session_id=sid,
                            created_at=datetime.datetime.now(CST), candidates=cands,
                            subjects=self.subjects.get(sid) or None)
        path = os.path.join(self.work_dir, "result-{}-{}.zip".format(self.room, sid))
        with open(path, "wb") as f:
            f.write(data)
        return path

    def _upload(self, sid: str, people: List[Dict[str, Any]], present: List[Dict[str, Any]]) -> None:
        if self.index < self.options.no_upload:
            log.info("proctor %s ends session %s without uploading its result (no_upload)", self.room, sid)
            return
        path = self._package(sid, people, present)
        if self.index < self.options.disconnect and not self.report.disconnected_upload:
            size = os.path.getsize(path)
            try:
                self.client.upload(path, sid, abort_after=size // 2)
            except LanError:
                self.report.disconnected_upload = True
                log.info("proctor %s dropped its upload of session %s half-way", self.room, sid)
        reply = self._call(self.client.upload, path, sid, pause=self._upload_pause)
        self.report.uploads.append({"session": sid, "sha256": reply["sha256"], "size": reply["size"]})
        os.remove(path)


class _Stopped(Exception):
    pass


class Simulation:
    """N proctors against one server (threads); see the module docstring."""

    def __init__(self, host: str, port: int, rooms: List[Dict[str, Any]], options: Optional[SimOptions] = None,
                 on_progress: Optional[Callable[[], None]] = None,
                 clock: Optional[Callable[[], datetime.datetime]] = None) -> None:
        self.host, self.port = host, int(port)
        self.options = options or SimOptions()
        self.stop_event = threading.Event()
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        work = self.options.work_dir
        if work is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kd-proctors-")
            work = self._tmp.name
        os.makedirs(work, exist_ok=True)
        own = self.options.own_address and is_loopback(host) and own_addresses_work()
        self.proctors = [Proctor(i, host, self.port, room, self.options, self.stop_event, work,
                                 address=loopback_address(i) if own else None, on_progress=on_progress, clock=clock)
                         for i, room in enumerate(rooms)]
        self.started_at = 0.0

    def start(self) -> "Simulation":
        self.started_at = time.monotonic()
        for p in self.proctors:
            p.start()
        return self

    def wait(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Wait for every proctor (at most ``timeout`` s in all) and return the report."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for p in self.proctors:
            p.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.report()

    def stop(self) -> None:
        self.stop_event.set()
        for p in self.proctors:
            p.join(10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def progress(self) -> List[Progress]:
        """Each proctor's ``Progress`` now (any thread)."""
        return [p.progress for p in self.proctors]

    def running(self) -> bool:
        return any(p.is_alive() for p in self.proctors)

    def report(self) -> Dict[str, Any]:
        rows = [p.report.as_dict() for p in self.proctors]
        failures = ["{}: {}".format(r["room"], r["error"] or "not finished") for r in rows if not r["done"]]
        failures += ["{}: wrong code was not refused".format(r["room"]) for r in rows
                     if r["wrong_code_refused"] is False]
        return {
            "rooms": len(rows),
            "registered": sum(r["registered"] for r in rows),
            "data_imported": sum(r["data_imported"] for r in rows),
            "sessions_started": sum(len(r["started"]) for r in rows),
            "sessions_ended": sum(len(r["ended"]) for r in rows),
            "uploads": sum(len(r["uploads"]) for r in rows),
            "results": [dict(u, room=r["room"]) for r in rows for u in r["uploads"]],
            "wrong_code_refused": sum(1 for r in rows if r["wrong_code_refused"]),
            "silent": sum(1 for r in rows if r["silent_s"]),
            "outages": sum(r["outages"] for r in rows),
            "disconnected_uploads": sum(1 for r in rows if r["disconnected_upload"]),
            "permit_refusals": sum(r["permit_refusals"] for r in rows),
            "extra_time_acked": sum(len(r["extra_time_acked"]) for r in rows),
            "reconnects": sum(r["reconnects"] for r in rows),
            "storage_retries": sum(r["storage_retries"] for r in rows),
            "upload_retries": sum(r["upload_retries"] for r in rows),
            "seconds": round(time.monotonic() - self.started_at, 2) if self.started_at else 0.0,
            "failures": failures,
            "ok": not failures,
        }


if __name__ == "__main__":
    from kd.lan.simcli import main as _main

    sys.exit(_main())
