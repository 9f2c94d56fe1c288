"""Every reason sub-code the library raises is declared in the error catalogue."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from umlos.errors import BY_CODE

DECLARED = {reason for cls in BY_CODE.values() for reason in getattr(cls, "reasons", ())}


def test_reason_literals_in_source_are_declared() -> None:
    used: set[str] = set()
    for path in (ROOT / "src" / "umlos").rglob("*.py"):
        if "_generated" in path.parts:
            continue
        text = path.read_text()
        used |= set(re.findall(r'reason="([A-Z][A-Z0-9_]+)"', text))
        if path.name == "_reasons.py":  # modules that list their reason constants
            used |= set(re.findall(r'^[A-Z_]+: Final = "([A-Z][A-Z0-9_]+)"', text, flags=re.M))
    # The generated-record runtime raises the API_SHAPE_MISMATCH reasons.
    assert used, "the scan found no reason codes at all"
    assert used <= DECLARED, sorted(used - DECLARED)
