"""Cross-cutting proofs: corruption sweeps with counts, and fuzzing of every parser."""
