"""Read ``contracts/`` and check every rule of ADR 0002 and ADR 0003.

Loading never stops at the first problem: every issue is collected with its file and JSON path,
so one ``umlos contracts check`` run shows everything that needs fixing.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema

from umlos.contracts._issues import Issues, json_path
from umlos.contracts._yaml import load_yaml, loads_yaml
from umlos.contracts.model import (
    DETERMINISM_CLASSES,
    HASH_CLASSES,
    PRIVACY_CLASSES,
    PURITY_CLASSES,
    RNG_USAGES,
    SEVERITIES,
    SIDE_EFFECTS,
    SURFACES,
    ContractSet,
    DigestTag,
    ErrorCode,
    OperatorSpec,
    Subsystem,
)
from umlos.contracts.schema_ir import Record, parse_schemas
from umlos.errors import Error

SCHEMA_ID_BASE = "https://schemas.umlos.invalid/"
SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
OPERATOR_ID = re.compile(r"^UML_OS\.([A-Z][A-Za-z0-9]*)\.([A-Z][A-Za-z0-9]*)_v([1-9][0-9]*)$")
CODE_ID = re.compile(r"^[A-Z][A-Z0-9_]{1,63}$")
CAPABILITY = re.compile(r"^CAP_[A-Z0-9_]{1,64}$")
TAG = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
CONST_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
IDENT = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*Error$")
SCHEMA_REF = re.compile(r"^([a-z][a-z0-9_]*)\.yaml#/\$defs/([A-Z][A-Za-z0-9]*)$")
PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
# Each subsystem owns a block of one hundred numeric codes (spec: Error-Codes reserved ranges).
SUBSYSTEM_RANGES = {
    "config": (1000, 1099),
    "data": (1100, 1199),
    "model": (1200, 1299),
    "tmmu": (1300, 1399),
    "dp": (1400, 1499),
    "trace": (1500, 1599),
    "backend": (1600, 1699),
    "security": (1700, 1799),
    "distributed": (1800, 1899),
    "runtime": (1800, 1899),
    "replay": (1900, 1999),
}
OPERATOR_FIELDS = {
    "operator_id",
    "version",
    "summary",
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
    "allowed_error_codes",
    "required_capabilities",
    "owner_team",
    "since",
}
OPERATOR_OPTIONAL = {"deprecated_in", "removal_in", "replacement_operator_id"}
ERROR_FIELDS = {
    "code_id",
    "numeric_code",
    "subsystem",
    "severity",
    "retryable",
    "required_fields",
    "message",
    "meaning",
}
ERROR_OPTIONAL = {"privacy_class", "reasons"}
TAG_FIELDS = {"name", "tag", "hash_class", "identity", "preimage", "used_by", "description"}


def semver_key(version: str) -> tuple[int, int, int]:
    major, minor, patch = version.split(".")
    return int(major), int(minor), int(patch)


class _Loader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.issues = Issues()

    def _read(self, rel: str) -> Any:
        path = self.root / rel
        if not path.is_file():
            self.issues.add(rel, "$", "file is missing")
            return None
        try:
            return load_yaml(path)
        except Error as exc:
            self.issues.add(rel, "$", exc.message)
            return None

    def _doc(self, rel: str) -> Mapping[str, Any] | None:
        """A top-level YAML mapping, or None when the file is missing or broken (already reported)."""
        value = self._read(rel)
        if value is None:
            if (self.root / rel).is_file():
                self.issues.add(rel, "$", "file is empty")
            return None
        if not isinstance(value, Mapping):
            self.issues.add(rel, "$", "the document must be a mapping")
            return None
        return value

    def _mapping(self, value: Any, file: str, path: str) -> Mapping[str, Any]:
        if isinstance(value, Mapping):
            return value
        self.issues.add(file, path, "expected a mapping")
        return {}

    def _fields(
        self, node: Mapping[str, Any], required: set[str], optional: set[str], file: str, path: str
    ) -> bool:
        ok = True
        for key in sorted(required - set(node)):
            self.issues.add(file, path, f"missing required field {key!r}")
            ok = False
        for key in sorted(set(node) - required - optional):
            self.issues.add(file, f"{path}.{key}", "unknown field")
        return ok

    def _str(self, node: Mapping[str, Any], key: str, file: str, path: str) -> str:
        value = node.get(key)
        if not isinstance(value, str):
            self.issues.add(file, f"{path}.{key}", "expected a string")
            return ""
        if not unicodedata.is_normalized("NFC", value):
            self.issues.add(file, f"{path}.{key}", "text must be NFC-normalized")
        return value

    def _sorted_list(
        self, node: Mapping[str, Any], key: str, file: str, path: str, allowed: Any
    ) -> tuple[str, ...]:
        value = node.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.issues.add(file, f"{path}.{key}", "expected a list of strings")
            return ()
        if value != sorted(set(value)):
            self.issues.add(file, f"{path}.{key}", "list must be sorted and without duplicates")
        for i, v in enumerate(value):
            if v not in allowed:
                self.issues.add(file, f"{path}.{key}[{i}]", f"unknown value {v!r}")
        return tuple(value)

    # files ----------------------------------------------------------------------------------
    def load(self) -> ContractSet:
        meta = self._doc("contracts.yaml") or {}
        self._fields(meta, {"name", "version", "description"}, set(), "contracts.yaml", "$")
        version = self._str(meta, "version", "contracts.yaml", "$")
        if version and not SEMVER.match(version):
            self.issues.add("contracts.yaml", "$.version", "version must be MAJOR.MINOR.PATCH")
        cs = ContractSet(
            name=self._str(meta, "name", "contracts.yaml", "$"),
            version=version if SEMVER.match(version) else "0.0.0",
            description=str(meta.get("description", "")),
        )
        self._load_errors(cs)
        self._load_capabilities(cs)
        self._load_tags(cs)
        self._load_schemas(cs)
        self._load_operators(cs)
        return cs

    def _load_errors(self, cs: ContractSet) -> None:
        file = "errors.yaml"
        doc = self._doc(file)
        if doc is None:
            return
        self._fields(doc, {"catalogue_version", "subsystems", "codes"}, set(), file, "$")
        for name, sub in self._mapping(doc.get("subsystems"), file, "$.subsystems").items():
            path = f"$.subsystems.{name}"
            sub = self._mapping(sub, file, path)
            self._fields(sub, {"class_name", "description"}, set(), file, path)
            if name not in SUBSYSTEM_RANGES:
                self.issues.add(file, path, f"unknown subsystem {name!r}")
            class_name = self._str(sub, "class_name", file, path)
            if class_name and not CLASS_NAME.match(class_name):
                self.issues.add(file, f"{path}.class_name", "class names end in 'Error'")
            cs.subsystems[name] = Subsystem(name, class_name, str(sub.get("description", "")))
        codes = doc.get("codes")
        if not isinstance(codes, list):
            self.issues.add(file, "$.codes", "expected a list")
            return
        seen_ids: set[str] = set()
        seen_nums: set[int] = set()
        for i, entry in enumerate(codes):
            path = f"$.codes[{i}]"
            entry = self._mapping(entry, file, path)
            if not self._fields(entry, ERROR_FIELDS, ERROR_OPTIONAL, file, path):
                continue
            code_id = self._str(entry, "code_id", file, path)
            if not CODE_ID.match(code_id):
                self.issues.add(file, f"{path}.code_id", "code ids are UPPER_SNAKE_CASE")
            if code_id in seen_ids:
                self.issues.add(file, f"{path}.code_id", f"duplicate code {code_id}")
            seen_ids.add(code_id)
            num = entry.get("numeric_code")
            subsystem = self._str(entry, "subsystem", file, path)
            if not isinstance(num, int) or isinstance(num, bool):
                self.issues.add(file, f"{path}.numeric_code", "expected an integer")
                num = 0
            elif num in seen_nums:
                self.issues.add(file, f"{path}.numeric_code", f"numeric code {num} repeats")
            seen_nums.add(num)
            if subsystem not in cs.subsystems:
                self.issues.add(file, f"{path}.subsystem", f"unknown subsystem {subsystem!r}")
            else:
                lo, hi = SUBSYSTEM_RANGES.get(subsystem, (0, 0))
                if not lo <= num <= hi:
                    self.issues.add(
                        file, f"{path}.numeric_code", f"{num} is outside {subsystem}'s {lo}-{hi}"
                    )
            severity = self._str(entry, "severity", file, path)
            if severity not in SEVERITIES:
                self.issues.add(file, f"{path}.severity", f"severity must be one of {SEVERITIES}")
            privacy = entry.get("privacy_class", "INTERNAL")
            if privacy not in PRIVACY_CLASSES:
                self.issues.add(file, f"{path}.privacy_class", "unknown privacy class")
            if not isinstance(entry.get("retryable"), bool):
                self.issues.add(file, f"{path}.retryable", "expected a boolean")
            fields = entry.get("required_fields")
            if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
                self.issues.add(file, f"{path}.required_fields", "expected a list of names")
                fields = []
            message = self._str(entry, "message", file, path)
            for placeholder in PLACEHOLDER.findall(message):
                if placeholder not in fields:
                    self.issues.add(
                        file,
                        f"{path}.message",
                        f"placeholder {{{placeholder}}} is not a required field",
                    )
            reasons = self._mapping(entry.get("reasons", {}), file, f"{path}.reasons")
            for reason in reasons:
                if not CONST_NAME.match(str(reason)):
                    self.issues.add(file, f"{path}.reasons.{reason}", "reasons are UPPER_SNAKE")
            cs.errors.append(
                ErrorCode(
                    code_id=code_id,
                    numeric_code=num,
                    subsystem=subsystem,
                    severity=severity,
                    retryable=bool(entry.get("retryable")),
                    privacy_class=str(privacy),
                    required_fields=tuple(fields),
                    message=message,
                    meaning=str(entry.get("meaning", "")).strip(),
                    reasons=tuple((str(k), str(v)) for k, v in reasons.items()),
                )
            )

    def _load_capabilities(self, cs: ContractSet) -> None:
        file = "capabilities.yaml"
        doc = self._doc(file)
        if doc is None:
            return
        self._fields(doc, {"catalogue_version", "capabilities"}, set(), file, "$")
        caps = self._mapping(doc.get("capabilities"), file, "$.capabilities")
        if list(caps) != sorted(caps):
            self.issues.add(file, "$.capabilities", "capabilities must be sorted")
        for name, description in caps.items():
            if not CAPABILITY.match(str(name)):
                self.issues.add(file, f"$.capabilities.{name}", "names match ^CAP_[A-Z0-9_]{1,64}$")
            cs.capabilities[str(name)] = str(description)

    def _load_tags(self, cs: ContractSet) -> None:
        file = "digest_tags.yaml"
        doc = self._doc(file)
        if doc is None:
            return
        self._fields(doc, {"catalogue_version", "tags"}, set(), file, "$")
        entries = doc.get("tags")
        if not isinstance(entries, list):
            self.issues.add(file, "$.tags", "expected a list")
            return
        names: set[str] = set()
        tags: set[str] = set()
        for i, entry in enumerate(entries):
            path = f"$.tags[{i}]"
            entry = self._mapping(entry, file, path)
            if not self._fields(entry, TAG_FIELDS, set(), file, path):
                continue
            name = self._str(entry, "name", file, path)
            if not CONST_NAME.match(name):
                self.issues.add(file, f"{path}.name", "names are UPPER_SNAKE_CASE")
            if name in names:
                self.issues.add(file, f"{path}.name", f"duplicate name {name}")
            names.add(name)
            hash_class = self._str(entry, "hash_class", file, path)
            if hash_class not in HASH_CLASSES:
                self.issues.add(file, f"{path}.hash_class", f"one of {HASH_CLASSES}")
            tag = entry.get("tag")
            if tag is not None:
                if not isinstance(tag, str) or not TAG.match(tag):
                    self.issues.add(file, f"{path}.tag", "tags are lower_snake_case text")
                elif tag in tags:
                    self.issues.add(file, f"{path}.tag", f"tag {tag!r} is used twice")
                else:
                    tags.add(tag)
            elif hash_class in ("commit", "keyed"):
                self.issues.add(file, f"{path}.tag", f"a {hash_class} hash needs a tag")
            used_by = entry.get("used_by")
            if not isinstance(used_by, list) or not all(isinstance(u, str) for u in used_by):
                self.issues.add(file, f"{path}.used_by", "expected a list of strings")
                used_by = []
            cs.tags.append(
                DigestTag(
                    name=name,
                    tag=tag if isinstance(tag, str) else None,
                    hash_class=hash_class,
                    identity=str(entry.get("identity", "")),
                    preimage=str(entry.get("preimage", "")).strip(),
                    used_by=tuple(used_by),
                    description=str(entry.get("description", "")).strip(),
                )
            )
        if [t.name for t in cs.tags] != sorted(t.name for t in cs.tags):
            self.issues.add(file, "$.tags", "entries must be sorted by name")

    def _load_schemas(self, cs: ContractSet) -> None:
        schema_dir = self.root / "schemas"
        files = sorted(schema_dir.glob("*.yaml")) if schema_dir.is_dir() else []
        if not files:
            self.issues.add("schemas", "$", "no schema files")
        for path in files:
            rel = f"schemas/{path.name}"
            doc = self._doc(rel)
            if doc is None:
                continue
            doc = dict(doc)
            problem = _meta_problem(path.read_bytes())
            if problem is not None:
                self.issues.add(rel, problem[0], f"not valid JSON Schema 2020-12: {problem[1]}")
                continue
            if doc.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
                self.issues.add(rel, "$.$schema", "must be the 2020-12 meta-schema URI")
            if doc.get("$id") != SCHEMA_ID_BASE + path.name:
                self.issues.add(rel, "$.$id", f"must be {SCHEMA_ID_BASE + path.name}")
            cs.schema_docs[path.stem] = doc
        cs.schemas = parse_schemas(cs.schema_docs, self.issues)

    def _load_operators(self, cs: ContractSet) -> None:
        op_dir = self.root / "operators"
        files = sorted(op_dir.glob("*.yaml")) if op_dir.is_dir() else []
        codes = {e.code_id for e in cs.errors}
        for path in files:
            rel = f"operators/{path.name}"
            doc = self._doc(rel)
            if doc is None:
                continue
            self._fields(doc, {"operators"}, set(), rel, "$")
            entries = doc.get("operators")
            if not isinstance(entries, list):
                self.issues.add(rel, "$.operators", "expected a list")
                continue
            for i, entry in enumerate(entries):
                spec = self._operator(
                    self._mapping(entry, rel, f"$.operators[{i}]"),
                    rel,
                    f"$.operators[{i}]",
                    cs,
                    codes,
                )
                if spec is not None:
                    cs.operators.append(spec)
        ids: dict[str, str] = {}
        for op in cs.operators:
            if op.operator_id in ids:
                self.issues.add(
                    op.source_file, "$", f"{op.operator_id} also in {ids[op.operator_id]}"
                )
            ids[op.operator_id] = op.source_file
        for op in cs.operators:
            if op.replacement_operator_id and op.replacement_operator_id not in ids:
                self.issues.add(
                    op.source_file,
                    f"$.{op.operator_id}.replacement_operator_id",
                    "names no operator in the registry",
                )
        cs.operators.sort(key=lambda o: (o.operator_id.encode(), o.version_num))

    def _operator(
        self,
        node: Mapping[str, Any],
        file: str,
        path: str,
        cs: ContractSet,
        codes: set[str],
    ) -> OperatorSpec | None:
        if not self._fields(node, OPERATOR_FIELDS, OPERATOR_OPTIONAL, file, path):
            return None
        op_id = self._str(node, "operator_id", file, path)
        path = f"{path}({op_id})"
        version = self._str(node, "version", file, path)
        m = OPERATOR_ID.match(op_id)
        if m is None:
            self.issues.add(
                file, f"{path}.operator_id", "must match UML_OS.<Subsystem>.<Name>_v<N>"
            )
        elif version != f"v{m.group(3)}":
            self.issues.add(file, f"{path}.version", f"must be v{m.group(3)} (the id's suffix)")
        surface = self._str(node, "surface", file, path)
        method = self._str(node, "method", file, path)
        if surface not in SURFACES:
            self.issues.add(file, f"{path}.surface", "must be SYSCALL or SERVICE")
        elif method not in SURFACES[surface]:
            self.issues.add(file, f"{path}.method", f"{surface} allows {SURFACES[surface]}")
        purity = self._str(node, "purity_class", file, path)
        if purity not in PURITY_CLASSES:
            self.issues.add(file, f"{path}.purity_class", f"one of {PURITY_CLASSES}")
        effects = self._sorted_list(node, "side_effects", file, path, SIDE_EFFECTS)
        rng = self._str(node, "rng_usage", file, path)
        if rng not in RNG_USAGES:
            self.issues.add(file, f"{path}.rng_usage", f"one of {RNG_USAGES}")
        if (rng == "PHILOX4x32_10") != ("ADVANCES_RNG" in effects):
            self.issues.add(
                file,
                f"{path}.rng_usage",
                "PHILOX4x32_10 exactly when ADVANCES_RNG is a side effect",
            )
        draws = self._str(node, "rng_draws", file, path)
        if rng == "NONE" and draws != "0":
            self.issues.add(file, f"{path}.rng_draws", "must be '0' when rng_usage is NONE")
        determinism = self._str(node, "determinism_class", file, path)
        if determinism not in DETERMINISM_CLASSES:
            self.issues.add(file, f"{path}.determinism_class", f"one of {DETERMINISM_CLASSES}")
        if purity == "PURE" and determinism == "STOCHASTIC" and rng == "NONE":
            self.issues.add(file, path, "PURE + STOCHASTIC requires rng_usage other than NONE")
        if not isinstance(node.get("idempotent"), bool):
            self.issues.add(file, f"{path}.idempotent", "expected a boolean")
        allowed = self._sorted_list(node, "allowed_error_codes", file, path, codes)
        caps = self._sorted_list(node, "required_capabilities", file, path, cs.capabilities)
        owner = self._str(node, "owner_team", file, path)
        if not IDENT.match(owner):
            self.issues.add(file, f"{path}.owner_team", "must match ^[A-Za-z0-9_.-]{1,128}$")
        versions = {}
        for key in ("since", "deprecated_in", "removal_in"):
            if key in node:
                value = node[key]
                if not isinstance(value, str) or not SEMVER.match(value):
                    self.issues.add(file, f"{path}.{key}", "expected a MAJOR.MINOR.PATCH string")
                else:
                    versions[key] = semver_key(value)
        since, deprecated = versions.get("since"), versions.get("deprecated_in")
        if since is not None and deprecated is not None and deprecated < since:
            self.issues.add(file, f"{path}.deprecated_in", "must not precede since")
        if "removal_in" in versions and "deprecated_in" not in versions:
            self.issues.add(file, f"{path}.removal_in", "needs deprecated_in")
        removal = versions.get("removal_in")
        if deprecated is not None and removal is not None and not deprecated < removal:
            self.issues.add(file, f"{path}.removal_in", "must come after deprecated_in")
        refs = []
        for key in ("request", "response"):
            ref = self._str(node, key, file, path)
            rm = SCHEMA_REF.match(ref)
            target = cs.schemas.named.get(rm.group(2)) if rm else None
            if rm is None:
                self.issues.add(file, f"{path}.{key}", "expected <file>.yaml#/$defs/<Record>")
            elif not isinstance(target, Record) or target.module != rm.group(1):
                self.issues.add(file, f"{path}.{key}", f"{ref} is not a record of the schema set")
            refs.append(rm.group(2) if rm else "")
        replacement = node.get("replacement_operator_id")
        return OperatorSpec(
            operator_id=op_id,
            version=version,
            summary=str(node.get("summary", "")).strip(),
            surface=surface,
            method=method,
            request=refs[0],
            response=refs[1],
            purity_class=purity,
            side_effects=effects,
            rng_usage=rng,
            rng_draws=draws,
            determinism_class=determinism,
            idempotent=bool(node.get("idempotent")),
            allowed_error_codes=allowed,
            required_capabilities=caps,
            owner_team=owner,
            since=str(node.get("since", "")),
            source_file=file,
            deprecated_in=node.get("deprecated_in"),
            removal_in=node.get("removal_in"),
            replacement_operator_id=replacement if isinstance(replacement, str) else None,
        )


@functools.lru_cache(maxsize=512)
def _meta_problem(text: bytes) -> tuple[str, str] | None:
    """Meta-validate a schema document (cached by content: it is the slowest check)."""
    try:
        jsonschema.Draft202012Validator.check_schema(loads_yaml(text.decode(), source="schema"))
    except jsonschema.SchemaError as exc:
        where = json_path(exc.absolute_path)
        return where, exc.message
    return None


def load_contract_set(root: Path) -> tuple[ContractSet, Issues]:
    """Load and check a contract directory. Returns the set and every issue found."""
    loader = _Loader(root)
    cs = loader.load()
    return cs, loader.issues
