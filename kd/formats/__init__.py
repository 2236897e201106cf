"""Artefacts as bytes ⇄ verified objects (docs/formats.md). Imports only ``kd.errors``."""
