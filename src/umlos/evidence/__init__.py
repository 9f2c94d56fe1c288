"""The evidence chain: trace sidecar, step journal, run-commit WAL, checkpoints, certificates."""
