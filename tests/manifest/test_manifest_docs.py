"""The docstring examples of umlos.manifest and umlos.data run and say what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(("module", "minimum"), [("umlos.manifest", 20), ("umlos.data", 5)])
def test_docstring_examples(module: str, minimum: int) -> None:
    # Public objects set __module__ to their package, so the package covers them all.
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted >= minimum
    assert result.failed == 0


def test_layering() -> None:
    # manifest/ and data/ sit below model/ and train/ (ADR 0008): importing them loads neither.
    import subprocess
    import sys

    code = (
        "import sys, umlos.manifest, umlos.data; "
        "bad = [m for m in sys.modules if m.startswith(('umlos.model', 'umlos.train', 'torch'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
