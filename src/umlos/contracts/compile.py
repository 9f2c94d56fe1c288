"""Compile a checked contract set to canonical-CBOR artifacts and their identities.

Schema digests cover meaning, not prose: a schema's digest is the digest of its typed IR (names,
types, constraints, requiredness, defaults, and the digests of the types it references), so a
description edit changes nothing that is hashed, while any change a reader could notice does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from umlos.codec import commit_hash, digest, encode
from umlos.contracts._issues import Issues, json_path
from umlos.contracts._load import SCHEMA_ID_BASE
from umlos.contracts.model import ContractSet, OperatorSpec
from umlos.contracts.schema_ir import (
    AnyOfT,
    BoolT,
    BytesT,
    FloatT,
    IntT,
    ListT,
    MapT,
    NullableT,
    NullT,
    Record,
    RefT,
    SchemaSet,
    StrT,
    Type,
)
from umlos.errors import Error

REGISTRY_SCHEMA_VERSION = 1
CATALOG_VERSION = 1
# Domain tags the compiler itself uses; digest_tags.yaml must declare them under these names.
SIG_TAG = ("SIG", "sig_v1")
REGISTRY_TAG = ("OPERATOR_REGISTRY", "operator_registry_v1")
CONTRACT_SET_TAG = ("CONTRACT_SET", "contract_set_v1")


@dataclass(frozen=True)
class Compiled:
    """The compiled contract set: artifact bytes and the identities derived from them."""

    artifacts: dict[str, bytes]
    schema_digests: dict[str, bytes]
    operator_records: list[dict[str, Any]]
    operator_registry_root_hash: bytes
    contract_set_hash: bytes

    def manifest(self, cs: ContractSet) -> dict[str, Any]:
        """A JSON summary of the artifacts, for humans and release tooling."""
        return {
            "name": cs.name,
            "version": cs.version,
            "operator_registry_root_hash": self.operator_registry_root_hash.hex(),
            "contract_set_hash": self.contract_set_hash.hex(),
            "artifacts": {
                name: {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
                for name, data in sorted(self.artifacts.items())
            },
        }

    def manifest_json(self, cs: ContractSet) -> str:
        return json.dumps(self.manifest(cs), indent=2, sort_keys=True) + "\n"


class _SchemaHasher:
    def __init__(self, schemas: SchemaSet, issues: Issues) -> None:
        self.schemas = schemas
        self.issues = issues
        self.digests: dict[str, bytes] = {}
        self._stack: list[str] = []

    def named_digest(self, name: str) -> bytes:
        if name in self.digests:
            return self.digests[name]
        if name in self._stack:
            item = self.schemas.named[name]
            self.issues.add(
                f"schemas/{item.module}.yaml", f"$.{name}", "recursive types are not supported"
            )
            return bytes(32)
        self._stack.append(name)
        try:
            value = digest(self.named_ast(name))
        finally:
            self._stack.pop()
        self.digests[name] = value
        return value

    def named_ast(self, name: str) -> dict[str, Any]:
        item = self.schemas.named[name]
        if isinstance(item, Record):
            fields = []
            for f in item.fields:
                entry: dict[str, Any] = {
                    "name": f.name,
                    "type": self.type_ast(f.type),
                    "required": f.required,
                }
                if f.has_default:
                    entry["default"] = f.default
                fields.append(entry)
            return {"kind": "record", "name": name, "fields": fields}
        return {
            "kind": "union",
            "name": name,
            "discriminator": item.discriminator,
            "alternatives": [[v, self.type_ast(RefT(a))] for v, a in item.alternatives],
        }

    def type_ast(self, t: Type) -> dict[str, Any]:
        out: dict[str, Any]
        if isinstance(t, IntT):
            out = {"t": "int", "lo": t.lo, "hi": t.hi}
            if t.enum is not None:
                out["enum"] = list(t.enum)
        elif isinstance(t, FloatT):
            out = {"t": "float", "nonfinite": t.allow_nonfinite}
            for key in ("lo", "hi", "xlo", "xhi"):
                value = getattr(t, key)
                if value is not None:
                    out[key] = value
        elif isinstance(t, StrT):
            out = {"t": "str"}
            for key in ("min_len", "max_len", "pattern"):
                value = getattr(t, key)
                if value is not None:
                    out[key] = value
            if t.enum is not None:
                out["enum"] = list(t.enum)
        elif isinstance(t, BytesT):
            out = {"t": "bytes"}
            if t.min_len is not None:
                out["min_len"] = t.min_len
            if t.max_len is not None:
                out["max_len"] = t.max_len
        elif isinstance(t, BoolT):
            out = {"t": "bool"}
            if t.const is not None:
                out["const"] = t.const
        elif isinstance(t, NullT):
            out = {"t": "null"}
        elif isinstance(t, ListT):
            out = {"t": "list", "item": self.type_ast(t.item), "unique": t.unique}
            if t.min_items is not None:
                out["min_items"] = t.min_items
            if t.max_items is not None:
                out["max_items"] = t.max_items
        elif isinstance(t, MapT):
            out = {"t": "map", "value": self.type_ast(t.value)}
            if t.key_pattern is not None:
                out["key_pattern"] = t.key_pattern
            if t.min_props is not None:
                out["min_props"] = t.min_props
            if t.max_props is not None:
                out["max_props"] = t.max_props
        elif isinstance(t, RefT):
            out = {"t": "ref", "name": t.name, "digest": self.named_digest(t.name)}
        elif isinstance(t, NullableT):
            out = {"t": "nullable", "inner": self.type_ast(t.inner)}
        elif isinstance(t, AnyOfT):
            out = {"t": "anyof", "options": [self.type_ast(o) for o in t.options]}
        else:  # pragma: no cover - the IR is closed
            raise TypeError(t)
        return out


def digest_ref(value: bytes) -> str:
    return "sha256:" + value.hex()


def signature_digest(op: OperatorSpec, request: bytes, response: bytes) -> bytes:
    """``Commit("sig_v1", [operator_id, version, method, req, resp, side_effects, codes])``."""
    return commit_hash(
        SIG_TAG[1],
        [
            op.operator_id,
            op.version,
            op.method,
            request,
            response,
            sorted(op.side_effects),
            sorted(op.allowed_error_codes),
        ],
    )


def operator_record(op: OperatorSpec, schema_digests: Mapping[str, bytes]) -> dict[str, Any]:
    """The compiled registry record of one operator (the shape of OperatorRecord)."""
    request = schema_digests[op.request]
    response = schema_digests[op.response]
    record: dict[str, Any] = {
        "operator_id": op.operator_id,
        "version": op.version,
        "method": op.method,
        "surface": op.surface,
        "summary": op.summary,
        "request_schema_digest": digest_ref(request),
        "response_schema_digest": digest_ref(response),
        "signature_digest": signature_digest(op, request, response),
        "side_effects": list(op.side_effects),
        "allowed_error_codes": list(op.allowed_error_codes),
        "purity_class": op.purity_class,
        "required_capabilities": list(op.required_capabilities),
        "idempotent": op.idempotent,
        "rng_usage": op.rng_usage,
        "rng_draws": op.rng_draws,
        "determinism_class": op.determinism_class,
        "owner_team": op.owner_team,
        "since": op.since,
    }
    if op.deprecated_in is not None:
        record["deprecated"] = True
        record["deprecated_in"] = op.deprecated_in
    if op.removal_in is not None:
        record["removal_in"] = op.removal_in
    if op.replacement_operator_id is not None:
        record["replacement_operator_id"] = op.replacement_operator_id
    return record


def compile_contracts(cs: ContractSet, issues: Issues) -> Compiled | None:
    """Compile ``cs``; problems found here are added to ``issues`` and the result is ``None``."""
    declared = {t.name: t.tag for t in cs.tags}
    for name, tag in (SIG_TAG, REGISTRY_TAG, CONTRACT_SET_TAG):
        if declared.get(name) != tag:
            issues.add("digest_tags.yaml", "$.tags", f"the compiler needs {name} with tag {tag!r}")
    hasher = _SchemaHasher(cs.schemas, issues)
    try:
        for name in cs.schemas.named:
            hasher.named_digest(name)
    except Error as exc:
        issues.add("schemas", "$", f"cannot hash schema: {exc}")
        return None
    if issues:
        return None
    schema_digests = dict(hasher.digests)
    records = [operator_record(op, schema_digests) for op in cs.operators]
    registry = {"registry_schema_version": REGISTRY_SCHEMA_VERSION, "operator_records": records}
    root = commit_hash(REGISTRY_TAG[1], [REGISTRY_SCHEMA_VERSION, records])
    schema_catalog = {
        "catalog_version": CATALOG_VERSION,
        "entries": [
            {"schema_id": name, "module": cs.schemas.named[name].module, "schema_digest": d}
            for name, d in sorted(schema_digests.items())
        ],
    }
    error_catalog = {
        "catalog_version": CATALOG_VERSION,
        "entries": [
            {
                "code_id": e.code_id,
                "numeric_code": e.numeric_code,
                "subsystem": e.subsystem,
                "severity": e.severity,
                "retryable": e.retryable,
                "privacy_class": e.privacy_class,
                "required_fields": list(e.required_fields),
                "message": e.message,
                "reasons": [code for code, _ in e.reasons],
            }
            for e in sorted(cs.errors, key=lambda e: e.code_id)
        ],
    }
    capability_catalog = {
        "catalog_version": CATALOG_VERSION,
        "capabilities": sorted(cs.capabilities),
    }
    tag_catalog = {
        "catalog_version": CATALOG_VERSION,
        "entries": [
            {
                "name": t.name,
                "hash_class": t.hash_class,
                "identity": t.identity,
                **({"tag": t.tag} if t.tag is not None else {}),
            }
            for t in cs.tags
        ],
    }
    artifacts = {
        "capability_catalog.cbor": encode(capability_catalog),
        "digest_tags.cbor": encode(tag_catalog),
        "error_codes.cbor": encode(error_catalog),
        "operator_registry.cbor": encode(registry),
        "schema_catalog.cbor": encode(schema_catalog),
    }
    _self_check(cs, {"OperatorRegistry": registry, "SchemaCatalog": schema_catalog}, issues)
    if issues:
        return None
    contract_set_hash = commit_hash(
        CONTRACT_SET_TAG[1],
        [cs.name, cs.version, [[n, digest_bytes(b)] for n, b in sorted(artifacts.items())]],
    )
    return Compiled(artifacts, schema_digests, records, root, contract_set_hash)


def _json_form(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_json_form(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_form(v) for k, v in value.items()}
    return value


def _self_check(cs: ContractSet, artifacts: Mapping[str, Any], issues: Issues) -> None:
    """The compiled artifacts must validate against the contract set's own schemas.

    Uses the ``jsonschema`` library on the JSON form — an implementation independent of the
    generated validators — so a compiler bug and a generator bug cannot hide each other.
    """
    resources = [
        (doc["$id"], Resource.from_contents(doc, default_specification=DRAFT202012))
        for doc in cs.schema_docs.values()
    ]
    registry: Registry[Any] = Registry().with_resources(resources)
    for name, value in artifacts.items():
        item = cs.schemas.named.get(name)
        if item is None:
            issues.add("schemas", "$", f"the compiler needs a {name} schema for its artifact")
            continue
        ref = f"{SCHEMA_ID_BASE}{item.module}.yaml#/$defs/{name}"
        validator = jsonschema.Draft202012Validator({"$ref": ref}, registry=registry)
        for error in validator.iter_errors(_json_form(value)):
            where = json_path(error.absolute_path)
            issues.add(
                f"schemas/{item.module}.yaml",
                f"$.{name}",
                f"compiled {name} fails at {where}: {error.message}",
            )


def digest_bytes(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
