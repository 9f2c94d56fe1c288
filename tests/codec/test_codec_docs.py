"""The examples in the codec's docstrings run and say what they show."""

from __future__ import annotations

import doctest

import yaml

import umlos.codec
from tests.conftest import CONTRACTS


def test_docstring_examples() -> None:
    # The public objects set __module__ to umlos.codec, so this one module covers them all.
    result = doctest.testmod(umlos.codec, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8
    assert result.failed == 0


def test_public_api() -> None:
    assert set(umlos.codec.__all__) >= {
        "encode",
        "decode",
        "digest",
        "commit_hash",
        "merkle_root",
        "sha256_file",
        "CborError",
    }


def test_reasons_match_the_error_catalogue() -> None:
    catalogue = yaml.safe_load((CONTRACTS / "errors.yaml").read_text(encoding="utf-8"))
    (violation,) = [c for c in catalogue["codes"] if c["code_id"] == "CONTRACT_VIOLATION"]
    listed = {r for r in violation["reasons"] if r.startswith("CBOR_")}
    assert listed == umlos.codec.CBOR_REASONS
