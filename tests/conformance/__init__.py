"""Conformance tests: peers written from the documents in docs/ alone, against the real services."""
