"""Scenarios against whole runs: damaged checkpoints, SIGKILL, a full disk, a failing store.

Each trial starts a real ``umlos run`` process (:mod:`umlos.conformance._chaos_child`), lets
it crash or fail, then recovers in this process with ``execute(resume_run=True)`` and checks
the result against the uninterrupted reference run with ``verify_run``. The child processes of
one scenario are independent and run ``ChaosContext.workers`` at a time; recoveries run one by
one, in trial order, so the transcript is the same however the children were scheduled.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from umlos._generated.records import CheckpointPointer
from umlos.conformance._chaos_harness import ChaosContext, ChildResult, Resumed, snapshot
from umlos.conformance._chaos_pack import Invariant, Transcript
from umlos.errors import CheckpointInvalidError, WalCorruptionError
from umlos.evidence import checkpoint as ckpt_mod
from umlos.evidence import wal as wal_mod

SAME_CERTIFICATE: Final = Invariant(
    "resume.same_certificate",
    "Resuming the interrupted run reaches the same certificate and trace final hash as the "
    "uninterrupted reference run of the same manifest.",
)
VERIFIES: Final = Invariant(
    "run_dir.verifies",
    "After recovery the run directory verifies (verify_run PASS).",
)
PRESERVED: Final = Invariant(
    "committed.preserved",
    "No committed data is lost: resuming a run that already committed returns it unchanged "
    "(every file byte-identical).",
)


def _resumed_ok(t: Transcript, case_id: str, resumed: Resumed, verdict: str, ref: Any) -> None:
    same = (
        resumed.status == "COMMITTED"
        and resumed.certificate_hash == ref.certificate_hash
        and resumed.trace_final_hash == ref.trace_final_hash
    )
    t.check(SAME_CERTIFICATE.id, case_id, same, f"resume gave {resumed.observed(ref)}")
    t.check(VERIFIES.id, case_id, verdict == "PASS", f"verify_run {verdict}")


# --- checkpoint.corruption --------------------------------------------------------------------

CHECKPOINT_CRASH: Final = "step:18"
"""Killed after step 18: checkpoints 5, 10 and 15 are complete, 15 is the latest."""

DETECTED: Final = Invariant(
    "corruption.detected",
    "Every flipped bit in any file of the latest checkpoint is detected: verify_checkpoint "
    "refuses the directory, or read_pointer the pointer.",
)
FALLBACK: Final = Invariant(
    "checkpoint.fallback",
    "Resume restores the newest checkpoint that verifies: the previous one when the latest is "
    "damaged, none (a restart from step 0) when every one is, never a damaged one.",
)
CHECKPOINT_INVARIANTS: Final = (DETECTED, FALLBACK, SAME_CERTIFICATE, VERIFIES)


def checkpoint_corruption(ctx: ChaosContext, t: Transcript, trials: int) -> None:
    """Flip bits in each file of the latest checkpoint (and in every checkpoint at once)."""
    ref = ctx.reference
    base = ctx.crash_state(CHECKPOINT_CRASH)
    ckpts = ctx.run_dir(base) / ckpt_mod.CHECKPOINTS_DIR
    steps = sorted(int(p.name) for p in ckpts.iterdir() if p.is_dir() and p.name.isdigit())
    latest, previous = steps[-1], steps[-2]
    name = ckpt_mod.step_name(latest)
    files = sorted(
        [p.relative_to(ckpts / name).as_posix() for p in (ckpts / name).rglob("*") if p.is_file()]
    )
    rng = ctx.rng("checkpoint.corruption")
    targets = [(f"{name}/{rel}", previous) for rel in files]
    # A damaged pointer only unpublishes the step; the directory still verifies and is used.
    targets.append((f"{name}{ckpt_mod.POINTER_SUFFIX}", latest))
    for rel, expected_t in targets:
        size = (ckpts / rel).stat().st_size
        for _ in range(trials):
            index, bit = rng.below(size), rng.below(8)
            case_id = f"{rel}@{index}.{bit}"
            runs = ctx.copy_runs(base, "ckpt")
            run_dir = ctx.run_dir(runs)
            _flip_file(run_dir / ckpt_mod.CHECKPOINTS_DIR / rel, index, bit)
            detected = _detect(run_dir / ckpt_mod.CHECKPOINTS_DIR, rel)
            ref_ck = ckpt_mod.latest_checkpoint(run_dir)
            chosen = ref_ck.t if ref_ck is not None else None
            resumed = ctx.resume(runs)
            verdict = ctx.verify(run_dir) if resumed.status == "COMMITTED" else "not committed"
            t.case(
                case_id,
                inject={"file": rel, "byte": index, "bit": bit},
                observed={
                    "detected": detected,
                    "latest_valid": chosen,
                    "resume": resumed.observed(ref),
                    "verify": verdict,
                },
            )
            t.check(DETECTED.id, case_id, detected != "accepted", "the damage was not detected")
            fell_back = chosen == expected_t and resumed.resumed_from_t == expected_t
            t.check(
                FALLBACK.id,
                case_id,
                fell_back,
                f"restored t={resumed.resumed_from_t}, expected {expected_t}",
            )
            _resumed_ok(t, case_id, resumed, verdict, ref)
            ctx.discard(runs.parent)
    # Every checkpoint damaged: nothing to restore, the run starts again from step 0.
    runs = ctx.copy_runs(base, "ckpt-all")
    run_dir = ctx.run_dir(runs)
    flipped = []
    for step in steps:
        rel = f"{ckpt_mod.step_name(step)}/{ckpt_mod.PARAMS_FILE}"
        path = run_dir / ckpt_mod.CHECKPOINTS_DIR / rel
        index = rng.below(path.stat().st_size)
        _flip_file(path, index, 0)
        flipped.append([rel, index])
    chosen_ref = ckpt_mod.latest_checkpoint(run_dir)
    resumed = ctx.resume(runs)
    verdict = ctx.verify(run_dir) if resumed.status == "COMMITTED" else "not committed"
    case_id = "every-checkpoint"
    t.case(
        case_id,
        inject={"files": flipped},
        observed={
            "latest_valid": chosen_ref.t if chosen_ref is not None else None,
            "resume": resumed.observed(ref),
            "verify": verdict,
        },
    )
    restarted = chosen_ref is None and resumed.resumed_from_t is None
    t.check(FALLBACK.id, case_id, restarted, f"restored t={resumed.resumed_from_t}, expected none")
    _resumed_ok(t, case_id, resumed, verdict, ref)
    ctx.discard(runs.parent)


def _flip_file(path: Path, index: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[index] ^= 1 << bit
    path.write_bytes(bytes(data))


def _detect(ckpts: Path, rel: str) -> str:
    """Which check refused the damaged file: a checkpoint reason, or ``accepted``."""
    if rel.endswith(ckpt_mod.POINTER_SUFFIX):
        try:
            pointer = ckpt_mod.read_pointer(ckpts / rel)
        except CheckpointInvalidError as exc:
            return f"pointer:{exc.reason}"
        step = rel.removesuffix(ckpt_mod.POINTER_SUFFIX)
        header = ckpt_mod.verify_checkpoint(ckpts / step).header
        expected = CheckpointPointer(
            tenant_id=header.tenant_id,
            run_id=header.run_id,
            t=header.t,
            checkpoint_hash=header.checkpoint_hash,
            path=f"{ckpt_mod.CHECKPOINTS_DIR}/{step}",
        )
        # latest_checkpoint publishes a step only for a pointer naming exactly its checkpoint.
        return "accepted" if pointer == expected else "pointer:MISMATCH"
    try:
        ckpt_mod.verify_checkpoint(ckpts / rel.split("/", 1)[0])
    except CheckpointInvalidError as exc:
        return f"checkpoint:{exc.reason}"
    except Exception as exc:  # any other failure is a detection too, but name it
        return f"checkpoint:{type(exc).__name__}"
    return "accepted"


# --- process.sigkill_random -------------------------------------------------------------------

KILLED: Final = Invariant(
    "crash.real",
    "Each named or seeded crash point really killed the `umlos run` process with SIGKILL "
    "(exit -9), whether before or after it committed.",
)
SIGKILL_INVARIANTS: Final = (KILLED, SAME_CERTIFICATE, VERIFIES, PRESERVED)
# Timer kills land anywhere from the first manifest read to the last fsync (~1.2 s here).
TIMER_WINDOW_MS: Final = 1500


REPLACE_POINT: Final = "replace"
"""Pseudo crash label: SIGKILL just before the n-th atomic rename (``os.replace``) of the run."""


def _kill_spec(point: str) -> dict[str, Any]:
    label, _, n = point.partition(":")
    if label == REPLACE_POINT:
        return {"kill_before_replace": int(n)}
    return {"crash_at": point}


def sigkill_random(ctx: ChaosContext, t: Transcript, trials: int) -> None:
    """SIGKILL a real run at every named crash point, at seeded points, and on a seeded timer.

    The named points are every ``UMLOS_CRASH_AT`` label at its middle occurrence and every
    atomic rename of the run (``replace:n``); the seeded points are drawn uniformly from all
    the point occurrences a run goes through.
    """
    ref = ctx.reference
    counts = dict(sorted(ref.crash_points.items()))
    counts[REPLACE_POINT] = ref.replaces
    named = [f"{label}:{(n + 1) // 2}" for label, n in counts.items() if label != REPLACE_POINT]
    named += [f"{REPLACE_POINT}:{n}" for n in range(1, ref.replaces + 1)]
    if not ctx.exhaustive:
        named = sorted(ctx.rng("sigkill/named").sample(named, 3))
    rng = ctx.rng("sigkill/ticks")
    total = sum(counts.values())
    ticks = []
    for _ in range(trials):
        event = rng.below(total)
        for label, n in counts.items():
            if event < n:
                ticks.append(f"{label}:{event + 1}")
                break
            event -= n
    timer_rng = ctx.rng("sigkill/timer")
    delays = [timer_rng.below(TIMER_WINDOW_MS) for _ in range(max(1, trials // 2))]

    plans: list[tuple[str, dict[str, Any]]] = [
        *((f"named-{c}", {"point": c}) for c in named),
        *((f"tick-{i}-{c}", {"point": c}) for i, c in enumerate(ticks)),
        *((f"timer-{i}-{d}ms", {"delay_ms": d}) for i, d in enumerate(delays)),
    ]
    roots = [ctx.scratch("sigkill") / "runs" for _ in plans]

    def launch(i: int) -> ChildResult:
        spec = plans[i][1]
        if "point" in spec:
            kill = _kill_spec(spec["point"])
            if "crash_at" in kill:
                return ctx.child(roots[i], crash_at=kill["crash_at"])
            return ctx.child(roots[i], plan={"root": str(roots[i]), **kill})
        return ctx.child(roots[i], kill_after_s=spec["delay_ms"] / 1000)

    results = ctx.parallel([functools.partial(launch, i) for i in range(len(plans))])
    landings: dict[str, str] = {}
    for (case_id, spec), runs, result in zip(plans, roots, results, strict=True):
        run_dir = ctx.run_dir(runs)
        committed_before = wal_mod.pointer_path(run_dir).exists()
        landing = _landing(run_dir, result)
        before = snapshot(run_dir)
        resumed = ctx.resume(runs)
        unchanged = snapshot(run_dir) == before
        verdict = ctx.verify(run_dir) if resumed.status == "COMMITTED" else "not committed"
        observed: dict[str, Any] = {"resume": resumed.observed(ref), "verify": verdict}
        if "point" in spec:
            observed["killed"] = result.killed
            observed["committed_before_resume"] = committed_before
            t.check(KILLED.id, case_id, result.killed, f"exit {result.returncode}, {landing}")
            if committed_before:
                observed["unchanged_by_resume"] = unchanged
                t.check(PRESERVED.id, case_id, unchanged, "resume changed a committed run")
        else:
            # Where a timer kill lands depends on the machine's speed: informational only.
            observed["resume"].pop("resumed_from_t", None)
            landings[case_id] = landing
        t.case(case_id, inject=spec, observed=observed)
        _resumed_ok(t, case_id, resumed, verdict, ref)
        ctx.discard(runs.parent)
    t.note("timer_landings", landings)
    # A kill after the commit: resuming the committed run must change nothing.
    runs = ctx.copy_runs(ref.runs_root, "after-commit")
    run_dir = ctx.run_dir(runs)
    before = snapshot(run_dir)
    resumed = ctx.resume(runs)
    unchanged = snapshot(run_dir) == before
    verdict = ctx.verify(run_dir)
    t.case(
        "after-commit",
        inject={"crash_at": "after COMMITTED"},
        observed={"resume": resumed.observed(ref), "unchanged": unchanged, "verify": verdict},
    )
    t.check(PRESERVED.id, "after-commit", unchanged, "resume changed a committed run")
    _resumed_ok(t, "after-commit", resumed, verdict, ref)
    ctx.discard(runs.parent)


def _landing(run_dir: Path, result: ChildResult) -> str:
    """Where a kill left the run (for people; never hashed)."""
    if not result.killed:
        return f"not killed (exit {result.returncode})"
    if wal_mod.pointer_path(run_dir).exists():
        return "after COMMITTED"
    log = wal_mod.wal_path(run_dir)
    if not log.exists():
        return "before PREPARE"
    try:
        kinds = [r.record_type for r in wal_mod.read_wal(log)]
    except (WalCorruptionError, OSError) as exc:
        return f"torn log ({type(exc).__name__})"
    ref = ckpt_mod.latest_checkpoint(run_dir)
    return f"log {'+'.join(kinds)}, latest checkpoint {ref.t if ref else None}"


# --- disk.full_during_checkpoint --------------------------------------------------------------

TYPED_ENOSPC: Final = Invariant(
    "failure.typed",
    "The run fails with the disk's own error, OSError(ENOSPC), and exits non-zero without a "
    "COMMITTED pointer: no other exception, no hang, no success.",
)
NO_PARTIAL: Final = Invariant(
    "checkpoint.no_partial",
    "No partly written checkpoint is visible: every checkpoint directory under its final name "
    "verifies, and the newest one is a complete checkpoint written before the disk filled.",
)
WAL_INTACT: Final = Invariant(
    "wal.intact",
    "The commit log stays valid: strict read_wal passes and the log ends in PREPARE.",
)
DISK_INVARIANTS: Final = (TYPED_ENOSPC, NO_PARTIAL, WAL_INTACT, SAME_CERTIFICATE, VERIFIES)
DISK_CRASH: Final = "wal-prepared:1"
"""The tmpfs trial mounts the small file system on a run killed right after PREPARE."""
_PAGE: Final = 4096


def disk_full(ctx: ChaosContext, t: Transcript, trials: int) -> None:
    """ENOSPC on the n-th checkpoint write (shim), and a real tmpfs that fills up (when root)."""
    ref = ctx.reference
    rng = ctx.rng("disk.full")
    writes = sorted({1 + rng.below(ref.checkpoint_writes) for _ in range(trials)})
    roots = [ctx.scratch("enospc") / "runs" for _ in writes]
    jobs = [
        lambda runs=runs, n=n: ctx.child(runs, plan={"enospc": {"root": str(runs), "nth_write": n}})
        for runs, n in zip(roots, writes, strict=True)
    ]
    results = ctx.parallel(jobs)
    for n, runs, result in zip(writes, roots, results, strict=True):
        injected = (result.outcome or {}).get("injected") or {}
        _after_disk_full(
            ctx,
            t,
            case_id=f"shim-write-{n}",
            runs=runs,
            result=result,
            inject={"method": "shim", "nth_write": n},
            where=injected.get("path"),
        )
        ctx.discard(runs.parent)
    _tmpfs_trial(ctx, t)


def _after_disk_full(
    ctx: ChaosContext,
    t: Transcript,
    *,
    case_id: str,
    runs: Path,
    result: ChildResult,
    inject: dict[str, Any],
    where: str | None,
    free_space: Any = None,
) -> None:
    ref = ctx.reference
    run_dir = ctx.run_dir(runs)
    error = (result.outcome or {}).get("error") or {}
    typed = (
        result.returncode not in (0, None)
        and error.get("type") == "OSError"
        and error.get("errno") == "ENOSPC"
        and not wal_mod.pointer_path(run_dir).exists()
    )
    t.check(TYPED_ENOSPC.id, case_id, typed, f"exit {result.returncode}, error {error}")
    bad_dirs, latest = _checkpoint_dirs(run_dir)
    t.check(NO_PARTIAL.id, case_id, not bad_dirs, f"unverifiable: {bad_dirs}")
    kinds: list[str]
    try:
        kinds = [r.record_type for r in wal_mod.read_wal(wal_mod.wal_path(run_dir))]
    except (WalCorruptionError, OSError) as exc:
        kinds = [f"unreadable:{type(exc).__name__}"]
    t.check(WAL_INTACT.id, case_id, kinds == ["PREPARE"], f"log {kinds}")
    if free_space is not None:
        free_space()
    resumed = ctx.resume(runs)
    verdict = ctx.verify(run_dir) if resumed.status == "COMMITTED" else "not committed"
    t.case(
        case_id,
        inject=inject,
        observed={
            "exit_code": result.returncode,
            "error": error,
            "failed_in": where,
            "latest_valid_after_failure": latest,
            "log": kinds,
            "resume": resumed.observed(ref),
            "verify": verdict,
        },
    )
    _resumed_ok(t, case_id, resumed, verdict, ref)


def _checkpoint_dirs(run_dir: Path) -> tuple[list[str], int | None]:
    """Checkpoint directories (final names) that do not verify; the newest one that does."""
    root = run_dir / ckpt_mod.CHECKPOINTS_DIR
    bad: list[str] = []
    if root.is_dir():
        for entry in sorted(os.listdir(root)):
            if entry.isdigit():
                try:
                    ckpt_mod.verify_checkpoint(root / entry)
                except CheckpointInvalidError as exc:
                    bad.append(f"{entry}:{exc.reason}")
    ref = ckpt_mod.latest_checkpoint(run_dir)
    return bad, ref.t if ref is not None else None


def can_mount_tmpfs() -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, a ``mount`` binary)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    import tempfile

    probe = Path(tempfile.mkdtemp(prefix="umlos-chaos-probe-"))
    try:
        with _tmpfs(probe, _PAGE):
            return True
    except (OSError, subprocess.CalledProcessError):
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)


@contextlib.contextmanager
def _tmpfs(target: Path, size: int) -> Iterator[None]:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(target)],
        check=True,
        capture_output=True,
    )
    try:
        yield
    finally:
        done = subprocess.run(["umount", str(target)], check=False, capture_output=True)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


def _tmpfs_trial(ctx: ChaosContext, t: Transcript) -> None:
    """A real small file system under ``checkpoints/``: two checkpoints and a half fit."""
    case_id = "tmpfs"
    if not can_mount_tmpfs():
        t.case(case_id, inject={"method": "tmpfs"}, observed={"available": False})
        return
    ref = ctx.reference
    first = ref.run_dir / ckpt_mod.CHECKPOINTS_DIR / ckpt_mod.step_name(ref.checkpoint_steps[0])
    pages = sum(math.ceil(p.stat().st_size / _PAGE) for p in first.rglob("*") if p.is_file())
    # Two complete checkpoints with their pointers, then room for half of the third one's files.
    budget = 2 * (pages + 1) + pages // 2
    runs = ctx.copy_runs(ctx.crash_state(DISK_CRASH), "tmpfs")
    mount_point = ctx.run_dir(runs) / ckpt_mod.CHECKPOINTS_DIR
    mount_point.mkdir()
    with _tmpfs(mount_point, budget * _PAGE):
        result = ctx.child(runs, resume=True)

        def free_space() -> None:
            subprocess.run(
                ["mount", "-o", "remount,size=64m", str(mount_point)],
                check=True,
                capture_output=True,
            )

        _after_disk_full(
            ctx,
            t,
            case_id=case_id,
            runs=runs,
            result=result,
            inject={"method": "tmpfs", "size_pages": budget, "checkpoint_pages": pages},
            where=None,
            free_space=free_space,
        )
    ctx.discard(runs.parent)


# --- store.partial_failure --------------------------------------------------------------------

TYPED_FAULT: Final = Invariant(
    "failure.typed",
    "Every attempt under injected store faults either commits or fails with a typed error — "
    "the injected OSError (EIO, ETIMEDOUT) or a UML_OS catalogue error — and exits non-zero "
    "without a COMMITTED pointer; none hangs or reports success without committing.",
)
STORE_INVARIANTS: Final = (TYPED_FAULT, SAME_CERTIFICATE, VERIFIES, PRESERVED)
ATTEMPTS: Final = 4
# (error rate, timeout rate) per trial, in turn: a run does about 400 file operations under its
# directory, so the first fault lands late, midway or early in the run.
RATES: Final = ((0.002, 0.001), (0.005, 0.0025), (0.01, 0.005))
TIMEOUT_S: Final = 0.005
_INJECTED: Final = frozenset({"EIO", "ETIMEDOUT"})


def _fault_plan(runs: Path, seed: int, attempt: int, rates: tuple[float, float]) -> dict[str, Any]:
    return {
        "faults": {
            "root": str(runs),
            "seed": [seed, attempt],
            "error_rate": rates[0],
            "timeout_rate": rates[1],
            "timeout_s": TIMEOUT_S,
        }
    }


def _typed(result: ChildResult) -> tuple[bool, dict[str, Any]]:
    """Whether an attempt committed or failed with a typed error; the error it reported."""
    error = (result.outcome or {}).get("error") or {}
    if result.returncode == 0:
        return (result.summary or {}).get("status") == "COMMITTED", error
    typed = (error.get("type") == "OSError" and error.get("errno") in _INJECTED) or (
        "code_id" in error
    )
    return typed and result.returncode is not None, error


def store_partial_failure(ctx: ChaosContext, t: Transcript, trials: int) -> None:
    """Seeded EIO and timeouts on file operations of the run directory, across resumes."""
    ref = ctx.reference
    rng = ctx.rng("store.partial_failure")
    seeds = [rng.below(1 << 32) for _ in range(trials)]
    rates = [RATES[i % len(RATES)] for i in range(trials)]
    roots = [ctx.scratch("store") / "runs" for _ in seeds]

    def chain(runs: Path, seed: int, rate: tuple[float, float]) -> list[ChildResult]:
        out: list[ChildResult] = []
        for attempt in range(ATTEMPTS):
            plan = _fault_plan(runs, seed, attempt, rate)
            result = ctx.child(runs, resume=attempt > 0, plan=plan)
            out.append(result)
            if result.returncode == 0:
                break
        return out

    jobs = [
        lambda r=r, s=s, q=q: chain(r, s, q) for r, s, q in zip(roots, seeds, rates, strict=True)
    ]
    chains = ctx.parallel(jobs)
    for trial, (seed, rate, runs, attempts) in enumerate(
        zip(seeds, rates, roots, chains, strict=True)
    ):
        case_id = f"trial-{trial}-{seed}"
        run_dir = ctx.run_dir(runs)
        seen = []
        for attempt, result in enumerate(attempts):
            typed, error = _typed(result)
            injected = (result.outcome or {}).get("injected") or {}
            seen.append(
                {
                    "exit_code": result.returncode,
                    "error": error,
                    "injected": {k: injected[k] for k in ("op", "k", "errno") if k in injected},
                }
            )
            t.check(
                TYPED_FAULT.id,
                f"{case_id}/attempt-{attempt}",
                typed,
                f"exit {result.returncode}, error {error}, first fault {injected}",
            )
        # The store recovers: resume without faults.
        resumed = ctx.resume(runs)
        verdict = ctx.verify(run_dir) if resumed.status == "COMMITTED" else "not committed"
        # One more faulty attempt, on the committed run: it must change nothing.
        before = snapshot(run_dir)
        late = ctx.child(runs, resume=True, plan=_fault_plan(runs, seed, ATTEMPTS, rate))
        unchanged = snapshot(run_dir) == before
        late_typed, late_error = _typed(late)
        t.case(
            case_id,
            inject={
                "seed": seed,
                "max_attempts": ATTEMPTS,
                "error_rate_ppm": round(rate[0] * 1e6),
                "timeout_rate_ppm": round(rate[1] * 1e6),
            },
            observed={
                "attempts": seen,
                "resume": resumed.observed(ref),
                "verify": verdict,
                "late_attempt": {"exit_code": late.returncode, "error": late_error},
                "committed_unchanged": unchanged,
            },
        )
        _resumed_ok(t, case_id, resumed, verdict, ref)
        t.check(TYPED_FAULT.id, f"{case_id}/late", late_typed, f"late attempt: {late_error}")
        t.check(PRESERVED.id, case_id, unchanged, "a faulty attempt changed the committed run")
        ctx.discard(runs.parent)
