"""Load, validate and normalize a run manifest; compute its hash."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from umlos._errorbase import Error
from umlos._generated.records import Manifest, ManifestEvaluationConfig
from umlos._yaml import load_yaml, loads_yaml
from umlos.codec import digest
from umlos.manifest._defaults import fill_defaults
from umlos.manifest._validate import validate


@dataclass(frozen=True, slots=True)
class LoadedManifest:
    """A validated, normalized manifest and where it came from.

    ``base_dir`` resolves relative dataset paths; ``source`` names the file (or the label given
    to :func:`loads_manifest`) in error messages. Neither enters ``manifest_hash``.
    """

    manifest: Manifest
    base_dir: Path
    manifest_hash: bytes
    source: str


def _derive_probe_key(m: Manifest) -> Manifest:
    """Fill ``evaluation.probe_dataset_key``: ``val`` if declared, else the first train stage's
    dataset, else (an eval-only run) the first stage's dataset."""
    ev = m.evaluation
    if ev is None or ev.probe_dataset_key is not None:
        return m
    if "val" in m.datasets:
        key = "val"
    else:
        trains = [s for s in m.pipeline_stages if s.type == "train"]
        key = (trains or list(m.pipeline_stages))[0].dataset_key
    evaluation: ManifestEvaluationConfig = dataclasses.replace(ev, probe_dataset_key=key)
    return dataclasses.replace(m, evaluation=evaluation)


def _filled(m: Manifest) -> Manifest:
    return _derive_probe_key(fill_defaults(m))


def normalize(obj: Mapping[str, object] | Manifest) -> Manifest:
    """Validate a manifest and fill its defaults.

    ``obj`` is the JSON form (what a YAML or JSON file parses to; bytes fields as lower-case hex)
    or an already built :class:`Manifest`. Every absent field with a schema default gets it,
    recursively, plus the derived ``evaluation.probe_dataset_key``; then the cross-field rules
    run. Errors carry the JSON path of the offending field.

    >>> import yaml
    >>> from umlos.manifest import EXAMPLE_MANIFEST, normalize
    >>> m = normalize(yaml.safe_load(EXAMPLE_MANIFEST))
    >>> m.backend.name, m.backend.dtype, m.optimizer.weight_decay
    ('numpy', 'float32', 0.0)
    """
    m = obj if isinstance(obj, Manifest) else Manifest.from_obj(obj, json=True)
    m = _filled(m)
    validate(m)
    return m


def manifest_hash(m: Manifest) -> bytes:
    """``Digest(normalized manifest)``: SHA-256 of its canonical CBOR (defaults filled first, so
    a manifest that spells out its defaults hashes like one that omits them).

    >>> import yaml
    >>> from umlos.manifest import EXAMPLE_MANIFEST, manifest_hash, normalize
    >>> m = normalize(yaml.safe_load(EXAMPLE_MANIFEST))
    >>> manifest_hash(m) == loads_manifest(EXAMPLE_MANIFEST).manifest_hash
    True
    """
    return digest(_filled(m).to_obj())


def loads_manifest(
    text: str, *, source: str = "<string>", base_dir: Path | str = "."
) -> LoadedManifest:
    """Parse manifest YAML (or JSON, a subset of YAML) from text.

    >>> from umlos.manifest import EXAMPLE_MANIFEST, loads_manifest
    >>> loaded = loads_manifest(EXAMPLE_MANIFEST, source="example.yaml")
    >>> loaded.source, len(loaded.manifest_hash)
    ('example.yaml', 32)
    """
    obj = loads_yaml(text, source=source)
    return _build(obj, source, Path(base_dir))


def load_manifest(path: Path | str) -> LoadedManifest:
    """Read, validate and normalize the manifest file at ``path``.

    Duplicate YAML keys and unknown fields are errors; relative dataset paths resolve against
    the file's directory.

    >>> import pathlib, tempfile
    >>> from umlos.manifest import EXAMPLE_MANIFEST, load_manifest
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = pathlib.Path(d, "run.yaml")
    ...     _ = path.write_text(EXAMPLE_MANIFEST)
    ...     loaded = load_manifest(path)
    >>> loaded.manifest.task_type, loaded.base_dir.name == path.parent.name
    ('multiclass', True)
    """
    p = Path(path)
    obj = load_yaml(p)
    return _build(obj, str(p), p.resolve().parent)


def _build(obj: object, source: str, base_dir: Path) -> LoadedManifest:
    try:
        if not isinstance(obj, Mapping):
            # Let the generated validator word the error (expected map, got …) at "$".
            Manifest.from_obj(obj, json=True)
        m = normalize(obj)  # type: ignore[arg-type]
    except Error as exc:
        exc.located(artifact=source)
        raise
    return LoadedManifest(
        manifest=m, base_dir=base_dir, manifest_hash=manifest_hash(m), source=source
    )
