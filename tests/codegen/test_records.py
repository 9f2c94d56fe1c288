"""Generated records: validation errors name the JSON path; round trips are exact."""

from __future__ import annotations

from typing import Any

import pytest

from umlos._generated import registry
from umlos._generated.records import ErrorRecord, OperatorRecord
from umlos.codec import decode, encode
from umlos.errors import ApiShapeMismatchError, ApiTypeMismatchError, Error


def _error_record(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "code_id": "CONTRACT_VIOLATION",
        "numeric_code": 1801,
        "severity": "FATAL",
        "subsystem": "runtime",
        "t": 0,
        "rank": 0,
        "failure_operator": "UML_OS.Serialization.EncodeCanonicalCBOR_v1",
        "replay_token": bytes(32),
        "message": "contract violation",
        "retryable": False,
        "privacy_class": "INTERNAL",
        "diagnostics": {"reason_code": "CBOR_TRUNCATED", "offset": 3, "ratio": 0.5, "raw": b"\x00"},
    }
    obj.update(overrides)
    return obj


def test_round_trip_through_canonical_cbor() -> None:
    record = ErrorRecord.from_obj(_error_record())
    assert ErrorRecord.from_obj(decode(encode(record.to_obj()))) == record


def test_json_form_uses_hex_for_bytes() -> None:
    record = ErrorRecord.from_obj(_error_record())
    as_json = record.to_obj(json=True)
    assert as_json["replay_token"] == "00" * 32
    assert as_json["diagnostics"]["raw"] == "00"
    assert ErrorRecord.from_obj(as_json, json=True).replay_token == bytes(32)


@pytest.mark.parametrize(
    ("overrides", "error", "path"),
    [
        ({"t": "0"}, ApiTypeMismatchError, "$.t"),
        ({"t": True}, ApiTypeMismatchError, "$.t"),  # bool is not an integer here
        ({"t": -1}, ApiShapeMismatchError, "$.t"),
        ({"t": 2**64}, ApiShapeMismatchError, "$.t"),
        ({"replay_token": bytes(31)}, ApiShapeMismatchError, "$.replay_token"),
        ({"replay_token": "00" * 32}, ApiTypeMismatchError, "$.replay_token"),
        ({"severity": "INFO"}, ApiShapeMismatchError, "$.severity"),
        ({"code_id": "lower"}, ApiShapeMismatchError, "$.code_id"),
        ({"colour": "blue"}, ApiShapeMismatchError, "$.colour"),
        ({"diagnostics": {"x": [1]}}, ApiTypeMismatchError, "$.diagnostics.x"),
        ({"diagnostics": {"x": float("nan")}}, ApiTypeMismatchError, "$.diagnostics.x"),
    ],
)
def test_invalid_values_name_their_path(
    overrides: dict[str, Any], error: type[Error], path: str
) -> None:
    with pytest.raises(error) as info:
        ErrorRecord.from_obj(_error_record(**overrides))
    assert info.value.path == path
    assert path in str(info.value)


def test_missing_field_is_a_shape_error() -> None:
    obj = _error_record()
    del obj["message"]
    with pytest.raises(ApiShapeMismatchError) as info:
        ErrorRecord.from_obj(obj)
    assert info.value.reason == "MISSING_FIELD"
    assert "message" in str(info.value)


def test_non_map_is_a_type_error() -> None:
    with pytest.raises(ApiTypeMismatchError):
        ErrorRecord.from_obj([])


def test_records_are_frozen() -> None:
    record = ErrorRecord.from_obj(_error_record())
    with pytest.raises(AttributeError):
        record.t = 5  # type: ignore[misc]


def test_registry_table_matches_the_compiled_artifact() -> None:
    from importlib import resources

    data = (
        resources.files("umlos._generated")
        .joinpath("artifacts/operator_registry.cbor")
        .read_bytes()
    )
    artifact = decode(data)
    assert isinstance(artifact, dict)
    parsed = tuple(OperatorRecord.from_obj(r) for r in artifact["operator_records"])
    assert parsed == registry.OPERATORS
    assert set(registry.BY_ID) == {op.operator_id for op in registry.OPERATORS}
