"""The contract set: load ``contracts/``, check it, compile it, compare two versions of it.

>>> from pathlib import Path
>>> result = check(Path("contracts"))  # doctest: +SKIP
>>> result.ok, result.compiled.operator_registry_root_hash.hex()  # doctest: +SKIP
(True, '...')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from umlos.contracts._issues import Issue
from umlos.contracts._load import load_contract_set
from umlos.contracts.compile import Compiled, compile_contracts
from umlos.contracts.model import ContractSet

__all__ = ["CheckResult", "Compiled", "ContractSet", "Issue", "check", "find_contracts_dir"]


@dataclass(frozen=True)
class CheckResult:
    contract_set: ContractSet
    compiled: Compiled | None
    issues: list[Issue]

    @property
    def ok(self) -> bool:
        return not self.issues and self.compiled is not None


def check(root: Path) -> CheckResult:
    """Load, check and compile the contract directory ``root``."""
    cs, issues = load_contract_set(root)
    compiled = None if issues else compile_contracts(cs, issues)
    return CheckResult(cs, compiled, issues.sorted())


def find_contracts_dir(start: Path | None = None) -> Path | None:
    """The nearest ``contracts/`` directory at or above ``start`` (default: the working directory)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "contracts" / "contracts.yaml").is_file():
            return candidate / "contracts"
    return None
