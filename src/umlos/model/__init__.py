"""The model layer: IR validation and hashing, preset expansion, parameter init, backends.

>>> from umlos._generated.records import LinearPresetParams, ModelPresetLinear
>>> from umlos.model import expand_preset, validate_ir
>>> spec = ModelPresetLinear(preset_params=LinearPresetParams(in_features=4, out_features=3))
>>> v = validate_ir(expand_preset(spec, task_type="multiclass", dtype="float64"))
>>> [n.op.value for n in v.nodes]
['MATMUL', 'BIAS_ADD', 'CROSS_ENTROPY']
"""

from umlos.model.init import init_blocks_drawn, init_parameters, init_values, parameter_seed
from umlos.model.ir import LOSS_OPS, Attrs, Node, Op, ValidatedIR, Value, ir_hash, validate_ir
from umlos.model.presets import expand_preset

__all__ = [
    "LOSS_OPS",
    "Attrs",
    "Node",
    "Op",
    "ValidatedIR",
    "Value",
    "expand_preset",
    "init_blocks_drawn",
    "init_parameters",
    "init_values",
    "ir_hash",
    "parameter_seed",
    "validate_ir",
]
