"""Named numeric constants of the kernel's numeric policy.

Each constant says where its value comes from: ``kernel §0.x`` is the upstream kernel document
(summarised in ``spec/kernel.md`` §1.1), ``A36`` is decision A36 of ``spec/foundations.md`` §9,
``Random123`` is the published Philox reference. Changing any of them changes results bit for bit,
so each change is a MAJOR version bump of the numeric policy.

>>> from umlos.numerics import policy
>>> policy.REDUCTION_CHUNK
256
"""

from __future__ import annotations

from typing import Final

# Tolerances (kernel §0.A–0.E, binary64)
EPS_EQ: Final = 1e-10
"""Objective comparison slack: ``a ≼ b ⇔ a ≤ b + EPS_EQ`` (kernel §0.A)."""
EPS_DENOM: Final = 1e-12
"""Floor for every denominator: ``max(den, EPS_DENOM)`` (kernel §0.A)."""
EPS_PROB: Final = 1e-15
"""Probabilities are clamped to ``[EPS_PROB, 1]`` then renormalised (kernel §0.A)."""
EXP_ARG_CLAMP: Final = 80.0
"""``exp`` arguments are clamped to ``[-EXP_ARG_CLAMP, EXP_ARG_CLAMP]`` (kernel §0.A)."""

# Reductions (kernel §0.A "parallel reductions", decision D14)
REDUCTION_CHUNK: Final = 256
"""Critical sums are cut into fixed 256-element chunks in ascending global index (kernel §0.A)."""
CRITICAL_DTYPE: Final = "float64"
"""Loss, metrics, grad norms, fingerprints, DP accounting and all-reduce run in binary64."""

# Counters (kernel §0.A "counters")
UINT32_MAX: Final = 0xFFFF_FFFF
UINT64_MAX: Final = 0xFFFF_FFFF_FFFF_FFFF
"""Every uint64 counter, the RNG offset included, aborts on overflow; nothing wraps."""
UINT128_MAX: Final = (1 << 128) - 1
"""The Philox counter is 128 bits (4 × u32, word 0 least significant)."""

# Philox4x32-10 (Random123; foundations §6.3)
PHILOX_M0: Final = 0xD2511F53
PHILOX_M1: Final = 0xCD9E8D57
PHILOX_W0: Final = 0x9E3779B9
"""Key bump of key word 0 between rounds (golden ratio)."""
PHILOX_W1: Final = 0xBB67AE85
"""Key bump of key word 1 between rounds (sqrt(3) - 1)."""
PHILOX_ROUNDS: Final = 10

# RNG state and seeds (foundations §6.3, A36)
RNG_STATE_TAG: Final = "rng_state_v1"
"""First element of the checkpointed ``rng_state`` array (tag chosen by the project lead)."""
SEED_LENGTHS: Final = (16, 32)
"""Accepted seed sizes in bytes; a 32-byte seed maps through its first 16 bytes (A36)."""

# Bit-exact transforms (A36)
F32_MANTISSA_BITS: Final = 24
"""An f32 uniform keeps the top 24 bits of one word: ``(w >> 8) · 2^-24``."""
F64_MANTISSA_BITS: Final = 53
"""An f64 uniform joins 32 + 21 bits of two words: ``((wa << 21) | (wb >> 11)) · 2^-53``."""
BOUNDED_INT_MAX_BOUND: Final = 1 << 32
"""Largest ``n`` for a bounded draw in ``[0, n)`` from one 32-bit word (Lemire's method)."""
TWO_PI: Final = 6.283185307179586
"""The binary64 nearest to 2π (``2 * math.pi``); Box–Muller angle is ``TWO_PI * u2``."""
