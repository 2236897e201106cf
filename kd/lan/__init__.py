"""The proctor-machine LAN service (port 9190), KDLAN v1 (docs/lan-protocol.md).

- ``framing``: length-prefixed frames (u32 header length, JSON header, binary body), caps, deadlines
- ``server``: ``LanServer`` over the core services (implements ``kd.core.ports.Lan``)
- ``client``: ``ProctorClient``, the reference proctor side (``LanError``)
- ``simulator``: ``python -m kd.lan.simulator``: N proctor machines for drills and tests
"""
