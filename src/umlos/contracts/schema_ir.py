"""Typed intermediate representation of the contract schemas (ADR 0002).

``parse_schemas`` turns the JSON Schema documents of ``contracts/schemas/`` into named records,
unions and the scalar types they use, checking the schema profile as it goes. The generator
renders this IR; the compatibility checker compares two of them; the compiler hashes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from umlos.contracts._issues import Issues

RECORD_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
ALIAS_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
INT_MIN = -(2**63)
UINT_MAX = 2**64 - 1

_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "$comment",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "x-umlos-since",
    }
)
_KEYWORDS_BY_TYPE: dict[str, frozenset[str]] = {
    "object": frozenset(
        {
            "type",
            "properties",
            "required",
            "additionalProperties",
            "propertyNames",
            "minProperties",
            "maxProperties",
        }
    ),
    "array": frozenset({"type", "items", "minItems", "maxItems", "uniqueItems"}),
    "string": frozenset(
        {"type", "minLength", "maxLength", "pattern", "enum", "const", "format", "contentEncoding"}
    ),
    "integer": frozenset({"type", "minimum", "maximum", "enum", "const"}),
    "number": frozenset(
        {
            "type",
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "x-umlos-allow-nonfinite",
        }
    ),
    "boolean": frozenset({"type", "const"}),
    "null": frozenset({"type"}),
}


# --- types ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntT:
    lo: int
    hi: int
    enum: tuple[int, ...] | None = None


@dataclass(frozen=True)
class FloatT:
    lo: float | None = None
    hi: float | None = None
    xlo: float | None = None
    xhi: float | None = None
    allow_nonfinite: bool = False


@dataclass(frozen=True)
class StrT:
    min_len: int | None = None
    max_len: int | None = None
    pattern: str | None = None
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class BytesT:
    """A byte string; lengths are in bytes (the schema states them in hex characters)."""

    min_len: int | None = None
    max_len: int | None = None


@dataclass(frozen=True)
class BoolT:
    const: bool | None = None


@dataclass(frozen=True)
class NullT:
    pass


@dataclass(frozen=True)
class ListT:
    item: Type
    min_items: int | None = None
    max_items: int | None = None
    unique: bool = False


@dataclass(frozen=True)
class MapT:
    value: Type
    key_pattern: str | None = None
    min_props: int | None = None
    max_props: int | None = None


@dataclass(frozen=True)
class RefT:
    """A reference to a named record or union."""

    name: str


@dataclass(frozen=True)
class NullableT:
    inner: Type


@dataclass(frozen=True)
class AnyOfT:
    """A union of scalar types (aliases only), tried in order."""

    options: tuple[Type, ...]


Type = IntT | FloatT | StrT | BytesT | BoolT | NullT | ListT | MapT | RefT | NullableT | AnyOfT


@dataclass(frozen=True)
class Field:
    name: str
    type: Type
    required: bool
    description: str = ""
    default: Any = None
    has_default: bool = False
    since: str | None = None


@dataclass(frozen=True)
class Record:
    name: str
    module: str
    description: str
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


@dataclass(frozen=True)
class Union:
    name: str
    module: str
    description: str
    discriminator: str
    alternatives: tuple[tuple[str, str], ...]  # (discriminator value, record name)


Named = Record | Union


@dataclass
class SchemaSet:
    """All named types of the contract set, in a stable order (file, then declaration)."""

    named: dict[str, Named] = field(default_factory=dict)
    modules: dict[str, list[str]] = field(default_factory=dict)  # module stem -> names
    module_descriptions: dict[str, str] = field(default_factory=dict)

    def records(self) -> Iterator[Record]:
        for item in self.named.values():
            if isinstance(item, Record):
                yield item

    def unions(self) -> Iterator[Union]:
        for item in self.named.values():
            if isinstance(item, Union):
                yield item


# --- parsing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Site:
    """Where a named definition lives."""

    stem: str
    pointer: str  # "" for the root, "/$defs/<name>" otherwise
    name: str
    node: Mapping[str, Any]


class _Parser:
    def __init__(self, docs: Mapping[str, Mapping[str, Any]], issues: Issues) -> None:
        self.docs = docs
        self.issues = issues
        self.sites: dict[tuple[str, str], _Site] = {}
        self.aliases: dict[tuple[str, str], Type | None] = {}
        self._alias_stack: list[tuple[str, str]] = []
        self.result = SchemaSet()

    # names ----------------------------------------------------------------------------------
    def collect(self) -> None:
        seen: dict[str, str] = {}
        for stem, doc in self.docs.items():
            file = f"schemas/{stem}.yaml"
            title = doc.get("title")
            if not isinstance(title, str) or not RECORD_NAME.match(title):
                self.issues.add(file, "$.title", "every schema file needs a PascalCase title")
                continue
            self.result.modules[stem] = []
            self.result.module_descriptions[stem] = str(doc.get("description", "")).strip()
            defs = doc.get("$defs", {})
            if not isinstance(defs, Mapping):
                self.issues.add(file, "$.$defs", "$defs must be a mapping")
                defs = {}
            if "type" in doc or "oneOf" in doc:
                self._register(stem, "", title, doc, seen)
            for name, node in defs.items():
                path = f"$.$defs.{name}"
                if not isinstance(node, Mapping):
                    self.issues.add(file, path, "definition must be a mapping")
                elif RECORD_NAME.match(name):
                    self._register(stem, f"/$defs/{name}", name, node, seen)
                elif ALIAS_NAME.match(name):
                    self.aliases[(stem, f"/$defs/{name}")] = None
                else:
                    self.issues.add(
                        file,
                        path,
                        "definition names are PascalCase (types) or snake_case (aliases)",
                    )

    def _register(
        self, stem: str, pointer: str, name: str, node: Mapping[str, Any], seen: dict[str, str]
    ) -> None:
        file = f"schemas/{stem}.yaml"
        if name in seen:
            self.issues.add(
                file, _jp(pointer), f"type name {name} is already defined in {seen[name]}"
            )
            return
        seen[name] = file
        self.sites[(stem, pointer)] = _Site(stem, pointer, name, node)
        self.result.modules[stem].append(name)

    # bodies ---------------------------------------------------------------------------------
    def parse_all(self) -> SchemaSet:
        for site in self.sites.values():
            named = self._parse_named(site)
            if named is not None:
                self.result.named[site.name] = named
        for key in self.aliases:
            self._alias(key, f"schemas/{key[0]}.yaml", _jp(key[1]))
        self._check_unions()
        return self.result

    def _parse_named(self, site: _Site) -> Named | None:
        file = f"schemas/{site.stem}.yaml"
        node = site.node
        path = _jp(site.pointer)
        description = str(node.get("description", "")).strip()
        if "oneOf" in node:
            return self._parse_union(site, file, path, description)
        if node.get("type") != "object" or "properties" not in node:
            self.issues.add(
                file, path, "a PascalCase type must be a record (object with properties)"
            )
            return None
        self._check_keywords(node, "object", file, path)
        if node.get("additionalProperties") is not False:
            self.issues.add(file, path, "records must set additionalProperties: false")
        props = node.get("properties")
        required = node.get("required", [])
        if not isinstance(props, Mapping) or not props:
            self.issues.add(file, f"{path}.properties", "properties must be a non-empty mapping")
            return None
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            self.issues.add(file, f"{path}.required", "required must be a list of property names")
            required = []
        for r in required:
            if r not in props:
                self.issues.add(file, f"{path}.required", f"required names unknown property {r!r}")
        if len(set(required)) != len(required):
            self.issues.add(file, f"{path}.required", "required lists a property twice")
        fields = []
        for pname, pnode in props.items():
            ppath = f"{path}.properties.{pname}"
            if not isinstance(pname, str) or not PROPERTY_NAME.match(pname):
                self.issues.add(file, ppath, "property names are snake_case")
                continue
            if not isinstance(pnode, Mapping):
                self.issues.add(file, ppath, "property schema must be a mapping")
                continue
            ftype = self._type(pnode, site.stem, file, ppath)
            if ftype is None:
                continue
            is_required = pname in required
            if isinstance(ftype, NullableT) and not is_required:
                self.issues.add(
                    file, ppath, "a nullable property must be required (absent ≠ null, ADR 0002)"
                )
            has_default = "default" in pnode
            if has_default and is_required:
                self.issues.add(file, ppath, "a required property cannot have a default")
            since = pnode.get("x-umlos-since")
            fields.append(
                Field(
                    name=pname,
                    type=ftype,
                    required=is_required,
                    description=str(pnode.get("description", "")).strip(),
                    default=pnode.get("default"),
                    has_default=has_default,
                    since=str(since) if since is not None else None,
                )
            )
        return Record(site.name, site.stem, description, tuple(fields))

    def _parse_union(self, site: _Site, file: str, path: str, description: str) -> Named | None:
        node = site.node
        extra = set(node) - {"oneOf", "x-umlos-discriminator"} - _ANNOTATIONS - {"$schema", "$id"}
        extra -= {"$defs"}
        if extra:
            self.issues.add(file, path, f"unsupported keywords beside oneOf: {sorted(extra)}")
        disc = node.get("x-umlos-discriminator")
        if not isinstance(disc, str):
            self.issues.add(file, path, "a oneOf union needs x-umlos-discriminator: <property>")
            return None
        options = node.get("oneOf")
        if not isinstance(options, list) or len(options) < 2:
            self.issues.add(file, f"{path}.oneOf", "oneOf needs at least two $ref alternatives")
            return None
        alts: list[str] = []
        for i, opt in enumerate(options):
            if not isinstance(opt, Mapping) or set(opt) != {"$ref"}:
                self.issues.add(file, f"{path}.oneOf[{i}]", "union alternatives are bare $refs")
                continue
            target = self._resolve_ref(str(opt["$ref"]), site.stem, file, f"{path}.oneOf[{i}]")
            if target is not None:
                alts.append(target.name)
        # discriminator values are filled in by _check_unions once all records are parsed
        return Union(site.name, site.stem, description, disc, tuple(("", a) for a in alts))

    def _check_unions(self) -> None:
        for name, item in list(self.result.named.items()):
            if not isinstance(item, Union):
                continue
            file = f"schemas/{item.module}.yaml"
            resolved: list[tuple[str, str]] = []
            seen: set[str] = set()
            for _, alt in item.alternatives:
                rec = self.result.named.get(alt)
                if not isinstance(rec, Record):
                    self.issues.add(file, f"$.{name}", f"union alternative {alt} is not a record")
                    continue
                f = rec.field(item.discriminator)
                if (
                    f is None
                    or not f.required
                    or not isinstance(f.type, StrT)
                    or f.type.enum is None
                    or len(f.type.enum) != 1
                ):
                    self.issues.add(
                        file,
                        f"$.{name}",
                        f"alternative {alt} needs a required const string {item.discriminator!r}",
                    )
                    continue
                value = f.type.enum[0]
                if value in seen:
                    self.issues.add(file, f"$.{name}", f"discriminator value {value!r} repeats")
                seen.add(value)
                resolved.append((value, alt))
            self.result.named[name] = Union(
                item.name, item.module, item.description, item.discriminator, tuple(resolved)
            )

    # types ----------------------------------------------------------------------------------
    def _type(self, node: Mapping[str, Any], stem: str, file: str, path: str) -> Type | None:
        if "$ref" in node:
            extra = set(node) - {"$ref"} - _ANNOTATIONS
            if extra:
                self.issues.add(file, path, f"$ref cannot be combined with {sorted(extra)}")
            ref = str(node["$ref"])
            key = self._ref_key(ref, stem)
            if key in self.aliases:
                return self._alias(key, file, path)
            target = self._resolve_ref(ref, stem, file, path)
            return RefT(target.name) if target is not None else None
        if "anyOf" in node:
            return self._any_of(node, stem, file, path)
        if "oneOf" in node:
            self.issues.add(file, path, "inline oneOf is not allowed; name the union in $defs")
            return None
        jtype = node.get("type")
        if isinstance(jtype, list):
            non_null = [t for t in jtype if t != "null"]
            if len(jtype) != 2 or len(non_null) != 1 or "null" not in jtype:
                self.issues.add(file, path, "a type list must be [<type>, 'null']")
                return None
            inner = self._type({**node, "type": non_null[0]}, stem, file, path)
            return NullableT(inner) if inner is not None else None
        if not isinstance(jtype, str) or jtype not in _KEYWORDS_BY_TYPE:
            self.issues.add(file, path, f"unsupported or missing type {jtype!r}")
            return None
        self._check_keywords(node, jtype, file, path)
        if jtype == "object":
            return self._map(node, stem, file, path)
        if jtype == "array":
            items = node.get("items")
            if not isinstance(items, Mapping):
                self.issues.add(file, f"{path}.items", "arrays need an items schema")
                return None
            item = self._type(items, stem, file, f"{path}.items")
            if item is None:
                return None
            return ListT(
                item,
                _opt_int(node, "minItems", self.issues, file, path),
                _opt_int(node, "maxItems", self.issues, file, path),
                bool(node.get("uniqueItems", False)),
            )
        if jtype == "string":
            return self._string(node, file, path)
        if jtype == "integer":
            return self._integer(node, file, path)
        if jtype == "number":
            return FloatT(
                _opt_num(node, "minimum"),
                _opt_num(node, "maximum"),
                _opt_num(node, "exclusiveMinimum"),
                _opt_num(node, "exclusiveMaximum"),
                bool(node.get("x-umlos-allow-nonfinite", False)),
            )
        if jtype == "boolean":
            const = node.get("const")
            return BoolT(const if isinstance(const, bool) else None)
        return NullT()

    def _map(self, node: Mapping[str, Any], stem: str, file: str, path: str) -> Type | None:
        if "properties" in node:
            self.issues.add(
                file, path, "inline objects with properties are not allowed; name the record"
            )
            return None
        value = node.get("additionalProperties")
        if not isinstance(value, Mapping):
            self.issues.add(file, path, "a map needs additionalProperties: <value schema>")
            return None
        vtype = self._type(value, stem, file, f"{path}.additionalProperties")
        if vtype is None:
            return None
        key_pattern = None
        names = node.get("propertyNames")
        if names is not None:
            if not isinstance(names, Mapping) or set(names) - {"pattern"} - _ANNOTATIONS:
                self.issues.add(file, f"{path}.propertyNames", "propertyNames allows only pattern")
            else:
                key_pattern = _pattern(names.get("pattern"), self.issues, file, path)
        return MapT(
            vtype,
            key_pattern,
            _opt_int(node, "minProperties", self.issues, file, path),
            _opt_int(node, "maxProperties", self.issues, file, path),
        )

    def _string(self, node: Mapping[str, Any], file: str, path: str) -> Type | None:
        min_len = _opt_int(node, "minLength", self.issues, file, path)
        max_len = _opt_int(node, "maxLength", self.issues, file, path)
        pattern = _pattern(node.get("pattern"), self.issues, file, path)
        if "contentEncoding" in node:
            if node["contentEncoding"] != "base16":
                self.issues.add(file, path, "only contentEncoding: base16 is supported")
            if "enum" in node or "const" in node:
                self.issues.add(file, path, "byte strings cannot have enum or const")
            if (min_len is not None and min_len % 2) or (max_len is not None and max_len % 2):
                self.issues.add(file, path, "hex lengths must be even")
            return BytesT(
                min_len // 2 if min_len is not None else None,
                max_len // 2 if max_len is not None else None,
            )
        enum: tuple[str, ...] | None = None
        if "const" in node:
            if not isinstance(node["const"], str):
                self.issues.add(file, f"{path}.const", "string const must be a string")
                return None
            enum = (node["const"],)
        elif "enum" in node:
            values = node["enum"]
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, str) for v in values)
                or len(set(values)) != len(values)
            ):
                self.issues.add(file, f"{path}.enum", "enum must be a non-empty list of strings")
                return None
            enum = tuple(values)
        return StrT(min_len, max_len, pattern, enum)

    def _integer(self, node: Mapping[str, Any], file: str, path: str) -> Type | None:
        enum: tuple[int, ...] | None = None
        if "const" in node:
            enum = (node["const"],)
        elif "enum" in node:
            enum = tuple(node["enum"]) if isinstance(node["enum"], list) else None
        if enum is not None and not all(
            isinstance(v, int) and not isinstance(v, bool) for v in enum
        ):
            self.issues.add(file, path, "integer enum/const values must be integers")
            return None
        lo, hi = node.get("minimum"), node.get("maximum")
        if enum is not None and (lo is None or hi is None):
            lo, hi = min(enum), max(enum)
        if not isinstance(lo, int) or not isinstance(hi, int) or isinstance(lo, bool):
            self.issues.add(
                file, path, "integers need integer minimum and maximum (they fix the width)"
            )
            return None
        if lo < INT_MIN or hi > UINT_MAX or lo > hi:
            self.issues.add(file, path, f"integer range [{lo}, {hi}] is outside int64 ∪ uint64")
            return None
        return IntT(lo, hi, enum)

    def _any_of(self, node: Mapping[str, Any], stem: str, file: str, path: str) -> Type | None:
        extra = set(node) - {"anyOf"} - _ANNOTATIONS
        if extra:
            self.issues.add(file, path, f"anyOf cannot be combined with {sorted(extra)}")
        options = node.get("anyOf")
        if not isinstance(options, list) or len(options) < 2:
            self.issues.add(file, path, "anyOf needs at least two alternatives")
            return None
        parsed: list[Type] = []
        for i, opt in enumerate(options):
            if not isinstance(opt, Mapping):
                self.issues.add(file, f"{path}.anyOf[{i}]", "alternative must be a mapping")
                return None
            t = self._type(opt, stem, file, f"{path}.anyOf[{i}]")
            if t is None:
                return None
            parsed.append(t)
        nulls = [t for t in parsed if isinstance(t, NullT)]
        rest = [t for t in parsed if not isinstance(t, NullT)]
        if nulls and len(rest) == 1:
            return NullableT(rest[0])
        if nulls:
            self.issues.add(file, path, "null may only be combined with a single type")
            return None
        for t in rest:
            if isinstance(t, (RefT, ListT, MapT, NullableT, AnyOfT)):
                self.issues.add(file, path, "anyOf unions may only combine scalar types")
                return None
        return AnyOfT(tuple(rest))

    # references -----------------------------------------------------------------------------
    def _ref_key(self, ref: str, stem: str) -> tuple[str, str]:
        target, _, pointer = ref.partition("#")
        if target:
            if not target.endswith(".yaml") or "/" in target:
                return ("", ref)
            target_stem = target[: -len(".yaml")]
        else:
            target_stem = stem
        return (target_stem, pointer)

    def _resolve_ref(self, ref: str, stem: str, file: str, path: str) -> _Site | None:
        key = self._ref_key(ref, stem)
        site = self.sites.get(key)
        if site is None:
            if key in self.aliases:
                self.issues.add(file, path, f"{ref} is an alias, not a record or union")
            else:
                self.issues.add(file, path, f"unresolved $ref {ref!r}")
            return None
        return site

    def _alias(self, key: tuple[str, str], file: str, path: str) -> Type | None:
        cached = self.aliases.get(key)
        if cached is not None:
            return cached
        if key in self._alias_stack:
            self.issues.add(file, path, f"alias cycle through {key[0]}.yaml#{key[1]}")
            return None
        doc = self.docs[key[0]]
        node = doc.get("$defs", {}).get(key[1].rsplit("/", 1)[-1])
        self._alias_stack.append(key)
        try:
            t = self._type(node, key[0], f"schemas/{key[0]}.yaml", _jp(key[1]))
        finally:
            self._alias_stack.pop()
        if t is not None:
            self.aliases[key] = t
        return t

    def _check_keywords(self, node: Mapping[str, Any], jtype: str, file: str, path: str) -> None:
        allowed = _KEYWORDS_BY_TYPE[jtype] | _ANNOTATIONS | {"$schema", "$id", "$defs"}
        extra = sorted(set(node) - allowed)
        if extra:
            self.issues.add(file, path, f"keywords outside the schema profile: {extra}")


def parse_schemas(docs: Mapping[str, Mapping[str, Any]], issues: Issues) -> SchemaSet:
    """Parse schema documents (keyed by file stem, in sorted order) into the IR."""
    parser = _Parser(docs, issues)
    parser.collect()
    return parser.parse_all()


def _jp(pointer: str) -> str:
    return "$" + pointer.replace("/", ".") if pointer else "$"


def _opt_int(node: Mapping[str, Any], key: str, issues: Issues, file: str, path: str) -> int | None:
    value = node.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        issues.add(file, f"{path}.{key}", f"{key} must be a non-negative integer")
        return None
    return value


def _opt_num(node: Mapping[str, Any], key: str) -> float | None:
    value = node.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _pattern(value: Any, issues: Issues, file: str, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        issues.add(file, f"{path}.pattern", "pattern must be a string")
        return None
    try:
        re.compile(value)
    except re.error as exc:
        issues.add(file, f"{path}.pattern", f"invalid regular expression: {exc}")
        return None
    return value


def references(item: Named) -> set[str]:
    """Names of the records and unions ``item`` refers to directly."""
    found: set[str] = set()

    def walk(t: Type) -> None:
        if isinstance(t, RefT):
            found.add(t.name)
        elif isinstance(t, ListT):
            walk(t.item)
        elif isinstance(t, MapT):
            walk(t.value)
        elif isinstance(t, NullableT):
            walk(t.inner)
        elif isinstance(t, AnyOfT):
            for option in t.options:
                walk(option)

    if isinstance(item, Record):
        for f in item.fields:
            walk(f.type)
    else:
        found.update(name for _, name in item.alternatives)
    return found
