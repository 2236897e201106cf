"""The proctor-machine LAN service (port 9190): framing, server, reference client, simulator."""
