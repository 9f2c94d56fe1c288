"""Shared fixtures: the repository root and a scratch copy of the contract set."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs property tests with a fixed derivation of examples, so a green commit stays green;
# local runs keep exploring new examples (and Hypothesis' database replays any failure found).
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "contracts"


@pytest.fixture
def contracts_copy(tmp_path: Path) -> Path:
    """A private copy of contracts/ that a test may mutate."""
    dest = tmp_path / "contracts"
    shutil.copytree(CONTRACTS, dest)
    return dest
