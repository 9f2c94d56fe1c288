"""A private key store per test session, and a small manifest with frequent checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from umlos.quickstart import write_quickstart


@pytest.fixture(autouse=True)
def umlos_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    home = tmp_path_factory.getbasetemp() / "umlos-home"
    monkeypatch.setenv("UMLOS_HOME", str(home))
    yield home


@pytest.fixture(scope="session")
def small_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris quickstart, shortened, with a checkpoint every 7 steps."""
    directory = tmp_path_factory.mktemp("manifest")
    path = write_quickstart("classification", directory)
    text = path.read_text().replace("limits: {max_epochs: 60}", "limits: {max_steps: 30}")
    path.write_text(text + "checkpoint_frequency: 7\n")
    return path
