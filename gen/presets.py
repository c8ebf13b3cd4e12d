"""Named configurations of the array (``--preset``)."""

from __future__ import annotations

from hw.config import ArrayConfig, ConfigError

__all__ = ["PRESETS", "preset"]

PRESETS: dict[str, ArrayConfig] = {
    # 2×2, every mode, small K: fast tests. Every 8- and 4-bit lane on a DSP (44 of 156 with
    # the scalers and requant).
    "tiny": ArrayConfig(rows=2, cols=2, slots=4, window=16, k_max=1024, dsp_lanes=8,
                        name="upe_tiny"),
    # 4×4, every mode: int4/fp4 and 2:4 at 2×, int2/ternary and 2:4+int4 at 4× dense int8.
    # Seven lanes per PE on DSPs (the int8 lanes and three 4-bit ones): with the scalers and
    # requant 144 of ECP5-85k's 156 (docs/PERFORMANCE.md: about 1 700 LUTs fewer than six).
    "default": ArrayConfig(rows=4, cols=4, slots=4, window=16, dsp_lanes=7,
                           name="upe_default"),
    # The baseline: same array, compression off.
    "dense_int8": ArrayConfig(
        rows=4, cols=4, slots=4, window=4, formats=("int8",), sparsity=("dense",),
        scale_kinds=("none", "int"), mx_activations=False, name="upe_dense_int8"),
    # BitNet b1.58: ternary weights, per-tensor/per-channel int scales.
    "bitnet_ternary": ArrayConfig(
        rows=4, cols=4, slots=4, window=16, formats=("ternary",), sparsity=("dense",),
        scale_kinds=("int",), mx_activations=False, name="upe_bitnet_ternary"),
    # OCP MXFP4 weights with int8 or MXINT8 activations.
    "mxfp4": ArrayConfig(
        rows=4, cols=4, slots=4, window=8, formats=("fp4_e2m1",), sparsity=("dense",),
        scale_kinds=("pow2",), mx_activations=True, name="upe_mxfp4"),
    # OCP MX with fp8: MXFP8 weights (E4M3, E5M2) and MXFP4 ones, dense and 2:4, with int8,
    # MXINT8 or MXFP8 (E4M3, E5M2) activations, every pair whose exact accumulator fits 64
    # bits (`ArrayConfig.x_pairs`: E4M3 × E4M3, MXFP4 × E4M3 / E5M2). No int scales (an E5M2
    # × int8 GEMM with K = 4096 and 16-bit scales would need a 67-bit accumulator). The pow2
    # window fits fp8 block exponents: t = (e_w − 127) + (e_x − 127) + adj_w + adj_x, with
    # adj −9 (E4M3), −16 (E5M2), −1 (FP4), −6 (MXINT8).
    "mxfp8": ArrayConfig(
        rows=4, cols=4, slots=4, window=8, formats=("fp4_e2m1", "fp8_e4m3", "fp8_e5m2"),
        sparsity=("dense", "2:4"), scale_kinds=("none", "pow2"), mx_activations=True,
        fp8_activations=("fp8_e4m3", "fp8_e5m2"), t_min=-64, t_max=-8, name="upe_mxfp8"),
    # NVFP4 (FP4 E2M1 elements, an E4M3 scale per 16 as an exact 19-bit int scale, SPEC §4;
    # the fp32 tensor scale goes to the requant multiplier or the host), dense and 2:4.
    "nvfp4": ArrayConfig(
        rows=4, cols=4, slots=4, window=8, formats=("fp4_e2m1",), sparsity=("dense", "2:4"),
        scale_kinds=("int",), scale_bits=20, mx_activations=False, name="upe_nvfp4"),
    # 2-bit weights: GPTQ-style asymmetric uint2 with zero points, int2 and ternary, at 4×
    # dense int8 (16 lanes per PE), with per-group int scales.
    "gptq2": ArrayConfig(
        rows=4, cols=4, slots=4, window=16, formats=("int2", "ternary", "uint2"),
        sparsity=("dense",), scale_kinds=("none", "int"), mx_activations=False,
        name="upe_gptq2"),
}


def preset(name: str) -> ArrayConfig:
    """The named preset configuration; ConfigError for unknown names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None
