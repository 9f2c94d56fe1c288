"""The chaos harness: a private key store, the small manifest, the reference run, real crashes.

Everything a scenario touches lives under one scratch directory: ``home/`` (a throw-away
``UMLOS_HOME``, never the user's key store), ``manifest/`` (the quickstart classification
template, 20 steps, a checkpoint every 5), ``reference/`` (the uninterrupted run every recovery
is compared with) and one directory per case. Runs that crash are real ``umlos run`` processes
(:mod:`umlos.conformance._chaos_child`); recoveries run in this process through the library
calls the command line makes (``execute(resume_run=True)``, ``verify_run``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from umlos._generated.records import WalRecord, WalRecoveryReport
from umlos.codec import digest
from umlos.errors import Error
from umlos.evidence import wal as wal_mod
from umlos.evidence._frames import scan_frames
from umlos.numerics import PhiloxStream, bounded_ints

T = TypeVar("T")

MAX_STEPS: Final = 20
CHECKPOINT_FREQUENCY: Final = 5
# A child run takes about 2 s here; one still running after this is a hang, which fails.
CHILD_TIMEOUT_S: Final = 120
_CHILD_MODULE: Final = "umlos.conformance._chaos_child"


# --- seeded choices ---------------------------------------------------------------------------


class Rng:
    """Seeded choices for one scenario: a Philox stream keyed by ``(seed, scope)``."""

    def __init__(self, seed: int, scope: str) -> None:
        self._stream = PhiloxStream.from_seed(digest(["umlos-chaos", seed, scope])[:16])

    def below(self, bound: int) -> int:
        """One integer uniform in ``[0, bound)``."""
        values, self._stream = bounded_ints(self._stream, bound, 1)
        return int(values[0])

    def sample(self, population: Sequence[T], k: int) -> list[T]:
        """``k`` distinct members of ``population`` (all of them if it has fewer), in draw order."""
        pool = list(population)
        out: list[T] = []
        while pool and len(out) < k:
            out.append(pool.pop(self.below(len(pool))))
        return out


# --- the WAL calls under test -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WalApi:
    """The WAL recovery functions the WAL scenarios exercise (a test may swap in a broken one)."""

    read_wal: Callable[[Path], tuple[WalRecord, ...]]
    resume: Callable[[Path, str, str], tuple[WalRecord, ...]]
    recover: Callable[[Path, str, str], WalRecoveryReport]


def _resume(run_dir: Path, tenant_id: str, run_id: str) -> tuple[WalRecord, ...]:
    return wal_mod.resume(run_dir, tenant_id=tenant_id, run_id=run_id)


def _recover(run_dir: Path, tenant_id: str, run_id: str) -> WalRecoveryReport:
    # The scratch directories hold the log and the pointer only: no artifact is there to check
    # or remove, so a recovery that gets as far as the artifacts shows up as ARTIFACT_MISMATCH.
    return wal_mod.recover(
        run_dir,
        tenant_id=tenant_id,
        run_id=run_id,
        artifact_hash=lambda _field: None,
        remove_tmp=lambda _field, _hash: None,
    )


REAL_WAL: Final = WalApi(read_wal=wal_mod.read_wal, resume=_resume, recover=_recover)


# --- child processes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChildResult:
    """How a ``umlos`` child process ended."""

    returncode: int
    outcome: dict[str, Any] | None  # None when it was killed (no chance to write one)
    summary: dict[str, Any] | None  # ``umlos run --json``'s output when it printed one
    stderr_tail: str

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


@dataclass(frozen=True, slots=True)
class Reference:
    """The uninterrupted run of the chaos manifest, and what it went through."""

    runs_root: Path
    run_dir: Path
    run_id: str
    tenant_id: str
    certificate_hash: str
    trace_final_hash: str
    crash_points: Mapping[str, int]
    checkpoint_writes: int
    replaces: int
    wal_frames: tuple[bytes, ...]
    checkpoint_steps: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Resumed:
    """The result of ``execute(resume_run=True)`` on a damaged or interrupted run directory."""

    status: str  # COMMITTED, or ERROR
    certificate_hash: str | None = None
    trace_final_hash: str | None = None
    resumed_from_t: int | None = None
    error: str | None = None  # CODE_ID[:reason] or the exception type

    def observed(self, reference: Reference) -> dict[str, Any]:
        """The transcript's view: no hash that depends on the throw-away signing key."""
        out: dict[str, Any] = {"status": self.status}
        if self.status == "COMMITTED":
            out["same_certificate"] = self.certificate_hash == reference.certificate_hash
            out["same_trace"] = self.trace_final_hash == reference.trace_final_hash
            out["resumed_from_t"] = self.resumed_from_t
        else:
            out["error"] = self.error
        return out


def error_name(exc: BaseException) -> str:
    """``CODE_ID:reason`` for a UML_OS error, ``OSError:ERRNO`` for an OS error, else the type."""
    if isinstance(exc, Error):
        return f"{exc.code_id}:{exc.reason}" if exc.reason else exc.code_id
    if isinstance(exc, OSError) and exc.errno is not None:
        import errno

        return f"OSError:{errno.errorcode.get(exc.errno, exc.errno)}"
    return type(exc).__name__


def _write_manifest(directory: Path) -> Path:
    from umlos.quickstart import write_quickstart

    path = write_quickstart("classification", directory)
    text = path.read_text()
    limits = "limits: {max_epochs: 60}"
    if limits not in text:
        raise RuntimeError("the quickstart classification template changed; update chaos")
    text = text.replace(limits, f"limits: {{max_steps: {MAX_STEPS}}}")
    path.write_text(text + f"checkpoint_frequency: {CHECKPOINT_FREQUENCY}\n")
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under ``root``: relative path → SHA-256 (``dir`` for dirs)."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for base, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(base, name), root)] = "dir"
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


class ChaosContext:
    """One chaos session's scratch space, environment and shared base states (module doc)."""

    def __init__(
        self,
        root: Path,
        *,
        seed: int,
        workers: int,
        exhaustive: bool = True,
        wal_api: WalApi = REAL_WAL,
    ) -> None:
        self.root = root
        self.seed = seed
        self.exhaustive = exhaustive
        self.workers = max(1, workers)
        self.wal_api = wal_api
        self.home = root / "home"
        self.manifest = _write_manifest(root / "manifest")
        self.env = {k: v for k, v in os.environ.items() if k != "UMLOS_CRASH_AT"}
        self.env["UMLOS_HOME"] = str(self.home)
        self._reference: Reference | None = None
        self._states: dict[str, Path] = {}
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def with_wal_api(self, wal_api: WalApi) -> ChaosContext:
        """The same session (scratch, reference, crash states) exercising other WAL calls."""
        other = copy.copy(self)
        other.wal_api = wal_api
        return other

    # --- scratch ---------------------------------------------------------------------------
    def scratch(self, name: str) -> Path:
        """A new empty directory for one case."""
        with self._lock:
            n = next(self._counter)
        path = self.root / "cases" / f"{n:05d}-{name}"
        path.mkdir(parents=True)
        return path

    def discard(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def copy_runs(self, runs_root: Path, name: str) -> Path:
        """A private copy of a runs directory (the base states are never changed)."""
        dest = self.scratch(name) / "runs"
        shutil.copytree(runs_root, dest, symlinks=True)
        return dest

    def run_dir(self, runs_root: Path) -> Path:
        return runs_root / self.reference.run_id

    def rng(self, scope: str) -> Rng:
        return Rng(self.seed, scope)

    # --- processes -------------------------------------------------------------------------
    def child(
        self,
        runs_root: Path,
        *,
        resume: bool = False,
        crash_at: str | None = None,
        plan: Mapping[str, Any] | None = None,
        kill_after_s: float | None = None,
    ) -> ChildResult:
        """Run ``umlos run MANIFEST --runs-dir RUNS_ROOT --json [--resume]`` in a real process.

        ``crash_at`` sets ``UMLOS_CRASH_AT``; ``plan`` configures the shim; ``kill_after_s``
        sends SIGKILL that long after the child reports it is ready (imports done).
        """
        work = self.scratch("child")
        plan_obj = dict(plan or {})
        plan_obj["outcome"] = str(work / "outcome.json")
        plan_obj["ready"] = kill_after_s is not None
        (work / "plan.json").write_text(json.dumps(plan_obj))
        args = [str(self.manifest), "--runs-dir", str(runs_root), "--json"]
        argv = [sys.executable, "-m", _CHILD_MODULE, str(work / "plan.json"), "--", "run", *args]
        if resume:
            argv.append("--resume")
        env = dict(self.env)
        if crash_at is not None:
            env["UMLOS_CRASH_AT"] = crash_at
        with subprocess.Popen(
            argv,
            env=env,
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            timer = _kill_timer(proc, kill_after_s) if kill_after_s is not None else None
            try:
                stdout, stderr = proc.communicate(timeout=CHILD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            finally:
                if timer is not None:
                    timer.cancel()
        outcome_path = work / "outcome.json"
        outcome = json.loads(outcome_path.read_text()) if outcome_path.exists() else None
        summary: dict[str, Any] | None = None
        with contextlib.suppress(ValueError):
            parsed = json.loads(stdout) if stdout.strip() else None
            summary = parsed if isinstance(parsed, dict) else None
        self.discard(work)
        return ChildResult(proc.returncode, outcome, summary, stderr[-2000:])

    def parallel(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """Run independent jobs (each mostly a child process) ``workers`` at a time, in order."""
        if self.workers == 1 or len(jobs) < 2:
            return [job() for job in jobs]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda job: job(), jobs))

    # --- base states -----------------------------------------------------------------------
    @property
    def reference(self) -> Reference:
        if self._reference is None:
            self._reference = self._run_reference()
        return self._reference

    def _run_reference(self) -> Reference:
        from umlos.evidence.keys import generate_key, list_keys

        if not list_keys():
            generate_key(make_default=True)  # before any child could race to create one
        runs_root = self.root / "reference" / "runs"
        result = self.child(runs_root, plan={"count": True, "root": str(runs_root)})
        if result.returncode != 0 or result.summary is None or result.outcome is None:
            raise RuntimeError(f"the chaos reference run failed: {result.stderr_tail}")
        summary = result.summary
        run_dir = runs_root / summary["run_id"]
        frames = scan_frames((run_dir / wal_mod.WAL_FILE).read_bytes())
        wal_bytes = (run_dir / wal_mod.WAL_FILE).read_bytes()
        bounds = [f.offset for f in frames.frames] + [frames.valid_length]
        records = wal_mod.read_wal(run_dir / wal_mod.WAL_FILE)
        steps = tuple(
            sorted(
                int(p.name)
                for p in (run_dir / "checkpoints").iterdir()
                if p.is_dir() and p.name.isdigit()
            )
        )
        return Reference(
            runs_root=runs_root,
            run_dir=run_dir,
            run_id=summary["run_id"],
            tenant_id=records[0].tenant_id,
            certificate_hash=summary["certificate_hash"],
            trace_final_hash=summary["trace_final_hash"],
            crash_points=dict(result.outcome["crash_points"]),
            checkpoint_writes=int(result.outcome["checkpoint_writes"]),
            replaces=int(result.outcome["replaces"]),
            wal_frames=tuple(wal_bytes[a:b] for a, b in itertools.pairwise(bounds)),
            checkpoint_steps=steps,
        )

    def crash_state(self, crash_at: str) -> Path:
        """The runs directory a real ``umlos run`` leaves when SIGKILLed at ``crash_at`` (cached)."""
        with self._lock:
            cached = self._states.get(crash_at)
        if cached is not None:
            return cached
        runs_root = self.root / "states" / crash_at.replace(":", "-") / "runs"
        result = self.child(runs_root, crash_at=crash_at)
        if not result.killed:
            raise RuntimeError(f"UMLOS_CRASH_AT={crash_at} did not kill the run: {result}")
        with self._lock:
            self._states[crash_at] = runs_root
        return runs_root

    def prefetch(self, crash_ats: Sequence[str]) -> None:
        """Produce several crash states at once (they are independent processes)."""
        _ = self.reference
        self.parallel([functools.partial(self.crash_state, c) for c in crash_ats])

    # --- recovery in this process ----------------------------------------------------------
    def resume(self, runs_root: Path) -> Resumed:
        """``execute(MANIFEST, runs_root=…, resume_run=True)``: what ``umlos run --resume`` does."""
        from umlos.runner import execute

        try:
            summary = execute(self.manifest, runs_root=runs_root, resume_run=True)
        except Exception as exc:  # every outcome is recorded; the scenario judges it
            return Resumed(status="ERROR", error=error_name(exc))
        return Resumed(
            status=summary.status,
            certificate_hash=summary.certificate_hash,
            trace_final_hash=summary.trace_final_hash,
            resumed_from_t=summary.resumed_from_t,
        )

    def verify(self, run_dir: Path) -> str:
        """``verify_run``: ``PASS``, or ``FAIL:<first failing step id>``."""
        from umlos.runner.verify import failed_step, verify_run

        report = verify_run(run_dir)
        if report.verdict == "PASS":
            return "PASS"
        step = failed_step(report)
        return f"FAIL:{step.step_id if step is not None else '?'}"


def _kill_timer(proc: subprocess.Popen[str], delay_s: float) -> threading.Timer | None:
    """Arm a SIGKILL ``delay_s`` after ``proc`` writes its ready line (None if it never does)."""
    from umlos.conformance._chaos_child import READY_LINE

    assert proc.stderr is not None
    while line := proc.stderr.readline():
        if line == READY_LINE:
            timer = threading.Timer(delay_s, _kill_quietly, args=(proc,))
            timer.start()
            return timer
    return None


def _kill_quietly(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGKILL)


@contextlib.contextmanager
def chaos_context(
    workdir: Path | None = None,
    *,
    seed: int,
    workers: int | None = None,
    exhaustive: bool = True,
    wal_api: WalApi = REAL_WAL,
    keep: bool = False,
) -> Iterator[ChaosContext]:
    """A :class:`ChaosContext` with ``UMLOS_HOME`` pointing at its private key store.

    The process environment is restored and the scratch directory removed on exit (unless
    ``keep`` or ``workdir`` was given).
    """
    owned = workdir is None
    root = Path(tempfile.mkdtemp(prefix="umlos-chaos-")) if workdir is None else Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("UMLOS_HOME", "UMLOS_CRASH_AT")}
    os.environ["UMLOS_HOME"] = str(root / "home")
    os.environ.pop("UMLOS_CRASH_AT", None)
    try:
        yield ChaosContext(
            root,
            seed=seed,
            workers=workers if workers is not None else min(4, os.cpu_count() or 1),
            exhaustive=exhaustive,
            wal_api=wal_api,
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if owned and not keep:
            shutil.rmtree(root, ignore_errors=True)
