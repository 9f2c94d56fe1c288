"""Emit the reference tables of ``docs/reference/`` from the contract set."""

from __future__ import annotations

from umlos.codegen._records import _Emitter
from umlos.codegen._text import MD_HEADER, md_cell
from umlos.contracts.compile import Compiled
from umlos.contracts.model import ContractSet
from umlos.contracts.schema_ir import Record, Union


def render_errors_md(cs: ContractSet) -> str:
    lines = [
        MD_HEADER,
        "# Error codes",
        "",
        "Every error UML_OS raises carries one of these codes. Exception class names are in",
        "`umlos.errors`; all derive from `umlos.errors.Error`.",
        "",
        "| code | numeric | subsystem | severity | retryable | class | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in sorted(cs.errors, key=lambda e: e.numeric_code):
        lines.append(
            f"| `{e.code_id}` | {e.numeric_code} | {e.subsystem} | {e.severity} | "
            f"{'yes' if e.retryable else 'no'} | `{e.class_name}` | {md_cell(e.meaning)} |"
        )
    for e in cs.errors:
        if e.reasons:
            lines += ["", f"## Reasons of `{e.code_id}`", "", "| reason | meaning |", "|---|---|"]
            lines += [f"| `{code}` | {md_cell(text)} |" for code, text in e.reasons]
    return "\n".join(lines) + "\n"


def render_operators_md(cs: ContractSet, compiled: Compiled) -> str:
    lines = [
        MD_HEADER,
        "# Operator registry",
        "",
        f"Contract set `{cs.name}` {cs.version}; operator_registry_root_hash "
        f"`{compiled.operator_registry_root_hash.hex()}`.",
        "",
        "| operator | purity | determinism | side effects | RNG | errors | request → response |",
        "|---|---|---|---|---|---|---|",
    ]
    for op in cs.operators:
        lines.append(
            f"| `{op.operator_id}` | {op.purity_class} | {op.determinism_class} | "
            f"{', '.join(op.side_effects) or '—'} | {op.rng_usage} | "
            f"{', '.join(op.allowed_error_codes) or '—'} | `{op.request}` → `{op.response}` |"
        )
    lines += ["", "## Summaries", ""]
    for op, record in zip(cs.operators, compiled.operator_records, strict=True):
        lines.append(
            f"- `{op.operator_id}` — {md_cell(op.summary)} (signature "
            f"`{record['signature_digest'].hex()[:16]}…`, since {op.since})"
        )
    return "\n".join(lines) + "\n"


def render_tags_md(cs: ContractSet) -> str:
    lines = [
        MD_HEADER,
        "# Digest tags and identities",
        "",
        "`commit` = SHA-256(CBOR([tag, payload])); `digest` = SHA-256(CBOR(object)); "
        "`raw` = SHA-256(bytes); `keyed` = HMAC-SHA256.",
        "",
        "| name | tag | class | identity | preimage | used by |",
        "|---|---|---|---|---|---|",
    ]
    for t in cs.tags:
        lines.append(
            f"| `{t.name}` | {f'`{t.tag}`' if t.tag else '—'} | {t.hash_class} | "
            f"`{t.identity}` | {md_cell(t.preimage)} | {md_cell(', '.join(t.used_by))} |"
        )
    return "\n".join(lines) + "\n"


def render_schemas_md(cs: ContractSet, compiled: Compiled) -> str:
    em = _Emitter(cs.schemas)
    lines = [MD_HEADER, "# Schemas", ""]
    for stem, names in cs.schemas.modules.items():
        lines += [f"## `{stem}.yaml`", ""]
        if cs.schemas.module_descriptions.get(stem):
            lines += [md_cell(cs.schemas.module_descriptions[stem]), ""]
        for name in names:
            item = cs.schemas.named.get(name)
            if item is None:
                continue
            digest = compiled.schema_digests[name].hex()[:16]
            lines += [f"### {name}", "", f"Schema digest `{digest}…`.", ""]
            if item.description:
                lines += [md_cell(item.description), ""]
            if isinstance(item, Union):
                lines.append(f"Union on `{item.discriminator}`:")
                lines += [f"- `{value}` → `{alt}`" for value, alt in item.alternatives]
                lines.append("")
            elif isinstance(item, Record):
                lines += ["| field | type | required | description |", "|---|---|---|---|"]
                for f in item.fields:
                    default = f" (default `{f.default!r}`)" if f.has_default else ""
                    lines.append(
                        f"| `{f.name}` | `{md_cell(em.annotation(f.type))}` | "
                        f"{'yes' if f.required else 'no'} | {md_cell(f.description)}{default} |"
                    )
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_capabilities_md(cs: ContractSet) -> str:
    lines = [
        MD_HEADER,
        "# Capabilities",
        "",
        "| capability | meaning | operators |",
        "|---|---|---|",
    ]
    for name, text in cs.capabilities.items():
        users = [op.operator_id for op in cs.operators if name in op.required_capabilities]
        lines.append(f"| `{name}` | {md_cell(text)} | {len(users)} |")
    return "\n".join(lines) + "\n"
