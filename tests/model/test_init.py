"""Parameter initialisation: per-parameter Philox streams keyed by (compute_seed, name), pinned
values, distributions, and the blocks-drawn count."""

from __future__ import annotations

import hashlib
import math

import cbor2
import numpy as np
import pytest

from umlos._generated.records import (
    IrInitConstant,
    IrInitNormal,
    IrInitUniformFanIn,
    IrParameter,
    ModelPresetTinyTransformer,
    TinyTransformerPresetParams,
)
from umlos._generated.tags import THETA_INIT_SEED
from umlos.model import (
    expand_preset,
    init_blocks_drawn,
    init_parameters,
    init_values,
    parameter_seed,
    validate_ir,
)
from umlos.numerics import PhiloxStream, uniform_f64

SEED = bytes(range(32))
SPEC = ModelPresetTinyTransformer(
    preset_params=TinyTransformerPresetParams(
        vocab_size=8, seq_len=4, d_model=8, heads=2, layers=1, ffn_dim=16, out_features=3
    )
)


def _ir(dtype: str = "float64"):  # type: ignore[no-untyped-def]
    return expand_preset(SPEC, task_type="multiclass", dtype=dtype)  # type: ignore[arg-type]


def test_seed_is_the_tagged_commitment_prefix() -> None:
    # Independent of umlos.codec: canonical CBOR via cbor2, then SHA-256.
    expected = hashlib.sha256(
        cbor2.dumps([THETA_INIT_SEED, [SEED, "h0.attn.wq"]], canonical=True)
    ).digest()
    assert parameter_seed(SEED, "h0.attn.wq") == expected[:16]
    assert parameter_seed(SEED, "h0.attn.wq").hex() == "37e726ab1870b881806abf62097b12f8"


def test_pinned_values() -> None:
    p = init_parameters(_ir(), SEED)
    assert p["tok_emb.weight"].ravel()[:3].tolist() == [
        -0.030696322217494534,
        -0.007423467579357875,
        0.0020552132515764287,
    ]
    assert p["h0.attn.wq"].ravel()[:3].tolist() == [
        0.17584872169766036,
        -0.02596872211195578,
        -0.3051235206203398,
    ]
    assert p["head.bias"].ravel()[:3].tolist() == [
        0.16607131907264555,
        -0.06302808797830158,
        0.08244467036159057,
    ]
    assert (p["h0.ln1.weight"] == 1.0).all() and (p["h0.ln1.bias"] == 0.0).all()


def test_uniform_fan_in_formula() -> None:
    param = IrParameter(name="w", shape=(3, 5), dtype="float64", init=IrInitUniformFanIn(fan_in=7))
    u, _ = uniform_f64(PhiloxStream.from_seed(parameter_seed(SEED, "w")), 15)
    expected = ((1.0 / math.sqrt(7)) * (2.0 * u - 1.0)).reshape(3, 5)
    np.testing.assert_array_equal(init_values(param, SEED), expected)


def test_distributions() -> None:
    bound = 1 / math.sqrt(16)
    w = init_values(
        IrParameter(
            name="w", shape=(200, 100), dtype="float64", init=IrInitUniformFanIn(fan_in=16)
        ),
        SEED,
    )
    assert -bound <= w.min() < -0.99 * bound and 0.99 * bound < w.max() < bound
    assert abs(w.mean()) < 0.01 * bound and abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound
    z = init_values(
        IrParameter(name="e", shape=(20000,), dtype="float64", init=IrInitNormal(std=0.02)), SEED
    )
    assert abs(z.mean()) < 0.001 and abs(z.std() - 0.02) < 0.0005
    c = init_values(
        IrParameter(name="c", shape=(2, 2), dtype="float32", init=IrInitConstant(value=-1.5)), SEED
    )
    assert c.dtype == np.float32 and (c == -1.5).all()


def test_deterministic_and_keyed_by_seed_and_name() -> None:
    a, b = init_parameters(_ir(), SEED), init_parameters(_ir(), SEED)
    assert list(a) == [p.name for p in _ir().parameters]  # registration order
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    other = init_parameters(_ir(), bytes(32))
    assert not np.array_equal(a["h0.attn.wq"], other["h0.attn.wq"])
    # Same shape and rule, different name: different stream.
    assert not np.array_equal(a["h0.attn.wq"], a["h0.attn.wk"])


def test_float32_is_the_binary64_draw_cast_once() -> None:
    p64, p32 = init_parameters(_ir("float64"), SEED), init_parameters(_ir("float32"), SEED)
    for name in p64:
        assert p32[name].dtype == np.float32
        np.testing.assert_array_equal(p32[name], p64[name].astype(np.float32))


def test_validated_ir_is_accepted() -> None:
    v = validate_ir(_ir())
    np.testing.assert_array_equal(
        init_parameters(v, SEED)["pos_emb"], init_parameters(_ir(), SEED)["pos_emb"]
    )


@pytest.mark.parametrize(("shape", "blocks"), [((1,), 1), ((2,), 1), ((3,), 2), ((4, 4), 8)])
def test_blocks_drawn(shape: tuple[int, ...], blocks: int) -> None:
    ir = _ir()
    one = IrParameter(name="w", shape=shape, dtype="float64", init=IrInitNormal(std=1.0))
    import dataclasses

    assert init_blocks_drawn(dataclasses.replace(ir, parameters=(one,))) == blocks
    const = IrParameter(name="w", shape=shape, dtype="float64", init=IrInitConstant(value=0.0))
    assert init_blocks_drawn(dataclasses.replace(ir, parameters=(const,))) == 0
    assert init_blocks_drawn(ir) == 354
