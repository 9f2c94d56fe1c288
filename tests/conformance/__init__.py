"""Tests of the conformance tooling: benchmark tiers and chaos scenarios."""
