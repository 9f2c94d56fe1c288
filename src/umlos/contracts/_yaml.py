"""Strict YAML loading; moved to :mod:`umlos._yaml` so that ``umlos.manifest`` can use it too."""

from umlos._yaml import MAX_YAML_BYTES, load_yaml, loads_yaml

__all__ = ["MAX_YAML_BYTES", "load_yaml", "loads_yaml"]
