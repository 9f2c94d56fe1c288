"""`umlos contracts check`: the real set passes; every rule has a negative test naming file and path."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CONTRACTS
from umlos.codec import commit_hash, decode
from umlos.contracts import check


def test_repository_contracts_are_valid() -> None:
    result = check(CONTRACTS)
    assert result.issues == []
    assert result.ok and result.compiled is not None


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"fixture text {old!r} not found in {path.name}"
    path.write_text(text.replace(old, new, count))


def _issues(root: Path) -> list[str]:
    return [str(i) for i in check(root).issues]


def _assert_issue(root: Path, file: str, pattern: str) -> None:
    issues = _issues(root)
    assert any(i.startswith(file) and re.search(pattern, i) for i in issues), issues


ERR = "errors.yaml"
SER = "operators/serialization.yaml"
ERREC = "schemas/error_record.yaml"


CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "duplicate_yaml_key": (
        lambda r: _edit(
            r / ERR, "catalogue_version: 1\n", "catalogue_version: 1\ncatalogue_version: 1\n"
        ),
        ERR,
        "duplicate key",
    ),
    "invalid_yaml": (lambda r: _edit(r / ERR, "codes:\n", "codes: [\n"), ERR, "invalid YAML"),
    "schema_not_json_schema": (
        lambda r: _edit(r / ERREC, "maxLength: 128", "maxLength: -1"),
        ERREC,
        "not valid JSON Schema",
    ),
    "unresolved_ref": (
        lambda r: _edit(r / ERREC, "common.yaml#/$defs/uint64", "common.yaml#/$defs/nope"),
        ERREC,
        "unresolved \\$ref",
    ),
    "integer_without_bounds": (
        lambda r: _edit(
            r / ERREC,
            "numeric_code:\n    $ref: common.yaml#/$defs/uint32",
            "numeric_code:\n    type: integer",
        ),
        ERREC,
        r"\$.properties.numeric_code: integers need integer minimum and maximum",
    ),
    "keyword_outside_profile": (
        lambda r: _edit(
            r / ERREC, "maxLength: 128", "maxLength: 128\n    format: x\n    not: {type: integer}"
        ),
        ERREC,
        "keywords outside the schema profile",
    ),
    "inline_object": (
        lambda r: _edit(
            r / ERREC,
            "  diagnostics:\n    $ref: common.yaml#/$defs/diagnostics",
            "  diagnostics:\n    type: object\n    properties: {a: {type: boolean}}\n    additionalProperties: false",
        ),
        ERREC,
        "inline objects with properties are not allowed",
    ),
    "open_record": (
        lambda r: _edit(r / ERREC, "additionalProperties: false", "additionalProperties: true"),
        ERREC,
        "additionalProperties: false",
    ),
    "nullable_optional": (
        lambda r: _edit(
            r / ERREC,
            "  diagnostics:\n    $ref: common.yaml#/$defs/diagnostics",
            "  diagnostics:\n    type: [string, 'null']",
        ),
        ERREC,
        "nullable property must be required",
    ),
    "bad_property_name": (
        lambda r: _edit(r / ERREC, "  message:\n", "  Message:\n"),
        ERREC,
        "snake_case",
    ),
    "unknown_error_code": (
        lambda r: _edit(r / SER, "[CONTRACT_VIOLATION]", "[NO_SUCH_CODE]"),
        SER,
        r"allowed_error_codes\[0\]: unknown value 'NO_SUCH_CODE'",
    ),
    "unsorted_list": (
        lambda r: _edit(
            r / SER, "[CONTRACT_VIOLATION]", "[CONTRACT_VIOLATION, API_SHAPE_MISMATCH]"
        ),
        SER,
        "sorted and without duplicates",
    ),
    "version_suffix_mismatch": (
        lambda r: _edit(r / SER, "    version: v1\n", "    version: v2\n"),
        SER,
        "must be v1",
    ),
    "rng_without_side_effect": (
        lambda r: _edit(r / SER, "rng_usage: NONE", "rng_usage: PHILOX4x32_10"),
        SER,
        "ADVANCES_RNG",
    ),
    "pure_stochastic_without_rng": (
        lambda r: _edit(
            r / SER, "determinism_class: DETERMINISTIC", "determinism_class: STOCHASTIC"
        ),
        SER,
        "PURE \\+ STOCHASTIC",
    ),
    "unknown_replacement": (
        lambda r: _edit(
            r / SER,
            "    since: 1.0.0\n",
            "    since: 1.0.0\n    deprecated_in: 1.1.0\n    replacement_operator_id: UML_OS.X.Y_v1\n",
        ),
        SER,
        "names no operator",
    ),
    "request_not_a_record": (
        lambda r: _edit(r / SER, "#/$defs/EncodeCanonicalCborRequest", "#/$defs/Missing"),
        SER,
        "is not a record of the schema set",
    ),
    "unknown_operator_field": (
        lambda r: _edit(r / SER, "    since: 1.0.0\n", "    since: 1.0.0\n    colour: blue\n"),
        SER,
        "colour: unknown field",
    ),
    "numeric_code_out_of_range": (
        lambda r: _edit(r / ERR, "numeric_code: 1001", "numeric_code: 1901"),
        ERR,
        "outside config's 1000-1099",
    ),
    "duplicate_numeric_code": (
        lambda r: _edit(r / ERR, "numeric_code: 1002", "numeric_code: 1001"),
        ERR,
        "numeric code 1001 repeats",
    ),
    "message_placeholder": (
        lambda r: _edit(
            r / ERR,
            'message: "API signature mismatch for {interface_id}"',
            'message: "mismatch for {nope}"',
        ),
        ERR,
        "placeholder \\{nope\\}",
    ),
    "duplicate_tag": (
        lambda r: _edit(r / "digest_tags.yaml", "tag: sig_v1", "tag: operator_registry_v1"),
        "digest_tags.yaml",
        "used twice",
    ),
    "unsorted_capabilities": (
        lambda r: _edit(
            r / "capabilities.yaml",
            "  CAP_CERTIFICATE_WRITE:",
            "  CAP_ZZZ: x\n  CAP_CERTIFICATE_WRITE:",
        ),
        "capabilities.yaml",
        "must be sorted",
    ),
    "bad_semver": (
        lambda r: _edit(r / "contracts.yaml", "version: 1.0.0", "version: '1.0'"),
        "contracts.yaml",
        "MAJOR.MINOR.PATCH",
    ),
    "compiled_artifact_breaks_own_schema": (
        lambda r: _edit(
            r / "schemas/operator_registry.yaml",
            '        pattern: "^v[0-9]+$"\n        description: v<N>',
            '        pattern: "^w[0-9]+$"\n        description: v<N>',
        ),
        "schemas/operator_registry.yaml",
        r"compiled OperatorRegistry fails at \$\.operator_records\[0\]\.version",
    ),
    "missing_file": (
        lambda r: (r / "capabilities.yaml").unlink(),
        "capabilities.yaml",
        "file is missing",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_violation_is_reported_with_file_and_path(contracts_copy: Path, case: str) -> None:
    mutate, file, pattern = CASES[case]
    mutate(contracts_copy)
    _assert_issue(contracts_copy, file, pattern)


def test_issues_do_not_stop_at_the_first(contracts_copy: Path) -> None:
    _edit(contracts_copy / SER, "[CONTRACT_VIOLATION]", "[NO_SUCH_CODE]")
    _edit(contracts_copy / ERR, "numeric_code: 1002", "numeric_code: 1001")
    files = {i.split(":")[0] for i in _issues(contracts_copy)}
    assert {SER, ERR} <= files


def test_registry_root_hash_recomputes_from_the_artifact() -> None:
    compiled = check(CONTRACTS).compiled
    assert compiled is not None
    registry = decode(compiled.artifacts["operator_registry.cbor"])
    assert isinstance(registry, dict)
    assert registry["registry_schema_version"] == 1
    records = registry["operator_records"]
    ids = [(r["operator_id"].encode(), int(r["version"][1:])) for r in records]
    assert ids == sorted(ids)
    assert commit_hash("operator_registry_v1", [1, records]) == compiled.operator_registry_root_hash


def test_signature_digests_recompute_from_schema_digests() -> None:
    compiled = check(CONTRACTS).compiled
    assert compiled is not None
    for record in compiled.operator_records:
        req = bytes.fromhex(record["request_schema_digest"].removeprefix("sha256:"))
        resp = bytes.fromhex(record["response_schema_digest"].removeprefix("sha256:"))
        expected = commit_hash(
            "sig_v1",
            [
                record["operator_id"],
                record["version"],
                record["method"],
                req,
                resp,
                record["side_effects"],
                record["allowed_error_codes"],
            ],
        )
        assert record["signature_digest"] == expected, record["operator_id"]


def test_descriptions_do_not_change_digests(contracts_copy: Path) -> None:
    before = check(contracts_copy).compiled
    _edit(contracts_copy / ERREC, "A failure as it is recorded", "A failure, as it is recorded")
    after = check(contracts_copy).compiled
    assert before is not None and after is not None
    assert before.schema_digests == after.schema_digests
    assert before.operator_registry_root_hash == after.operator_registry_root_hash


def test_semantic_schema_change_changes_digest(contracts_copy: Path) -> None:
    before = check(contracts_copy).compiled
    _edit(contracts_copy / ERREC, "maxLength: 4096", "maxLength: 4095")
    after = check(contracts_copy).compiled
    assert before is not None and after is not None
    assert before.schema_digests["ErrorRecord"] != after.schema_digests["ErrorRecord"]
