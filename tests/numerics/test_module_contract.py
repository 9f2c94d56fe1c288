"""The package's promises about itself: runnable docstring examples and its place in the layers."""

from __future__ import annotations

import ast
import doctest
import importlib
from pathlib import Path

import pytest

import umlos.numerics

PACKAGE_DIR = Path(umlos.numerics.__file__).resolve().parent
MODULES = sorted(
    f"umlos.numerics.{p.stem}" if p.stem != "__init__" else "umlos.numerics"
    for p in PACKAGE_DIR.glob("*.py")
)
ALLOWED_UMLOS_IMPORTS = {"umlos.errors", "umlos._errorbase"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0


def test_every_public_name_has_a_docstring_with_an_example() -> None:
    for name in umlos.numerics.__all__:
        obj = getattr(umlos.numerics, name)
        assert obj.__doc__ and ">>>" in obj.__doc__, name


@pytest.mark.parametrize("path", sorted(PACKAGE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_imports_nothing_above_the_numerics_layer(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name.startswith("umlos.") and not name.startswith("umlos.numerics"):
                assert name in ALLOWED_UMLOS_IMPORTS, f"{path.name} imports {name}"
