"""The core's data model: which DB holds what, under which table and key, in which shape.

This is the contract between the chapter services (one module per manual chapter) and
with ``kd/lock/gate.py`` (which reads ``settings/site`` and ``package/manifest``). All
times are ISO 8601 strings with offset (``kd.formats.timeutil.format_time``). Keys of
composite records are ``"<room>|<session>"`` (``rs_key``). The same shapes as types, with
their constructors, are ``kd.core.records``; the lifecycle states derived from the
timestamps are ``kd.core.lifecycle``.

settings DB (``ctx.stores.settings``)
  settings/site        {"site_code", "mode": "formal"|"mock", "configured_at",
                        "platform_url", "trusted_keys": [base64 Ed25519 public keys],
                        "lan_address": the address proctors are told (chosen in the status bar;
                        kd/core/status.py), "lan_bind": bool (bind the LAN service to it at start),
                        "service_unit", "service_phone" (the footer's 技术服务单位 and 服务电话)}
  accounts/<user>      {"user", "salt", "iterations", "hash", "must_change": bool,
                        "failures": int, "locked_until": time|None, "changed_at"}

exam DB (``ctx.stores.exam``): the loaded site package
  package/manifest     the verified manifest as ``SitePackage.manifest`` (with
                        "candidates"); its "lock" names the site's dongle
  package/meta         {"publish_time", "loaded_at", "source": "online"|"manual",
                        "verified_at", "zip_sha256", "manifest_sha256", "manifest_envelope" (the
                        signed manifest.json text as loaded; absent for a package loaded before it
                        was kept: the completeness proof asks to load it again)}
  Room data files live in ``DATA/rooms/<room>.dat`` (verified when extracted).

runtime DB (``ctx.stores.runtime``)
  rooms/<room>         {"code", "reg_code", "ip": str|None, "token": str|None,
                        "registered_at", "data_sha256", "data_imported_at", "note"}
  sessions/<session>   {"id", "authorized_at", "authorization_source", "authorization"
                        (base64 of the .PTQ bytes), "verified_at", "verification_source",
                        "verification" (base64 .KDV), "lock_clock_skew_s", "lock_synced_at"
                        (the dongle's sync ticket server time, kd/core/verification.py),
                        "started_reported_at", "ended_reported_at"}
  room_sessions/<room|session>
                       {"room", "session", "started_at", "ended_at",
                        "permitted_at" (the first start permit granted, kd/core/verification.py),
                        "unpermitted_at" (= started_at when the start was 未经许可开考,
                        kd/core/monitor.py; absent or None otherwise),
                        "result": {"sha256", "size", "received_at", "source": "lan"|"manual",
                                   "counts": {...}, "created_at", "actor"} | None,
                        "upload": {"receipt" (base64), "uploaded_at", "file_id", "sha256",
                                   "size", "received_at"} | None}
                       (result/upload: kd/core/recovery.py, kd/core/upload.py; counts as
                       kd.formats.result.RoomResult.counts())
  result_conflicts/<room|session|sha256>
                       a refused result package (another hash for a recovered room and
                       session): {"room", "session", "sha256", "size", "source",
                       "kept_sha256", "first_at", "last_at", "times", "actor"}; the
                       refused file stays in the spool for inspection. One a 系统恢复
                       found (the backup and this PC held different results) also has
                       "origin": "restore", "held_by": "backup"|"here", "received_at",
                       "upload" (its receipt, or None) — kd/core/restoreplan.py
  outbox/<id>          {"id", "kind", "data", "key", "session_id", "room_code",
                        "created_at", "state": "pending"|"sent"|"failed", "tries", "last_error",
                        "next_try_at", "sent_at", "failed_at", "report_id"} (kd/core/outbox.py;
                        failed = refused with a 4xx, the message in last_error)
  checks/seal          the last 封场检测 result {"items": [{"id", "label", "status":
                        "pass"|"fail"|"skipped", "detail", "remedy"}], "passed", "checked_at",
                        "passed_at" (last passing run), "rooms", "report_id" (outbox id)}
  checks/external      the last 外部存储备份 (folder, files, verified_at), with files
                       [{"name", "room", "session", "sha256", "size"}], "manifest",
                       "valid": bool (False once a re-check found a copy damaged), "actor"
  checks/site_info     the last 导出考点信息: {"address", "port" (what the sheet names),
                       "exported_at"} (kd/core/registration.py; 封场检测 connects to it)
  checks/recovery      every room of every session recovered: {"completed_at",
                       "outbox_id"} (the recovery_status report, enqueued once)
  checks/alarms        the open alarms of 考点时间线: {"open": {<key>: {"key", "kind", "kind_label",
                       "session", "item", "room", "label", "opened_at"}}, "changed_at"}
                       (kd/core/timeline.py, docs/timeline.md)
  incidents/<id>       考场情况记录 {"id", "kind", "category", "room", "session", "start", "end",
                       "candidates", "description", "recorded_by", "recorded_at", "state":
                       "drafted"|"confirmed"|"dismissed", "decided_by", "decided_at", "note",
                       "draft_key"} (kd/core/incidents.py; docs/incidents.md §1)
  extra_time/<id>      补时 granted {"id", "room", "session", "minutes", "total_min", "tier",
                       "reason", "incidents", "granted_by", "granted_at", "dongle", "expected_end",
                       "acked_at"} (kd/core/extratime.py; docs/incidents.md §3); the room-session
                       record then has "extra_time_min" (the total) and "expected_end"
"""

from kd.core import labels

# DB tables and fixed keys
SETTINGS, SITE = "settings", "site"
ACCOUNTS = "accounts"
PACKAGE, MANIFEST, PACKAGE_META = "package", "manifest", "meta"
ROOMS = "rooms"
SESSIONS = "sessions"
ROOM_SESSIONS = "room_sessions"
OUTBOX = "outbox"
CHECKS, SEAL, EXTERNAL, RECOVERY, SITE_INFO = "checks", "seal", "external", "recovery", "site_info"
RESULT_CONFLICTS = "result_conflicts"

# exam modes (参数设置)
FORMAL, MOCK = "formal", "mock"
MODE_LABELS = labels.MODE_LABELS  # {FORMAL: 正式考试, MOCK: 模拟考试}

#: the LAN port of the site server (screens.md: 端口: 9190)
LAN_PORT = 9190


def rs_key(room: str, session: str) -> str:
    """The key of a room's record for one session."""
    return "{}|{}".format(room, session)
