"""The generator: contracts → IR → emitters → format → files.

``render`` is a pure function of the contract directory: it returns every generated file as bytes,
keyed by its path relative to the repository root. ``write`` puts them on disk; ``check``
regenerates into memory and reports every file that differs from (or is missing from, or is left
over in) the tree.

>>> files = render(Path("contracts"))  # doctest: +SKIP
>>> sorted(files)[:1]  # doctest: +SKIP
['docs/reference/capabilities.md']
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from umlos.codegen._docs import (
    render_capabilities_md,
    render_errors_md,
    render_operators_md,
    render_schemas_md,
    render_tags_md,
)
from umlos.codegen._modules import render_errors, render_operators, render_registry, render_tags
from umlos.codegen._records import render_records
from umlos.codegen._text import HEADER
from umlos.contracts import check as check_contracts
from umlos.errors import ContractViolationError

GENERATED_PACKAGE = "src/umlos/_generated"
REFERENCE_DOCS = "docs/reference"
# The formatter is part of the pipeline's contract: its exact version is pinned in the dev extra
# and its settings are passed explicitly, so the output does not depend on the caller's config.
RUFF_ARGS = ("--isolated", "--line-length", "100", "--target-version", "py311")


@dataclass(frozen=True)
class Drift:
    path: str
    kind: str  # "changed" | "missing" | "stale"


def render(contracts_dir: Path) -> dict[str, bytes]:
    """Every generated file, keyed by repository-relative path. Raises on invalid contracts."""
    result = check_contracts(contracts_dir)
    if not result.ok or result.compiled is None:
        listing = "\n".join(f"  {issue}" for issue in result.issues[:50])
        raise ContractViolationError(
            f"contracts are invalid ({len(result.issues)} issues):\n{listing}",
            reason="CONTRACT_INVALID",
            artifact=str(contracts_dir),
        )
    cs, compiled = result.contract_set, result.compiled
    python = {
        f"{GENERATED_PACKAGE}/__init__.py": (
            f'{HEADER}\n"""Code generated from ``contracts/``; never edited by hand."""\n'
        ),
        f"{GENERATED_PACKAGE}/errors.py": render_errors(cs),
        f"{GENERATED_PACKAGE}/tags.py": render_tags(cs),
        f"{GENERATED_PACKAGE}/records.py": render_records(cs),
        f"{GENERATED_PACKAGE}/registry.py": render_registry(cs, compiled),
        f"{GENERATED_PACKAGE}/operators.py": render_operators(cs),
    }
    files = {path: data.encode() for path, data in _format_python(python).items()}
    for name, data in compiled.artifacts.items():
        files[f"{GENERATED_PACKAGE}/artifacts/{name}"] = data
    files[f"{GENERATED_PACKAGE}/artifacts/manifest.json"] = compiled.manifest_json(cs).encode()
    docs = {
        "capabilities.md": render_capabilities_md(cs),
        "digest-tags.md": render_tags_md(cs),
        "errors.md": render_errors_md(cs),
        "operators.md": render_operators_md(cs, compiled),
        "schemas.md": render_schemas_md(cs, compiled),
    }
    for name, text in docs.items():
        files[f"{REFERENCE_DOCS}/{name}"] = text.encode()
    return dict(sorted(files.items()))


def _format_python(sources: dict[str, str]) -> dict[str, str]:
    """Format with the pinned ruff, in one process for all files."""
    with tempfile.TemporaryDirectory(prefix="umlos-gen-") as tmp:
        paths = []
        for rel, text in sources.items():
            path = Path(tmp, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        cmd = [sys.executable, "-m", "ruff", "format", *RUFF_ARGS, *map(str, paths)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tmp)
        except OSError as exc:
            raise ContractViolationError(
                f"cannot run the formatter: {exc}", reason="CONTRACT_INVALID"
            ) from exc
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip()[-2000:]
            if "No module named ruff" in detail:
                detail = "ruff is not installed; install the dev extra: pip install -e '.[dev]'"
            raise ContractViolationError(
                f"formatting generated code failed: {detail}", reason="CONTRACT_INVALID"
            )
        return {rel: Path(tmp, rel).read_text(encoding="utf-8") for rel in sources}


def _owned(root: Path) -> set[str]:
    """Files currently under the generator's output locations."""
    owned: set[str] = set()
    for base in (GENERATED_PACKAGE, REFERENCE_DOCS):
        top = root / base
        if top.is_dir():
            for path in top.rglob("*"):
                if path.is_file() and "__pycache__" not in path.parts:
                    owned.add(path.relative_to(root).as_posix())
    return owned


def write(files: dict[str, bytes], root: Path) -> list[str]:
    """Write ``files`` under ``root`` atomically (temp + rename); delete stale outputs.

    Returns the paths that changed.
    """
    changed = []
    for rel, data in files.items():
        path = root / rel
        if path.is_file() and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        changed.append(rel)
    for rel in sorted(_owned(root) - set(files)):
        (root / rel).unlink()
        changed.append(rel)
    return changed


def check(root: Path, contracts_dir: Path | None = None) -> list[Drift]:
    """Regenerate in memory and compare with the tree under ``root``."""
    files = render(contracts_dir or root / "contracts")
    drift = []
    for rel, data in files.items():
        path = root / rel
        if not path.is_file():
            drift.append(Drift(rel, "missing"))
        elif path.read_bytes() != data:
            drift.append(Drift(rel, "changed"))
    drift += [Drift(rel, "stale") for rel in sorted(_owned(root) - set(files))]
    return drift
