"""Throughput of umlos.numerics against numpy's own generator and summation.

Usage: ``python bench/bench_numerics.py [--json] [--repeat N]``. Times are the best of N runs
(wall clock, one process, whatever threads numpy uses); ratios are ours / baseline, so a ratio
above 1 means we are slower. Results go into ADR 0005.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from umlos.numerics import (
    PhiloxStream,
    blocks,
    bounded_ints,
    fixed_sum,
    normal_f64,
    permutation,
    uniform_f64,
)

PHILOX_BLOCKS = 1 << 20
SUM_SIZE = 10**7
SEED = bytes(range(16))


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(repeat: int) -> dict[str, Any]:
    stream = PhiloxStream.from_seed(SEED)
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        }
    }

    ours = best_of(repeat, lambda: blocks(stream, PHILOX_BLOCKS))
    gen = np.random.Generator(np.random.Philox(1234))
    theirs = best_of(
        repeat, lambda: gen.integers(0, 2**32, size=4 * PHILOX_BLOCKS, dtype=np.uint32)
    )
    results["philox"] = {
        "blocks": PHILOX_BLOCKS,
        "umlos_s": ours,
        "umlos_blocks_per_s": PHILOX_BLOCKS / ours,
        "numpy_philox4x64_integers_s": theirs,
        "numpy_blocks_per_s": PHILOX_BLOCKS / theirs,
        "ratio_umlos_over_numpy": ours / theirs,
    }

    n = PHILOX_BLOCKS
    results["transforms"] = {
        "values": n,
        "uniform_f64_s": best_of(repeat, lambda: uniform_f64(stream, n)),
        "numpy_random_f64_s": best_of(repeat, lambda: gen.random(n)),
        "normal_f64_s": best_of(repeat, lambda: normal_f64(stream, n)),
        "numpy_standard_normal_s": best_of(repeat, lambda: gen.standard_normal(n)),
        "bounded_ints_1000003_s": best_of(repeat, lambda: bounded_ints(stream, 1000003, n)),
        "numpy_integers_1000003_s": best_of(repeat, lambda: gen.integers(0, 1000003, n)),
        "permutation_100000_s": best_of(repeat, lambda: permutation(stream, 100_000)),
        "numpy_permutation_100000_s": best_of(repeat, lambda: gen.permutation(100_000)),
    }

    x = np.random.default_rng(0).standard_normal(SUM_SIZE).astype(np.float32)
    ours_sum = best_of(repeat, lambda: fixed_sum(x))
    np_sum = best_of(repeat, lambda: np.sum(x, dtype=np.float64))
    fsum = best_of(1, lambda: math.fsum(x.tolist()))  # includes the list conversion it needs
    exact = math.fsum(x.tolist())
    got = fixed_sum(x)
    results["fixed_sum"] = {
        "values": SUM_SIZE,
        "dtype": "float32",
        "umlos_s": ours_sum,
        "umlos_values_per_s": SUM_SIZE / ours_sum,
        "numpy_sum_f64_s": np_sum,
        "math_fsum_s": fsum,
        "ratio_umlos_over_numpy": ours_sum / np_sum,
        "ratio_umlos_over_fsum": ours_sum / fsum,
        "error_ulps_vs_fsum": abs(got - exact) / math.ulp(exact),
        "numpy_error_ulps_vs_fsum": abs(float(np.sum(x, dtype=np.float64)) - exact)
        / math.ulp(exact),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (best kept)")
    args = parser.parse_args()
    r = run(args.repeat)
    if args.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return
    m, p, t, s = r["machine"], r["philox"], r["transforms"], r["fixed_sum"]
    ms = 1e3
    print(f"python {m['python']}, numpy {m['numpy']}, {m['cpu_count']} CPUs, {m['processor']}")
    print(f"Philox4x32-10, {p['blocks']} blocks:")
    rate = p["umlos_blocks_per_s"] / 1e6
    print(f"  umlos  {p['umlos_s'] * ms:8.1f} ms  {rate:6.1f} M blocks/s")
    rate = p["numpy_blocks_per_s"] / 1e6
    what = "Philox4x64 .integers, same number of u32 words"
    print(
        f"  numpy  {p['numpy_philox4x64_integers_s'] * ms:8.1f} ms  {rate:6.1f} M blocks/s ({what})"
    )
    print(f"  ratio umlos/numpy {p['ratio_umlos_over_numpy']:.2f}")
    print(f"Transforms, {t['values']} values (umlos vs numpy Generator):")
    for ours, theirs in [
        ("uniform_f64_s", "numpy_random_f64_s"),
        ("normal_f64_s", "numpy_standard_normal_s"),
        ("bounded_ints_1000003_s", "numpy_integers_1000003_s"),
        ("permutation_100000_s", "numpy_permutation_100000_s"),
    ]:
        a, b = t[ours] * ms, t[theirs] * ms
        print(f"  {ours[:-2]:22s} {a:8.1f} ms vs {b:7.1f} ms  ratio {a / b:.1f}")
    print(f"fixed_sum, {s['values']} float32 values:")
    err, np_err = s["error_ulps_vs_fsum"], s["numpy_error_ulps_vs_fsum"]
    print(f"  umlos   {s['umlos_s'] * ms:8.1f} ms  ({err:.0f} ulp from fsum)")
    print(f"  np.sum  {s['numpy_sum_f64_s'] * ms:8.1f} ms  ({np_err:.0f} ulp from fsum)")
    print(f"  fsum    {s['math_fsum_s'] * ms:8.1f} ms  (including tolist)")
    ratio_np, ratio_fsum = s["ratio_umlos_over_numpy"], s["ratio_umlos_over_fsum"]
    print(f"  ratio umlos/np.sum {ratio_np:.1f}, umlos/fsum {ratio_fsum:.2f}")


if __name__ == "__main__":
    main()
