"""Compatibility checker: classify every change between two contract sets (ADR 0006).

Rules, in short (a reader built against OLD must keep working against NEW unless MAJOR):
- MAJOR: removing a type, field, enum value, union alternative, operator, error code, tag or
  capability; adding a required field; making a field required; narrowing a type (smaller integer
  range, shorter lengths, a changed pattern, stricter float bounds); changing a field's type;
  changing an operator's signature, purity, side effects, RNG use or determinism; changing an error
  code's numeric value, subsystem, severity, retryability, privacy class or required fields;
  changing a tag's text, hash class or preimage.
- MINOR: adding a type, optional field, enum value, union alternative, operator, error code,
  reason, tag or capability; widening a type; making a required field optional; deprecating an
  operator; changing an operator's allowed error codes or capabilities.
- PATCH: prose (descriptions, summaries, messages, meanings), defaults' documentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from umlos.contracts._load import load_contract_set, semver_key
from umlos.contracts.model import ContractSet
from umlos.contracts.schema_ir import (
    AnyOfT,
    BytesT,
    FloatT,
    IntT,
    ListT,
    MapT,
    NullableT,
    Record,
    RefT,
    StrT,
    Type,
    Union,
    references,
)
from umlos.errors import ContractViolationError

LEVELS = ("NONE", "PATCH", "MINOR", "MAJOR")


@dataclass(frozen=True)
class Change:
    level: str
    where: str
    what: str


@dataclass
class DiffReport:
    old_version: str
    new_version: str
    changes: list[Change] = field(default_factory=list)

    @property
    def required(self) -> str:
        return max((c.level for c in self.changes), key=LEVELS.index, default="NONE")

    @property
    def declared(self) -> str:
        old, new = semver_key(self.old_version), semver_key(self.new_version)
        if new < old:
            return "DOWNGRADE"
        if new[0] > old[0]:
            return "MAJOR"
        if new[1] > old[1]:
            return "MINOR"
        if new[2] > old[2]:
            return "PATCH"
        return "NONE"

    @property
    def ok(self) -> bool:
        declared = self.declared
        if declared == "DOWNGRADE":
            return False
        return LEVELS.index(declared) >= LEVELS.index(self.required)

    def as_dict(self) -> dict[str, Any]:
        return {
            "old_version": self.old_version,
            "new_version": self.new_version,
            "required_bump": self.required,
            "declared_bump": self.declared,
            "ok": self.ok,
            "changes": [{"level": c.level, "where": c.where, "what": c.what} for c in self.changes],
        }


class _Differ:
    def __init__(self, old: ContractSet, new: ContractSet) -> None:
        self.old, self.new = old, new
        self.changes: list[Change] = []

    def add(self, level: str, where: str, what: str) -> None:
        self.changes.append(Change(level, where, what))

    def run(self) -> list[Change]:
        self.schemas()
        self.operators()
        self.errors()
        self.tags()
        self.capabilities()
        return self.changes

    # schemas --------------------------------------------------------------------------------
    def schemas(self) -> None:
        old, new = self.old.schemas.named, self.new.schemas.named
        for name in old.keys() - new.keys():
            self.add("MAJOR", f"schema {name}", "type removed")
        for name in new.keys() - old.keys():
            self.add("MINOR", f"schema {name}", "type added")
        for name in sorted(old.keys() & new.keys()):
            a, b = old[name], new[name]
            if isinstance(a, Record) and isinstance(b, Record):
                self.record(name, a, b)
            elif isinstance(a, Union) and isinstance(b, Union):
                self.union(name, a, b)
            else:
                self.add("MAJOR", f"schema {name}", "changed between record and union")

    def record(self, name: str, a: Record, b: Record) -> None:
        fa = {f.name: f for f in a.fields}
        fb = {f.name: f for f in b.fields}
        for fname in fa.keys() - fb.keys():
            self.add("MAJOR", f"schema {name}.{fname}", "field removed")
        for fname in fb.keys() - fa.keys():
            if fb[fname].required:
                self.add("MAJOR", f"schema {name}.{fname}", "required field added")
            else:
                self.add("MINOR", f"schema {name}.{fname}", "optional field added")
        for fname in sorted(fa.keys() & fb.keys()):
            x, y = fa[fname], fb[fname]
            where = f"schema {name}.{fname}"
            if x.required and not y.required:
                self.add("MAJOR", where, "field is no longer required (old readers may need it)")
            elif y.required and not x.required:
                self.add("MAJOR", where, "field became required")
            self.type_change(where, x.type, y.type)
            if (x.has_default, x.default) != (y.has_default, y.default):
                self.add("MINOR", where, f"default changed from {x.default!r} to {y.default!r}")
            if x.description != y.description:
                self.add("PATCH", where, "description changed")
        if a.description != b.description:
            self.add("PATCH", f"schema {name}", "description changed")

    def union(self, name: str, a: Union, b: Union) -> None:
        where = f"schema {name}"
        if a.discriminator != b.discriminator:
            self.add("MAJOR", where, "discriminator changed")
        va, vb = dict(a.alternatives), dict(b.alternatives)
        for value in va.keys() - vb.keys():
            self.add("MAJOR", where, f"alternative {value!r} removed")
        for value in vb.keys() - va.keys():
            self.add("MINOR", where, f"alternative {value!r} added")
        for value in va.keys() & vb.keys():
            if va[value] != vb[value]:
                self.add("MAJOR", where, f"alternative {value!r} now maps to another record")

    def type_change(self, where: str, a: Type, b: Type) -> None:
        if type(a) is not type(b):
            if isinstance(b, NullableT) and not isinstance(a, NullableT):
                self.add("MAJOR", where, "type now admits null")
                self.type_change(where, a, b.inner)
            else:
                self.add("MAJOR", where, f"type changed from {_kind(a)} to {_kind(b)}")
            return
        if isinstance(a, IntT) and isinstance(b, IntT):
            self._range(where, a.lo, a.hi, b.lo, b.hi)
            self._enum(where, a.enum, b.enum)
        elif isinstance(a, StrT) and isinstance(b, StrT):
            self._enum(where, a.enum, b.enum)
            self._lengths(where, a.min_len, a.max_len, b.min_len, b.max_len)
            if a.pattern != b.pattern:
                self.add("MAJOR", where, f"pattern changed from {a.pattern!r} to {b.pattern!r}")
        elif isinstance(a, BytesT) and isinstance(b, BytesT):
            self._lengths(where, a.min_len, a.max_len, b.min_len, b.max_len)
        elif isinstance(a, FloatT) and isinstance(b, FloatT):
            if (a.lo, a.hi, a.xlo, a.xhi) != (b.lo, b.hi, b.xlo, b.xhi):
                self.add("MAJOR", where, "float bounds changed")
            if a.allow_nonfinite and not b.allow_nonfinite:
                self.add("MAJOR", where, "non-finite values no longer allowed")
            elif b.allow_nonfinite and not a.allow_nonfinite:
                self.add("MAJOR", where, "non-finite values now allowed")
        elif isinstance(a, ListT) and isinstance(b, ListT):
            self._lengths(where, a.min_items, a.max_items, b.min_items, b.max_items)
            if b.unique and not a.unique:
                self.add("MAJOR", where, "items must now be unique")
            self.type_change(where + "[]", a.item, b.item)
        elif isinstance(a, MapT) and isinstance(b, MapT):
            if a.key_pattern != b.key_pattern:
                self.add("MAJOR", where, "key pattern changed")
            self._lengths(where, a.min_props, a.max_props, b.min_props, b.max_props)
            self.type_change(where + "{}", a.value, b.value)
        elif isinstance(a, RefT) and isinstance(b, RefT):
            if a.name != b.name:
                self.add("MAJOR", where, f"type changed from {a.name} to {b.name}")
        elif isinstance(a, NullableT) and isinstance(b, NullableT):
            self.type_change(where, a.inner, b.inner)
        elif isinstance(a, AnyOfT) and isinstance(b, AnyOfT) and a != b:
            self.add("MAJOR", where, "scalar union changed")
        elif a != b:
            self.add("MAJOR", where, f"{_kind(a)} constraints changed")

    def _range(self, where: str, alo: int, ahi: int, blo: int, bhi: int) -> None:
        if blo > alo or bhi < ahi:
            self.add(
                "MAJOR", where, f"integer range narrowed from [{alo}, {ahi}] to [{blo}, {bhi}]"
            )
        elif (blo, bhi) != (alo, ahi):
            self.add("MINOR", where, f"integer range widened to [{blo}, {bhi}]")

    def _enum(self, where: str, a: tuple[Any, ...] | None, b: tuple[Any, ...] | None) -> None:
        if a == b:
            return
        if a is None:
            self.add("MAJOR", where, "values restricted to an enum")
            return
        if b is None:
            self.add("MINOR", where, "enum restriction removed")
            return
        for value in sorted(set(a) - set(b), key=repr):
            self.add("MAJOR", where, f"enum value {value!r} removed")
        for value in sorted(set(b) - set(a), key=repr):
            self.add("MINOR", where, f"enum value {value!r} added")

    def _lengths(
        self, where: str, amin: int | None, amax: int | None, bmin: int | None, bmax: int | None
    ) -> None:
        narrowed = (bmin or 0) > (amin or 0) or (bmax is not None and (amax is None or bmax < amax))
        if narrowed:
            self.add("MAJOR", where, f"size limits narrowed to [{bmin}, {bmax}]")
        elif (amin, amax) != (bmin, bmax):
            self.add("MINOR", where, f"size limits widened to [{bmin}, {bmax}]")

    # operators ------------------------------------------------------------------------------
    def operators(self) -> None:
        old = {o.operator_id: o for o in self.old.operators}
        new = {o.operator_id: o for o in self.new.operators}
        for op_id in sorted(old.keys() - new.keys()):
            self.add("MAJOR", f"operator {op_id}", "operator removed")
        for op_id in sorted(new.keys() - old.keys()):
            self.add("MINOR", f"operator {op_id}", "operator added")
        for op_id in sorted(old.keys() & new.keys()):
            a, b = old[op_id], new[op_id]
            where = f"operator {op_id}"
            for attr in (
                "version",
                "surface",
                "method",
                "request",
                "response",
                "purity_class",
                "side_effects",
                "rng_usage",
                "rng_draws",
                "determinism_class",
                "idempotent",
            ):
                if getattr(a, attr) != getattr(b, attr):
                    self.add("MAJOR", where, f"{attr} changed")
            for attr in (
                "allowed_error_codes",
                "required_capabilities",
                "deprecated_in",
                "removal_in",
                "replacement_operator_id",
                "owner_team",
            ):
                if getattr(a, attr) != getattr(b, attr):
                    self.add("MINOR", where, f"{attr} changed")
            if a.summary != b.summary:
                self.add("PATCH", where, "summary changed")
        # A record changing shape changes every operator whose request or response reaches it.
        changed_types = {
            c.where.split()[1].split(".")[0]
            for c in self.changes
            if c.level == "MAJOR" and c.where.startswith("schema ")
        }
        grew = True
        while grew:
            grew = False
            for name, item in self.new.schemas.named.items():
                if name not in changed_types and references(item) & changed_types:
                    changed_types.add(name)
                    grew = True
        for op_id in sorted(old.keys() & new.keys()):
            for attr in ("request", "response"):
                if getattr(new[op_id], attr) in changed_types:
                    self.add("MAJOR", f"operator {op_id}", f"{attr} schema changed incompatibly")

    # catalogues -----------------------------------------------------------------------------
    def errors(self) -> None:
        old = {e.code_id: e for e in self.old.errors}
        new = {e.code_id: e for e in self.new.errors}
        for code in sorted(old.keys() - new.keys()):
            self.add("MAJOR", f"error {code}", "code removed")
        for code in sorted(new.keys() - old.keys()):
            self.add("MINOR", f"error {code}", "code added")
        for code in sorted(old.keys() & new.keys()):
            a, b = old[code], new[code]
            for attr in (
                "numeric_code",
                "subsystem",
                "severity",
                "retryable",
                "privacy_class",
                "required_fields",
            ):
                if getattr(a, attr) != getattr(b, attr):
                    self.add("MAJOR", f"error {code}", f"{attr} changed")
            ra, rb = dict(a.reasons), dict(b.reasons)
            for reason in sorted(ra.keys() - rb.keys()):
                self.add("MAJOR", f"error {code}", f"reason {reason} removed")
            for reason in sorted(rb.keys() - ra.keys()):
                self.add("MINOR", f"error {code}", f"reason {reason} added")
            if (a.message, a.meaning) != (b.message, b.meaning):
                self.add("PATCH", f"error {code}", "message or meaning text changed")

    def tags(self) -> None:
        old = {t.name: t for t in self.old.tags}
        new = {t.name: t for t in self.new.tags}
        for name in sorted(old.keys() - new.keys()):
            self.add("MAJOR", f"tag {name}", "tag removed")
        for name in sorted(new.keys() - old.keys()):
            self.add("MINOR", f"tag {name}", "tag added")
        for name in sorted(old.keys() & new.keys()):
            a, b = old[name], new[name]
            for attr in ("tag", "hash_class", "identity", "preimage"):
                if getattr(a, attr) != getattr(b, attr):
                    self.add("MAJOR", f"tag {name}", f"{attr} changed")
            if (a.description, a.used_by) != (b.description, b.used_by):
                self.add("PATCH", f"tag {name}", "description changed")

    def capabilities(self) -> None:
        old, new = self.old.capabilities, self.new.capabilities
        for name in sorted(old.keys() - new.keys()):
            self.add("MAJOR", f"capability {name}", "capability removed")
        for name in sorted(new.keys() - old.keys()):
            self.add("MINOR", f"capability {name}", "capability added")
        for name in sorted(old.keys() & new.keys()):
            if old[name] != new[name]:
                self.add("PATCH", f"capability {name}", "description changed")


def _kind(t: Type) -> str:
    return type(t).__name__.removesuffix("T").lower()


def diff_sets(old: ContractSet, new: ContractSet) -> DiffReport:
    report = DiffReport(old.version, new.version)
    report.changes = sorted(
        _Differ(old, new).run(), key=lambda c: (-LEVELS.index(c.level), c.where, c.what)
    )
    return report


def diff_dirs(old: Path, new: Path) -> DiffReport:
    """Load two contract directories (both must be valid) and compare them."""
    sets = []
    for root in (old, new):
        cs, issues = load_contract_set(root)
        if issues:
            first = issues.sorted()[0]
            raise ContractViolationError(
                f"{root} is not a valid contract set ({len(issues.items)} issues; first: {first})",
                reason="CONTRACT_INVALID",
                artifact=str(root),
            )
        sets.append(cs)
    return diff_sets(sets[0], sets[1])
