"""Bit-exact numpy reference model of the unified compression PE array.

The golden model implements ``shared/SPEC.md`` and ``docs/NUMERICS.md``: element formats
(`golden.formats`), N:M sparsity (`golden.sparsity`), quantizers (`golden.quant`), the layer
file (`golden.layer`), the compressor (`golden.compress`), the GEMM and output stage
(`golden.gemm`) and metrics (`golden.metrics`). It depends on numpy, ml_dtypes and safetensors
only, never on the hardware packages. Command line: ``python -m golden --help``.
"""

from .compress import compress, compress_nvfp4, load_weights
from .formats import FORMATS, FormatInfo, decode, decode_float, e8m0_to_float, encode, float_to_e8m0
from .gemm import (  # the function gemm stays in golden.gemm: it would shadow the module
    dequantize_weights,
    gemm_float,
    gemm_raw,
    mac_weights,
    rdbpot,
    requantize,
    srdhm,
)
from .layer import Layer, LayerError, load_layer, save_layer, validate_layer
from .metrics import bits_floor, bits_per_weight, metadata_floor, sqnr_db
from .quant import (
    quantize_activations_int8,
    quantize_activations_mx,
    quantize_activations_mxint8,
)
from .sparsity import pack_nm, parse_sparsity, prune_nm, unpack_nm

__all__ = [
    "FORMATS",
    "FormatInfo",
    "Layer",
    "LayerError",
    "bits_floor",
    "bits_per_weight",
    "compress",
    "compress_nvfp4",
    "decode",
    "decode_float",
    "dequantize_weights",
    "e8m0_to_float",
    "encode",
    "float_to_e8m0",
    "gemm_float",
    "gemm_raw",
    "load_layer",
    "load_weights",
    "mac_weights",
    "metadata_floor",
    "pack_nm",
    "parse_sparsity",
    "prune_nm",
    "quantize_activations_int8",
    "quantize_activations_mx",
    "quantize_activations_mxint8",
    "rdbpot",
    "requantize",
    "save_layer",
    "sqnr_db",
    "srdhm",
    "unpack_nm",
    "validate_layer",
]
