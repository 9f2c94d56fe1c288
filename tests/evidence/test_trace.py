"""The trace sidecar: exact bytes, the hash chain, every failure kind, torn tails, bit flips,
sampling and resume (src/umlos/evidence/trace.py, docs/formats/trace.md)."""

from __future__ import annotations

import dataclasses
import doctest
import hashlib
import random
import struct
from pathlib import Path

import cbor2
import crc32c
import pytest

from umlos._generated.records import (
    TraceCertificateInputs,
    TraceCheckpointCommit,
    TraceError,
    TraceIter,
    TracePolicyGateVerdict,
    TraceRecord,
    TraceRunEnd,
    TraceRunHeader,
    TraceSamplingPolicy,
)
from umlos.codec import digest, encode
from umlos.errors import TraceCapExceededMandatoryError, TraceSchemaInvalidError
from umlos.evidence import trace as trace_mod
from umlos.evidence._frames import encode_frame, scan_frames
from umlos.evidence.trace import (
    MAX_FRAME_BYTES,
    TRACE_FAILURES,
    TRACE_HEAD_HASH,
    TraceWriter,
    iter_is_kept,
    read_trace,
    record_hash,
    sampling_policy,
    trace_final_hash,
)

TOKEN = bytes(range(32))
OFF = sampling_policy(None, sample_policy="OFF")
GATED = sampling_policy(None)  # HASH_GATED, M = 100, K = 1


def header(policy: TraceSamplingPolicy = OFF, **overrides: object) -> TraceRunHeader:
    fields: dict[str, object] = {
        "replay_token": TOKEN,
        "run_id": "0123456789abcdef",
        "tenant_id": "acme",
        "task_type": "multiclass",
        "world_size": 2,
        "backend_binary_hash": bytes([1]) * 32,
        "driver_runtime_fingerprint_hash": bytes([2]) * 32,
        "policy_bundle_hash": bytes([3]) * 32,
        "monitor_policy_hash": bytes([4]) * 32,
        "operator_contracts_root_hash": bytes([5]) * 32,
        "redaction_mode": "NONE",
        "hash_gate_m": policy.hash_gate_m,
        "hash_gate_k": policy.hash_gate_k,
        "sample_policy": policy.sample_policy,
        "trace_policy_hash": digest(policy.to_obj()),
    }
    fields.update(overrides)
    return TraceRunHeader(**fields)


def it(t: int, seq: int = 0, rank: int = 0, **extra: object) -> TraceIter:
    return TraceIter(
        t=t,
        stage_id="train",
        operator_id="UML_OS.Train.Step_v1",
        operator_seq=seq,
        rank=rank,
        status="ok",
        replay_token=TOKEN,
        **extra,
    )


def gate(t: int) -> TracePolicyGateVerdict:
    return TracePolicyGateVerdict(
        t=t, policy_gate_hash=bytes([6]) * 32, transcript_hash=bytes([7]) * 32
    )


def checkpoint(t: int, snapshot: bytes) -> TraceCheckpointCommit:
    return TraceCheckpointCommit(
        t=t,
        checkpoint_hash=bytes([8]) * 32,
        checkpoint_header_hash=bytes([9]) * 32,
        checkpoint_merkle_root=bytes([10]) * 32,
        trace_snapshot_hash=snapshot,
    )


def run_end(records: list[TraceRecord], status: str = "COMPLETED") -> TraceRunEnd:
    draft = TraceRunEnd(status=status, final_state_fp=bytes([11]) * 32, trace_final_hash=bytes(32))
    return dataclasses.replace(draft, trace_final_hash=trace_final_hash([*records, draft]))


def craft(records: list[TraceRecord | dict[str, object]]) -> bytes:
    """Frame records as given, bypassing the writer's checks (to build broken traces)."""
    return b"".join(encode_frame(encode(r if isinstance(r, dict) else r.to_obj())) for r in records)


def golden_records() -> list[TraceRecord]:
    """Header, two ranks' ITERs of step 1, a gate, a checkpoint, step 2, certificate inputs, end."""
    records: list[TraceRecord] = [
        header(),
        it(1, 0, 0, loss_total=0.5, grad_norm=1.25, rng_offset_before=0, rng_offset_after=4),
        it(1, 1, 0, trace_extensions={"lr": 0.001, "epoch": 0}),
        it(1, 0, 1, privacy_class="PUBLIC"),
        gate(1),
    ]
    records.append(checkpoint(1, trace_final_hash(records)))
    records += [
        it(2, 0, 0, loss_total=0.25),
        TraceCertificateInputs(t=2, certificate_inputs_hash=bytes([12]) * 32),
    ]
    records.append(run_end(records))
    return records


def write(
    path: Path, records: list[TraceRecord], policy: TraceSamplingPolicy = OFF, **kw: object
) -> TraceWriter:
    with TraceWriter.create(path, policy, fsync="NEVER", **kw) as writer:
        for record in records:
            writer.append(record)
    return writer


@pytest.fixture
def golden(tmp_path: Path) -> bytes:
    path = tmp_path / "trace_sidecar.cborlog"
    write(path, golden_records())
    return path.read_bytes()


def fails(
    data: bytes, reason: str, policy: TraceSamplingPolicy | None = None
) -> TraceSchemaInvalidError:
    with pytest.raises(TraceSchemaInvalidError) as info:
        read_trace(data, policy=policy, artifact="t.cborlog")
    assert info.value.reason == reason, info.value
    assert info.value.artifact == "t.cborlog"
    return info.value


# --------------------------------------------------------------------------------------------
# Exact bytes and the chain.

GOLDEN_FILE_SHA256 = "9253c6525997bead29e4321a7a57a6fba59ad2a38621da7732568648cf624767"
GOLDEN_FINAL_HASH = "ca10da6518ceb0be1080159b7f7e3db2b4625534a4316da2f3da94e061833bf2"


def test_golden_trace_bytes_and_final_hash_are_pinned(golden: bytes) -> None:
    result = read_trace(golden)
    assert hashlib.sha256(golden).hexdigest() == GOLDEN_FILE_SHA256
    assert result.final_hash.hex() == GOLDEN_FINAL_HASH
    assert result.end.trace_final_hash == result.final_hash
    assert list(result.records) == golden_records()


def test_gate_verdict_frame_bytes_are_pinned() -> None:
    frame = encode_frame(encode(gate(1).to_obj()))
    assert frame.hex() == (
        "82000000"  # u32le payload length, 130
        "a4"  # map of 4; keys sorted by their encoded bytes, so shorter keys first
        "6174"
        "01"  # "t": 1
        "646b696e64"
        "73"
        + b"POLICY_GATE_VERDICT".hex()  # "kind": text(19)
        + "6f"
        + b"transcript_hash".hex()
        + "5820"
        + "07" * 32
        + "70"
        + b"policy_gate_hash".hex()
        + "5820"
        + "06" * 32
        + "5101eb05"  # u32le CRC-32C of the 130 payload bytes
    )


def test_h0_is_the_tagged_empty_commitment_computed_independently() -> None:
    # [ "trace_chain_v1", [] ] written by hand: array(2), text(14), array(0).
    assert hashlib.sha256(b"\x82\x6etrace_chain_v1\x80").digest() == TRACE_HEAD_HASH


def test_chain_matches_an_independent_recomputation(golden: bytes) -> None:
    """Frames parsed by hand, record hashes by hashlib, RUN_END re-encoded by cbor2."""
    pos, h = 0, hashlib.sha256(b"\x82\x6etrace_chain_v1\x80").digest()
    chain = []
    while pos < len(golden):
        (n,) = struct.unpack_from("<I", golden, pos)
        payload = golden[pos + 4 : pos + 4 + n]
        assert struct.unpack_from("<I", golden, pos + 4 + n)[0] == crc32c.crc32c(payload)
        obj = cbor2.loads(payload)
        if obj["kind"] == "RUN_END":
            del obj["trace_final_hash"]
            payload = cbor2.dumps(obj, canonical=True)  # no floats: cbor2's canonical form is ours
        rh = hashlib.sha256(payload).digest()
        h = hashlib.sha256(b"\x82\x6etrace_chain_v1\x82\x58\x20" + h + b"\x58\x20" + rh).digest()
        chain.append(h)
        pos += n + 8
    result = read_trace(golden)
    assert list(result.chain) == chain
    assert result.end.trace_final_hash == chain[-1]
    assert result.offsets[0] == 0 and result.byte_length == len(golden)


def test_run_end_hash_leaves_out_trace_final_hash() -> None:
    end = run_end([header()])
    obj = end.to_obj()
    del obj["trace_final_hash"]
    assert record_hash(end) == digest(obj)
    assert record_hash(end) == record_hash(dataclasses.replace(end, trace_final_hash=bytes(32)))


def test_writer_end_builds_the_run_end_the_chain_requires(tmp_path: Path) -> None:
    records = golden_records()[:-1]
    with TraceWriter.create(tmp_path / "t", OFF, fsync="NEVER") as writer:
        for record in records:
            writer.append(record)
        end = writer.end(status="COMPLETED", final_state_fp=bytes([11]) * 32)
    assert end == run_end(records)
    assert writer.chain_hash == end.trace_final_hash
    assert (tmp_path / "t").read_bytes() == craft([*records, end])


def test_checkpoint_snapshot_is_the_writer_chain_hash(tmp_path: Path) -> None:
    with TraceWriter.create(tmp_path / "t", OFF, fsync="NEVER") as writer:
        writer.append(header())
        writer.append(it(1))
        snapshot = writer.chain_hash
        assert writer.append(checkpoint(1, snapshot))
    assert snapshot == trace_final_hash([header(), it(1)])


# --------------------------------------------------------------------------------------------
# Every failure kind of the reader, each with the case that breaks it.


def test_torn_tail_at_every_byte_of_the_last_record_is_truncated_frame(golden: bytes) -> None:
    last = scan_frames(golden).frames[-1].offset
    for cut in range(last + 1, len(golden)):
        err = fails(golden[:cut], "TRUNCATED_FRAME")
        assert err.offset == last
    assert fails(golden[:last], "MISSING_RUN_END").offset == last


def test_crc_mismatch(golden: bytes) -> None:
    data = bytearray(golden)
    second = scan_frames(golden).frames[1].offset
    data[second + 10] ^= 0x01
    assert fails(bytes(data), "CRC_MISMATCH").offset == second


def test_oversized_frame(golden: bytes) -> None:
    second = scan_frames(golden).frames[1].offset
    data = bytearray(golden)
    struct.pack_into("<I", data, second, MAX_FRAME_BYTES + 1)
    assert fails(bytes(data), "OVERSIZED_FRAME").offset == second


def test_not_canonical_payload() -> None:
    # A valid record whose map keys are in insertion (not canonical) order, correctly framed.
    obj = it(1).to_obj()
    loose = cbor2.dumps(dict(reversed(list(obj.items()))))
    data = craft([header()]) + encode_frame(loose)
    err = fails(data, "NOT_CANONICAL")
    assert err.offset == len(craft([header()]))


def test_schema_wrong_type_names_the_json_path() -> None:
    bad = it(1).to_obj()
    bad["t"] = "one"
    err = fails(craft([header(), bad]), "SCHEMA")
    assert err.path == "$[1].t"
    assert err.context["record_index"] == 1


def test_schema_unknown_kind() -> None:
    err = fails(craft([header(), {"kind": "RUN_COMMIT", "t": 1}]), "SCHEMA")
    assert err.path == "$[1].kind"


def test_schema_iter_replay_token_differs_from_header() -> None:
    err = fails(craft([header(), dataclasses.replace(it(1), replay_token=bytes(32))]), "SCHEMA")
    assert err.path == "$[1].replay_token"


def test_schema_rank_not_below_world_size() -> None:
    err = fails(craft([header(), it(1, rank=2)]), "SCHEMA")
    assert err.path == "$[1].rank"


def test_schema_error_record_rank_not_below_world_size() -> None:
    error = TraceError(
        t=1,
        rank=5,
        failure_code="NAN_LOSS",
        failure_operator="x",
        replay_token=TOKEN,
        diagnostics_hash=bytes(32),
    )
    assert fails(craft([header(), error]), "SCHEMA").path == "$[1].rank"


def test_schema_redaction_key_without_redaction() -> None:
    err = fails(craft([header(redaction_key_id="k1")]), "SCHEMA")
    assert err.path == "$[0].redaction_key_id"


def test_schema_header_gate_k_above_m() -> None:
    assert fails(craft([header(hash_gate_k=101)]), "SCHEMA").path == "$[0].hash_gate_k"


def test_missing_run_header_first_record_is_iter() -> None:
    assert fails(craft([it(1)]), "MISSING_RUN_HEADER").offset == 0


def test_missing_run_header_empty_file() -> None:
    assert fails(b"", "MISSING_RUN_HEADER").offset == 0


def test_missing_run_end(tmp_path: Path) -> None:
    records = golden_records()[:-1]
    write(tmp_path / "t", records)
    data = (tmp_path / "t").read_bytes()
    assert fails(data, "MISSING_RUN_END").offset == len(data)


def test_record_after_end(golden: bytes) -> None:
    err = fails(golden + craft([it(3)]), "RECORD_AFTER_END")
    assert err.offset == len(golden)


def test_out_of_order_second_run_header() -> None:
    assert fails(craft([header(), header()]), "OUT_OF_ORDER").path == "$[1]"


def test_out_of_order_iter_key_repeats() -> None:
    fails(craft([header(), it(1, 3), it(1, 3)]), "OUT_OF_ORDER")


def test_out_of_order_iter_rank_before_previous_rank() -> None:
    fails(craft([header(), it(1, 0, 1), it(1, 5, 0)]), "OUT_OF_ORDER")


def test_out_of_order_step_decreases() -> None:
    err = fails(craft([header(), it(2), gate(1)]), "OUT_OF_ORDER")
    assert err.path == "$[2].t"


def test_out_of_order_iter_after_its_steps_mandatory_record() -> None:
    fails(craft([header(), it(1, 0), gate(1), it(1, 1)]), "OUT_OF_ORDER")


def test_chain_break_run_end_final_hash() -> None:
    records: list[TraceRecord] = [header(), it(1)]
    end = dataclasses.replace(run_end(records), trace_final_hash=bytes(32))
    err = fails(craft([*records, end]), "CHAIN_BREAK")
    assert err.path == "$[2].trace_final_hash"


def test_chain_break_run_end_of_another_trace() -> None:
    end = run_end([header(), it(1)])
    fails(craft([header(), it(2), end]), "CHAIN_BREAK")


def test_chain_break_checkpoint_snapshot() -> None:
    records: list[TraceRecord] = [header(), it(1), checkpoint(1, TRACE_HEAD_HASH)]
    err = fails(craft([*records, run_end(records)]), "CHAIN_BREAK")
    assert err.path == "$[2].trace_snapshot_hash"


def test_size_cap_record_over_max_record_bytes() -> None:
    small = sampling_policy(None, sample_policy="OFF", max_record_bytes=1000)  # header: ~600 B
    big = it(1, trace_extensions={"note": "x" * 1200})
    records: list[TraceRecord] = [header(small), big]
    err = fails(craft([*records, run_end(records)]), "SIZE_CAP", policy=small)
    assert err.context["record_index"] == 1


def test_size_cap_step_over_max_bytes_per_step() -> None:
    capped = sampling_policy(None, sample_policy="OFF", max_bytes_per_step=250)
    records: list[TraceRecord] = [header(capped), it(1, 0), it(1, 1), it(1, 2)]  # ~160 bytes each
    fails(craft([*records, run_end(records)]), "SIZE_CAP", policy=capped)


def test_size_cap_mandatory_over_max_record_bytes() -> None:
    capped = sampling_policy(None, sample_policy="OFF", max_record_bytes=120)
    records: list[TraceRecord] = [header(capped)]
    fails(craft([*records, run_end(records)]), "SIZE_CAP", policy=capped)  # the header is ~600 B


def test_size_cap_file_over_max_trace_bytes(golden: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace_mod, "MAX_TRACE_BYTES", len(golden) - 1)
    fails(golden, "SIZE_CAP")


def test_sampling_hash_gated_iter_the_gate_drops() -> None:
    dropped = next(t for t in range(100) if not iter_is_kept(GATED, it(t)))
    records: list[TraceRecord] = [header(GATED), it(dropped)]
    err = fails(craft([*records, run_end(records)]), "SAMPLING")  # checked from the header alone
    assert err.context["t"] == dropped


def test_sampling_fixed_rate_needs_the_policy() -> None:
    fixed = sampling_policy(None, sample_policy="FIXED_RATE", fixed_rate_k=2)
    records: list[TraceRecord] = [header(fixed), it(1, 1)]
    data = craft([*records, run_end(records)])
    read_trace(data)  # fixed_rate_k is not in RUN_HEADER: nothing to check it against
    fails(data, "SAMPLING", policy=fixed)


def test_policy_mismatch_digest() -> None:
    records: list[TraceRecord] = [header(OFF)]
    other = sampling_policy(None, sample_policy="OFF", max_record_bytes=4096)
    err = fails(craft([*records, run_end(records)]), "POLICY_MISMATCH", policy=other)
    assert err.path == "$[0].trace_policy_hash"


def test_policy_mismatch_gate_parameters() -> None:
    records: list[TraceRecord] = [header(OFF)]
    err = fails(craft([*records, run_end(records)]), "POLICY_MISMATCH", policy=GATED)
    assert err.path == "$[0].sample_policy"


def test_every_failure_kind_has_a_test_here() -> None:
    source = Path(__file__).read_text()
    untested = [
        r for r in TRACE_FAILURES if f'"{r}"' not in source.split("def test_every_failure")[0]
    ]
    assert untested == []


def test_random_single_bit_flips_are_all_detected(golden: bytes) -> None:
    rng = random.Random(20240611)
    nbits = len(golden) * 8
    for bit in rng.sample(range(nbits), 1200):
        data = bytearray(golden)
        data[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(TraceSchemaInvalidError):
            read_trace(bytes(data))


# --------------------------------------------------------------------------------------------
# The writer: the same rules, refused before anything is stored.


def test_writer_output_reads_back_with_its_policy(tmp_path: Path) -> None:
    records = golden_records()
    write(tmp_path / "t", records)
    assert read_trace(tmp_path / "t", policy=OFF).records == tuple(records)


def test_writer_refuses_and_stays_unchanged(tmp_path: Path) -> None:
    records = golden_records()
    path = tmp_path / "t"
    with TraceWriter.create(path, OFF, fsync="NEVER") as writer:
        with pytest.raises(TraceSchemaInvalidError) as info:
            writer.append(it(1))
        assert info.value.reason == "MISSING_RUN_HEADER"
        for record in records[:3]:
            writer.append(record)
        refused: list[tuple[TraceRecord, str]] = [
            (header(), "OUT_OF_ORDER"),
            (it(1, 0, 0), "OUT_OF_ORDER"),
            (it(0, 9, 0), "OUT_OF_ORDER"),
            (dataclasses.replace(it(1, 5), t=-1), "SCHEMA"),
            (dataclasses.replace(it(1, 5), status="OK"), "SCHEMA"),
            (dataclasses.replace(it(1, 5), loss_total=float("nan")), "SCHEMA"),
            (dataclasses.replace(it(1, 5), replay_token=bytes(32)), "SCHEMA"),
            (checkpoint(1, bytes(32)), "CHAIN_BREAK"),
            (dataclasses.replace(run_end(records[:3]), trace_final_hash=bytes(32)), "CHAIN_BREAK"),
        ]
        for record, reason in refused:
            count, chain = writer.record_count, writer.chain_hash
            with pytest.raises(TraceSchemaInvalidError) as info:
                writer.append(record)
            assert info.value.reason == reason, (record, info.value)
            assert (writer.record_count, writer.chain_hash) == (count, chain)
        for record in records[3:]:
            writer.append(record)
        with pytest.raises(TraceSchemaInvalidError) as info:
            writer.append(it(9))
        assert info.value.reason == "RECORD_AFTER_END"
    assert path.read_bytes() == craft(records)


def test_writer_refuses_header_that_does_not_match_its_policy(tmp_path: Path) -> None:
    with TraceWriter.create(tmp_path / "t", GATED, fsync="NEVER") as writer:
        with pytest.raises(TraceSchemaInvalidError) as info:
            writer.append(header(OFF))
        assert info.value.reason == "POLICY_MISMATCH"


def test_writer_refuses_an_invalid_policy(tmp_path: Path) -> None:
    with pytest.raises(TraceSchemaInvalidError) as info:
        sampling_policy(None, hash_gate_k=101)
    assert (info.value.reason, info.value.path) == ("SCHEMA", "$policy.hash_gate_k")
    with pytest.raises(TraceSchemaInvalidError) as info:
        sampling_policy(None, sample_policy="FIXED_RATE")
    assert info.value.path == "$policy.fixed_rate_k"
    bad = dataclasses.replace(OFF, max_record_bytes=-1)
    with pytest.raises(TraceSchemaInvalidError):
        TraceWriter.create(tmp_path / "t", bad)
    assert not (tmp_path / "t").exists()


def test_writer_will_not_overwrite(tmp_path: Path) -> None:
    (tmp_path / "t").write_bytes(b"")
    with pytest.raises(FileExistsError):
        TraceWriter.create(tmp_path / "t", OFF)


def test_writer_closed_refuses_appends(tmp_path: Path) -> None:
    writer = TraceWriter.create(tmp_path / "t", OFF, fsync="NEVER")
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.append(header())


def test_mandatory_record_over_record_cap_raises_trace_cap_exceeded(tmp_path: Path) -> None:
    capped = sampling_policy(None, sample_policy="OFF", max_record_bytes=120)
    writer = TraceWriter.create(tmp_path / "t", capped, fsync="NEVER")
    with pytest.raises(TraceCapExceededMandatoryError) as info:
        writer.append(header(capped))
    assert info.value.code_id == "TRACE_CAP_EXCEEDED_MANDATORY"
    assert info.value.context["trace_policy_hash"] == digest(capped.to_obj())
    assert writer.record_count == 0


def test_step_cap_drops_iters_from_the_highest_operator_seq(tmp_path: Path) -> None:
    one = len(encode(it(1, 0).to_obj()))
    capped = sampling_policy(
        None, sample_policy="OFF", max_bytes_per_step=3 * one + len(encode(gate(1).to_obj()))
    )
    path = tmp_path / "t"
    with TraceWriter.create(path, capped, fsync="NEVER") as writer:
        writer.append(header(capped))
        stored = [writer.append(it(1, seq)) for seq in range(6)]
        assert writer.append(gate(1))  # mandatory: always fits next to three ITERs
        assert writer.append(it(2, 0))  # a new step starts a new budget
        writer.end(status="COMPLETED", final_state_fp=bytes(32))
    assert stored == [True, True, True, False, False, False]
    assert writer.stats.iter_dropped_step_cap == 3
    read_trace(path, policy=capped)


def test_big_iter_is_dropped_and_counted(tmp_path: Path) -> None:
    capped = sampling_policy(None, sample_policy="OFF", max_record_bytes=1000)
    path = tmp_path / "t"
    with TraceWriter.create(path, capped, fsync="NEVER") as writer:
        writer.append(header(capped))
        assert not writer.append(it(1, 0, trace_extensions={"note": "x" * 1200}))
        assert writer.append(it(1, 1))
        writer.end(status="COMPLETED", final_state_fp=bytes(32))
    assert writer.stats.iter_dropped_record_cap == 1
    assert [r.kind for r in read_trace(path, policy=capped).records] == [
        "RUN_HEADER",
        "ITER",
        "RUN_END",
    ]


def test_mandatory_records_of_a_step_over_the_step_cap_raise(tmp_path: Path) -> None:
    capped = sampling_policy(
        None, sample_policy="OFF", max_bytes_per_step=len(encode(gate(1).to_obj())) + 10
    )
    with TraceWriter.create(tmp_path / "t", capped, fsync="NEVER") as writer:
        writer.append(header(capped))
        assert writer.append(gate(1))
        with pytest.raises(TraceCapExceededMandatoryError) as info:
            writer.append(TraceCertificateInputs(t=1, certificate_inputs_hash=bytes(32)))
    assert info.value.context["t"] == 1


# --------------------------------------------------------------------------------------------
# Sampling.


def test_hash_gate_matches_an_independent_computation() -> None:
    for t in range(300):
        for rank in (0, 1):
            rec = it(t, 2, rank)
            preimage = cbor2.dumps(
                [TOKEN, [t, 2, rank]]
            )  # ints and bytes: cbor2 writes them as we do
            value = int.from_bytes(hashlib.sha256(preimage).digest()[:8], "big")
            assert iter_is_kept(GATED, rec) == (value % 100 < 1)


def test_hash_gate_keeps_a_pinned_set() -> None:
    kept = [t for t in range(2000) if iter_is_kept(GATED, it(t))]
    assert kept == PINNED_KEPT
    assert len(kept) == len(PINNED_KEPT)


PINNED_KEPT = [
    214,
    260,
    401,
    432,
    435,
    545,
    602,
    710,
    743,
    899,
    931,
    982,
    1003,
    1140,
    1204,
    1280,
    1420,
    1543,
    1560,
    1843,
    1907,
    1989,
]


def test_hash_gate_k_bounds() -> None:
    none = sampling_policy(None, hash_gate_k=0)
    every = sampling_policy(None, hash_gate_k=100)
    assert not any(iter_is_kept(none, it(t)) for t in range(200))
    assert all(iter_is_kept(every, it(t)) for t in range(200))


def test_fixed_rate_and_off() -> None:
    fixed = sampling_policy(None, sample_policy="FIXED_RATE", fixed_rate_k=3)
    assert [s for s in range(10) if iter_is_kept(fixed, it(1, s))] == [0, 3, 6, 9]
    assert all(iter_is_kept(OFF, it(t, s)) for t in range(20) for s in range(3))


def test_mandatory_kinds_are_never_sampled(tmp_path: Path) -> None:
    none = sampling_policy(None, hash_gate_k=0)
    path = tmp_path / "t"
    with TraceWriter.create(path, none, fsync="NEVER") as writer:
        writer.append(header(none))
        assert not writer.append(it(1))
        assert writer.append(gate(1))
        assert writer.append(TraceCertificateInputs(t=1, certificate_inputs_hash=bytes(32)))
        writer.end(status="COMPLETED", final_state_fp=bytes(32))
    assert [r.kind for r in read_trace(path, policy=none).records] == [
        "RUN_HEADER",
        "POLICY_GATE_VERDICT",
        "CERTIFICATE_INPUTS",
        "RUN_END",
    ]


def test_gated_writer_checks_what_the_gate_reads_before_dropping(tmp_path: Path) -> None:
    """A sampled-out ITER is checked for the fields the gate and the order read, not all fields."""
    none = sampling_policy(None, hash_gate_k=0)
    with TraceWriter.create(tmp_path / "t", none, fsync="NEVER") as writer:
        writer.append(header(none))
        for bad, where in [
            (dataclasses.replace(it(1), t=-1), "$[1].t"),
            (dataclasses.replace(it(1), operator_seq="0"), "$[1].operator_seq"),
            (dataclasses.replace(it(1), replay_token=bytes(32)), "$[1].replay_token"),
            (it(1, rank=7), "$[1].rank"),
        ]:
            with pytest.raises(TraceSchemaInvalidError) as info:
                writer.append(bad)
            assert (info.value.reason, info.value.path) == ("SCHEMA", where)
        assert not writer.append(it(2, 1))
        with pytest.raises(TraceSchemaInvalidError) as info:
            writer.append(it(2, 0))  # sampled-out ITERs still count for the order
        assert info.value.reason == "OUT_OF_ORDER"
    assert writer.stats.iter_sampled_out == 1


def test_sampled_trace_is_identical_across_writers(tmp_path: Path) -> None:
    offered = [header(GATED)] + [
        it(t, s, r) for t in range(1, 60) for r in (0, 1) for s in range(3)
    ]
    write(tmp_path / "a", offered, GATED)
    writer = write(tmp_path / "b", offered, GATED, batch_records=1)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert writer.stats.iter_sampled_out + writer.stats.stored - 1 == writer.stats.iter_offered


# --------------------------------------------------------------------------------------------
# Resume.


def resume_scenario() -> tuple[TraceSamplingPolicy, list[TraceRecord]]:
    policy = sampling_policy(None, hash_gate_m=3, hash_gate_k=2, max_bytes_per_step=400)
    offered: list[TraceRecord] = [header(policy)]
    for t in range(1, 6):
        offered += [it(t, s, r) for r in (0, 1) for s in range(4)]
        offered.append(gate(t))
    return policy, offered


def test_resume_at_every_record_count_gives_the_same_bytes(tmp_path: Path) -> None:
    policy, offered = resume_scenario()
    full = tmp_path / "full"
    counts = []
    with TraceWriter.create(full, policy, fsync="NEVER") as writer:
        for record in offered:
            writer.append(record)
            counts.append(writer.record_count)
        writer.end(status="COMPLETED", final_state_fp=bytes(32))
    expected = full.read_bytes()
    assert writer.stats.iter_dropped_step_cap > 0  # the scenario exercises the step cap
    for k in range(writer.record_count):
        start = 0 if k == 0 else counts.index(k) + 1
        copy = tmp_path / f"resume{k}"
        copy.write_bytes(expected + b"\x07\x00\x00")  # a torn tail after everything, too
        with TraceWriter.open_existing(copy, policy, up_to_records=k, fsync="NEVER") as resumed:
            assert resumed.record_count == k
            for record in offered[start:]:
                resumed.append(record)
            resumed.end(status="COMPLETED", final_state_fp=bytes(32))
        assert copy.read_bytes() == expected, k


def test_resume_checks_the_expected_chain_hash(tmp_path: Path, golden: bytes) -> None:
    path = tmp_path / "t"
    path.write_bytes(golden)
    snapshot = read_trace(golden).chain[2]
    TraceWriter.open_existing(path, OFF, up_to_records=3, expected_chain_hash=snapshot).close()
    assert path.read_bytes() == golden[: scan_frames(golden).frames[3].offset]
    with pytest.raises(TraceSchemaInvalidError) as info:
        TraceWriter.open_existing(path, OFF, up_to_records=2, expected_chain_hash=snapshot)
    assert info.value.reason == "CHAIN_BREAK"


def test_resume_past_the_valid_records_fails(tmp_path: Path, golden: bytes) -> None:
    path = tmp_path / "t"
    path.write_bytes(golden[:-3])
    n = len(scan_frames(golden).frames)
    with pytest.raises(TraceSchemaInvalidError) as info:
        TraceWriter.open_existing(path, OFF, up_to_records=n)
    assert info.value.reason == "TRUNCATED_FRAME"
    path.write_bytes(golden)
    with pytest.raises(TraceSchemaInvalidError) as info:
        TraceWriter.open_existing(path, OFF, up_to_records=n + 1)
    assert info.value.reason == "TRUNCATED_FRAME"
    assert path.read_bytes() == golden  # nothing was cut


def test_resume_verifies_the_kept_records(tmp_path: Path, golden: bytes) -> None:
    data = bytearray(golden)
    data[scan_frames(golden).frames[1].offset + 12] ^= 0x40
    path = tmp_path / "t"
    path.write_bytes(bytes(data))
    with pytest.raises(TraceSchemaInvalidError) as info:
        TraceWriter.open_existing(path, OFF, up_to_records=3)
    assert info.value.reason == "CRC_MISMATCH"
    with pytest.raises(TraceSchemaInvalidError) as info:
        TraceWriter.open_existing(path, GATED, up_to_records=1)
    assert info.value.reason == "POLICY_MISMATCH"


def test_fsync_policies_write_the_same_bytes(tmp_path: Path) -> None:
    records = golden_records()
    for policy in ("ALWAYS", "EXPLICIT", "NEVER"):
        with TraceWriter.create(tmp_path / policy, OFF, fsync=policy) as writer:
            for record in records[:4]:
                writer.append(record)
            writer.sync()
            for record in records[4:]:
                writer.append(record)
    assert len({(tmp_path / p).read_bytes() for p in ("ALWAYS", "EXPLICIT", "NEVER")}) == 1


def test_flush_makes_buffered_records_visible(tmp_path: Path) -> None:
    path = tmp_path / "t"
    writer = TraceWriter.create(path, OFF, fsync="NEVER")
    writer.append(header())
    assert path.read_bytes() == b""
    writer.flush()
    assert path.read_bytes() == craft([header()])
    assert writer.byte_length == path.stat().st_size
    writer.close()


def test_module_doctests() -> None:
    result = doctest.testmod(trace_mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_failure_reasons_are_declared_in_the_catalogue() -> None:
    assert set(TRACE_FAILURES) <= set(TraceSchemaInvalidError.reasons)
