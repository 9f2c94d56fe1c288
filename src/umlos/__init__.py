"""UML_OS: deterministic, auditable ML training with verifiable evidence."""

__version__ = "0.1.0"
