"""Constants of the canonical-CBOR profile and the codec's limits.

See docs/formats/canonical-cbor.md for the profile these numbers belong to.
"""

from __future__ import annotations

from typing import Final

MAX_DEPTH: Final = 256
"""Most containers (arrays, maps, array keys) that may nest, in encoder and decoder alike.

The deepest contract schema nests fewer than 16 levels, so 256 leaves a wide margin, while the
recursive encoder and decoder (at most two Python frames per level) stay far below CPython's
default recursion limit of 1000. cbor2's own default is 400."""

UINT_MAX: Final = 2**64 - 1
"""Largest integer with a CBOR head (major type 0, 8-byte argument); RFC 8949 §3.1."""

NINT_MIN: Final = -(2**64)
"""Smallest integer with a CBOR head (major type 1, argument 2^64-1); RFC 8949 §3.1."""

CANONICAL_NAN: Final = bytes.fromhex("7ff8000000000000")
"""The one NaN bit pattern the profile admits (spec foundations §1.1, "Float specials")."""

STREAM_MIN: Final = 64 * 1024
"""Encoded parts at least this long are fed to SHA-256 in place instead of being joined first.

Joining copies (and for fresh large buffers, page-faults) the part, which measured about as slow
as hashing it; one extra ``update`` call costs well under 1 µs, nothing next to hashing 64 KiB."""

ORDER_CACHE_MAX: Final = 4096
"""Most distinct key tuples whose sorted order the encoder remembers; the cache is then cleared.

Trace and checkpoint records use a few dozen key sets, so this never fills in normal use; the bound
only stops maps with data-dependent keys from growing memory without limit."""

ORDER_CACHE_MAX_KEYS: Final = 64
"""Maps with more keys than this are data, not records: they are sorted each time, not cached."""
