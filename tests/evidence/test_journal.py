"""The step journal: exact bytes, the link chain, every failure kind, torn tails, bit flips and
resume (src/umlos/evidence/journal.py, docs/formats/journal.md)."""

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

from umlos._generated.records import JournalEntry, JournalEvent
from umlos.codec import encode
from umlos.errors import TraceSchemaInvalidError
from umlos.evidence import journal as journal_mod
from umlos.evidence._frames import encode_frame, scan_frames
from umlos.evidence.journal import (
    GENESIS_LINK_HASH,
    JOURNAL_FAILURES,
    MAX_ENTRY_BYTES,
    JournalWriter,
    journal_link_hash,
    read_journal,
)


def event(t: int, rank: int = 0, **extra: object) -> JournalEvent:
    return JournalEvent(
        t=t,
        rank=rank,
        stage_id="train",
        data_cursors_hash=bytes([t % 256]) * 32,
        rng_offsets_hash=bytes([1]) * 32,
        resource_ledger_hash=bytes([2]) * 32,
        trace_chain_hash=bytes([3]) * 32,
        **extra,
    )


def golden_events() -> list[JournalEvent]:
    return [event(1), event(2, state_fp=bytes([4]) * 32), event(3, checkpoint_hash=bytes([5]) * 32)]


def entries_for(events: list[JournalEvent]) -> list[JournalEntry]:
    out, prev = [], GENESIS_LINK_HASH
    for i, ev in enumerate(events):
        link = journal_link_hash(prev, ev)
        out.append(JournalEntry(journal_seq=i, prev_link_hash=prev, event=ev, link_hash=link))
        prev = link
    return out


def craft(entries: list[JournalEntry | dict[str, object]]) -> bytes:
    return b"".join(encode_frame(encode(e if isinstance(e, dict) else e.to_obj())) for e in entries)


@pytest.fixture
def golden(tmp_path: Path) -> bytes:
    path = tmp_path / "run_journal.cborlog"
    with JournalWriter.create(path, fsync="NEVER") as writer:
        for ev in golden_events():
            writer.append(ev)
    return path.read_bytes()


def fails(data: bytes, reason: str) -> TraceSchemaInvalidError:
    with pytest.raises(TraceSchemaInvalidError) as info:
        read_journal(data, artifact="j.cborlog")
    assert info.value.reason == reason, info.value
    assert info.value.artifact == "j.cborlog"
    return info.value


GOLDEN_FILE_SHA256 = "acdf744426ac9e90d7e3c29ad6dccefea8589d55d0add82039ae8f3e004d8c32"
GOLDEN_HEAD_LINK = "81c8e017e50f76a9f912d2309db977c50f47a7ecb9536ef856021df13d4f736c"


def test_golden_journal_bytes_and_head_link_are_pinned(golden: bytes) -> None:
    result = read_journal(golden)
    assert hashlib.sha256(golden).hexdigest() == GOLDEN_FILE_SHA256
    assert result.head_link_hash.hex() == GOLDEN_HEAD_LINK
    assert list(result.entries) == entries_for(golden_events())
    assert golden == craft(entries_for(golden_events()))


def test_links_match_an_independent_recomputation(golden: bytes) -> None:
    """Frames parsed by hand, the link preimage encoded by cbor2 (no floats: same bytes)."""
    pos, prev, seq = 0, bytes(32), 0
    while pos < len(golden):
        (n,) = struct.unpack_from("<I", golden, pos)
        payload = golden[pos + 4 : pos + 4 + n]
        assert struct.unpack_from("<I", golden, pos + 4 + n)[0] == crc32c.crc32c(payload)
        entry = cbor2.loads(payload)
        assert entry["journal_seq"] == seq and entry["prev_link_hash"] == prev
        ev = entry["event"]
        preimage = cbor2.dumps(["journal_link_v1", [prev, ev, ev["t"]]], canonical=True)
        assert entry["link_hash"] == hashlib.sha256(preimage).digest()
        prev, seq, pos = entry["link_hash"], seq + 1, pos + n + 8
    assert read_journal(golden).head_link_hash == prev


def test_empty_journal_is_valid() -> None:
    result = read_journal(b"")
    assert result.entries == () and result.head_link_hash == GENESIS_LINK_HASH


def test_largest_entry_is_far_below_the_entry_limit() -> None:
    h = b"\xff" * 32
    ev = JournalEvent(
        t=2**64 - 1,
        rank=2**32 - 1,
        stage_id="A" * 64,
        data_cursors_hash=h,
        rng_offsets_hash=h,
        resource_ledger_hash=h,
        dp_accountant_state_hash=h,
        state_fp=h,
        trace_chain_hash=h,
        checkpoint_hash=h,
    )
    entry = JournalEntry(journal_seq=2**64 - 1, prev_link_hash=h, event=ev, link_hash=h)
    assert len(encode(entry.to_obj())) < 700 < MAX_ENTRY_BYTES


# Every failure kind, each with the case that breaks it.


def test_torn_tail_at_every_byte_of_the_last_entry(golden: bytes) -> None:
    last = scan_frames(golden).frames[-1].offset
    for cut in range(last + 1, len(golden)):
        assert fails(golden[:cut], "JOURNAL_TRUNCATED_FRAME").offset == last
    assert len(read_journal(golden[:last]).entries) == 2  # a clean cut is a shorter journal


def test_crc_mismatch(golden: bytes) -> None:
    data = bytearray(golden)
    second = scan_frames(golden).frames[1].offset
    data[second + 20] ^= 0x80
    assert fails(bytes(data), "JOURNAL_CRC_MISMATCH").offset == second


def test_oversized_frame_with_a_valid_crc() -> None:
    data = craft(entries_for([event(1)])) + encode_frame(b"\x40" * (MAX_ENTRY_BYTES + 1))
    assert fails(data, "JOURNAL_OVERSIZED_FRAME").offset == len(craft(entries_for([event(1)])))


def test_oversized_frame_length_field() -> None:
    data = struct.pack("<I", 0xFFFFFFFF) + b"\x00" * 16
    assert fails(data, "JOURNAL_OVERSIZED_FRAME").offset == 0


def test_not_canonical() -> None:
    obj = entries_for([event(1)])[0].to_obj()
    loose = cbor2.dumps(dict(reversed(list(obj.items()))))
    fails(encode_frame(loose), "JOURNAL_NOT_CANONICAL")


def test_schema_missing_field_names_the_path() -> None:
    obj = entries_for([event(1)])[0].to_obj()
    del obj["event"]["stage_id"]
    err = fails(craft([obj]), "JOURNAL_SCHEMA")
    assert err.path == "$[0].event"


def test_schema_rank_changes() -> None:
    entries = entries_for([event(1, rank=0), event(2, rank=1)])
    assert fails(craft(entries), "JOURNAL_SCHEMA").path == "$[1].event.rank"


def test_seq_gap() -> None:
    entries = entries_for(golden_events())
    entries[1] = dataclasses.replace(entries[1], journal_seq=2)
    assert fails(craft(entries), "JOURNAL_SEQ_GAP").path == "$[1].journal_seq"


def test_out_of_order_repeated_step() -> None:
    err = fails(craft(entries_for([event(1), event(1)])), "JOURNAL_OUT_OF_ORDER")
    assert err.path == "$[1].event.t"


def test_link_break_prev_link_hash() -> None:
    entries = entries_for(golden_events())
    entries[2] = entries_for([golden_events()[2]])[0]  # linked to genesis, not to entry 1
    entries[2] = dataclasses.replace(entries[2], journal_seq=2)
    assert fails(craft(entries), "JOURNAL_LINK_BREAK").path == "$[2].prev_link_hash"


def test_link_break_edited_event() -> None:
    entries = entries_for(golden_events())
    entries[1] = dataclasses.replace(entries[1], event=event(2, state_fp=bytes(32)))
    assert fails(craft(entries), "JOURNAL_LINK_BREAK").path == "$[1].link_hash"


def test_size_cap(golden: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_mod, "MAX_JOURNAL_BYTES", len(golden) - 1)
    fails(golden, "JOURNAL_SIZE_CAP")


def test_every_failure_kind_has_a_test_here() -> None:
    source = Path(__file__).read_text().split("def test_every_failure")[0]
    assert [r for r in JOURNAL_FAILURES if f'"{r}"' not in source] == []


def test_random_single_bit_flips_are_all_detected(golden: bytes) -> None:
    rng = random.Random(7)
    for bit in rng.sample(range(len(golden) * 8), 1200):
        data = bytearray(golden)
        data[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(TraceSchemaInvalidError):
            read_journal(bytes(data))


# The writer.


def test_writer_refuses_and_stays_unchanged(tmp_path: Path, golden: bytes) -> None:
    path = tmp_path / "j"
    with JournalWriter.create(path, fsync="NEVER") as writer:
        writer.append(golden_events()[0])
        for bad, reason in [
            (event(1), "JOURNAL_OUT_OF_ORDER"),
            (event(0), "JOURNAL_OUT_OF_ORDER"),
            (event(2, rank=1), "JOURNAL_SCHEMA"),
            (dataclasses.replace(event(2), stage_id="no spaces"), "JOURNAL_SCHEMA"),
            (dataclasses.replace(event(2), trace_chain_hash=b"short"), "JOURNAL_SCHEMA"),
        ]:
            with pytest.raises(TraceSchemaInvalidError) as info:
                writer.append(bad)
            assert info.value.reason == reason
            assert writer.entry_count == 1
        for ev in golden_events()[1:]:
            writer.append(ev)
    assert path.read_bytes() == golden
    with pytest.raises(ValueError, match="closed"):
        writer.append(event(9))


def test_writer_will_not_overwrite(tmp_path: Path) -> None:
    (tmp_path / "j").write_bytes(b"")
    with pytest.raises(FileExistsError):
        JournalWriter.create(tmp_path / "j")


def test_resume_at_every_entry_count_gives_the_same_bytes(tmp_path: Path) -> None:
    events = [event(t, state_fp=bytes([t]) * 32) if t % 3 == 0 else event(t) for t in range(1, 12)]
    full = tmp_path / "full"
    with JournalWriter.create(full, fsync="NEVER", batch_entries=4) as writer:
        for ev in events:
            writer.append(ev)
    expected = full.read_bytes()
    for k in range(len(events) + 1):
        copy = tmp_path / f"j{k}"
        copy.write_bytes(expected + b"\x30\x00")  # and a torn tail
        with JournalWriter.open_existing(copy, up_to_entries=k, fsync="NEVER") as resumed:
            assert resumed.entry_count == k
            for ev in events[k:]:
                resumed.append(ev)
        assert copy.read_bytes() == expected, k


def test_resume_checks_the_expected_link_and_the_entry_count(tmp_path: Path, golden: bytes) -> None:
    path = tmp_path / "j"
    path.write_bytes(golden)
    link = read_journal(golden).entries[1].link_hash
    JournalWriter.open_existing(path, up_to_entries=2, expected_link_hash=link).close()
    with pytest.raises(TraceSchemaInvalidError) as info:
        JournalWriter.open_existing(path, up_to_entries=1, expected_link_hash=link)
    assert info.value.reason == "JOURNAL_LINK_BREAK"
    with pytest.raises(TraceSchemaInvalidError) as info:
        JournalWriter.open_existing(path, up_to_entries=3)
    assert info.value.reason == "JOURNAL_TRUNCATED_FRAME"


def test_fsync_policies_write_the_same_bytes(tmp_path: Path, golden: bytes) -> None:
    for policy in ("ALWAYS", "EXPLICIT", "NEVER"):
        with JournalWriter.create(tmp_path / policy, fsync=policy) as writer:
            for ev in golden_events():
                writer.append(ev)
                writer.sync()
        assert (tmp_path / policy).read_bytes() == golden


def test_module_doctests() -> None:
    result = doctest.testmod(journal_mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_failure_reasons_are_declared_in_the_catalogue() -> None:
    assert set(JOURNAL_FAILURES) <= set(TraceSchemaInvalidError.reasons)
