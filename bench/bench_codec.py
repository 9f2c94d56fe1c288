"""Throughput of umlos.codec against cbor2 and hashlib, measured side by side.

Usage: ``python bench/bench_codec.py [--json] [--repeat N] [--records N]``.

(a) encode / decode of a batch of trace-like records against ``cbor2.dumps`` / ``cbor2.loads``
    on the same records (cbor2 in its default, non-canonical mode: the fastest thing it does);
(b) ``digest()`` of a 64 MiB byte string against ``hashlib.sha256`` of the same bytes.

Each repetition runs every contender once, in turn, so that drifts in clock speed hit them
alike; the table reports the median over repetitions and ratios ours / baseline (above 1 means
slower). The rows marked "alternative" are the designs ADR 0004 rejected, kept here so that the
numbers in the ADR can be reproduced.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import struct
import time
from collections.abc import Callable
from typing import Any

import cbor2

from umlos.codec import decode, digest, encode
from umlos.codec._strict import decode_strict

PAYLOAD_BYTES = 64 << 20


def trace_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Maps of ten keys: short text, uint64s, two 32-byte hashes, a float, a small nested map."""
    rng = random.Random(seed)
    return [
        {
            "kind": "iter",
            "t": i,
            "operator_id": "UML_OS.Data.NextBatch_v2",
            "operator_seq": rng.randrange(2**64),
            "rank": rng.randrange(8),
            "status": "OK",
            "replay_token": hashlib.sha256(b"r%d" % i).digest(),
            "input_hash": hashlib.sha256(b"i%d" % i).digest(),
            "loss": rng.random(),
            "diag": {"grad_norm_bits": rng.randrange(2**32), "phase": "fwd", "micro": i % 4},
        }
        for i in range(n)
    ]


# --- rejected alternatives (ADR 0004), not used by the library --------------------------------

_order: dict[tuple[Any, ...], list[Any]] = {}
_binary64 = struct.Struct(">Bd").pack


def _prepare(x: Any) -> Any:
    """Validate and sort in Python, leaving the byte writing to cbor2's C encoder."""
    t = type(x)
    if t is str or t is bytes or t is bool or x is None:
        return x
    if t is int:
        if -(2**64) <= x < 2**64:
            return x
        raise ValueError(x)
    if t is float:
        if x - x == 0.0:
            return x
        raise ValueError(x)  # non-finite would need a raw-bytes hook: cbor2 writes f97c00 etc.
    if t is dict:
        keys = tuple(x)
        order = _order.get(keys)
        if order is None:
            order = _order[keys] = sorted(keys, key=cbor2.dumps)
        return {k: _prepare(x[k]) for k in order}
    if t is list or t is tuple:
        return [_prepare(v) for v in x]
    raise TypeError(type(x))


def _prepared_cbor2(x: Any) -> bytes:
    return cbor2.dumps(_prepare(x))


def _check_only(x: Any) -> None:
    t = type(x)
    if t is dict:
        for k, v in x.items():
            if type(k) is not str:
                raise TypeError(k)
            _check_only(v)
    elif t is list:
        for v in x:
            _check_only(v)
    elif t is int and not -(2**64) <= x < 2**64:
        raise ValueError(x)


def _checked_cbor2_canonical(x: Any) -> bytes:
    """Validate in Python, then cbor2 canonical mode with a binary64 float hook.

    Only correct for text keys: cbor2 sorts keys length-first (RFC 7049), not bytewise.
    """
    _check_only(x)
    return cbor2.dumps(
        x, canonical=True, encoders={float: lambda enc, v: enc.write(_binary64(0xFB, v))}
    )


# --- measurement -------------------------------------------------------------------------------


def _interleaved(repeat: int, contenders: dict[str, Callable[[], object]]) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def run(repeat: int, n_records: int) -> dict[str, Any]:
    records = trace_records(n_records)
    blobs = [encode(r) for r in records]
    assert [decode(b) for b in blobs] == records
    assert [_prepared_cbor2(r) for r in records] == blobs
    assert [_checked_cbor2_canonical(r) for r in records] == blobs

    rec = _interleaved(
        repeat,
        {
            "cbor2.dumps": lambda: [cbor2.dumps(r) for r in records],
            "encode": lambda: [encode(r) for r in records],
            "alt: prepare + cbor2.dumps": lambda: [_prepared_cbor2(r) for r in records],
            "alt: check + cbor2 canonical": lambda: [_checked_cbor2_canonical(r) for r in records],
            "cbor2.loads": lambda: [cbor2.loads(b) for b in blobs],
            "decode": lambda: [decode(b) for b in blobs],
            "alt: strict decoder only": lambda: [decode_strict(b) for b in blobs],
            "sha256(cbor2.dumps)": lambda: [
                hashlib.sha256(cbor2.dumps(r)).digest() for r in records
            ],
            "digest": lambda: [digest(r) for r in records],
        },
    )
    payload = os.urandom(PAYLOAD_BYTES)
    assert digest(payload) == hashlib.sha256(encode(payload)).digest()
    big = _interleaved(
        repeat,
        {
            "hashlib.sha256": lambda: hashlib.sha256(payload).digest(),
            "digest": lambda: digest(payload),
            "digest({'blob': ...})": lambda: digest({"blob": payload}),
            "alt: sha256(encode(...))": lambda: hashlib.sha256(encode(payload)).digest(),
        },
    )

    def per_record(name: str) -> float:
        return rec[name] / n_records * 1e6

    rows = [
        ("encode", "cbor2.dumps"),
        ("alt: prepare + cbor2.dumps", "cbor2.dumps"),
        ("alt: check + cbor2 canonical", "cbor2.dumps"),
        ("decode", "cbor2.loads"),
        ("alt: strict decoder only", "cbor2.loads"),
        ("digest", "sha256(cbor2.dumps)"),
    ]
    big_rows = [
        ("digest", "hashlib.sha256"),
        ("digest({'blob': ...})", "hashlib.sha256"),
        ("alt: sha256(encode(...))", "hashlib.sha256"),
    ]
    return {
        "machine": {
            "python": platform.python_version(),
            "cbor2": _version("cbor2"),
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "repeat": repeat,
        "records": n_records,
        "records_us_per_record": {
            name: {
                "ours": per_record(name),
                "baseline": baseline,
                "baseline_us": per_record(baseline),
                "ratio": rec[name] / rec[baseline],
            }
            for name, baseline in rows
        },
        "payload_64mib_ms": {
            name: {
                "ours": big[name] * 1e3,
                "baseline": baseline,
                "baseline_ms": big[baseline] * 1e3,
                "ratio": big[name] / big[baseline],
            }
            for name, baseline in big_rows
        },
    }


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _table(results: dict[str, Any]) -> str:
    lines = [
        f"python {results['machine']['python']}, cbor2 {results['machine']['cbor2']}, "
        f"{results['machine']['cpu_count']} CPUs; median of {results['repeat']} runs",
        "",
        f"(a) {results['records']} trace-like records, µs per record",
        f"{'ours':34} {'µs':>8}   {'baseline':22} {'µs':>8}   {'ratio':>6}",
    ]
    for name, row in results["records_us_per_record"].items():
        lines.append(
            f"{name:34} {row['ours']:8.2f}   {row['baseline']:22} {row['baseline_us']:8.2f}"
            f"   {row['ratio']:6.2f}"
        )
    lines += [
        "",
        "(b) 64 MiB byte string, ms",
        f"{'ours':34} {'ms':>8}   {'baseline':22} {'ms':>8}   {'ratio':>6}",
    ]
    for name, row in results["payload_64mib_ms"].items():
        lines.append(
            f"{name:34} {row['ours']:8.1f}   {row['baseline']:22} {row['baseline_ms']:8.1f}"
            f"   {row['ratio']:6.3f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--repeat", type=int, default=11, help="repetitions (median reported)")
    parser.add_argument("--records", type=int, default=2000, help="records per batch")
    args = parser.parse_args()
    results = run(args.repeat, args.records)
    print(json.dumps(results, indent=2) if args.json else _table(results))


if __name__ == "__main__":
    main()
