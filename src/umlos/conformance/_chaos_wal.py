"""The WAL scenarios: damage a real run's commit log byte by byte, then recover it.

Two base states, both real: the **committed** reference run (log PREPARE, CERT_SIGNED,
FINALIZE and the COMMITTED pointer) and the **in-flight** run a SIGKILL at ``wal-append:3``
leaves (everything written, log PREPARE, CERT_SIGNED; no pointer). Each damaged log is checked
two ways:

* **log level**, every case: a scratch directory holding only the damaged log (and the
  reference pointer for committed cases) goes through ``read_wal`` (strict), ``resume`` and
  ``recover`` (twice when it succeeds); the outcome must be exactly the expected one, and an
  abort must leave both files byte-identical (docs/formats/wal.md, "Torn tail" and "Recovery");
* **run level**, a seeded sample: a copy of the whole run directory with the damaged log goes
  through ``execute(resume_run=True)`` and ``verify_run``. A repairable in-flight log must
  resume to the reference certificate and verify; a refused one must make the engine raise
  ``WAL_CORRUPTION`` and change nothing, and a committed run must verify again once its log is
  restored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from umlos.codec import decode, encode
from umlos.conformance._chaos_harness import ChaosContext, Reference, snapshot
from umlos.conformance._chaos_pack import Invariant, Transcript
from umlos.errors import WalCorruptionError
from umlos.evidence import wal as wal_mod
from umlos.evidence._frames import FRAME_OVERHEAD, encode_frame, scan_frames

INFLIGHT_CRASH: Final = "wal-append:3"
"""The crash point whose state is the in-flight base: killed just before FINALIZE is written."""

REFUSED: Final = Invariant(
    "corruption.refused",
    "Nothing corrupt is accepted: read_wal refuses any damaged log, resume and recover either "
    "abort with the documented WAL_CORRUPTION reason or repair only by the torn-tail rule, and "
    "the engine and verify_run refuse a run directory whose log they abort on.",
)
UNCHANGED: Final = Invariant(
    "abort.changes_nothing",
    "A recovery that aborts changes nothing: the log and the COMMITTED pointer are "
    "byte-identical afterwards (recovery checks before it changes anything).",
)
PRESERVED: Final = Invariant(
    "committed.preserved",
    "No committed data is lost: no recovery deletes or rewrites a COMMITTED pointer, and the "
    "committed run verifies again once its log is restored.",
)
IDEMPOTENT: Final = Invariant(
    "recovery.idempotent",
    "A repaired log is stable: a second recover changes nothing and reports the same status "
    "and terminal record.",
)
SAME_CERTIFICATE: Final = Invariant(
    "resume.same_certificate",
    "Resuming an in-flight run from a repairable log reaches the same certificate and trace "
    "final hash as the uninterrupted reference run.",
)
VERIFIES: Final = Invariant(
    "run_dir.verifies",
    "After the resumed run commits, its run directory verifies (verify_run PASS).",
)
_RECORD_NAMES: Final = ("PREPARE", "CERT_SIGNED", "FINALIZE")


# --- expectations -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expect:
    """The documented outcome of one damaged log.

    ``read``: ``read_wal``'s record count or reason. ``resume``: the records it keeps, or a
    reason. ``recover``: the commit status, or a reason. ``torn``: whether the repair discards
    a torn tail.
    """

    read: int | str
    resume: int | str
    recover: str
    torn: bool = False

    @property
    def aborts(self) -> bool:
        return isinstance(self.resume, str)


def _abort(reason: str, read: str | None = None) -> Expect:
    return Expect(read=read or reason, resume=reason, recover=reason)


# --- log-level checks -------------------------------------------------------------------------


class _LogCase:
    """A reusable scratch directory holding one damaged log (and maybe a pointer)."""

    def __init__(self, ctx: ChaosContext) -> None:
        self.ctx = ctx
        self.dir = ctx.scratch("wal")
        self.log = self.dir / wal_mod.WAL_FILE
        self.log.parent.mkdir()
        self.pointer = wal_mod.pointer_path(self.dir)
        self.pointer_bytes = wal_mod.pointer_path(ctx.reference.run_dir).read_bytes()

    def reset(self, log: bytes, *, committed: bool) -> None:
        self.log.write_bytes(log)
        if committed:
            self.pointer.write_bytes(self.pointer_bytes)
        else:
            self.pointer.unlink(missing_ok=True)


def _attempt(fn: Any) -> tuple[Any, str | None]:
    try:
        return fn(), None
    except WalCorruptionError as exc:
        return None, str(exc.reason)
    except Exception as exc:
        return None, f"unexpected {type(exc).__name__}"


def log_case(
    t: Transcript,
    lc: _LogCase,
    case_id: str,
    log: bytes,
    *,
    committed: bool,
    expect: Expect,
    inject: dict[str, Any],
) -> None:
    """Run the damaged ``log`` through read_wal, resume and recover; check and record."""
    api = lc.ctx.wal_api
    ref = lc.ctx.reference
    tenant, run_id = ref.tenant_id, ref.run_id
    intact = len(log)
    observed: dict[str, Any] = {}

    lc.reset(log, committed=committed)
    before = snapshot(lc.dir)
    records, reason = _attempt(lambda: api.read_wal(lc.log))
    observed["read_wal"] = reason if reason is not None else len(records)
    records, reason = _attempt(lambda: api.resume(lc.dir, tenant, run_id))
    if reason is None:
        intact = lc.log.stat().st_size
        observed["resume"] = {"records": len(records), "log_bytes": intact}
    else:
        observed["resume"] = reason
    after_resume = snapshot(lc.dir)

    lc.reset(log, committed=committed)
    report, reason = _attempt(lambda: api.recover(lc.dir, tenant, run_id))
    again: Any = None
    after_recover = snapshot(lc.dir)
    if reason is None:
        observed["recover"] = {
            "status": report.commit_status,
            "torn_tail_discarded": report.torn_tail_discarded,
            "rollback_appended": report.rollback_appended,
            "records": report.records_validated,
        }
        again, again_reason = _attempt(lambda: api.recover(lc.dir, tenant, run_id))
        observed["recover_again"] = (
            again_reason
            if again is None
            else {"status": again.commit_status, "same_terminal": _same_terminal(report, again)}
        )
    else:
        observed["recover"] = reason
    t.case(case_id, inject=inject, observed=observed)

    # corruption.refused: exactly the documented outcome, from all three calls.
    problems = []
    if observed["read_wal"] != expect.read:
        problems.append(f"read_wal gave {observed['read_wal']}, expected {expect.read}")
    if expect.aborts:
        if observed["resume"] != expect.resume:
            problems.append(f"resume gave {observed['resume']}, expected {expect.resume}")
        if observed["recover"] != expect.recover:
            problems.append(f"recover gave {observed['recover']}, expected {expect.recover}")
    else:
        kept = observed["resume"]
        if not isinstance(kept, dict) or kept["records"] != expect.resume:
            problems.append(f"resume gave {kept}, expected {expect.resume} records kept")
        elif kept["log_bytes"] != _prefix_length(log, kept["records"]):
            problems.append("resume left bytes beyond the intact records")
        rec = observed["recover"]
        if (
            not isinstance(rec, dict)
            or rec["status"] != expect.recover
            or rec["torn_tail_discarded"] != expect.torn
        ):
            problems.append(f"recover gave {rec}, expected {expect.recover} torn={expect.torn}")
    t.check(REFUSED.id, case_id, not problems, "; ".join(problems))

    if expect.aborts:
        unchanged = after_resume == before and after_recover == before
        t.check(UNCHANGED.id, case_id, unchanged, "" if unchanged else "files changed on abort")
    elif _declared(t, IDEMPOTENT):
        stable = again is not None and snapshot(lc.dir) == after_recover
        same = (
            isinstance(observed.get("recover_again"), dict)
            and observed["recover_again"]["same_terminal"]
        )
        t.check(IDEMPOTENT.id, case_id, stable and bool(same), "second recover differed")
    if committed:
        kept_pointer = lc.pointer.exists() and lc.pointer.read_bytes() == lc.pointer_bytes
        t.check(PRESERVED.id, case_id, kept_pointer, "" if kept_pointer else "pointer changed")


def _same_terminal(a: Any, b: Any) -> bool:
    return bool(
        a.commit_status == b.commit_status and a.terminal_record_hash == b.terminal_record_hash
    )


def _prefix_length(log: bytes, records: int) -> int:
    """Where the first ``records`` frames of ``log`` end."""
    if records == 0:
        return 0
    last = scan_frames(log).frames[records - 1]
    return last.offset + FRAME_OVERHEAD + len(last.payload)


def _declared(t: Transcript, inv: Invariant) -> bool:
    return any(i.id == inv.id for i in t.invariants)


# --- run-level checks -------------------------------------------------------------------------


def run_case(
    t: Transcript,
    ctx: ChaosContext,
    case_id: str,
    log: bytes,
    *,
    committed: bool,
    repairable: bool,
    inject: dict[str, Any],
) -> None:
    """Put ``log`` into a copy of a whole run directory; resume it with the engine; verify."""
    ref = ctx.reference
    base = ref.runs_root if committed else ctx.crash_state(INFLIGHT_CRASH)
    runs = ctx.copy_runs(base, case_id)
    run_dir = ctx.run_dir(runs)
    log_path = run_dir / wal_mod.WAL_FILE
    original = log_path.read_bytes()
    log_path.write_bytes(log)
    before = snapshot(run_dir)
    resumed = ctx.resume(runs)
    observed: dict[str, Any] = {"engine": resumed.observed(ref)}
    if repairable:
        verdict = ctx.verify(run_dir) if resumed.status == "COMMITTED" else "not committed"
        observed["verify"] = verdict
        t.case(case_id, inject=inject, observed=observed)
        same = resumed.status == "COMMITTED" and bool(observed["engine"]["same_certificate"])
        t.check(SAME_CERTIFICATE.id, case_id, same, f"engine gave {observed['engine']}")
        t.check(VERIFIES.id, case_id, verdict == "PASS", f"verify_run {verdict}")
    else:
        refused_by_engine = resumed.status == "ERROR" and str(resumed.error).startswith(
            "WAL_CORRUPTION"
        )
        unchanged = snapshot(run_dir) == before
        verdict = ctx.verify(run_dir)
        observed["verify_damaged"] = verdict
        if committed:
            log_path.write_bytes(original)
            observed["verify_restored"] = ctx.verify(run_dir)
        t.case(case_id, inject=inject, observed=observed)
        t.check(
            REFUSED.id,
            case_id,
            refused_by_engine and verdict != "PASS",
            f"engine gave {observed['engine']}, verify_run {verdict}",
        )
        t.check(UNCHANGED.id, case_id, unchanged, "" if unchanged else "engine changed files")
        if committed:
            restored = observed["verify_restored"] == "PASS"
            t.check(PRESERVED.id, case_id, restored, f"restored run: {observed['verify_restored']}")
    ctx.discard(runs.parent)


# --- building damaged logs --------------------------------------------------------------------


def _frames(ref: Reference) -> tuple[bytes, bytes, bytes]:
    p, c, f = ref.wal_frames
    return p, c, f


def _inflight_log(ctx: ChaosContext) -> bytes:
    """The in-flight base's log, which must be the reference log without FINALIZE."""
    p, c, _ = _frames(ctx.reference)
    log = (ctx.run_dir(ctx.crash_state(INFLIGHT_CRASH)) / wal_mod.WAL_FILE).read_bytes()
    if log != p + c:
        raise RuntimeError("the in-flight crash state's log differs from the reference's prefix")
    return log


def _flip(data: bytes, index: int, bit: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def _rechain(frames: Sequence[bytes]) -> bytes:
    """Frames re-sequenced and re-chained with recomputed hashes: a forger's consistent log."""
    out = []
    prev = wal_mod.GENESIS_PREV_HASH
    for seq, frame in enumerate(frames):
        obj: dict[str, Any] = dict(cast(Mapping[str, Any], decode(frame[4:-4])))
        obj["wal_seq"] = seq
        obj["prev_record_hash"] = prev
        obj["record_hash"] = wal_mod.wal_record_hash(obj)
        prev = obj["record_hash"]
        out.append(encode_frame(encode(obj)))
    return b"".join(out)


# Without ``exhaustive``: the cuts inside the length field, the first payload bytes and the
# CRC (where framing rules change), plus this many seeded offsets in between.
QUICK_CUTS: Final = 24
_EDGE: Final = 9


def _cut_offsets(ctx: ChaosContext, scope: str, length: int) -> list[int]:
    """Every offset ``0 ≤ k < length``, or (not exhaustive) the edges and a seeded sample."""
    if ctx.exhaustive:
        return list(range(length))
    edges = set(range(_EDGE)) | set(range(max(0, length - _EDGE), length))
    middle = [k for k in range(length) if k not in edges]
    return sorted(edges | set(ctx.rng(scope).sample(middle, QUICK_CUTS)))


def _sample_offsets(ctx: ChaosContext, scope: str, length: int, k: int) -> list[int]:
    return sorted(ctx.rng(scope).sample(range(1, length), k))


# --- the scenarios ----------------------------------------------------------------------------


TRUNCATED_TAIL_INVARIANTS: Final = (
    REFUSED,
    UNCHANGED,
    PRESERVED,
    IDEMPOTENT,
    SAME_CERTIFICATE,
    VERIFIES,
)


def truncated_tail(ctx: ChaosContext, t: Transcript, trials: int) -> None:
    """Cut the log at every byte offset of each record as the last one; committed and in-flight."""
    frames = _frames(ctx.reference)
    _inflight_log(ctx)
    lc = _LogCase(ctx)
    for i, last in enumerate(frames):
        prefix = b"".join(frames[:i])
        for k in _cut_offsets(ctx, f"truncated_tail/cuts/{i}", len(last)):
            torn = k > 0
            status = "EMPTY" if i == 0 else "ROLLED_BACK"
            expect = Expect("FRAME_TRUNCATED" if torn else i, i, status, torn=torn)
            inject = {"state": "in-flight", "record": _RECORD_NAMES[i], "cut_at": k}
            log_case(
                t, lc, f"inflight-{_RECORD_NAMES[i]}-{k}", prefix + last[:k], committed=False,
                expect=expect, inject=inject,
            )  # fmt: skip
    p, c, f = frames
    for k in _cut_offsets(ctx, "truncated_tail/cuts/committed", len(f)):
        read: int | str = "FRAME_TRUNCATED" if k else 2
        expect = Expect(read, "POINTER_WITHOUT_FINALIZE", "POINTER_WITHOUT_FINALIZE")
        inject = {"state": "committed", "record": "FINALIZE", "cut_at": k}
        log_case(
            t, lc, f"committed-FINALIZE-{k}", p + c + f[:k], committed=True, expect=expect,
            inject=inject,
        )  # fmt: skip
    ctx.discard(lc.dir)
    for i, last in enumerate(frames):
        prefix = b"".join(frames[:i])
        for k in _sample_offsets(ctx, f"truncated_tail/{i}", len(last), trials):
            inject = {"state": "in-flight", "record": _RECORD_NAMES[i], "cut_at": k, "run": True}
            run_case(
                t, ctx, f"run-inflight-{_RECORD_NAMES[i]}-{k}", prefix + last[:k],
                committed=False, repairable=True, inject=inject,
            )  # fmt: skip
    for k in _sample_offsets(ctx, "truncated_tail/committed", len(f), trials):
        inject = {"state": "committed", "record": "FINALIZE", "cut_at": k, "run": True}
        run_case(
            t, ctx, f"run-committed-FINALIZE-{k}", p + c + f[:k], committed=True,
            repairable=False, inject=inject,
        )  # fmt: skip


CHECKSUM_INVARIANTS: Final = (REFUSED, UNCHANGED, PRESERVED, SAME_CERTIFICATE, VERIFIES)


def checksum_mismatch(ctx: ChaosContext, t: Transcript, trials: int) -> None:
    """Flip one bit in a record's CRC or body: the last record, and one in the middle."""
    frames = _frames(ctx.reference)
    inflight = _inflight_log(ctx)
    rng = ctx.rng("checksum_mismatch")
    lc = _LogCase(ctx)
    runs: list[tuple[str, bytes, bool, bool, dict[str, Any]]] = []
    for committed, count in ((True, 3), (False, 2)):
        log = b"".join(frames) if committed else inflight
        offsets = [fr.offset for fr in scan_frames(log).frames]
        state = "committed" if committed else "in-flight"
        for i in range(count):
            last = i == count - 1
            start, size = offsets[i], len(frames[i])
            for part in ("crc", "body"):
                for trial in range(trials):
                    if part == "crc":
                        index = start + size - 4 + rng.below(4)
                    else:
                        index = start + 4 + rng.below(size - FRAME_OVERHEAD)
                    bit = rng.below(8)
                    damaged = _flip(log, index, bit)
                    if not last:
                        expect = _abort("FRAME_CRC_MISMATCH")
                    elif committed:
                        expect = _abort("POINTER_WITHOUT_FINALIZE", read="FRAME_CRC_MISMATCH")
                    else:  # a complete last frame with a bad CRC at EOF: a torn tail
                        expect = Expect("FRAME_CRC_MISMATCH", i, "ROLLED_BACK", torn=True)
                    where = "last" if last else "middle"
                    case_id = f"{state}-{_RECORD_NAMES[i]}-{part}-{index}.{bit}"
                    inject = {
                        "state": state,
                        "record": _RECORD_NAMES[i],
                        "position": where,
                        "part": part,
                        "byte": index,
                        "bit": bit,
                    }
                    log_case(
                        t, lc, case_id, damaged, committed=committed, expect=expect,
                        inject=inject,
                    )  # fmt: skip
                    if trial == 0:
                        runs.append((case_id, damaged, committed, not expect.aborts, inject))
    ctx.discard(lc.dir)
    for case_id, damaged, committed, repairable, inject in runs:
        run_case(
            t, ctx, f"run-{case_id}", damaged, committed=committed, repairable=repairable,
            inject={**inject, "run": True},
        )  # fmt: skip


TORN_WRITE_INVARIANTS: Final = (
    REFUSED,
    UNCHANGED,
    PRESERVED,
    IDEMPOTENT,
    SAME_CERTIFICATE,
    VERIFIES,
)


def torn_write(ctx: ChaosContext, t: Transcript, trials: int) -> None:
    """A partial or zero-filled frame at the end of the log, and the same damage elsewhere."""
    p, c, f = _frames(ctx.reference)
    inflight = _inflight_log(ctx)
    rng = ctx.rng("torn_write")
    half = len(f) // 2
    # (name, tail, what the strict reader says): zeros are data that never reached the disk
    # (an all-zero frame header reads as an empty frame); a complete frame whose payload was
    # lost fails its CRC at EOF; a prefix is a write cut short.
    prefixes = _sample_offsets(ctx, "torn_write/prefix", len(f), trials)
    tails: list[tuple[str, bytes, str]] = [
        *(
            (f"zeros-{n}", bytes(n), "FRAME_TRUNCATED")
            for n in sorted({1, 4, 7, 8, 9, half, len(f)})
        ),
        ("length-then-zeros", f[:4] + bytes(len(f) - 4), "FRAME_CRC_MISMATCH"),
        ("half-then-zeros", f[:half] + bytes(len(f) - half), "FRAME_CRC_MISMATCH"),
        *((f"prefix-{k}", f[:k], "FRAME_TRUNCATED") for k in prefixes),
    ]
    lc = _LogCase(ctx)
    repairable: list[tuple[str, bytes, dict[str, Any]]] = []
    for name, tail, strict in tails:
        inject = {"state": "in-flight", "after": "CERT_SIGNED", "tail": name, "bytes": len(tail)}
        expect = Expect(strict, 2, "ROLLED_BACK", torn=True)
        log_case(
            t, lc, f"inflight-{name}", inflight + tail, committed=False, expect=expect,
            inject=inject,
        )  # fmt: skip
        repairable.append((f"inflight-{name}", inflight + tail, inject))
    zeros_c = bytes(len(c))
    inject = {"state": "in-flight", "after": "PREPARE", "tail": "zeros", "bytes": len(c)}
    expect = Expect("FRAME_TRUNCATED", 1, "ROLLED_BACK", torn=True)
    log_case(t, lc, "inflight-after-PREPARE-zeros", p + zeros_c, committed=False, expect=expect,
             inject=inject)  # fmt: skip
    # Not a torn tail: damage before an intact frame, a declared length no record can have, and
    # anything after the terminal record.
    refused: list[tuple[str, bytes, bool, Expect]] = [
        ("torn-middle", p + c[: len(c) // 2] + f, True, _abort("FRAME_CRC_MISMATCH")),
        ("oversized-length", inflight + b"\xff\xff\xff\x7f" + bytes(8), False,
         _abort("FRAME_OVERSIZED")),
        ("zeros-after-FINALIZE", p + c + f + bytes(8), True, _abort("RECORD_AFTER_TERMINAL")),
        ("prefix-after-FINALIZE", p + c + f + f[: 1 + rng.below(len(f) - 1)], True,
         _abort("RECORD_AFTER_TERMINAL")),
    ]  # fmt: skip
    for name, log, committed, expect in refused:
        inject = {"state": "committed" if committed else "in-flight", "tail": name}
        log_case(t, lc, name, log, committed=committed, expect=expect, inject=inject)
    ctx.discard(lc.dir)
    for case_id, log, inject in ctx.rng("torn_write/run").sample(repairable, trials):
        run_case(
            t, ctx, f"run-{case_id}", log, committed=False, repairable=True,
            inject={**inject, "run": True},
        )  # fmt: skip
    for name, log, committed, _expect in ctx.rng("torn_write/run-refused").sample(refused, trials):
        run_case(
            t, ctx, f"run-{name}", log, committed=committed, repairable=False,
            inject={"state": "committed" if committed else "in-flight", "tail": name, "run": True},
        )  # fmt: skip


DUPLICATE_INVARIANTS: Final = (REFUSED, UNCHANGED, PRESERVED)


def duplicate_records(ctx: ChaosContext, t: Transcript, trials: int) -> None:
    """Every record duplicated at every position, byte for byte and re-chained by a forger."""
    frames = _frames(ctx.reference)
    _inflight_log(ctx)
    lc = _LogCase(ctx)
    cases: list[tuple[str, bytes, bool, Expect]] = []
    for committed, base in ((True, list(frames)), (False, list(frames[:2]))):
        state = "committed" if committed else "in-flight"
        for i in range(len(base)):
            for j in range(len(base) + 1):
                log = b"".join([*base[:j], base[i], *base[j:]])
                cases.append(
                    (f"{state}-dup-{_RECORD_NAMES[i]}-at-{j}", log, committed, _abort("SEQ_GAP"))
                )
    p, c, f = frames
    cases += [
        ("committed-forged-dup-FINALIZE", _rechain([p, c, f, f]), True,
         _abort("DUPLICATE_TERMINAL")),
        ("committed-forged-dup-CERT_SIGNED", _rechain([p, c, c, f]), True,
         _abort("RECORD_ORDER")),
        ("committed-forged-dup-PREPARE", _rechain([p, p, c, f]), True, _abort("RECORD_ORDER")),
        ("inflight-forged-dup-CERT_SIGNED", _rechain([p, c, c]), False, _abort("RECORD_ORDER")),
    ]  # fmt: skip
    _run_abort_cases(ctx, t=t, lc=lc, scope="duplicate_records", cases=cases, trials=trials)


REORDER_INVARIANTS: Final = (REFUSED, UNCHANGED, PRESERVED)


def reordered_records(ctx: ChaosContext, t: Transcript, trials: int) -> None:
    """Every order of the records but the right one, as found and re-chained by a forger."""
    from itertools import permutations

    frames = _frames(ctx.reference)
    _inflight_log(ctx)
    lc = _LogCase(ctx)
    cases: list[tuple[str, bytes, bool, Expect]] = []
    for committed, base in ((True, list(frames)), (False, list(frames[:2]))):
        state = "committed" if committed else "in-flight"
        for order in permutations(range(len(base))):
            if list(order) == sorted(order):
                continue
            name = "-".join(_RECORD_NAMES[i] for i in order)
            reordered = [base[i] for i in order]
            cases.append((f"{state}-{name}", b"".join(reordered), committed, _abort("SEQ_GAP")))
            cases.append(
                (f"{state}-forged-{name}", _rechain(reordered), committed, _abort("RECORD_ORDER"))
            )
    _run_abort_cases(ctx, t=t, lc=lc, scope="reordered_records", cases=cases, trials=trials)


def _run_abort_cases(
    ctx: ChaosContext,
    *,
    t: Transcript,
    lc: _LogCase,
    scope: str,
    cases: list[tuple[str, bytes, bool, Expect]],
    trials: int,
) -> None:
    for name, log, committed, expect in cases:
        inject: dict[str, Any] = {"state": "committed" if committed else "in-flight", "log": name}
        log_case(t, lc, name, log, committed=committed, expect=expect, inject=inject)
    ctx.discard(lc.dir)
    # Run level: a seeded sample, always including a committed case.
    committed_cases = [cs for cs in cases if cs[2]]
    chosen = ctx.rng(f"{scope}/run").sample(committed_cases, 1)
    rest = [cs for cs in cases if cs not in chosen]
    chosen += ctx.rng(f"{scope}/run-more").sample(rest, max(0, trials - 1))
    for name, log, committed, _expect in chosen:
        inject = {"state": "committed" if committed else "in-flight", "log": name, "run": True}
        run_case(t, ctx, f"run-{name}", log, committed=committed, repairable=False, inject=inject)
