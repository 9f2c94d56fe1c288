"""Emit ``_generated/records.py``: one frozen dataclass per record, one parser per union.

Each record gets ``from_obj`` (validate + build; errors carry the JSON path) and ``to_obj``
(back to the CBOR data model, or the JSON form with ``json=True``). All records live in one
module so that cross-references between schema files never create import cycles.
"""

from __future__ import annotations

from umlos.codegen._text import HEADER, all_block, doc_literal, py_literal, snake
from umlos.contracts.model import ContractSet
from umlos.contracts.schema_ir import (
    AnyOfT,
    BoolT,
    BytesT,
    Field,
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
    Union,
)


class _Emitter:
    def __init__(self, schemas: SchemaSet) -> None:
        self.schemas = schemas
        self.patterns: dict[str, str] = {}
        self.enums: dict[tuple[str, ...], str] = {}

    def enum(self, values: tuple[str, ...]) -> str:
        if values not in self.enums:
            self.enums[values] = f"_ENUM{len(self.enums)}"
        return self.enums[values]

    def pattern(self, regex: str) -> str:
        if regex not in self.patterns:
            self.patterns[regex] = f"_PAT{len(self.patterns)}"
        return self.patterns[regex]

    # annotations ----------------------------------------------------------------------------
    def annotation(self, t: Type) -> str:
        if isinstance(t, IntT):
            return "int"
        if isinstance(t, FloatT):
            return "float"
        if isinstance(t, StrT):
            if t.enum is not None:
                return "Literal[" + ", ".join(py_literal(v) for v in t.enum) + "]"
            return "str"
        if isinstance(t, BytesT):
            return "bytes"
        if isinstance(t, BoolT):
            return "bool"
        if isinstance(t, NullT):
            return "None"
        if isinstance(t, ListT):
            return f"tuple[{self.annotation(t.item)}, ...]"
        if isinstance(t, MapT):
            return f"dict[str, {self.annotation(t.value)}]"
        if isinstance(t, RefT):
            return t.name
        if isinstance(t, NullableT):
            return f"{self.annotation(t.inner)} | None"
        parts: list[str] = []
        for option in t.options:
            a = self.annotation(option)
            if a.startswith("Literal["):
                a = "str"
            if a not in parts:
                parts.append(a)
        return " | ".join(parts)

    # validation expressions -----------------------------------------------------------------
    def check(self, t: Type, v: str, p: str, depth: int = 0, j: str = "j") -> str:
        """An expression that validates ``v`` (at path ``p``) and yields the Python value."""
        if isinstance(t, IntT):
            enum = f", {py_literal(t.enum)}" if t.enum is not None else ""
            return f"_rt.int_({v}, {p}, {t.lo}, {t.hi}{enum})"
        if isinstance(t, FloatT):
            kwargs = [
                f"{k}={py_literal(getattr(t, k))}"
                for k in ("lo", "hi", "xlo", "xhi")
                if getattr(t, k) is not None
            ]
            if t.allow_nonfinite:
                kwargs.append("nonfinite=True")
            return f"_rt.float_({', '.join([v, p, *kwargs])})"
        if isinstance(t, StrT):
            kwargs = []
            if t.min_len is not None:
                kwargs.append(f"min_len={t.min_len}")
            if t.max_len is not None:
                kwargs.append(f"max_len={t.max_len}")
            if t.pattern is not None:
                kwargs.append(f"pattern={self.pattern(t.pattern)}")
            if t.enum is not None:
                # enum_ returns Any so the value fits the field's Literal annotation.
                return f"_rt.enum_({v}, {p}, {self.enum(t.enum)})"
            return f"_rt.str_({', '.join([v, p, *kwargs])})"
        if isinstance(t, BytesT):
            return f"_rt.bytes_({v}, {p}, {j}, {t.min_len}, {t.max_len})"
        if isinstance(t, BoolT):
            const = f", {t.const}" if t.const is not None else ""
            return f"_rt.bool_({v}, {p}{const})"
        if isinstance(t, NullT):
            return f"_rt.null({v}, {p})"
        if isinstance(t, ListT):
            kwargs = []
            if t.min_items is not None:
                kwargs.append(f"min_items={t.min_items}")
            if t.max_items is not None:
                kwargs.append(f"max_items={t.max_items}")
            if t.unique:
                kwargs.append("unique=True")
            return f"_rt.list_({', '.join([v, p, j, self.item_check(t.item, depth), *kwargs])})"
        if isinstance(t, MapT):
            kwargs = []
            if t.key_pattern is not None:
                kwargs.append(f"key_pattern={self.pattern(t.key_pattern)}")
            if t.min_props is not None:
                kwargs.append(f"min_props={t.min_props}")
            if t.max_props is not None:
                kwargs.append(f"max_props={t.max_props}")
            return f"_rt.map_({', '.join([v, p, j, self.item_check(t.value, depth), *kwargs])})"
        if isinstance(t, RefT):
            return f"{self.parser(t.name)}({v}, {p}, {j})"
        if isinstance(t, NullableT):
            return f"(None if {v} is None else {self.check(t.inner, v, p, depth, j)})"
        options = ", ".join(self.item_check(o, depth) for o in t.options)
        expected = py_literal(self.annotation(t))
        return f"_rt.any_of({v}, {p}, {j}, ({options},), {expected})"

    def item_check(self, t: Type, depth: int) -> str:
        if isinstance(t, RefT):
            return self.parser(t.name)
        v, p, j = f"v{depth}", f"p{depth}", f"j{depth}"
        return f"lambda {v}, {p}, {j}: {self.check(t, v, p, depth + 1, j)}"

    def parser(self, name: str) -> str:
        item = self.schemas.named[name]
        if isinstance(item, Union):
            return f"_parse_{snake(name)}"
        return f"{name}._from"

    # conversion back to the data model ------------------------------------------------------
    def out(self, t: Type, v: str, depth: int = 0) -> str | None:
        """An expression converting ``v`` to its data-model form, or None when it is identity."""
        if isinstance(t, BytesT):
            return f"({v}.hex() if json else {v})"
        if isinstance(t, ListT):
            x = f"x{depth}"
            inner = self.out(t.item, x, depth + 1)
            return f"[{inner} for {x} in {v}]" if inner else f"list({v})"
        if isinstance(t, MapT):
            x = f"x{depth}"
            inner = self.out(t.value, x, depth + 1)
            return (
                f"{{k{depth}: {inner} for k{depth}, {x} in {v}.items()}}" if inner else f"dict({v})"
            )
        if isinstance(t, RefT):
            return f"{v}.to_obj(json=json)"
        if isinstance(t, NullableT):
            inner = self.out(t.inner, v, depth)
            return f"(None if {v} is None else {inner})" if inner else None
        if isinstance(t, AnyOfT) and any(isinstance(o, BytesT) for o in t.options):
            return f"_rt.scalar_out({v}, json)"
        return None

    # records --------------------------------------------------------------------------------
    def record(self, rec: Record) -> str:
        lines = [
            "@dataclass(frozen=True, slots=True, kw_only=True)",
            f"class {rec.name}:",
            f"    {doc_literal(_record_doc(rec), 4)}",
            "",
        ]
        defaults = {f.name: f.default for f in rec.fields if f.has_default}
        for f in rec.fields:
            ann = self.annotation(f.type)
            const = _const(f)
            if const is not None:
                lines.append(f"    {f.name}: {ann} = {py_literal(const)}")
            elif f.required:
                lines.append(f"    {f.name}: {ann}")
            else:
                lines.append(f"    {f.name}: {ann} | None = None")
        lines.append("")
        lines.append(f"    defaults: ClassVar[Mapping[str, Any]] = {py_literal(defaults)}")
        lines.append(
            f"    _fields: ClassVar[frozenset[str]] = frozenset({py_literal(tuple(f.name for f in rec.fields))})"
        )
        required = tuple(f.name for f in rec.fields if f.required)
        lines.append(f"    _required: ClassVar[tuple[str, ...]] = {py_literal(required)}")
        lines += [
            "",
            "    @classmethod",
            f'    def from_obj(cls, obj: object, path: str = "$", *, json: bool = False) -> {rec.name}:',
            '        """Validate ``obj`` (CBOR data model, or JSON form with ``json=True``) and build."""',
            "        return cls._from(obj, path, json)",
            "",
            "    @classmethod",
            f"    def _from(cls, obj: object, path: str, j: bool) -> {rec.name}:",
            "        m = _rt.expect_map(obj, path)",
            "        _rt.check_fields(m, cls._fields, cls._required, path)",
            "        return cls(",
        ]
        for f in rec.fields:
            key = py_literal(f.name)
            p = f'path + ".{f.name}"'
            expr = self.check(f.type, f"m[{key}]", p)
            if f.required:
                lines.append(f"            {f.name}={expr},")
            else:
                lines.append(f"            {f.name}=({expr}) if {key} in m else None,")
        lines += [
            "        )",
            "",
            "    def to_obj(self, *, json: bool = False) -> dict[str, Any]:",
            '        """The data-model form (bytes stay bytes; ``json=True`` writes them as hex)."""',
            "        out: dict[str, Any] = {",
        ]
        for f in rec.fields:
            if f.required:
                expr = self.out(f.type, f"self.{f.name}") or f"self.{f.name}"
                lines.append(f"            {py_literal(f.name)}: {expr},")
        lines.append("        }")
        for f in rec.fields:
            if not f.required:
                expr = self.out(f.type, f"self.{f.name}") or f"self.{f.name}"
                lines.append(f"        if self.{f.name} is not None:")
                lines.append(f"            out[{py_literal(f.name)}] = {expr}")
        lines.append("        return out")
        return "\n".join(lines)

    def union(self, u: Union) -> str:
        alts = " | ".join(name for _, name in u.alternatives)
        kinds = ", ".join(f"{py_literal(v)}: {name}._from" for v, name in u.alternatives)
        fn = snake(u.name)
        return "\n".join(
            [
                f"{u.name}: TypeAlias = {alts}",
                f"{doc_literal(u.description or u.name, 0)}",
                "",
                f"_{fn.upper()}_KINDS: dict[str, _rt.Check[{u.name}]] = {{{kinds}}}",
                "",
                "",
                f"def _parse_{fn}(obj: object, path: str, j: bool) -> {u.name}:",
                f"    return _rt.union_kind(obj, path, {py_literal(u.discriminator)}, _{fn.upper()}_KINDS, j)",
                "",
                "",
                f'def {fn}_from_obj(obj: object, path: str = "$", *, json: bool = False) -> {u.name}:',
                f'    """Parse any {u.name} alternative, chosen by its ``{u.discriminator}`` field."""',
                f"    return _parse_{fn}(obj, path, json)",
            ]
        )


def _const(f: Field) -> str | None:
    if (
        f.required
        and isinstance(f.type, StrT)
        and f.type.enum is not None
        and len(f.type.enum) == 1
    ):
        return f.type.enum[0]
    return None


def _record_doc(rec: Record) -> str:
    text = rec.description or rec.name
    return f"{text}\n\nSchema: ``contracts/schemas/{rec.module}.yaml`` ({rec.name})."


def render_records(cs: ContractSet) -> str:
    schemas = cs.schemas
    em = _Emitter(schemas)
    blocks: list[str] = []
    names: list[str] = []
    for members in schemas.modules.values():
        for name in members:
            item = schemas.named.get(name)
            if isinstance(item, Record):
                blocks.append(em.record(item))
                names.append(name)
    for members in schemas.modules.values():
        for name in members:
            item = schemas.named.get(name)
            if isinstance(item, Union):
                blocks.append(em.union(item))
                names += [name, f"{snake(name)}_from_obj"]
    patterns = [
        f"{const} = re.compile({py_literal(regex)})" for regex, const in em.patterns.items()
    ]
    patterns += [f"{const} = {py_literal(values)}" for values, const in em.enums.items()]
    head = [
        HEADER,
        '"""Typed records for every schema of ``contracts/schemas/`` (ADR 0002)."""',
        "",
        "from __future__ import annotations",
        "",
        "import re",
        "from collections.abc import Mapping",
        "from dataclasses import dataclass",
        "from typing import Any, ClassVar, Literal, TypeAlias",
        "",
        "from umlos import _recordrt as _rt",
        "",
        *patterns,
        "",
    ]
    all_list = all_block(names) + "\n"
    body = "\n\n\n".join(blocks)
    text = "\n".join(head) + "\n\n" + body + "\n\n\n" + all_list
    if "Literal[" not in body:
        text = text.replace("Any, ClassVar, Literal, TypeAlias", "Any, ClassVar, TypeAlias")
    return text
