"""Every quickstart template writes a manifest that loads, trains and evaluates."""

from __future__ import annotations

from pathlib import Path

import pytest

from umlos.errors import ContractViolationError
from umlos.quickstart import TEMPLATES, write_quickstart
from umlos.train import prepare, train


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_trains(tmp_path: Path, name: str) -> None:
    path = write_quickstart(name, tmp_path / name)
    result = train(prepare(path))
    (evaluation,) = result.evals
    assert result.steps and result.state.done
    if name in ("classification", "cnn"):
        assert evaluation.accuracy is not None and evaluation.accuracy >= 0.9
    elif name == "regression":
        assert evaluation.mse is not None and evaluation.mse < 4000.0  # target variance ≈ 5,900
    else:
        assert evaluation.loss < 2.0  # a byte-level unigram model sits near 3


def test_existing_manifest_is_not_overwritten(tmp_path: Path) -> None:
    path = write_quickstart("classification", tmp_path)
    assert write_quickstart("classification", tmp_path) == path  # same bytes: idempotent
    path.write_text(path.read_text() + "# edited\n")
    with pytest.raises(ContractViolationError):
        write_quickstart("classification", tmp_path)
    assert path.read_text().endswith("# edited\n")


def test_unknown_template_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ContractViolationError) as info:
        write_quickstart("gan", tmp_path)
    assert "known:" in str(info.value)
