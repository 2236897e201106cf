"""The drill (演练): a whole exam day on one machine, with real sockets and real files.

    python3 main.py drill --rooms N [--candidates C] [--result-mb M] [--sessions S]
                          [--mode mock|formal] [--json] [--keep] [--timeout SECONDS]
                          [--no-upload K] [--outage K] [--skew K]

``run_drill(DrillOptions(...), work_dir)`` does, in a fresh work folder (``work_dir``;
``main.py`` makes a temp folder), the manual's exam day end to end:

1. ``kd.site.open_site`` in drill mode over ``WORK/data`` (the platform simulator in
   ``WORK/data/drill/platform``, sized by the options, every session starting within
   the next hour; the gate's dongle emulator with the simulator's dongle identity; the
   LAN service on 127.0.0.1, port 0, with the production per-address cap (8): each
   proctor connects from its own loopback address, ``kd.lan.simulator.loopback_address``;
   only where the system cannot bind those, macOS, the cap is raised);
2. first login ``admin/888`` → 修改密码 → 系统设置 (the drill platform's site code, mode);
3. 导入考务 online; 导出考点信息 to ``WORK/usb`` (HTML sheet + KDINFO);
4. N simulated proctors (``kd.lan.simulator.Simulation``, codes from the KDINFO) register
   and import their room data over the LAN; the drill waits until every room did;
5. 考试授权 (every session) → 封场检测 (must pass) → 机考锁校时 through the platform
   (``Site.sync_lock``), once, before the first session;
6. session by session, as the administrator's day goes: 授权验证 of the session (step
   ``verify_<id>``; a later session's verification uses the same sync, which lies within
   the hour before its start: ``schedule``), then the proctors get their start permits,
   run the session (accelerated: it lasts about ``session_s`` seconds), end it and upload
   their results over the LAN (step ``session_<id>``: every room's result of the session
   received); the proctors of a later session ask for its permit, refused, until it is
   verified; ``run_sessions`` waits for the proctors' day to end; ``recover`` checks every
   expected (room, session) is recovered (数据回收), its spooled file hashing to what the
   proctor sent;
7. 考后上报: 备份到外部存储 (``WORK/external``), then 上报 to the platform;
8. on the platform simulator's side: every expected result arrived, committed, its bytes
   hashing to the recovered file's SHA-256; every receipt (the platform's and the one
   kept by the site) verifies against the platform key; the seal check and one
   upload-status report per session were received;
9. the completeness proofs (``kd.drillproof``, step ``proofs``): each session's
   考点数据完整性证明 verifies locally (the exported file, ``WORK/proofs``) and at the
   simulator (its verdict of the proof the upload status carried), and its copy on the
   external drive is the same file. ``--no-upload K`` (``DrillOptions.no_upload``): the
   first K proctors never upload; the day goes on without their rooms and ends ``ok:
   false``, its failures naming the rooms, the proof's failing check among them.

The watch over the exam (``kd.drillwatch``, issue 15): ``--outage K``: the first K proctors
lose their connection for a simulated 90 s mid-exam; the drill confirms each outage the
site drafts and grants its 补时 on site (in ``session_<id>``), the proctors honour it.
``--skew K``: the first K proctors' clocks run 5 minutes ahead. The drill site's watch is
scaled by the proctors' speed (20 with ``--outage``; docs/timeline.md §6). After
``run_sessions`` what the site raised is checked against what was injected (failures
``outage: …`` / ``skew: …``; ``expect_outage`` / ``expect_skew``: another expectation).

Every step and check is waited on with deadlines (events and conditions, no fixed
sleeps). The report (``run_drill`` returns it; ``--json`` prints it as one line)::

    {"ok": true, "rooms": 10, "sessions": 1, "candidates": 20, "mode": "mock",
     "results_expected": 10, "results_received": 10, "results_uploaded": 10,
     "results_at_platform": 10, "receipts_verified": 20, "proofs_verified": 1,
     "proof_files": ["WORK/proofs/考点数据完整性证明(11003-1).json"], "reports": {"seal_check": 1, ...},
     "proctors": {...the simulator's counts...}, "seconds": 7.9,
     "time_scale": 1.0, "injected": {"outage": 0, "skew": 0}, "alarms": {"overdue": 2},
     "incidents": [], "extra_time_granted": [], "clock_skew_max_s": 0.0,
     "steps": [{"step": "login", "ok": true, "seconds": 0.31}, ...],
     "failures": [], "work_dir": null}

The watch's fields (``kd.drillwatch`` documents them; ``--outage 2 --skew 2``: ``"alarms":
{"room_lost": 2, "clock_skew": 2}``, two ``outage`` incidents of ``lost_min`` ≈ 1.5, two
grants of 2 minutes, ``"clock_skew_max_s": 300.0``).
``proofs_verified`` counts the sessions whose proof verified both locally and at the
simulator; ``proof_files`` lists the exported proofs (empty unless the folder is kept).
``failures`` lists every failed check (a failed step stops the day; the checks after the
uploads are all made). ``work_dir`` is the kept work folder (``--keep``, or any failure),
else null. ``main.py drill`` exits 0 only when ``failures`` is empty, else 1.
"""

import argparse
import functools
import logging
import os
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from kd.core import names

log = logging.getLogger(__name__)

ACTOR = "admin"
INITIAL_PASSWORD = "888"  # noqa: S105 - the manual's documented initial password
DRILL_PASSWORD = "drill-2026"  # noqa: S105 - a throwaway password of a throwaway data folder
HOST = "127.0.0.1"


class DrillOptions(NamedTuple):
    rooms: int = 10
    candidates: int = 20
    result_mb: float = 0.05
    sessions: int = 1
    mode: str = "mock"
    site_code: str = "11003"
    room_kb: int = 64
    #: how long one accelerated session lasts for the proctors (seconds)
    session_s: float = 0.5
    #: minutes from now to the first session's start
    first_start_in: int = 10
    #: the whole day must finish within this many seconds
    timeout: float = 300.0
    #: the first K proctors never upload their results: the day goes on without them and ends
    #: ``ok: false``, the completeness proof naming their rooms (kd.drillproof)
    no_upload: int = 0
    #: the first K proctors lose their connection for a simulated 90 s mid-exam (kd.drillwatch)
    outage: int = 0
    #: the first K proctors' clocks are 5 minutes ahead (kd.drillwatch)
    skew: int = 0
    #: what the watch's checks expect (None: what was injected); a test's way to show a mismatch fails
    expect_outage: Optional[int] = None
    expect_skew: Optional[int] = None


DEFAULTS = DrillOptions()


class DrillFailed(Exception):
    """A step could not be done; the day stops there (its message is the failed check)."""


def schedule(sessions: int, first_start_in: int) -> Tuple[int, int]:
    """(duration, gap) in minutes so every session starts within the hour (授权验证 needs a
    sync within the hour before each start): sessions follow each other back to back."""
    step = max(1, (55 - first_start_in) // max(1, sessions))
    duration = min(step, 30)
    return duration, step - duration


class Drill:
    """One run of the drill (see the module docstring); ``run()`` returns the report."""

    def __init__(self, options: DrillOptions, work_dir: str) -> None:
        self.options = options
        self.work = os.path.abspath(work_dir)
        self.data_dir = os.path.join(self.work, "data")
        self.usb = os.path.join(self.work, "usb")
        self.external = os.path.join(self.work, "external")
        self.site: Any = None
        self.sim: Any = None
        self.started = 0.0
        self.deadline = 0.0
        self.steps: List[Dict[str, Any]] = []
        self.failures: List[str] = []
        self.counts: Dict[str, Any] = {"results_expected": 0, "results_received": 0, "results_uploaded": 0,
                                       "results_at_platform": 0, "receipts_verified": 0}
        self.reports: Dict[str, int] = {}
        self.proctors: Dict[str, Any] = {}
        self.sessions: List[str] = []
        self.expected: List[Tuple[str, str]] = []
        self.recovered: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self.proctor_results: Dict[Tuple[str, str], Dict[str, Any]] = {}
        #: the rooms whose proctors never upload (``no_upload``)
        self.no_upload: List[str] = []
        #: the completeness proofs (kd.drillproof): proofs_verified, proof_files, ...
        self.proofs: Dict[str, Any] = {}
        #: the watch over the exam (kd.drillwatch.Watch) and its report fields, read before the site closes
        self.watch: Any = None
        self.watch_fields: Dict[str, Any] = {}

    # -- plumbing ------------------------------------------------------------------------------
    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def fail(self, message: str) -> None:
        log.warning("drill check failed: %s", message)
        self.failures.append(message)

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run one step; a ``DrillFailed`` or any error is recorded and re-raised as ``DrillFailed``."""
        t0 = time.monotonic()
        ok = False
        try:
            value = fn()
            ok = True
            return value
        except DrillFailed as e:
            self.fail("{}: {}".format(name, e))
            raise
        except Exception as e:  # noqa: BLE001 - every failure is a reported check, the day stops
            cause = getattr(e, "cause", None) or str(e) or type(e).__name__
            log.warning("drill step %s failed", name, exc_info=True)
            self.fail("{}: {}: {}".format(name, type(e).__name__, cause))
            raise DrillFailed(cause) from e
        finally:
            self.steps.append({"step": name, "ok": ok, "seconds": round(time.monotonic() - t0, 3)})

    def wait(self, what: str, condition: Callable[[], bool], sub: Any, timeout: Optional[float] = None) -> None:
        """Wait until ``condition()`` holds, re-checking on each hub event of ``sub`` (and
        at least every 0.2 s); ``DrillFailed`` naming ``what`` at the deadline."""
        end = time.monotonic() + min(self.left(), timeout if timeout is not None else self.left())
        while not condition():
            left = end - time.monotonic()
            if left <= 0:
                raise DrillFailed("timed out waiting for " + what)
            sub.get(min(left, 0.2))

    # -- the day -------------------------------------------------------------------------------
    def run(self) -> Dict[str, Any]:
        self.started = time.monotonic()
        self.deadline = self.started + self.options.timeout
        try:
            self._day()
        except DrillFailed:
            pass
        finally:
            self._shutdown()
        return self.report()

    def _day(self) -> None:
        self.step("start", self._start)
        core = self.site.core
        self.step("login", self._login)
        self.step("setup", lambda: core.accounts.setup(self.site.simulator.site_code, self.options.mode, ACTOR))
        self.step("load", self._load)
        kdinfo = self.step("export_site_info", lambda: core.registration.export_site_info(
            self.usb, ACTOR, HOST, self.site.lan.port())["kdinfo"])
        self.step("register_rooms", lambda: self._proctors(kdinfo))
        self.step("authorize", lambda: core.authorization.authorize_online(None, ACTOR))
        self.step("seal_check", self._seal_check)
        self.step("sync_lock", self.site.sync_lock)
        for sid in self.sessions:
            self.step("verify_" + sid, functools.partial(core.verification.verify_online, sid, ACTOR))
            self.step("session_" + sid, functools.partial(self._session_results, sid))
        self.step("run_sessions", self._run_sessions)
        self.step("recover", self._recover)
        self.step("backup_external", lambda: core.upload.backup_external(self.external, ACTOR))
        self.step("upload", self._upload)
        self.step("platform_check", self._platform_check)
        from kd import drillproof  # noqa: PLC0415

        self.step("proofs", functools.partial(drillproof.check_proofs, self))

    def _start(self) -> None:
        from kd.site import LanOptions, open_site  # noqa: PLC0415

        o = self.options
        for folder in (self.data_dir, self.usb, self.external):
            os.makedirs(folder, exist_ok=True)
        from kd.drillwatch import schedule_of  # noqa: PLC0415

        duration, gap = schedule_of(o)  # ``schedule``'s; shorter sessions with outages
        site = {"site_code": o.site_code, "rooms": o.rooms, "sessions": o.sessions, "candidates": o.candidates,
                "first_start_in": o.first_start_in, "duration": duration, "gap": gap, "room_kb": o.room_kb}
        from kd.lan.simulator import own_addresses_work  # noqa: PLC0415

        per_ip = LanOptions().max_per_ip if own_addresses_work() else 2 * o.rooms + 8
        lan = LanOptions(host=HOST, port=0, max_per_ip=per_ip, max_connections=max(512, 4 * o.rooms + 64))
        self.site = open_site(self.data_dir, lan=lan, ticks=True, tick_s=0.2, probe_s=30.0, drill_site=site)
        if not self.site.drill:
            raise DrillFailed("the app did not start in drill mode")
        from kd import drillwatch  # noqa: PLC0415

        self.watch = drillwatch.start(self, drillwatch.speed_of(o))

    def _login(self) -> None:
        accounts = self.site.core.accounts
        if not accounts.login(ACTOR, INITIAL_PASSWORD)["must_change"]:
            raise DrillFailed("the initial password was not marked for change")
        accounts.change_password(ACTOR, INITIAL_PASSWORD, DRILL_PASSWORD, DRILL_PASSWORD)
        if accounts.login(ACTOR, DRILL_PASSWORD)["must_change"]:
            raise DrillFailed("the changed password still has to be changed")

    def _load(self) -> None:
        from kd.core.recovery import RecoveryService  # noqa: PLC0415

        self.site.core.loading.load_online(ACTOR)
        manifest = self.site.ctx.manifest()
        rooms = len(manifest["rooms"])
        if rooms != self.options.rooms:
            raise DrillFailed("the package holds {} rooms, not {}".format(rooms, self.options.rooms))
        self.sessions = [s["id"] for s in manifest["sessions"]]
        self.expected = list(RecoveryService.expected_pairs(manifest))
        self.counts["results_expected"] = len(self.expected)

    def _proctors(self, kdinfo_path: str) -> None:
        from kd.lan.simulator import SimOptions, Simulation, rooms_from_site_info  # noqa: PLC0415

        o = self.options
        rooms = rooms_from_site_info(kdinfo_path, o.rooms)
        from kd.drillwatch import sim_fields, speed_of  # noqa: PLC0415

        sim_options = SimOptions(result_mb=o.result_mb, speed=speed_of(o),
                                 permit_every=0.05, permit_timeout=o.timeout, connect_timeout=30.0,
                                 timeout=30.0, work_dir=os.path.join(self.work, "proctors"), own_address=True,
                                 no_upload=o.no_upload, **sim_fields(o))
        self.no_upload = [r["code"] for r in rooms[:o.no_upload]]
        registration = self.site.core.registration
        sub = self.site.hub.subscribe([names.ROOM_REGISTERED, names.ROOM_DATA_IMPORTED])
        try:
            self.sim = Simulation(HOST, self.site.lan.port(), rooms, sim_options).start()

            def imported() -> bool:
                rows = registration.snapshot()["rooms"]
                if all(r.get("data_imported") for r in rows):
                    return True
                if not any(p.is_alive() for p in self.sim.proctors):
                    raise DrillFailed("proctors stopped: {}".format("; ".join(self.sim.report()["failures"])))
                return False

            self.wait("every room registered with its data imported", imported, sub)
        finally:
            sub.close()

    def _seal_check(self) -> None:
        result = self.site.core.seal.run(ACTOR)
        if not result["passed"]:
            failed = ["{}: {}".format(i["id"], i["detail"]) for i in result["items"] if i["status"] == "fail"]
            raise DrillFailed("the seal check did not pass ({})".format("; ".join(failed)))

    def _session_results(self, sid: str) -> None:
        """Wait until every expected room's result of session ``sid`` is received (数据回收)."""
        from kd.core import model  # noqa: PLC0415

        wanted = {room for room, session in self.expected if session == sid} - set(self.no_upload)
        runtime = self.site.ctx.stores.runtime
        sub = self.site.hub.subscribe([names.RESULTS_RECEIVED, names.INCIDENT_UPDATED, names.INCIDENT_DRAFTED])
        try:
            def received() -> bool:
                self.watch.handle()  # the administrator's part: an outage drafted → confirmed, 补时 granted
                got = {d["room"] for d in runtime.all(model.ROOM_SESSIONS) if d["session"] == sid and d.get("result")}
                if wanted <= got:
                    return True
                if not any(p.is_alive() for p in self.sim.proctors):
                    raise DrillFailed("proctors stopped: {}".format("; ".join(self.sim.report()["failures"])))
                return False

            self.wait("every room's result of session {}".format(sid), received, sub)
        finally:
            sub.close()

    def _run_sessions(self) -> None:
        report = self.sim.wait(self.left())
        self.proctors = {k: v for k, v in report.items() if k not in ("results", "failures", "ok")}
        if not report["ok"]:
            raise DrillFailed("proctors failed: {}".format("; ".join(report["failures"])))
        self.proctor_results = {(r["room"], r["session"]): r for r in report["results"]}
        from kd.drillwatch import finish  # noqa: PLC0415

        finish(self)  # what the site saw of the injected outages and skews (failures, the day goes on)

    def _recover(self) -> None:
        from kd.core import model  # noqa: PLC0415

        ctx = self.site.ctx
        docs = {(d["room"], d["session"]): d for d in ctx.stores.runtime.all(model.ROOM_SESSIONS)
                if d.get("result")}
        for pair in self.expected:
            doc = docs.get(pair)
            sent = self.proctor_results.get(pair)
            if doc is None:
                self.fail("recover: no result for room {} session {}".format(*pair))
            elif sent is None or doc["result"]["sha256"] != sent["sha256"]:
                self.fail("recover: room {} session {} holds another file than the proctor sent".format(*pair))
            elif doc["result"].get("source") != "lan":
                self.fail("recover: room {} session {} was not recovered over the LAN".format(*pair))
            elif not ctx.spool.verify(doc["result"]["sha256"]):
                self.fail("recover: the spooled file of room {} session {} does not hash".format(*pair))
            else:
                self.recovered[pair] = doc["result"]
        self.counts["results_received"] = len(self.recovered)
        if self.no_upload:  # their rooms are missing on purpose (each a failure above): the day goes on
            return
        if not self.site.core.recovery.all_recovered():
            raise DrillFailed("数据回收 does not show every room recovered")
        if len(self.recovered) != len(self.expected):
            raise DrillFailed("{} of {} results recovered intact".format(len(self.recovered), len(self.expected)))

    def _upload(self) -> None:
        result = self.site.core.upload.upload(None, ACTOR)
        self.counts["results_uploaded"] = len(result["uploaded"]) + result["already"]
        if [p for p in result["not_recovered"] if p["room"] not in self.no_upload]:
            raise DrillFailed("not recovered at upload: {}".format(result["not_recovered"]))

    def _platform_check(self) -> None:
        import base64  # noqa: PLC0415

        from kd.core import model  # noqa: PLC0415
        from kd.formats.documents import load_upload_receipt  # noqa: PLC0415
        from kd.formats.signing import TrustedKeys  # noqa: PLC0415

        sim = self.site.simulator
        trusted = TrustedKeys()
        trusted.add(sim.public_key)
        site = sim.site_code
        committed = {(u["room_code"], u["session"]): u for u in sim.received()["uploads"]
                     if u.get("state") == "committed"}
        arrived = verified = 0
        for pair, res in sorted(self.recovered.items()):
            room, sid = pair
            upload = committed.get(pair)
            if upload is None:
                self.fail("platform: no committed upload of room {} session {}".format(room, sid))
                continue
            if upload["sha256"] != res["sha256"] or upload["size"] != res["size"] \
                    or sim.uploads.hash_of(upload["upload_id"]) != res["sha256"]:
                self.fail("platform: the upload of room {} session {} does not hash as recovered".format(room, sid))
                continue
            arrived += 1
            doc = self.site.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(room, sid)) or {}
            kept = (doc.get("upload") or {}).get("receipt")
            for source, raw in (("platform", upload.get("receipt", "").encode("utf-8")),
                                ("site", base64.b64decode(kept) if kept else b"")):
                try:
                    load_upload_receipt(raw, trusted, site, session_id=sid, room_code=room,
                                        sha256=res["sha256"], size=res["size"])
                    verified += 1
                except Exception as e:  # noqa: BLE001 - a receipt that does not verify is a failed check
                    self.fail("platform: the {} receipt of room {} session {} does not verify: {}".format(
                        source, room, sid, getattr(e, "cause", e)))
        self.counts["results_at_platform"] = arrived
        self.counts["receipts_verified"] = verified
        # the reports go through the outbox (a background sender): wait for them
        wanted = {"seal_check": 1, "upload_status": len(self.sessions)}
        sub = self.site.hub.subscribe([names.OUTBOX_SENT, names.OUTBOX_FAILED, names.OUTBOX_DEFERRED])
        try:
            def reports_in() -> bool:
                self.reports = {}
                for line in sim.reports.all():
                    kind = line["report"].get("kind")
                    self.reports[kind] = self.reports.get(kind, 0) + 1
                return all(self.reports.get(k, 0) >= n for k, n in wanted.items())

            try:
                self.wait("the reports at the platform", reports_in, sub, timeout=30.0)
            except DrillFailed as e:
                self.fail("platform: {} (received {})".format(e, self.reports))
        finally:
            sub.close()

    def _shutdown(self) -> None:
        if self.watch is not None:
            self.watch_fields = self.watch.fields_quietly()
        if self.sim is not None:
            self.sim.stop()
        if self.site is not None:
            try:
                self.site.close()
            except Exception as e:  # noqa: BLE001 - reported, the report still comes out
                log.exception("drill: stopping the app failed")
                self.fail("stop: {}: {}".format(type(e).__name__, e))

    def report(self) -> Dict[str, Any]:
        o = self.options
        out: Dict[str, Any] = {"ok": not self.failures, "rooms": o.rooms, "sessions": o.sessions,
                               "candidates": o.candidates, "mode": o.mode}
        out.update(self.counts)
        out.update(self.proofs)
        from kd.drillwatch import empty_fields  # noqa: PLC0415

        out.update(self.watch_fields or empty_fields(o))
        out.update({"reports": self.reports, "proctors": self.proctors,
                    "seconds": round(time.monotonic() - self.started, 2), "steps": self.steps,
                    "failures": list(self.failures), "work_dir": None})
        missing = self.counts["results_expected"] - min(self.counts["results_received"],
                                                        self.counts["results_uploaded"],
                                                        self.counts["results_at_platform"])
        if not self.counts["results_expected"] or missing or \
                self.counts["receipts_verified"] != 2 * self.counts["results_expected"]:
            if not self.failures:
                out["failures"].append("results missing: {}".format(
                    {k: v for k, v in self.counts.items()}))
            out["ok"] = False
        return out


def run_drill(options: DrillOptions, work_dir: str) -> Dict[str, Any]:
    """Run the drill in ``work_dir`` (made if missing; not removed) and return its report."""
    os.makedirs(work_dir, exist_ok=True)
    return Drill(options, work_dir).run()


# --- python3 main.py drill (kd.drillcli) ------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``drill`` to ``main.py``'s subcommands (``kd.drillcli``)."""
    from kd import drillcli  # noqa: PLC0415 - it imports this module

    return drillcli.add_parser(subparsers)


def run_cli(opts: argparse.Namespace, work_dir: str) -> int:
    """``main.py drill`` (``kd.drillcli.run_cli``)."""
    from kd import drillcli  # noqa: PLC0415

    return drillcli.run_cli(opts, work_dir)
