"""The generator: determinism, drift detection, and the generated code's behaviour."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import umlos.codegen as codegen
from tests.conftest import CONTRACTS, ROOT
from umlos.cli import main


def test_generated_tree_is_up_to_date() -> None:
    assert codegen.check(ROOT) == []


def test_output_is_byte_identical_across_runs_and_directories(tmp_path: Path) -> None:
    a = codegen.render(CONTRACTS)
    moved = tmp_path / "elsewhere" / "contracts"
    shutil.copytree(CONTRACTS, moved)
    b = codegen.render(moved)
    assert a == b
    assert all(b"/work/" not in data and str(tmp_path).encode() not in data for data in b.values())


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(CONTRACTS, root / "contracts")
    codegen.write(codegen.render(root / "contracts"), root)
    return root


def test_check_reports_changed_missing_and_stale_files(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    assert codegen.check(root) == []
    (root / "src/umlos/_generated/tags.py").write_text("# edited by hand\n")
    (root / "docs/reference/errors.md").unlink()
    (root / "src/umlos/_generated/leftover.py").write_text("")
    drift = {(d.path, d.kind) for d in codegen.check(root)}
    assert drift == {
        ("src/umlos/_generated/tags.py", "changed"),
        ("docs/reference/errors.md", "missing"),
        ("src/umlos/_generated/leftover.py", "stale"),
    }
    result = CliRunner().invoke(main, ["generate", "--check", "--root", str(root)])
    assert result.exit_code == 1
    assert "tags.py" in result.output and "leftover.py" in result.output


def test_contract_change_without_regeneration_is_drift(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    path = root / "contracts/schemas/error_record.yaml"
    path.write_text(path.read_text().replace("maxLength: 4096", "maxLength: 4000"))
    drift = {d.path for d in codegen.check(root)}
    assert "src/umlos/_generated/records.py" in drift
    assert "src/umlos/_generated/registry.py" in drift  # SCHEMA_DIGESTS moved
    written = codegen.write(codegen.render(root / "contracts"), root)
    assert "src/umlos/_generated/records.py" in written
    assert codegen.check(root) == []


def test_generate_refuses_invalid_contracts(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "contracts/errors.yaml").write_text("codes: [\n")
    result = CliRunner().invoke(main, ["generate", "--root", str(root)])
    assert result.exit_code == 3
    assert "contracts are invalid" in result.output


def test_generated_files_carry_the_do_not_edit_header() -> None:
    for rel, data in codegen.render(CONTRACTS).items():
        if rel.endswith((".py", ".md")):
            assert b"DO NOT EDIT" in data.split(b"\n", 1)[0], rel


@pytest.mark.parametrize("rel", ["src/umlos/_generated"])
def test_generated_code_is_formatted(rel: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *codegen.RUFF_ARGS, str(ROOT / rel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
