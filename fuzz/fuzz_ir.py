"""Fuzz ``parse_ir`` + ``validate_ir``. First byte 0: the rest is JSON (``json=True``);
1: canonical CBOR of the data model. Input that is not JSON/CBOR at all is skipped: those
decoders are not under test here (the CBOR one has its own harness)."""

from __future__ import annotations

import json

import _harness

from umlos.codec import decode, encode
from umlos.manifest import EXAMPLE_MANIFEST, loads_manifest
from umlos.model.ir import parse_ir, validate_ir
from umlos.train.run import model_ir


def one_input(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1:
        try:
            obj = decode(data[1:])
        except _harness.Error:
            return
        validate_ir(parse_ir(obj))
    else:
        try:
            obj = json.loads(data[1:])
        except (ValueError, RecursionError):
            return
        validate_ir(parse_ir(obj, json=True))


if __name__ == "__main__":
    _harness.committed_run()  # not needed, but keeps every harness' start-up alike
    mlp = "  preset: mlp\n  preset_params: {in_features: 4, hidden_sizes: [16], out_features: 3}"
    variants = {
        "mlp": mlp,
        "cnn": "  preset: basic_cnn\n  preset_params: {in_channels: 1, height: 8, width: 8, "
        "out_features: 10}",
        "transformer": "  preset: tiny_transformer\n  preset_params: {vocab_size: 256, "
        "seq_len: 8, d_model: 8, heads: 2, layers: 1, ffn_dim: 16, causal: true, "
        "out_features: 256}",
    }
    seeds = []
    for model in variants.values():
        ir = model_ir(loads_manifest(EXAMPLE_MANIFEST.replace(mlp, model)).manifest, "float32")
        seeds += [
            b"\x00" + json.dumps(ir.to_obj(json=True)).encode(),
            b"\x01" + encode(ir.to_obj()),
        ]
    _harness.main("ir", one_input, seeds)
