"""Every event name: the hub's events and the audit log's actions, one constant each.

A state change of the core is recorded with ``ctx.record(actor, NAME, **details)``: one
audit line whose ``action`` is ``NAME`` and one hub event of the same name (views and
tests listen to them). The convention is ``noun.verb_past`` (``room.registered``,
``results.uploaded``), lower case, words joined by ``_``. The audit log keeps the names
it was written with: a log from before this naming (``package_loaded``,
``room_registered``...: ``RENAMED`` maps each old name to its new one) still verifies, its
hash chain does not depend on the names.

One name keeps its older form because a document names it for the command line:
``account.login`` (docs/operations.md: a right password is audited as ``account.login``).

Events that other layers publish are listed too (the publishers own them): the audit log's
own entries (``kd.store.audit``), the dongle (``kd.lock.driver``), the LAN service
(``kd.lan``), the platform probe (``kd.site``). ``hub.publish`` only events
(not audited) are marked "event only".
"""

from typing import Dict, FrozenSet

# -- 导入考务 ------------------------------------------------------------------------------------
PACKAGE_LOADED = "package.loaded"

# -- 考场注册 ------------------------------------------------------------------------------------
ROOM_REGISTERED = "room.registered"
ROOM_DATA_IMPORTED = "room.data_imported"
REGISTRATION_FAILED = "registration.failed"  # a wrong code (audited once per window)
REGISTRATION_BLOCKED = "registration.blocked"  # too many wrong codes
REGISTRATION_CONFLICTED = "registration.conflicted"  # registered from another address
REGISTRATION_REVOKED = "registration.revoked"
REGISTRATION_RESTORED = "registration.restored"  # 恢复注册
SITE_INFO_EXPORTED = "site_info.exported"

# -- 考试授权 / 授权验证 -----------------------------------------------------------------------------
SESSION_AUTHORIZED = "session.authorized"
SESSION_VERIFIED = "session.verified"
SEAL_CHECKED = "seal.checked"  # 封场检测

# -- 考场监控 ------------------------------------------------------------------------------------
ROOM_PERMITTED = "room.permitted"
ROOM_STARTED = "room.started"
ROOM_STARTED_UNPERMITTED = "room.started_unpermitted"
ROOM_ENDED = "room.ended"
ROOM_END_REFUSED = "room.end_refused"
SESSION_STARTED = "session.started"  # every room started: the session_started report enqueued
SESSION_ENDED = "session.ended"  # every room ended: the session_ended report enqueued

# -- 考点时间线 (kd.core.timeline) -------------------------------------------------------------------
ALARM_OPENED = "alarm.opened"  # an item became 逾期, or a room was lost during the exam
ALARM_CLOSED = "alarm.closed"  # its item completed, or the room came back / ended

# -- 考场情况记录 / 补时 (kd.core.incidents, kd.core.extratime) ------------------------------------
INCIDENT_RECORDED = "incident.recorded"  # added by hand (or by marking a stale room ended)
INCIDENT_DRAFTED = "incident.drafted"  # drafted from what the site saw
INCIDENT_UPDATED = "incident.updated"  # a drafted outage got its end
INCIDENT_CONFIRMED = "incident.confirmed"
INCIDENT_DISMISSED = "incident.dismissed"
EXTRA_TIME_GRANTED = "extra_time.granted"  # 补时 approved: the room's expected end shifted
EXTRA_TIME_ACKNOWLEDGED = "extra_time.acknowledged"  # the proctor machine took it

# -- 数据回收 / 考后上报 -----------------------------------------------------------------------------
RESULTS_RECEIVED = "results.received"
RESULTS_CONFLICTED = "results.conflicted"  # another result for a recovered room: refused
RESULTS_ALL_RECOVERED = "results.all_recovered"
RESULTS_BACKED_UP = "results.backed_up"  # 备份到外部存储
RESULTS_BACKUP_VERIFIED = "results.backup_verified"
RESULTS_BACKUP_INVALIDATED = "results.backup_invalidated"
RESULTS_UPLOADED = "results.uploaded"
RESULTS_UPLOAD_INTERRUPTED = "results.upload_interrupted"
PROOF_SIGNED = "proof.signed"  # 考点数据完整性证明 built, signed by the dongle and kept (kd/core/proof.py)
PROOF_EXPORTED = "proof.exported"  # a copy written to a folder
PROOF_COPIED = "proof.copied"  # the copy next to the external backup, read back (kd/core/proofflow.py)

# -- the outbox ----------------------------------------------------------------------------------
OUTBOX_ENQUEUED = "outbox.enqueued"
OUTBOX_SENT = "outbox.sent"
OUTBOX_FAILED = "outbox.failed"
OUTBOX_RETRIED = "outbox.retried"
OUTBOX_DEFERRED = "outbox.deferred"  # event only: a retryable failure (an outage would flood the log)

# -- 更多: accounts and the system ------------------------------------------------------------------
ACCOUNT_LOGIN = "account.login"  # the older form, kept: docs/operations.md names it
ACCOUNT_LOGIN_FAILED = "account.login_failed"
ACCOUNT_LOGIN_NOT_RECORDED = "account.login_not_recorded"
ACCOUNT_PASSWORD_CHANGED = "account.password_changed"  # noqa: S105 - an event name
ACCOUNT_PASSWORD_CHANGE_FAILED = "account.password_change_failed"  # noqa: S105 - an event name
SYSTEM_SET_UP = "system.set_up"  # 系统设置
SYSTEM_BACKED_UP = "system.backed_up"  # 系统备份
SYSTEM_RESTORED = "system.restored"  # 系统恢复
SYSTEM_CONVERTED_TO_FORMAL = "system.converted_to_formal"  # 模考转正考
SYSTEM_INITIALIZED = "system.initialized"  # 系统初始化
LAN_ADDRESS_CHANGED = "system.lan_address_changed"  # 考点机地址 chosen in the status bar (kd/core/status.py)
STORE_REPAIRED = "store.repaired"  # repair-db (kd.cli.repair)

# -- published by other layers ---------------------------------------------------------------------
AUDIT_TORN_TAIL_SEALED = "audit.torn_tail_sealed"  # kd.store.audit
AUDIT_ROTATED = "audit.rotated"
AUDIT_CAPPED = "audit.capped"
LOCK_ATTACHED = "lock.attached"  # kd.lock.driver (event only)
LOCK_DETACHED = "lock.detached"
NET_STATUS = "net.status"  # kd.site: the platform probe (event only)
LAN_STARTED = "lan.started"  # kd.lan (events only)
LAN_STOPPED = "lan.stopped"
LAN_REFUSED = "lan.refused"
LAN_CONNECTED = "lan.connected"
LAN_CLOSED = "lan.closed"
LAN_UPLOAD = "lan.upload"  # progress of a result upload
LAN_COMMITTED = "lan.committed"
LAN_COMMIT_FAILED = "lan.commit_failed"
LAN_PART_REMOVED = "lan.part_removed"

#: the names the audit log was written with before this naming → the name now
RENAMED: Dict[str, str] = {
    "package_loaded": PACKAGE_LOADED,
    "room_registered": ROOM_REGISTERED,
    "room_data_imported": ROOM_DATA_IMPORTED,
    "registration_failed": REGISTRATION_FAILED,
    "registration_blocked": REGISTRATION_BLOCKED,
    "registration_conflict": REGISTRATION_CONFLICTED,
    "registration_revoked": REGISTRATION_REVOKED,
    "registration_restored": REGISTRATION_RESTORED,
    "site_info_exported": SITE_INFO_EXPORTED,
    "session_authorized": SESSION_AUTHORIZED,
    "verification.verified": SESSION_VERIFIED,
    "monitor.session_started": SESSION_STARTED,
    "monitor.session_ended": SESSION_ENDED,
    "results.conflict": RESULTS_CONFLICTED,
    "results.backup_invalid": RESULTS_BACKUP_INVALIDATED,
    "outbox.retry": OUTBOX_RETRIED,
    "system.setup": SYSTEM_SET_UP,
    "system.backup": SYSTEM_BACKED_UP,
    "system.to_formal": SYSTEM_CONVERTED_TO_FORMAL,
}

#: events after which the 考前 step marks may have changed (``kd.core.steps``)
STEP_EVENTS: FrozenSet[str] = frozenset({
    PACKAGE_LOADED, ROOM_REGISTERED, ROOM_DATA_IMPORTED, REGISTRATION_REVOKED, REGISTRATION_RESTORED,
    SITE_INFO_EXPORTED, SESSION_AUTHORIZED, SEAL_CHECKED, SESSION_VERIFIED, SYSTEM_RESTORED,
    SYSTEM_INITIALIZED, SYSTEM_CONVERTED_TO_FORMAL, SYSTEM_SET_UP,
})
#: events that replace the whole exam data (every page reads again)
DATA_REPLACED: FrozenSet[str] = frozenset({PACKAGE_LOADED, SYSTEM_INITIALIZED, SYSTEM_RESTORED,
                                           SYSTEM_CONVERTED_TO_FORMAL})


def current(name: str) -> str:
    """The name an action has now (an old log's ``package_loaded`` → ``package.loaded``)."""
    return RENAMED.get(name, name)
