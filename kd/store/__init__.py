"""Durable storage: TinyDB on an atomic storage, result spool, audit log, instance lock."""
