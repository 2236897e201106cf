"""The monitoring platform (监控平台): requests client, simulator server, offline signer.

docs/platform-api.md is the contract. Modules:

- ``client``: ``PlatformClient``, what the site system uses (timeouts, bounded retries,
  idempotent reports, resumable upload, lock sync, ``probe()``); its session, deadlines,
  retries and errors are ``transport``'s, the watchdog that enforces the deadlines
  ``watchdog``'s.
- ``simulator``: the platform on 127.0.0.1 for drills and tests (``start_simulator``;
  ``python -m kd.platform.simulator``), with ``faults`` (refuse, slow, drop, fail every Nth).
  Its endpoints are ``simapi``'s, its HTTP layer (routing, faults, bodies) ``simhttp``'s.
- ``simdata``: the simulator's data folder (keys, ``platform.pub``, ``dongle.json``, demo
  site, signing); ``simstore``: what it received (reports, uploads) on disk.
- ``demo``: a realistic demo site (Chinese names, rooms, sessions, subjects, seats).
- ``signer``: ``python -m kd.platform.signer``: offline .zip / .PTQ / .KDV for 手工导入.
"""
