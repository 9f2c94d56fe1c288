"""The upstream struct-validation vectors, run through our generator.

Those vectors use "minimal legacy" shapes that contradict the full layouts of our contracts
(spec A30), so they run against a separate, tiny contract set of legacy declarations: this also
proves the generator works on a schema set other than the repository's own.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from umlos.codegen._records import render_records
from umlos.contracts._issues import Issues
from umlos.contracts.model import ContractSet
from umlos.contracts.schema_ir import parse_schemas
from umlos.errors import ApiShapeMismatchError, ApiTypeMismatchError

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "upstream" / "struct_validation.json"

LEGACY = {
    "legacy": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://schemas.umlos.invalid/legacy.yaml",
        "title": "Legacy",
        "$defs": {
            "TraceIterRecord": {
                "type": "object",
                "properties": {
                    "t": {"type": "integer", "minimum": 0, "maximum": 2**64 - 1},
                    "operator_id": {"type": "string"},
                },
                "required": ["t", "operator_id"],
                "additionalProperties": False,
            },
            "CheckpointHeader": {
                "type": "object",
                "properties": {
                    "checkpoint_id": {"type": "string"},
                    "step": {"type": "integer", "minimum": 0, "maximum": 2**64 - 1},
                },
                "required": ["checkpoint_id", "step"],
                "additionalProperties": False,
            },
        },
    }
}


@pytest.fixture(scope="module")
def legacy_module() -> types.ModuleType:
    issues = Issues()
    schemas = parse_schemas(LEGACY, issues)
    assert not issues, issues.sorted()
    source = render_records(ContractSet("legacy", "1.0.0", "", schemas=schemas))
    module = types.ModuleType("umlos_legacy_records")
    sys.modules[module.__name__] = module
    exec(compile(source, "<legacy records>", "exec"), module.__dict__)
    return module


def _vectors() -> list[dict[str, Any]]:
    data = json.loads(VECTORS.read_text())
    vectors: list[dict[str, Any]] = data["vectors"]
    assert len(vectors) == 12
    return vectors


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["id"])
def test_upstream_struct_vector(legacy_module: types.ModuleType, vector: dict[str, Any]) -> None:
    record_type = getattr(legacy_module, vector["struct"])
    if vector["expected"] == "valid":
        record = record_type.from_obj(vector["input"])
        assert record.to_obj() == vector["input"]
    else:
        with pytest.raises((ApiShapeMismatchError, ApiTypeMismatchError)):
            record_type.from_obj(vector["input"])
