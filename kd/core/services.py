"""``Core``: one instance of every chapter service over one ``Context``, siblings handed in.

Services keep in-memory state (registration rate limits, login back-off of unknown
names, live heartbeats, the recovery plan, the outbox sender), so a running site must
use one of each: the UI, the LAN server and the CLI all go through the same ``Core``
(``kd.site.open_site`` builds it). Here, and only here, each service is constructed, and
a service that needs another gets it as a constructor argument; no service builds a
sibling of its own.

``start()`` / ``stop(timeout)`` run the core's own thread (the outbox sender); the
monitor's and the timeline's ``tick()`` are driven by ``kd.site``.

    考前/考务管理   loading (导入考务), registration (考场注册), authorization (考试授权),
                    seal (封场检测), verification (授权验证)
    考中/考场管理   monitor (考场监控 + automatic reports)
    考后/数据回收   recovery (数据回收), upload (考后上报)
    考中/时间线     timeline (考点时间线: deadlines and alarms)
    更多            accounts (登录, 参数设置, 修改密码), backup (系统备份),
                    system (初始化, 模考转正考, the exit rule), restore (系统恢复)
    考中/考场情况   incidents (考场情况记录: drafted and by hand), extra_time (补时)
    考后/完整性证明 proof (考点数据完整性证明: preview, build, sign, keep, export, verify)
    考前 header     steps (the five steps' ✓/✗ and why: ``core.steps.marks()``)
    状态栏          status (LAN, dongle, platform probe; 机考锁校时 from this PC)
"""

import logging

from kd.core import names
from kd.core.accounts import AccountService
from kd.core.authorization import AuthorizationService
from kd.core.backup import BackupService
from kd.core.clockskew import ClockSkew
from kd.core.context import Context
from kd.core.extratime import ExtraTimeService
from kd.core.incidentreport import EVENTS as INCIDENT_REPORT_EVENTS
from kd.core.incidentreport import IncidentReporter
from kd.core.incidents import IncidentService
from kd.core.loading import LoadingService
from kd.core.monitor import MonitorService
from kd.core.outbox import Outbox
from kd.core.proof import ProofService
from kd.core.proofflow import ProofFlow
from kd.core.recovery import RecoveryService
from kd.core.registration import RegistrationService
from kd.core.restore import RestoreService
from kd.core.seal import SealCheckService
from kd.core.status import StatusService
from kd.core.steps import StepMarksService
from kd.core.system import SystemService
from kd.core.timeline import TimelineService
from kd.core.upload import UploadService
from kd.core.verification import VerificationService
from kd.events import Event

log = logging.getLogger(__name__)


class Core:
    """Every service of one site, each built once (see the module docstring)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.outbox = Outbox(ctx)
        self.accounts = AccountService(ctx)
        self.backup = BackupService(ctx, self.accounts)
        self.restore = RestoreService(ctx, self.accounts)
        self.system = SystemService(ctx, accounts=self.accounts, backup=self.backup, restorer=self.restore)
        self.loading = LoadingService(ctx)
        self.monitor = MonitorService(ctx, self.outbox)
        self.registration = RegistrationService(ctx, loading=self.loading, connected=self.monitor.connected)
        self.authorization = AuthorizationService(ctx, loading=self.loading)
        self.seal = SealCheckService(ctx, self.outbox)
        self.verification = VerificationService(ctx)
        self.recovery = RecoveryService(ctx, self.outbox)
        #: the 考前 step header's ✓/✗, computed once per change (kd.core.steps)
        self.steps = StepMarksService(ctx, self)
        self.status = StatusService(ctx)
        #: 考场情况记录 and 补时 (kd.core.incidents, kd.core.extratime); ``incidents.tick()`` drafts
        self.incidents = IncidentService(ctx, self.monitor, on_room_ended=self._room_ended)
        self.extra_time = ExtraTimeService(ctx, self.incidents)
        #: the ``incidents`` report of each ended session, once per version (kd.core.incidentreport)
        self.incident_report = IncidentReporter(ctx, self.outbox, self.incidents, self.extra_time)
        for name in INCIDENT_REPORT_EVENTS:
            ctx.hub.on(name, self.incident_report.on_event)
        #: 考点数据完整性证明 per session (kd.core.proof, docs/formats.md)
        self.proof = ProofService(ctx, self.incidents, self.extra_time)
        #: 考后上报; after the receipts, each session's proof built, sent, copied (kd.core.proofflow)
        self.upload = UploadService(ctx, self.outbox, recovery=self.recovery, proofs=ProofFlow(ctx, self.proof))
        #: each room's clock against the site's, from its heartbeats (kd.core.clockskew; in memory)
        self.clock_skew = ClockSkew()
        #: 考点时间线 and its alarms (kd.core.timeline); its ``tick()`` is driven by ``kd.site``
        self.timeline = TimelineService(ctx, self.monitor, skew=self.clock_skew)
        # a revoked room is disconnected at once, not after its missed heartbeats
        ctx.hub.on(names.REGISTRATION_REVOKED, lambda event: self.monitor.forget(event.data["room"]))
        ctx.hub.on(names.REGISTRATION_REVOKED, lambda event: self.clock_skew.forget(event.data["room"]))
        ctx.hub.on(names.REGISTRATION_RESTORED, self._forget_reset)

    def _forget_reset(self, event: Event) -> None:
        """恢复注册 reset these rooms' registrations: they are disconnected at once."""
        for room in event.data["reset"]:
            self.monitor.forget(room)

    def _room_ended(self, room: str, session: str) -> None:
        """A room ended outside its heartbeats (a stale room marked 已结束): the monitor reads the
        ended rooms again, so that the session can close and its report go out."""
        with self.monitor._lock:  # noqa: SLF001 - the monitor re-reads its persisted transitions
            self.monitor._loaded = False  # noqa: SLF001

    def start(self) -> "Core":
        """Start the outbox sender (idempotent); first enqueue an ``incidents`` report a crash left out."""
        try:
            self.incident_report.tick()
        except Exception:  # noqa: BLE001 - the catch-up must not keep the site from starting
            log.exception("incidents report catch-up failed")
        self.outbox.start()
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the outbox sender, waiting up to ``timeout`` seconds; True when it ended."""
        thread = self.outbox._thread  # noqa: SLF001 - the sender's thread, to tell whether it ended
        self.outbox.stop(timeout)
        return thread is None or not thread.is_alive()
