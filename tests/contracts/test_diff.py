"""`umlos contracts diff`: every rule class, and the version-bump gate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import CONTRACTS
from umlos.cli import main
from umlos.contracts.diff import diff_dirs

ERREC = "schemas/error_record.yaml"
SER = "operators/serialization.yaml"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _bump(root: Path, version: str) -> None:
    _edit(root / "contracts.yaml", "version: 1.0.0", f"version: {version}")


@pytest.fixture
def new(tmp_path: Path) -> Path:
    dest = tmp_path / "new"
    shutil.copytree(CONTRACTS, dest)
    return dest


def _levels(new: Path) -> set[tuple[str, str]]:
    return {(c.level, c.what) for c in diff_dirs(CONTRACTS, new).changes}


def test_identical_sets_have_no_changes(new: Path) -> None:
    report = diff_dirs(CONTRACTS, new)
    assert report.changes == [] and report.required == "NONE" and report.ok


CASES = {
    "field_removed": (
        lambda r: _edit(
            r / ERREC, "  diagnostics:\n    $ref: common.yaml#/$defs/diagnostics\n", ""
        ),
        "MAJOR",
        "field removed",
    ),
    "optional_field_added": (
        lambda r: _edit(
            r / ERREC, "  diagnostics:\n", "  note:\n    type: string\n  diagnostics:\n"
        ),
        "MINOR",
        "optional field added",
    ),
    "required_field_added": (
        lambda r: (
            _edit(r / ERREC, "  diagnostics:\n", "  note:\n    type: string\n  diagnostics:\n"),
            _edit(r / ERREC, "required: [code_id,", "required: [note, code_id,"),
        ),
        "MAJOR",
        "required field added",
    ),
    "integer_narrowed": (
        lambda r: _edit(
            r / ERREC,
            "numeric_code:\n    $ref: common.yaml#/$defs/uint32",
            "numeric_code:\n    type: integer\n    minimum: 1000\n    maximum: 1999",
        ),
        "MAJOR",
        "integer range narrowed",
    ),
    "string_length_widened": (
        lambda r: _edit(r / ERREC, "maxLength: 4096", "maxLength: 8192"),
        "MINOR",
        "size limits widened",
    ),
    "enum_value_removed": (
        lambda r: _edit(
            r / "schemas/common.yaml", "enum: [FATAL, ERROR, WARN]", "enum: [FATAL, ERROR]"
        ),
        "MAJOR",
        "enum value 'WARN' removed",
    ),
    "enum_value_added": (
        lambda r: _edit(
            r / "schemas/common.yaml",
            "enum: [FATAL, ERROR, WARN]",
            "enum: [FATAL, ERROR, WARN, INFO]",
        ),
        "MINOR",
        "enum value 'INFO' added",
    ),
    "type_changed": (
        lambda r: _edit(r / ERREC, "retryable:\n    type: boolean", "retryable:\n    type: string"),
        "MAJOR",
        "type changed from bool to str",
    ),
    "description_only": (
        lambda r: _edit(r / ERREC, "A failure as it is recorded", "A failure, as recorded"),
        "PATCH",
        "description changed",
    ),
    "operator_removed": (
        lambda r: (r / SER).write_text("operators: []\n"),
        "MAJOR",
        "operator removed",
    ),
    "operator_purity_changed": (
        lambda r: _edit(r / SER, "purity_class: PURE", "purity_class: STATEFUL"),
        "MAJOR",
        "purity_class changed",
    ),
    "operator_deprecated": (
        lambda r: _edit(
            r / SER, "    since: 1.0.0\n", "    since: 1.0.0\n    deprecated_in: 1.1.0\n"
        ),
        "MINOR",
        "deprecated_in changed",
    ),
    "error_code_severity": (
        lambda r: _edit(
            r / "errors.yaml",
            "numeric_code: 1001\n    subsystem: config\n    severity: ERROR",
            "numeric_code: 1001\n    subsystem: config\n    severity: FATAL",
        ),
        "MAJOR",
        "severity changed",
    ),
    "capability_added": (
        lambda r: _edit(
            r / "capabilities.yaml",
            "  CAP_WAL_WRITE:",
            "  CAP_WAL_READ: Read WALs.\n  CAP_WAL_WRITE:",
        ),
        "MINOR",
        "capability added",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_change_is_classified(new: Path, case: str) -> None:
    mutate, level, what = CASES[case]
    mutate(new)
    assert any(lv == level and what in w for lv, w in _levels(new)), _levels(new)


def test_request_schema_change_breaks_operator_signature(new: Path) -> None:
    _edit(
        new / "schemas/ops_serialization.yaml",
        "      digest:\n        $ref: common.yaml#/$defs/bytes32\n",
        "",
    )
    _edit(
        new / "schemas/ops_serialization.yaml",
        "required: [canonical_bytes, digest]",
        "required: [canonical_bytes]",
    )
    levels = _levels(new)
    assert ("MAJOR", "response schema changed incompatibly") in levels


@pytest.mark.parametrize(
    ("version", "exit_code"), [("1.0.0", 1), ("1.0.1", 1), ("1.1.0", 1), ("2.0.0", 0), ("0.9.0", 1)]
)
def test_cli_gate_on_declared_bump_for_major_change(
    new: Path, version: str, exit_code: int
) -> None:
    _edit(new / ERREC, "  diagnostics:\n    $ref: common.yaml#/$defs/diagnostics\n", "")
    if version != "1.0.0":
        _bump(new, version)
    result = CliRunner().invoke(main, ["contracts", "diff", str(CONTRACTS), str(new)])
    assert result.exit_code == exit_code, result.output
    assert "MAJOR" in result.output


def test_cli_minor_change_with_minor_bump_passes(new: Path) -> None:
    _edit(new / ERREC, "maxLength: 4096", "maxLength: 8192")
    _bump(new, "1.1.0")
    result = CliRunner().invoke(main, ["contracts", "diff", "--json", str(CONTRACTS), str(new)])
    assert result.exit_code == 0, result.output
    assert '"required_bump": "MINOR"' in result.output


def test_diff_of_invalid_set_is_a_runtime_error(new: Path) -> None:
    (new / "errors.yaml").write_text("codes: [\n")
    result = CliRunner().invoke(main, ["contracts", "diff", str(CONTRACTS), str(new)])
    assert result.exit_code == 3
    assert "not a valid contract set" in result.output
