"""Emit the small generated modules: errors, digest tags, the operator registry, operator Protocols."""

from __future__ import annotations

from umlos.codegen._text import HEADER, all_block, doc_literal, py_literal
from umlos.contracts.compile import Compiled
from umlos.contracts.model import ContractSet


def render_errors(cs: ContractSet) -> str:
    out = [
        HEADER,
        '"""Exception classes: one base per subsystem, one class per error-catalogue code."""',
        "",
        "from __future__ import annotations",
        "",
        "from collections.abc import Mapping",
        "from typing import ClassVar",
        "",
        "from umlos._errorbase import Error",
    ]
    names: list[str] = []
    for name, sub in cs.subsystems.items():
        out += [
            "",
            "",
            f"class {sub.class_name}(Error):",
            f"    {doc_literal(sub.description, 4)}",
            "",
            f"    subsystem: ClassVar[str] = {py_literal(name)}",
        ]
        names.append(sub.class_name)
    for e in cs.errors:
        base = cs.subsystems[e.subsystem].class_name
        doc = e.meaning
        if e.reasons:
            doc += "\n\nReasons: " + ", ".join(code for code, _ in e.reasons) + "."
        out += [
            "",
            "",
            f"class {e.class_name}({base}):",
            f"    {doc_literal(doc, 4)}",
            "",
            f"    code_id: ClassVar[str] = {py_literal(e.code_id)}",
            f"    numeric_code: ClassVar[int] = {e.numeric_code}",
            f"    severity: ClassVar[str] = {py_literal(e.severity)}",
            f"    retryable: ClassVar[bool] = {e.retryable}",
            f"    privacy_class: ClassVar[str] = {py_literal(e.privacy_class)}",
            f"    required_fields: ClassVar[tuple[str, ...]] = {py_literal(e.required_fields)}",
            f"    message_template: ClassVar[str] = {py_literal(e.message)}",
            f"    reasons: ClassVar[tuple[str, ...]] = {py_literal(tuple(c for c, _ in e.reasons))}",
        ]
        names.append(e.class_name)
    by_code = ", ".join(f"{py_literal(e.code_id)}: {e.class_name}" for e in cs.errors)
    out += [
        "",
        "",
        f"BY_CODE: Mapping[str, type[Error]] = {{{by_code}}}",
        '"""Every catalogue code, mapped to its exception class."""',
        "",
        all_block([*names, "BY_CODE"]),
    ]
    return "\n".join(out) + "\n"


def render_tags(cs: ContractSet) -> str:
    out = [
        HEADER,
        '"""Domain-separation tags (``contracts/digest_tags.yaml``): use these, never string literals."""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Final",
        "",
    ]
    for t in cs.tags:
        if t.tag is None:
            continue
        out.append(f"{t.name}: Final = {py_literal(t.tag)}")
        doc = f"{t.description} Preimage: {t.preimage}" if t.preimage else t.description
        out.append(doc_literal(f"``{t.identity}`` ({t.hash_class}). {doc}", 0))
    out += [
        "",
        "ALL_TAGS: Final = frozenset({"
        + ", ".join(t.name for t in cs.tags if t.tag is not None)
        + "})",
    ]
    return "\n".join(out) + "\n"


def render_registry(cs: ContractSet, compiled: Compiled) -> str:
    out = [
        HEADER,
        '"""The operator registry as data, with the identities the compiler derived."""',
        "",
        "from __future__ import annotations",
        "",
        "from collections.abc import Mapping",
        "from typing import Final",
        "",
        "from umlos._generated.records import OperatorRecord",
        "",
        f"CONTRACTS_NAME: Final = {py_literal(cs.name)}",
        f"CONTRACTS_VERSION: Final = {py_literal(cs.version)}",
        f"OPERATOR_REGISTRY_ROOT_HASH: Final = bytes.fromhex({py_literal(compiled.operator_registry_root_hash.hex())})",
        '"""``Commit("operator_registry_v1", [1, operator_records])``; bound into replay tokens."""',
        f"CONTRACT_SET_HASH: Final = bytes.fromhex({py_literal(compiled.contract_set_hash.hex())})",
        '"""Commitment to every compiled contract artifact."""',
        "",
        "SCHEMA_DIGESTS: Final[Mapping[str, bytes]] = {",
    ]
    for name, value in sorted(compiled.schema_digests.items()):
        out.append(f"    {py_literal(name)}: bytes.fromhex({py_literal(value.hex())}),")
    out += ["}", "", "OPERATORS: Final[tuple[OperatorRecord, ...]] = ("]
    for record in compiled.operator_records:
        out.append(f"    OperatorRecord.from_obj({py_literal(record)}),")
    out += [
        ")",
        '"""Every operator, sorted by (operator_id, version number)."""',
        "",
        "BY_ID: Final[Mapping[str, OperatorRecord]] = {op.operator_id: op for op in OPERATORS}",
    ]
    return "\n".join(out) + "\n"


def render_operators(cs: ContractSet) -> str:
    request_types = sorted({n for op in cs.operators for n in (op.request, op.response)})
    out = [
        HEADER,
        '"""One typed Protocol per registry operator: implementations are checked against these."""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Protocol",
        "",
    ]
    if request_types:
        out.append("from umlos._generated.records import (")
        out += [f"    {name}," for name in request_types]
        out.append(")")
    names = []
    for op in cs.operators:
        details = (
            f"{op.operator_id}: {op.summary}\n\n"
            f"Purity {op.purity_class}; determinism {op.determinism_class}; "
            f"side effects {', '.join(op.side_effects) or 'none'}; RNG {op.rng_usage} "
            f"({op.rng_draws} blocks); errors {', '.join(op.allowed_error_codes) or 'none'}; "
            f"capabilities {', '.join(op.required_capabilities) or 'none'}; since {op.since}."
        )
        if op.deprecated_in:
            details += f" Deprecated in {op.deprecated_in}"
            details += f", removed in {op.removal_in}." if op.removal_in else "."
        out += [
            "",
            "",
            f"class {op.short_name}(Protocol):",
            f"    {doc_literal(details, 4)}",
            "",
            f"    def __call__(self, request: {op.request}, /) -> {op.response}: ...",
        ]
        names.append(op.short_name)
    out += ["", "", all_block(names)]
    return "\n".join(out) + "\n"
