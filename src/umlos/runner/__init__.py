"""Runs: execute a manifest with full evidence, resume it after a crash, verify and replay it."""

from umlos.runner.execute import (
    DEFAULT_AS_OF,
    DEFAULT_VALID_UNTIL,
    Progress,
    RunExistsError,
    RunSummary,
    execute,
)
from umlos.runner.replay import replay_run
from umlos.runner.verify import verify_run

__all__ = [
    "DEFAULT_AS_OF",
    "DEFAULT_VALID_UNTIL",
    "Progress",
    "RunExistsError",
    "RunSummary",
    "execute",
    "replay_run",
    "verify_run",
]
