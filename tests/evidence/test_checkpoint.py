"""Checkpoints: exact bytes, atomic publication under crashes, and every named failure."""

from __future__ import annotations

import contextlib
import dataclasses
import doctest
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.train.conftest import manifest
from umlos._generated import tags
from umlos._generated.records import CheckpointTraceLink, DpAccountantState, TmmuPlan
from umlos.codec import commit_hash, decode, digest, encode, merkle_root
from umlos.errors import CheckpointInvalidError
from umlos.evidence import certificate as cert_mod
from umlos.evidence import checkpoint as ck
from umlos.manifest import run_id
from umlos.model.tmmu import plan_memory
from umlos.train import init, next_batch, prepare, serialize, step
from umlos.train.run import Run
from umlos.train.state import State

# The replay token (and the run id derived from it) hashes the captured environment, so it
# differs between machines; pinning it makes the golden below a function of the manifest, the
# IR, the initial parameters and this module's format only.
FIXED_TOKEN = digest(["tests.evidence", "replay_token"])
# Pinned: checkpoint_hash of the initial state of manifest("mlp") with FIXED_TOKEN and BINDINGS.
# A change means the checkpoint format (or the manifest/IR/init it binds) changed.
GOLDEN_CHECKPOINT_HASH = "f7d65d8f846e85cd99f94dcf65c026983c6a9de8c805c00177e41af93db99b20"
GOLDEN_HEADER_HASH = "3401f460ff2cef2b1207c78f784da48f6dfc7eb3fb1f1d72fecf56477630d65f"
GOLDEN_MERKLE_ROOT = "acee8c71ea8c723b80993f1876226165be61d5217e8e2c946493ef63d747847e"


def _bind(name: str) -> bytes:
    return digest(["tests.evidence.binding", name])


BINDINGS = ck.CheckpointBindings(
    sampler_config_hash=_bind("sampler_config"),
    backend_binary_hash=_bind("backend_binary"),
    policy_bundle_hash=_bind("policy_bundle"),
    determinism_profile_hash=_bind("determinism_profile"),
    lockfile_hash=_bind("lockfile"),
    toolchain_hash=_bind("toolchain"),
    dependencies_lock_hash=_bind("dependencies_lock"),
    operator_contracts_root_hash=_bind("operator_contracts_root"),
    runtime_env_hash=_bind("runtime_env"),
    code_commit_hash=_bind("code_commit"),
    lineage_root_hash=_bind("lineage_root"),
    data_access_plan_hash=_bind("data_access_plan"),
    dataset_snapshot_id=_bind("dataset_snapshot").hex(),
)


def make_run(extra: str = "", optimizer: str = "{type: adamw, lr: 0.01}") -> Run:
    base = prepare(manifest("mlp", extra=extra, optimizer=optimizer))
    identity = dataclasses.replace(
        base.identity,
        replay_token=FIXED_TOKEN,
        run_id=run_id(base.manifest.tenant_id, FIXED_TOKEN),
    )
    return dataclasses.replace(base, identity=identity)


def plan_for(run: Run) -> TmmuPlan:
    return plan_memory(run.ir, schedule="train", batch_size=16, dtype="float64")


def link_for(state: State) -> CheckpointTraceLink:
    return CheckpointTraceLink(
        tenant_id=state.run.manifest.tenant_id,
        run_id=state.run.identity.run_id,
        t=state.t,
        trace_snapshot_hash=digest(["tests.evidence.trace", state.t]),
        trace_record_count=2 * state.t + 1,
    )


def write(run_dir: Path, state: State, **kw: Any) -> Any:
    return ck.write_checkpoint(
        run_dir,
        state,
        trace_link=link_for(state),
        bindings=BINDINGS,
        tmmu_plan=plan_for(state.run),
        **kw,
    )


def advance(state: State, n: int) -> State:
    for _ in range(n):
        state, _ = step(state, next_batch(state))
    return state


@pytest.fixture(scope="module")
def run() -> Run:
    return make_run()


@pytest.fixture(scope="module")
def states(run: Run) -> dict[int, State]:
    # Each from its own init: step() donates the old state's buffers (they may change in place).
    return {t: advance(init(run), t) for t in (0, 2, 4)}


def files_of(path: Path) -> dict[str, bytes]:
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def reason_of(fn: Callable[[], object]) -> str | None:
    with pytest.raises(CheckpointInvalidError) as info:
        fn()
    return info.value.reason


# --- determinism and round trip ----------------------------------------------------------------


def test_golden_checkpoint_hash_of_the_initial_mlp_state(
    tmp_path: Path, states: dict[int, State]
) -> None:
    header = write(tmp_path, states[0])
    assert header.checkpoint_hash.hex() == GOLDEN_CHECKPOINT_HASH
    assert header.checkpoint_header_hash.hex() == GOLDEN_HEADER_HASH
    assert header.checkpoint_merkle_root.hex() == GOLDEN_MERKLE_ROOT


def test_same_state_gives_the_same_bytes_in_every_file(
    tmp_path: Path, states: dict[int, State]
) -> None:
    a = write(tmp_path / "a", states[4])
    b = write(tmp_path / "b", states[4])
    assert a == b
    fa = files_of(tmp_path / "a" / "checkpoints")
    assert fa == files_of(tmp_path / "b" / "checkpoints")
    assert sorted(fa) == [
        "00000000000000000004.committed",
        "00000000000000000004/checkpoint_header.cbor",
        "00000000000000000004/checkpoint_manifest.cbor",
        "00000000000000000004/optimizer/rank=0/state.bin",
        "00000000000000000004/state/training_state.cbor",
        "00000000000000000004/tensors/rank=0/shard=0.bin",
        "00000000000000000004/tmmu/plan.cbor",
        "00000000000000000004/trace/link.cbor",
    ]


def test_restore_is_exact_and_writing_it_again_gives_the_same_bytes(
    tmp_path: Path, run: Run, states: dict[int, State]
) -> None:
    write(tmp_path / "a", states[2])
    restored = ck.read_checkpoint(tmp_path / "a" / "checkpoints" / ck.step_name(2), run)
    assert serialize(restored) == serialize(states[2])
    write(tmp_path / "b", restored)
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")
    assert serialize(advance(restored, 2)) == serialize(states[4])  # bit-identical continuation


def test_header_binds_state_trace_plan_and_bindings(
    tmp_path: Path, states: dict[int, State]
) -> None:
    state = states[2]
    header = write(tmp_path, state)
    path = tmp_path / "checkpoints" / ck.step_name(2)
    v = ck.verify_checkpoint(path)
    assert v.header == header and header.t == 2 and not header.dp_enabled
    assert header.dp_accountant_state_hash is None  # absent, never null
    assert header.trace_snapshot_hash == link_for(state).trace_snapshot_hash
    assert v.trace_link == link_for(state)
    assert (
        header.tmmu_plan_hash == plan_for(state.run).tmmu_plan_hash == v.state_header.tmmu_plan_hash
    )
    assert header.replay_token == FIXED_TOKEN
    assert header.sampler_config_hash == BINDINGS.sampler_config_hash
    assert v.manifest.dataset_snapshot_id == BINDINGS.dataset_snapshot_id
    # The two tensor files are the training state's blob, parameters first.
    blob = serialize(state)
    tensors = (path / ck.PARAMS_FILE).read_bytes() + (path / ck.OPTIMIZER_FILE).read_bytes()
    assert blob.endswith(tensors)
    assert (
        header.training_state_hash == hashlib.sha256((path / ck.STATE_FILE).read_bytes()).digest()
    )


def test_identities_follow_their_published_formulas(
    tmp_path: Path, states: dict[int, State]
) -> None:
    """An independent recomputation from the files, with the codec and the tag catalogue only."""
    header = write(tmp_path, states[2])
    path = tmp_path / "checkpoints" / ck.step_name(2)
    man = decode((path / ck.MANIFEST_FILE).read_bytes())
    leaves = []
    for shard in man["shards"]:
        data = (path / shard["path"]).read_bytes()
        assert shard["sha256"] == hashlib.sha256(data).digest() and shard["size_bytes"] == len(data)
        leaves.append(commit_hash("ckpt_shard_v1", [shard["path"], shard["sha256"], len(data)]))
    paths = [s["path"] for s in man["shards"]]
    assert paths == sorted(paths)
    root = merkle_root(leaves, node_tag="ckpt_merkle_node_v1", empty_tag="ckpt_merkle_root_v1")
    assert root == man["checkpoint_merkle_root"] == header.checkpoint_merkle_root
    tensor_leaves = [x for p, x in zip(paths, leaves, strict=True) if p.startswith("tensors/")]
    assert header.tensors_root_hash == commit_hash("tensors_root_v1", tensor_leaves)
    head = decode((path / ck.HEADER_FILE).read_bytes())
    assert isinstance(head, dict)
    h_hash = digest(
        {k: v for k, v in head.items() if k not in ("checkpoint_header_hash", "checkpoint_hash")}
    )
    assert h_hash == header.checkpoint_header_hash
    m_hash = hashlib.sha256((path / ck.MANIFEST_FILE).read_bytes()).digest()
    assert header.checkpoint_hash == commit_hash("checkpoint_commit_v1", [h_hash, m_hash, root])
    assert tags.CHECKPOINT_COMMIT == "checkpoint_commit_v1"
    pointer = decode((tmp_path / "checkpoints" / f"{ck.step_name(2)}.committed").read_bytes())
    assert pointer == {
        "tenant_id": header.tenant_id,
        "run_id": header.run_id,
        "t": 2,
        "checkpoint_hash": header.checkpoint_hash,
        "path": "checkpoints/00000000000000000002",
    }


def test_dp_accountant_slot_is_recorded_and_restored(tmp_path: Path) -> None:
    run = make_run(
        extra="security: {differential_privacy: {clipping: {norm: 1.0}, target_epsilon: 8.0}}\n"
        "data: {drop_last: true}"
    )
    accountant = DpAccountantState(
        accountant="rdp",
        alpha_grid=(2.0, 4.0),
        rdp_total=(0.5, 0.25),
        steps=3,
        target_delta=1e-5,
        cumulative_epsilon=1.5,
    )
    state = init(run)
    with pytest.raises(CheckpointInvalidError) as info:
        write(tmp_path, state)  # DP on: the accountant slot is required
    assert info.value.reason == "STATE_MISMATCH"
    header = write(tmp_path, state, dp_accountant=accountant)
    assert header.dp_enabled and header.dp_accountant_state_hash == digest(accountant.to_obj())
    loaded = ck.load_checkpoint(tmp_path / "checkpoints" / ck.step_name(0), run)
    assert loaded.dp_accountant == accountant
    # A run without DP must not restore it, nor write an accountant.
    plain = make_run()
    assert (
        reason_of(lambda: ck.read_checkpoint(tmp_path / "checkpoints" / ck.step_name(0), plain))
        == "STATE_MISMATCH"
    )
    assert (
        reason_of(lambda: write(tmp_path / "x", init(plain), dp_accountant=accountant))
        == "STATE_MISMATCH"
    )


def test_artifact_index_is_a_listed_shard(tmp_path: Path, states: dict[int, State]) -> None:
    index = encode({"entries": []})
    bindings = dataclasses.replace(BINDINGS, artifact_index_hash=_bind("artifact_index"))
    header = ck.write_checkpoint(
        tmp_path,
        states[2],
        trace_link=link_for(states[2]),
        bindings=bindings,
        tmmu_plan=plan_for(states[2].run),
        artifact_index=index,
    )
    v = ck.verify_checkpoint(tmp_path / "checkpoints" / ck.step_name(2))
    assert ck.ARTIFACT_INDEX_FILE in [s.path for s in v.manifest.shards]
    assert v.manifest.artifact_index_hash == bindings.artifact_index_hash and header.t == 2
    with pytest.raises(CheckpointInvalidError):  # the file and its hash go together
        write(tmp_path / "y", states[2], artifact_index=index)


# --- publication and crash safety --------------------------------------------------------------


def test_latest_checkpoint_takes_the_highest_valid_step(
    tmp_path: Path, states: dict[int, State]
) -> None:
    assert ck.latest_checkpoint(tmp_path) is None
    write(tmp_path, states[2])
    h4 = write(tmp_path, states[4], checkpoint_hash_prev=b"\x01" * 32)
    ref = ck.latest_checkpoint(tmp_path)
    assert ref is not None and (ref.t, ref.published, ref.checkpoint_hash) == (
        4,
        True,
        h4.checkpoint_hash,
    )
    assert h4.checkpoint_hash_prev == b"\x01" * 32
    # A damaged newest checkpoint falls back to the one before.
    shard = ref.path / ck.PARAMS_FILE
    shard.write_bytes(b"\x00" + shard.read_bytes()[1:])
    ref = ck.latest_checkpoint(tmp_path)
    assert ref is not None and ref.t == 2 and ref.published


def test_torn_pointer_falls_back_to_the_complete_directory(
    tmp_path: Path, states: dict[int, State]
) -> None:
    write(tmp_path, states[2])
    header = write(tmp_path, states[4])
    pointer = tmp_path / "checkpoints" / f"{ck.step_name(4)}.committed"
    pointer.write_bytes(pointer.read_bytes()[:40])
    assert reason_of(lambda: ck.read_pointer(pointer)) == "POINTER"
    ref = ck.latest_checkpoint(tmp_path)
    assert ref is not None and (ref.t, ref.published) == (4, False)
    assert ref.checkpoint_hash == header.checkpoint_hash
    published = ck.latest_checkpoint(tmp_path, published_only=True)
    assert published is not None and published.t == 2
    write(tmp_path, states[4])  # rewriting repairs the pointer
    ref = ck.latest_checkpoint(tmp_path)
    assert ref is not None and (ref.t, ref.published) == (4, True)


def test_pointer_naming_another_checkpoint_is_not_trusted(
    tmp_path: Path, states: dict[int, State]
) -> None:
    write(tmp_path, states[2])
    write(tmp_path, states[4])
    p2 = decode((tmp_path / "checkpoints" / f"{ck.step_name(2)}.committed").read_bytes())
    assert isinstance(p2, dict)
    forged = {**p2, "t": 4, "path": "checkpoints/00000000000000000004"}
    (tmp_path / "checkpoints" / f"{ck.step_name(4)}.committed").write_bytes(encode(forged))
    ref = ck.latest_checkpoint(tmp_path)  # the directory verifies; the pointer does not match
    assert ref is not None and (ref.t, ref.published) == (4, False)
    ref = ck.latest_checkpoint(tmp_path, published_only=True)
    assert ref is not None and ref.t == 2
    with pytest.raises(CheckpointInvalidError) as info:  # and it blocks republishing step 4
        write(tmp_path, states[4])
    assert info.value.reason == "CHECKPOINT_CONFLICT"


def test_rewriting_a_step_is_idempotent_and_a_different_state_conflicts(
    tmp_path: Path, states: dict[int, State]
) -> None:
    a = write(tmp_path, states[4])
    assert write(tmp_path, states[4]) == a
    other = dataclasses.replace(states[4], loss_total=123.0)
    with pytest.raises(CheckpointInvalidError) as info:  # published for another checkpoint
        write(tmp_path, other)
    assert info.value.reason == "CHECKPOINT_CONFLICT"
    assert info.value.context["checkpoint_hash"] != a.checkpoint_hash
    (tmp_path / "checkpoints" / f"{ck.step_name(4)}.committed").unlink()
    with pytest.raises(CheckpointInvalidError) as info:  # unpublished, but the directory differs
        write(tmp_path, other)
    assert info.value.reason == "CHECKPOINT_CONFLICT"
    assert ck.latest_checkpoint(tmp_path) == ck.CheckpointRef(
        tmp_path / "checkpoints" / ck.step_name(4), 4, a.checkpoint_hash, False
    )


def test_a_damaged_directory_is_set_aside_and_rewritten(
    tmp_path: Path, states: dict[int, State]
) -> None:
    write(tmp_path, states[4])
    path = tmp_path / "checkpoints" / ck.step_name(4)
    (path / ck.LINK_FILE).write_bytes(b"garbage")
    write(tmp_path, states[4])
    assert ck.verify_checkpoint(path).header.t == 4
    assert (
        tmp_path / "checkpoints" / f".{ck.step_name(4)}.invalid" / ck.LINK_FILE
    ).read_bytes() == b"garbage"


class _Crash(BaseException):
    """A simulated power cut: no handler runs (BaseException), nothing is cleaned up."""


@contextlib.contextmanager
def _crashing(after: int) -> Iterator[None]:
    """Patch the write path so that the ``after``-th file-system effect never completes."""
    count = 0
    real_write, real_fsync, real_rename, real_link = (
        ck._write_file,
        ck.fsync_dir,
        os.rename,
        os.link,
    )

    def tick() -> bool:
        nonlocal count
        count += 1
        return count == after

    def write_file(path: Path, data: bytes) -> None:
        if tick():  # half the bytes reach the file, then the machine stops
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, data[: len(data) // 2])
            os.close(fd)
            raise _Crash
        real_write(path, data)

    def gate(real: Callable[..., None]) -> Callable[..., None]:
        def effect(*args: Any) -> None:
            if tick():
                raise _Crash
            real(*args)

        return effect

    mp = pytest.MonkeyPatch()
    mp.setattr(ck, "_write_file", write_file)
    mp.setattr(ck, "fsync_dir", gate(real_fsync))
    mp.setattr(os, "rename", gate(real_rename))
    mp.setattr(os, "link", gate(real_link))
    try:
        yield
    finally:
        mp.undo()


def test_a_crash_at_any_point_of_a_write_never_leaves_a_wrong_checkpoint(
    tmp_path: Path, run: Run, states: dict[int, State]
) -> None:
    base = tmp_path / "base"
    write(base, states[2])
    points = 0
    while True:  # crash after 1, 2, ... effects until a write completes untouched
        points += 1
        case = tmp_path / f"case{points}"
        shutil.copytree(base, case)
        crashed = False
        try:
            with _crashing(points):
                write(case, states[4])
        except _Crash:
            crashed = True
        ref = ck.latest_checkpoint(case)
        assert ref is not None and ref.t in (2, 4)
        restored = ck.read_checkpoint(ref.path, run)
        assert serialize(restored) == serialize(states[ref.t])
        # The next write recovers whatever the crash left behind and publishes step 4.
        write(case, states[4])
        ref = ck.latest_checkpoint(case, published_only=True)
        assert ref is not None and ref.t == 4
        if not crashed:
            break
    assert points > 15  # files, directory syncs, rename, pointer: every step was hit


def test_a_failing_write_leaves_the_previous_checkpoint_latest(
    tmp_path: Path, states: dict[int, State], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, states[2])
    real = ck._write_file
    calls = 0

    def disk_full(path: Path, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(ck, "_write_file", disk_full)
    with pytest.raises(OSError, match="No space"):
        write(tmp_path, states[4])
    ref = ck.latest_checkpoint(tmp_path)
    assert ref is not None and ref.t == 2
    assert not (tmp_path / "checkpoints" / ck.step_name(4)).exists()


_KILL_CHILD = """
import os, signal, sys
from pathlib import Path
from tests.evidence import test_checkpoint as T
from umlos.evidence import certificate as cert_mod
from umlos.evidence import checkpoint as ck
from umlos.train import init

run_dir, kill_at = Path(sys.argv[1]), int(sys.argv[2])
s2 = T.advance(init(T.make_run()), 2)
T.write(run_dir, s2)
real, calls = ck._write_file, 0

def killing(path, data):
    global calls
    calls += 1
    if calls == kill_at:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, data)

ck._write_file = killing
T.write(run_dir, T.advance(s2, 2))
"""


@pytest.mark.parametrize("kill_at", [3, 8], ids=["mid-shards", "pointer"])
def test_sigkill_mid_write_keeps_the_previous_checkpoint(
    tmp_path: Path, run: Run, states: dict[int, State], kill_at: int
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_CHILD, str(tmp_path), str(kill_at)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ref = ck.latest_checkpoint(tmp_path, published_only=True)
    assert ref is not None and ref.t == 2
    assert serialize(ck.read_checkpoint(ref.path, run)) == serialize(states[2])
    any_ref = ck.latest_checkpoint(tmp_path)
    assert any_ref is not None
    if any_ref.t == 4:  # killed after the rename: complete, merely unpublished
        assert not any_ref.published
        assert serialize(ck.read_checkpoint(any_ref.path, run)) == serialize(states[4])
    write(tmp_path, states[4])
    ref = ck.latest_checkpoint(tmp_path, published_only=True)
    assert ref is not None and ref.t == 4


# --- every failure kind ------------------------------------------------------------------------


@pytest.fixture
def ckpt(tmp_path: Path, states: dict[int, State]) -> Path:
    write(tmp_path, states[2])
    return tmp_path / "checkpoints" / ck.step_name(2)


def _forge(
    path: Path,
    *,
    files: dict[str, bytes] | None = None,
    manifest_edit: Callable[[dict[str, Any]], None] | None = None,
    header_edit: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Rewrite a checkpoint the way an attacker who recomputes every hash would: change files
    or fields, then refresh shard entries, roots, manifest hash, header hash and commitment."""
    man: Any = decode((path / ck.MANIFEST_FILE).read_bytes())
    head: Any = decode((path / ck.HEADER_FILE).read_bytes())
    for rel, data in (files or {}).items():
        (path / rel).write_bytes(data)
        for s in man["shards"]:
            if s["path"] == rel:
                s["sha256"], s["size_bytes"] = hashlib.sha256(data).digest(), len(data)
    leaves = [
        commit_hash("ckpt_shard_v1", [s["path"], s["sha256"], s["size_bytes"]])
        for s in man["shards"]
    ]
    root = merkle_root(leaves, node_tag="ckpt_merkle_node_v1", empty_tag="ckpt_merkle_root_v1")
    man["checkpoint_merkle_root"] = head["checkpoint_merkle_root"] = root
    for prefix, tag, field in (
        ("tensors/", "tensors_root_v1", "tensors_root_hash"),
        ("optimizer/", "optimizer_root_v1", "optimizer_state_root_hash"),
    ):
        head[field] = commit_hash(
            tag,
            [x for s, x in zip(man["shards"], leaves, strict=True) if s["path"].startswith(prefix)],
        )
    if manifest_edit:
        manifest_edit(man)
    (path / ck.MANIFEST_FILE).write_bytes(encode(man))
    head["checkpoint_manifest_hash"] = digest(man)
    if header_edit:
        header_edit(head)
    h = digest(
        {k: v for k, v in head.items() if k not in ("checkpoint_header_hash", "checkpoint_hash")}
    )
    head["checkpoint_header_hash"] = h
    head["checkpoint_hash"] = commit_hash(
        "checkpoint_commit_v1",
        [h, head["checkpoint_manifest_hash"], head["checkpoint_merkle_root"]],
    )
    (path / ck.HEADER_FILE).write_bytes(encode(head))


def _edit_record(path: Path, rel: str, edit: Callable[[dict[str, Any]], None]) -> bytes:
    obj: Any = decode((path / rel).read_bytes())
    edit(obj)
    return encode(obj)


def _flipped(file: Path, byte: int) -> bytes:
    data = bytearray(file.read_bytes())
    data[byte] ^= 0x01
    return bytes(data)


def _flip(path: Path, rel: str, byte: int = -1) -> None:
    (path / rel).write_bytes(_flipped(path / rel, byte))


def _set(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda obj: obj.__setitem__(key, value)


CASES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "header-missing": ("FILE_MISSING", lambda p: (p / ck.HEADER_FILE).unlink()),
    "shard-missing": ("FILE_MISSING", lambda p: (p / ck.PLAN_FILE).unlink()),
    "unlisted-file": ("FILE_UNLISTED", lambda p: (p / "notes.txt").write_text("hi")),
    "shard-longer": (
        "FILE_SIZE",
        lambda p: (p / ck.PARAMS_FILE).write_bytes((p / ck.PARAMS_FILE).read_bytes() + b"\0"),
    ),
    "shard-bit-flip": ("FILE_HASH", lambda p: _flip(p, ck.OPTIMIZER_FILE, 100)),
    "header-not-cbor": ("RECORD_INVALID", lambda p: (p / ck.HEADER_FILE).write_bytes(b"\xff")),
    "header-unknown-field": ("RECORD_INVALID", lambda p: _forge(p, header_edit=_set("extra", 1))),
    "link-not-a-link": (
        "RECORD_INVALID",
        lambda p: _forge(p, files={ck.LINK_FILE: encode({"t": 2})}),
    ),
    "symlink": ("LAYOUT", lambda p: (p / "tmmu" / "alias.cbor").symlink_to(p / ck.PLAN_FILE)),
    "shards-unsorted": (
        "LAYOUT",
        lambda p: _forge(p, manifest_edit=lambda m: m["shards"].reverse()),
    ),
    "shard-dropped": ("LAYOUT", lambda p: _forge(p, manifest_edit=lambda m: m["shards"].pop())),
    "descriptors-off-files": (
        "LAYOUT",
        lambda p: _forge(
            p, files={ck.OPTIMIZER_FILE: (p / ck.OPTIMIZER_FILE).read_bytes() + bytes(64)}
        ),
    ),
    "merkle-root": (
        "MERKLE_ROOT",
        lambda p: _forge(p, manifest_edit=_set("checkpoint_merkle_root", bytes(32))),
    ),
    "tensors-root": (
        "SHARD_ROOT",
        lambda p: _forge(p, header_edit=_set("tensors_root_hash", bytes(32))),
    ),
    "manifest-edited": (
        "MANIFEST_HASH",
        lambda p: (p / ck.MANIFEST_FILE).write_bytes(
            _edit_record(p, ck.MANIFEST_FILE, _set("dataset_snapshot_id", "0" * 64))
        ),
    ),
    "header-edited": (
        "HEADER_HASH",
        lambda p: (p / ck.HEADER_FILE).write_bytes(
            _edit_record(p, ck.HEADER_FILE, _set("lockfile_hash", bytes(32)))
        ),
    ),
    "commitment-edited": (
        "CHECKPOINT_HASH",
        lambda p: (p / ck.HEADER_FILE).write_bytes(
            _edit_record(p, ck.HEADER_FILE, _set("checkpoint_hash", bytes(32)))
        ),
    ),
    "trace-link-moved": (
        "HEADER_BINDING",
        lambda p: _forge(
            p,
            files={
                ck.LINK_FILE: _edit_record(p, ck.LINK_FILE, _set("trace_snapshot_hash", bytes(32)))
            },
        ),
    ),
    "plan-swapped": (
        "HEADER_BINDING",
        lambda p: _forge(
            p,
            files={ck.PLAN_FILE: _edit_record(p, ck.PLAN_FILE, _set("tmmu_plan_hash", bytes(32)))},
        ),
    ),
    "cursor-edited": (
        "HEADER_BINDING",
        lambda p: _forge(
            p, files={ck.STATE_FILE: _edit_record(p, ck.STATE_FILE, _set("data_cursors", {}))}
        ),
    ),
    "tensor-bytes-recommitted": (
        "TENSOR_HASH",
        lambda p: _forge(p, files={ck.PARAMS_FILE: _flipped(p / ck.PARAMS_FILE, 0)}),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_failure_kind_is_named_before_any_value_is_used(
    ckpt: Path, run: Run, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason, damage = CASES[case]
    damage(ckpt)
    used: list[object] = []
    monkeypatch.setattr(
        run.program, "to_device", lambda host: used.append(host) or host, raising=False
    )
    assert reason_of(lambda: ck.read_checkpoint(ckpt, run)) == reason
    assert used == []  # nothing reached the backend


def test_checkpoint_of_another_run_is_state_mismatch(ckpt: Path) -> None:
    other = make_run(optimizer="{type: sgd, lr: 0.5}")
    with pytest.raises(CheckpointInvalidError) as info:
        ck.read_checkpoint(ckpt, other)
    assert info.value.reason == "STATE_MISMATCH" and info.value.path == "$.manifest_hash"


def test_expected_bindings_and_hash_are_compared(ckpt: Path, run: Run) -> None:
    assert ck.load_checkpoint(ckpt, run, expected=BINDINGS).header.t == 2
    moved = dataclasses.replace(BINDINGS, backend_binary_hash=bytes(32))
    with pytest.raises(CheckpointInvalidError) as info:
        ck.load_checkpoint(ckpt, run, expected=moved)
    assert (info.value.reason, info.value.path) == ("STATE_MISMATCH", "$.backend_binary_hash")
    with pytest.raises(CheckpointInvalidError) as info:
        ck.load_checkpoint(ckpt, run, checkpoint_hash=bytes(32))
    assert info.value.reason == "CHECKPOINT_HASH"


def test_errors_carry_the_catalogue_context(ckpt: Path, run: Run) -> None:
    _flip(ckpt, ck.PARAMS_FILE, 0)
    with pytest.raises(CheckpointInvalidError) as info:
        ck.read_checkpoint(ckpt, run)
    err = info.value
    assert err.code_id == "CHECKPOINT_INVALID" and err.artifact == ck.PARAMS_FILE
    assert {"t", "run_id", "checkpoint_hash"} <= set(err.context)
    assert set(ck.CHECKPOINT_REASONS) >= {c[0] for c in CASES.values()} - {"TENSOR_HASH"}


def test_a_thousand_random_bit_flips_are_each_detected(
    ckpt: Path, run: Run, states: dict[int, State]
) -> None:
    rng = random.Random(20260101)
    rels = sorted(files_of(ckpt))
    reasons: dict[str, int] = {}
    for _ in range(1000):
        rel = rng.choice(rels)
        data = (ckpt / rel).read_bytes()
        bit = rng.randrange(len(data) * 8)
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        (ckpt / rel).write_bytes(bytes(flipped))
        try:
            with pytest.raises(CheckpointInvalidError) as info:
                ck.read_checkpoint(ckpt, run)
        finally:
            (ckpt / rel).write_bytes(data)
        reason = info.value.reason or "?"
        reasons[reason] = reasons.get(reason, 0) + 1
    assert set(reasons) <= set(ck.CHECKPOINT_REASONS)
    assert {"FILE_HASH", "HEADER_HASH", "MANIFEST_HASH", "RECORD_INVALID"} <= set(reasons)
    assert serialize(ck.read_checkpoint(ckpt, run)) == serialize(states[2])  # intact again


def test_bit_flips_in_the_pointer_unpublish_the_step(ckpt: Path) -> None:
    run_dir = ckpt.parents[1]
    pointer = run_dir / "checkpoints" / f"{ck.step_name(2)}.committed"
    data = pointer.read_bytes()
    for bit in random.Random(7).sample(range(len(data) * 8), 256):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        pointer.write_bytes(bytes(flipped))
        ref = ck.latest_checkpoint(run_dir)
        assert ref is not None and (ref.t, ref.published) == (2, False), bit
    pointer.write_bytes(data)
    ref = ck.latest_checkpoint(run_dir)
    assert ref is not None and ref.published


def test_the_format_page_names_every_file_and_reason() -> None:
    doc = (ROOT / "docs" / "formats" / "checkpoint.md").read_text()
    for name in (
        ck.HEADER_FILE,
        ck.MANIFEST_FILE,
        ck.STATE_FILE,
        ck.PARAMS_FILE,
        ck.OPTIMIZER_FILE,
        ck.PLAN_FILE,
        ck.LINK_FILE,
        ck.ARTIFACT_INDEX_FILE,
    ):
        assert name.rsplit("/", 1)[-1] in doc, name
    for reason in ck.CHECKPOINT_REASONS:
        assert f"`{reason}`" in doc, reason
    for tag in (
        tags.CKPT_SHARD_LEAF,
        tags.CKPT_MERKLE_NODE,
        tags.CKPT_MERKLE_EMPTY_ROOT,
        tags.TENSORS_ROOT,
        tags.OPTIMIZER_ROOT,
        tags.CHECKPOINT_COMMIT,
    ):
        assert f'"{tag}"' in doc, tag


def test_reasons_are_declared_in_the_error_catalogue() -> None:
    assert set(ck.CHECKPOINT_REASONS) <= set(CheckpointInvalidError.reasons)


@pytest.mark.parametrize("module", [ck, cert_mod], ids=["checkpoint", "certificate"])
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted >= 1 and result.failed == 0
