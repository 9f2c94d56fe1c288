"""Shared fixtures: the repository root and a scratch copy of the contract set."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "contracts"


@pytest.fixture
def contracts_copy(tmp_path: Path) -> Path:
    """A private copy of contracts/ that a test may mutate."""
    dest = tmp_path / "contracts"
    shutil.copytree(CONTRACTS, dest)
    return dest
