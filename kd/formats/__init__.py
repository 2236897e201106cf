"""Artefacts as bytes ⇄ verified objects (docs/formats.md). Imports only ``kd.errors``.

- ``signing``: the kd-signed/1 Ed25519 envelope every platform artefact uses.
- ``package``: the site data package (考场数据包 .zip): build, verify, load, extract.
- ``documents``: 考试授权 (.PTQ), 授权验证 (.KDV), dongle sync ticket, upload receipt.
- ``safezip``: reading untrusted zips (caps, names, streamed hashes); never extractall.
- ``schema``: typed field checks that refuse with ``FormatError``.
- ``timeutil``: the one accepted timestamp shape (ISO 8601 with offset).
"""
