"""The process a chaos scenario runs, kills and injects faults into: ``umlos`` under a shim.

``python -m umlos.conformance._chaos_child PLAN.json -- run MANIFEST --runs-dir DIR --json``
runs the real ``umlos`` command line (:func:`umlos.cli.main`) in this process after installing
what the plan asks for, and writes an outcome (JSON) when the command returns or raises:

* ``root``: the runs directory; only operations on paths under it are counted or faulted.
* ``count``: count every crash point the run reaches (``umlos._faults``), every ``os.write``
  to a file under a ``checkpoints/`` directory and every ``os.replace`` (the rename of an
  atomic write) under ``root``; ``UMLOS_CRASH_AT`` still works.
* ``kill_before_replace``: SIGKILL the process just before the n-th ``os.replace`` under
  ``root`` (a temp file written and fsynced, never renamed): crash points the runner does not
  name.
* ``enospc``: the ``nth_write``-th ``os.write`` under ``<root>/**/checkpoints/`` writes half its
  buffer and raises ``OSError(ENOSPC)``; from then on every write under ``root`` does (a disk
  that filled up stays full).
* ``faults``: every file operation under ``root`` (the :data:`FAULT_OPS`) draws one Philox
  uniform ``u`` from the plan's seed, in the order the run performs them; ``u < error_rate``
  raises ``OSError(EIO)``, the next ``timeout_rate`` of the unit interval sleeps ``timeout_s``
  and raises ``OSError(ETIMEDOUT)`` (a store that hangs, then gives up).

A SIGKILL (``UMLOS_CRASH_AT`` or the parent's timer) leaves no outcome, as a real crash would.
The outcome records the exit code, the exception that ended the command (type and errno or the
catalogue ``code_id``/``reason``), the first injected fault and the counts.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

FAULT_OPS: Final = (
    "open",
    "read",
    "write",
    "fsync",
    "ftruncate",
    "rename",
    "replace",
    "link",
    "unlink",
    "mkdir",
    "io.open",
)
"""The file operations ``faults`` may fail; stat and directory listing are left alone."""

READY_LINE: Final = "chaos-child-ready\n"
"""Written to stderr once the shim is installed, when the plan asks for ``ready``."""

# Uniforms are drawn in batches of this many (one numpy call), enough for a short run's I/O.
_DRAW_BATCH: Final = 1 << 14


class _Shim:
    """The installed wrappers and what they observed."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.fd_paths: dict[int, str] = {}
        self.crash_points: dict[str, int] = {}
        self.checkpoint_writes = 0
        self.replaces = 0
        self.ops = 0
        self.injected: dict[str, Any] | None = None
        self.full = False
        self.root: str | None = None
        self._uniforms: list[float] = []
        self._stream: Any = None

    # --- helpers ------------------------------------------------------------------------------
    def under_root(self, path: object) -> str | None:
        if self.root is None or isinstance(path, int):
            return None
        try:
            text = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
        except TypeError:
            return None
        return text if text == self.root or text.startswith(self.root + os.sep) else None

    def rel(self, path: str) -> str:
        assert self.root is not None
        return os.path.relpath(path, self.root)

    def uniform(self, k: int) -> float:
        from umlos.numerics import uniform_f64

        while k >= len(self._uniforms):
            draws, self._stream = uniform_f64(self._stream, _DRAW_BATCH)
            self._uniforms.extend(float(u) for u in draws)
        return self._uniforms[k]

    def maybe_fail(self, op: str, path: str) -> None:
        """The ``faults`` decision for one operation on ``path`` (under root)."""
        k = self.ops
        self.ops += 1
        cfg = self.plan["faults"]
        u = self.uniform(k)
        if u < cfg["error_rate"]:
            code = errno.EIO
        elif u < cfg["error_rate"] + cfg["timeout_rate"]:
            time.sleep(cfg["timeout_s"])
            code = errno.ETIMEDOUT
        else:
            return
        if self.injected is None:
            self.injected = {
                "op": op,
                "k": k,
                "errno": errno.errorcode[code],
                "path": self.rel(path),
            }
        raise OSError(code, f"{os.strerror(code)} (injected by chaos, op {k})", path)


def _install(shim: _Shim) -> None:
    plan = shim.plan
    if plan.get("root"):
        shim.root = os.path.abspath(plan["root"])
    if plan.get("enospc"):
        shim.root = os.path.abspath(plan["enospc"]["root"])
    if plan.get("faults"):
        from umlos.codec import digest
        from umlos.numerics import PhiloxStream

        shim.root = os.path.abspath(plan["faults"]["root"])
        seed = digest(["umlos-chaos-store-faults", plan["faults"]["seed"]])
        shim._stream = PhiloxStream.from_seed(seed[:16])
    counting = bool(plan.get("count"))

    if counting:
        from umlos import _faults

        original_point = _faults.point

        def point(label: str) -> None:
            shim.crash_points[label] = shim.crash_points.get(label, 0) + 1
            original_point(label)

        _faults.point = point

    real_open = os.open
    real_close = os.close
    real_write = os.write
    faults = bool(plan.get("faults"))
    enospc = plan.get("enospc")

    def tracked_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        full = shim.under_root(path) if dir_fd is None else None
        if faults and full is not None:
            shim.maybe_fail("open", full)
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        text = os.path.abspath(os.fsdecode(path)) if dir_fd is None else None
        if text is not None:
            shim.fd_paths[fd] = text
        return fd

    def tracked_close(fd: int) -> None:
        shim.fd_paths.pop(fd, None)
        real_close(fd)

    def tracked_write(fd: int, data: Any) -> int:
        path = shim.fd_paths.get(fd)
        in_checkpoints = path is not None and f"{os.sep}checkpoints{os.sep}" in path
        if in_checkpoints:
            shim.checkpoint_writes += 1
        inside = path is not None and shim.under_root(path) is not None
        if enospc and inside:
            assert path is not None
            if shim.full or (in_checkpoints and shim.checkpoint_writes == enospc["nth_write"]):
                if not shim.full:
                    shim.full = True
                    half = memoryview(data)[: len(data) // 2]
                    if half:
                        real_write(fd, half)  # a short write, then the disk is full
                    shim.injected = {
                        "op": "write",
                        "k": shim.checkpoint_writes,
                        "errno": "ENOSPC",
                        "path": shim.rel(path),
                    }
                raise OSError(errno.ENOSPC, "No space left on device (injected by chaos)", path)
        if faults and inside:
            assert path is not None
            shim.maybe_fail("write", path)
        return real_write(fd, data)

    real_replace = os.replace
    kill_before = plan.get("kill_before_replace")

    def tracked_replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if shim.under_root(dst) is not None:
            shim.replaces += 1
            if shim.replaces == kill_before:
                os.kill(os.getpid(), signal.SIGKILL)  # the temp file is written, not renamed
        real_replace(src, dst, **kwargs)

    os.open = tracked_open
    os.close = tracked_close
    os.write = tracked_write
    os.replace = tracked_replace
    if not faults:
        return

    def by_fd(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(fd: int, *args: Any, **kwargs: Any) -> Any:
            path = shim.fd_paths.get(fd)
            if path is not None and shim.under_root(path) is not None:
                shim.maybe_fail(name, path)
            return real(fd, *args, **kwargs)

        return wrapper

    def by_path(name: str, real: Callable[..., Any], paths: int) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for arg in args[:paths]:
                full = shim.under_root(arg)
                if full is not None:
                    shim.maybe_fail(name, full)
                    break
            return real(*args, **kwargs)

        return wrapper

    for name in ("read", "fsync", "ftruncate"):
        setattr(os, name, by_fd(name, getattr(os, name)))
    for name, paths in (("rename", 2), ("replace", 2), ("link", 2), ("unlink", 1), ("mkdir", 1)):
        setattr(os, name, by_path(name, getattr(os, name), paths))
    opener = by_path("io.open", io.open, 1)
    io.open = opener
    builtins.open = opener


def _outcome(shim: _Shim, exit_code: int, exc: BaseException | None) -> dict[str, Any]:
    error: dict[str, Any] | None = None
    if isinstance(exc, OSError):
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        error = {"type": "OSError", "errno": name}
    elif exc is not None:
        error = {"type": type(exc).__name__}
        for attr in ("code_id", "reason"):
            value = getattr(exc, attr, None)
            if isinstance(value, str):
                error[attr] = value
    return {
        "exit_code": exit_code,
        "error": error,
        "injected": shim.injected,
        "crash_points": shim.crash_points,
        "checkpoint_writes": shim.checkpoint_writes,
        "replaces": shim.replaces,
        "fault_ops": shim.ops,
    }


def main(argv: list[str]) -> int:
    plan_path, sep, *args = argv
    if sep != "--":
        raise SystemExit("usage: python -m umlos.conformance._chaos_child PLAN.json -- ARGS...")
    plan = json.loads(Path(plan_path).read_text())
    shim = _Shim(plan)
    from umlos import cli

    reported: list[BaseException] = []
    fail_runtime = cli._fail_runtime

    def record_and_fail(exc: Any, as_json: bool) -> Any:
        reported.append(exc)  # the catalogue error the command reports before exiting 3
        return fail_runtime(exc, as_json)

    cli._fail_runtime = record_and_fail
    _install(shim)
    if plan.get("ready"):
        sys.stderr.write(READY_LINE)  # a parent's kill timer starts here, after the imports
        sys.stderr.flush()
    exit_code = 0
    caught: BaseException | None = None
    try:
        cli.main(args, standalone_mode=False)
    except SystemExit as exc:
        exit_code = exc.code if isinstance(exc.code, int) else 1
        caught = reported[-1] if reported and exit_code else None
    except Exception as exc:  # anything else is recorded by type: the parent judges it
        exit_code, caught = 1, exc
    outcome = _outcome(shim, exit_code, caught)
    Path(plan["outcome"]).write_text(json.dumps(outcome, sort_keys=True))
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
