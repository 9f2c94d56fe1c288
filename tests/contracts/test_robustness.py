"""Malformed contracts never crash the checker: random structural mutations yield issues, not tracebacks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CONTRACTS
from umlos.contracts import check

FILES = sorted(
    p.relative_to(CONTRACTS).as_posix()
    for p in CONTRACTS.rglob("*.yaml")
    if p.name in {"errors.yaml", "digest_tags.yaml", "common.yaml", "trace.yaml", "manifest.yaml"}
    or p.parent.name == "operators"
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _nodes(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _nodes(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _nodes(v, (*path, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


@settings(
    max_examples=int(os.environ.get("UMLOS_CONTRACT_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_mutation_reports_issues_without_crashing(
    tmp_path: Path, data: st.DataObject
) -> None:
    root = tmp_path / "contracts"
    if not root.exists():
        shutil.copytree(CONTRACTS, root)
    rel = data.draw(st.sampled_from(FILES))
    original = (CONTRACTS / rel).read_text()
    doc = yaml.safe_load(original)
    nodes = _nodes(doc)
    path = data.draw(st.sampled_from(nodes[:400]))
    value = data.draw(JSON_VALUES)
    try:
        (root / rel).write_text(yaml.safe_dump(_replace(doc, path, value), sort_keys=False))
        result = check(root)  # must return, never raise
        if not result.ok:
            assert result.issues
            assert all(i.file and i.path.startswith("$") for i in result.issues)
    finally:
        (root / rel).write_text(original)
