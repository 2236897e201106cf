"""The proctor-machine LAN service (port 9190), KDLAN v1 (docs/lan-protocol.md).

- ``framing``: length-prefixed frames (u32 header length, JSON header, binary body), caps, deadlines
- ``server``: ``LanServer`` over the core services (implements ``kd.core.ports.Lan``): socketserver,
  read → dispatch → send, stop; its parts:
  - ``registry``: the connections and who gets a slot (admission)
  - ``handlers``: one function per message type, the table ``HANDLERS``
  - ``uploads``: ``UploadStore``, the partial uploads (part files, take-over, commit, sweep),
    with ``upload_state``: the lifecycle of one upload (``UploadState``, ``TRANSITIONS``)
  - ``replies``: ``Reply`` (an error frame) and the request field checks
- ``client``: ``ProctorClient``, the reference proctor side (``LanError``)
- ``simulator``: ``python -m kd.lan.simulator``: N proctor machines for drills and tests
  (``Proctor``, ``Simulation``); its parts: ``simrecords`` (``SimOptions``, ``Progress``, ``PHASES``,
  ``ProctorReport``), ``simrooms`` (rooms from a KDINFO, loopback addresses), ``simcli`` (its command line)
"""
