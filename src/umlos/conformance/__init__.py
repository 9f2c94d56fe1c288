"""Conformance tooling: benchmark tiers (``umlos bench``) and chaos scenarios (``umlos chaos``)."""
