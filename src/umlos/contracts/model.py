"""The contract set as typed objects: what ``contracts/`` says, after parsing and checking."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from umlos.contracts.schema_ir import SchemaSet

SIDE_EFFECTS = (
    "ADVANCES_CURSOR",
    "ADVANCES_RNG",
    "ALLOCATES_MEMORY",
    "MUTATES_ACCOUNTANT",
    "MUTATES_MODEL_STATE",
    "NETWORK_COMM",
    "PERFORMS_IO",
)
PURITY_CLASSES = ("IO", "PURE", "STATEFUL")
RNG_USAGES = ("NONE", "PHILOX4x32_10")
DETERMINISM_CLASSES = ("DETERMINISTIC", "MIXED", "STOCHASTIC")
SURFACES = {"SYSCALL": ("CALL", "INTERNAL"), "SERVICE": ("CALL", "GRPC", "HTTP")}
SEVERITIES = ("ERROR", "FATAL", "WARN")
PRIVACY_CLASSES = ("CONFIDENTIAL", "INTERNAL", "PUBLIC")
HASH_CLASSES = ("commit", "digest", "keyed", "raw")


@dataclass(frozen=True)
class Subsystem:
    name: str
    class_name: str
    description: str


@dataclass(frozen=True)
class ErrorCode:
    code_id: str
    numeric_code: int
    subsystem: str
    severity: str
    retryable: bool
    privacy_class: str
    required_fields: tuple[str, ...]
    message: str
    meaning: str
    reasons: tuple[tuple[str, str], ...]

    @property
    def class_name(self) -> str:
        return "".join(part.capitalize() for part in self.code_id.split("_")) + "Error"


@dataclass(frozen=True)
class DigestTag:
    name: str
    tag: str | None
    hash_class: str
    identity: str
    preimage: str
    used_by: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class OperatorSpec:
    operator_id: str
    version: str
    summary: str
    surface: str
    method: str
    request: str  # record name
    response: str  # record name
    purity_class: str
    side_effects: tuple[str, ...]
    rng_usage: str
    rng_draws: str
    determinism_class: str
    idempotent: bool
    allowed_error_codes: tuple[str, ...]
    required_capabilities: tuple[str, ...]
    owner_team: str
    since: str
    source_file: str
    deprecated_in: str | None = None
    removal_in: str | None = None
    replacement_operator_id: str | None = None

    @property
    def version_num(self) -> int:
        """The number of ``v<N>``; -1 for a malformed version (already reported by the checker)."""
        digits = self.version[1:]
        return int(digits) if self.version.startswith("v") and digits.isdigit() else -1

    @property
    def subsystem(self) -> str:
        return self.operator_id.split(".")[1]

    @property
    def short_name(self) -> str:
        """``NextBatch_v2`` → ``NextBatchV2``: the name of the generated Protocol."""
        name = self.operator_id.split(".")[2]
        base, _, ver = name.rpartition("_v")
        return f"{self.subsystem}{base}V{ver}"


@dataclass
class ContractSet:
    """Everything in ``contracts/``, checked and typed."""

    name: str
    version: str
    description: str
    subsystems: dict[str, Subsystem] = field(default_factory=dict)
    errors: list[ErrorCode] = field(default_factory=list)
    capabilities: dict[str, str] = field(default_factory=dict)
    tags: list[DigestTag] = field(default_factory=list)
    operators: list[OperatorSpec] = field(default_factory=list)
    schemas: SchemaSet = field(default_factory=SchemaSet)
    schema_docs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def error(self, code_id: str) -> ErrorCode | None:
        for e in self.errors:
            if e.code_id == code_id:
                return e
        return None
