"""The local control channel: ``main.py <command>`` runs in the instance that holds the data folder.

While the window or ``--headless`` holds a data folder (``kd.store.instance``), a command
line cannot open it. Instead it asks the running instance over loopback, and the
instance runs the command through the same handlers (``kd.cli.run_in_site``) against its
own site, so the command sees the live state (connected proctors, the running senders)
and nothing has to stop. docs/control-protocol.md is the reference; the modules:

- ``framing``: 4-byte big-endian length + one UTF-8 JSON object, with size caps;
- ``endpoint``: ``DATA/control.json`` (port and per-run secret, owner-only file);
- ``streams``: per-thread ``sys.stdin``/``stdout``/``stderr`` routing in the instance;
- ``server``: the instance's end (``ControlServer``, started by ``kd.site.open_site``);
- ``client``: the command line's end (``run_remote``, used by ``kd.cli.run``).
"""
