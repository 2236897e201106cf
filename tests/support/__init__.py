"""Shared test environments built from the real parts."""
