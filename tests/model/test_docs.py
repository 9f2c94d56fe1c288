"""The examples in the model layer's docstrings run and say what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "umlos.model",
    "umlos.model.ir",
    "umlos.model.presets",
    "umlos.model.init",
    "umlos.model.backends",
    "umlos.model.backends.base",
    "umlos.model.backends.numpy_backend",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 1
    assert result.failed == 0
