"""The cocotb regression plan: which GEMMs run on which configuration, in shards.

Each configuration is built once; its cases are split into shards that run as separate
simulations (in parallel under ``pytest -n``). Every case is reproducible from the base seed
(``UPE_SEED``, logged) and its index.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from dataclasses import dataclass

import numpy as np

from gen.presets import preset
from golden.formats import E8M0_BIAS, pow2_weight_exponent
from golden.gemm import gemm
from golden.tables import MX_BLOCK, OUT_MULT_MAX, OUT_MULT_MIN, OUT_SHIFT_MAX, OUT_SHIFT_MIN
from hw.config import FORMAT_SCALES, FORMAT_WMAX, FP8_FORMATS, ArrayConfig, Mode
from verif.cases import exhaustive_case, extreme_codes, random_case

__all__ = ["REGRESSION_CONFIGS", "base_seed", "plan", "shard_cases"]

#: The configurations of the regression (name → config).
REGRESSION_CONFIGS: dict[str, ArrayConfig] = {
    "tiny": preset("tiny"),
    "default": preset("default"),
    "dense_int8": preset("dense_int8"),
    "nonsquare_3x5": preset("tiny").replace(rows=3, cols=5, name="upe_3x5"),
    "mxfp8": preset("mxfp8"),
    "gptq2": preset("gptq2"),
}
SHARDS = {"tiny": 3, "default": 4, "dense_int8": 1, "nonsquare_3x5": 2, "mxfp8": 2, "gptq2": 1}

#: Traffic patterns: (act valid, weight valid, prm valid, result ready), cycled per case.
TRAFFIC = [
    ((1,), (1,), (1,), (1,)),                    # full rate
    ((1, 1, 0), (1, 0, 1, 1), (0, 1), (1, 0, 0)),  # idle inputs and heavy backpressure
    ((1,), (1,), (1,), (0, 0, 0, 1)),            # result stream mostly stalled
    ((0, 1), (1, 1, 1, 0), (1,), (1, 1, 0)),
]


def base_seed() -> int:
    """Base seed of the regressions: ``UPE_SEED`` or the fixed default."""
    return int(os.environ.get("UPE_SEED", "20261129"))


@dataclass(frozen=True)
class PlannedCase:
    index: int
    mode: Mode
    M: int
    K: int
    N: int
    group: int | None
    traffic: int
    flags: tuple = ()
    reset_mid: bool = False

    @property
    def name(self) -> str:
        g = f"-g{self.group}" if self.group else ""
        extra = "".join(f"-{f}" for f in self.flags) + ("-reset" if self.reset_mid else "")
        return f"{self.index:03d}-{self.mode.name}{g}-{self.M}x{self.K}x{self.N}{extra}"


def _groups(cfg: ArrayConfig, mode: Mode, K: int) -> list[int | None]:
    """Group sizes to exercise for a mode: per-channel and the smaller groups that fit."""
    if mode.scale_kind == "pow2":
        return [MX_BLOCK]
    step = cfg.step_k(mode.fmt, mode.sparsity)
    out = [None]  # per channel (G = K)
    for g in (32, 64):
        if g % step == 0 and K % g == 0 and g < K:
            out.append(g)
    return out


def plan(cfg_name: str) -> list[PlannedCase]:  # noqa: C901 - a flat list of scenarios
    """Every enabled mode × group size × output stage, with edge shapes and traffic."""
    cfg = REGRESSION_CONFIGS[cfg_name]
    rows, cols = cfg.rows, cfg.cols
    shapes = itertools.cycle([
        (rows + 1, 128, cols + 1),          # M and N do not tile
        (2 * rows, 64, 2 * cols),           # they do
        (1, 96, cols),                      # one token (decode)
        (rows, 192, 1),                     # one output column
    ])
    cases: list[PlannedCase] = []
    traffic = itertools.cycle(range(len(TRAFFIC)))
    for mode in cfg.modes:
        stages = ["raw"]
        if cfg.requant:
            stages.append("requant")
        for stage in stages:
            m = dataclasses.replace(mode, out_stage=stage)
            M, K, N = next(shapes)
            groups = _groups(cfg, m, K)
            if stage == "requant" and mode.scale_kind == "none":
                groups = groups[:2]  # per channel and one grouped: the cross needs no more
            for g in groups:
                cases.append(PlannedCase(len(cases), m, M, K, N, g, next(traffic)))
    # Error-flag scenarios and reset in the middle of a GEMM.
    specials = []
    if "ternary" in cfg.formats:
        # Dense puts codes on every quarter of a slot, N:M modes on the lower-ranked ones only
        # (hw.lanemap): both, so the invalid code reaches every lane position.
        for pattern in dict.fromkeys(p for p in ("dense", cfg.sparsity[-1]) if p in cfg.sparsity):
            specials.append((Mode("ternary", pattern, cfg.scale_kinds[0]), ("invalid_codes",)))
    patterns = list(dict.fromkeys(p for p in ("dense", cfg.sparsity[-1]) if p in cfg.sparsity))
    for fmt in (f for f in cfg.formats if f in FP8_FORMATS):
        # NaN and Inf codes, on the dense and the N:M lane positions.
        for pattern in patterns:
            specials.append((Mode(fmt, pattern, cfg.scale_kinds[-1]), ("invalid_codes",)))
    for x_format in cfg.fp8_activations:
        # NaN and Inf activation codes, with the first weight format they pair with.
        fmt = next(f for f, x in cfg.x_pairs if x == x_format)
        for pattern in patterns:
            specials.append((Mode(fmt, pattern, "pow2", mx_act=True, x_format=x_format),
                             ("invalid_x",)))
    if "pow2" in cfg.scale_kinds:
        fmt = "fp4_e2m1" if "fp4_e2m1" in cfg.formats else cfg.formats[0]
        specials.append((Mode(fmt, "dense", "pow2"), ("nan_scale",)))
        specials.append((Mode(cfg.formats[0], "dense", "pow2"), ("window_overflow",)))
        if cfg.mx_activations:
            specials.append((Mode(cfg.formats[-1], "dense", "pow2", mx_act=True), ("nan_exp",)))
        specials.append((Mode(cfg.formats[0], "dense", "pow2"), ("window_underflow",)))
    for mode, flags in specials:
        cases.append(PlannedCase(len(cases), mode, rows + 1, 64, cols, None, 1, flags))
    # pow2 exponents exactly at both ends of the window, per format, with and without MXINT8
    # activations (group 0 at t_min, group 1 at t_max).
    for mode in cfg.modes:
        if mode.scale_kind == "pow2" and mode.sparsity == "dense" and mode.out_stage == "raw":
            cases.append(PlannedCase(len(cases), mode, rows + 1, 64, cols, None,
                                     len(cases) % len(TRAFFIC), ("t_edges",)))
    # Control edges: single-beat tiles (k_beats = group_beats = 1, every beat is a tile's last
    # and is held while the previous tile drains), single-beat groups, K = k_max with the
    # accumulator driven to its derived bound.
    first = cfg.modes[0]
    step = cfg.step_k(first.fmt, first.sparsity)
    cases.append(PlannedCase(len(cases), first, 2 * rows + 1, step, 2 * cols + 1, None, 0))
    cases.append(PlannedCase(len(cases), first, 2 * rows, step, cols, None, 1))
    int_modes = [m for m in cfg.modes if m.scale_kind == "int"]
    if int_modes:
        m = int_modes[-1]
        m = Mode(m.fmt, m.sparsity, "int", out_stage="requant" if cfg.requant else "raw")
        step = cfg.step_k(m.fmt, m.sparsity)
        cases.append(PlannedCase(len(cases), m, rows + 1, step, cols, None, 2))
        cases.append(PlannedCase(len(cases), m, rows, 8 * step, cols + 1, step, 3))
    # Requant parameters at the ends of their ranges (shift -31 and 30, M0 both ends).
    if cfg.requant:
        for m in cfg.modes:
            if m.scale_kind in ("int", "pow2") and m.sparsity == "dense" and not m.mx_act:
                cases.append(PlannedCase(len(cases), Mode(m.fmt, "dense", m.scale_kind,
                                                          out_stage="requant"),
                                         rows + 1, 64, cols + 1, None, 1, ("requant_edges",)))
                break
    # The format with the largest |value| drives the accumulator to its derived bound.
    fmt = max(cfg.formats, key=lambda f: FORMAT_WMAX[f])
    kind = "pow2" if "pow2" in FORMAT_SCALES[fmt] and "pow2" in cfg.scale_kinds else (
        "int" if "int" in cfg.scale_kinds else "none")
    cases.append(PlannedCase(len(cases), Mode(fmt, "dense", kind), rows, cfg.k_max, cols,
                             None, 0, ("acc_extreme",)))
    if cfg_name in ("default", "mxfp8", "gptq2"):
        for fmt in cfg.formats:
            if fmt != "mxint8":  # same decoder path as int8
                cases.append(PlannedCase(len(cases), Mode(fmt), 16, cfg.k_max, 16, None, 0,
                                         ("exhaustive",)))
    for i, mode in enumerate(cfg.modes[:: max(len(cfg.modes) // 3, 1)]):
        cases.append(PlannedCase(len(cases), mode, 2 * rows, 256, cols, None, i % len(TRAFFIC),
                                 reset_mid=True))
    return cases


def shard_cases(cfg_name: str, shard: int) -> list[PlannedCase]:
    """The planned cases of one shard."""
    n = SHARDS[cfg_name]
    return [c for c in plan(cfg_name) if c.index % n == shard]


#: Flags handled here (by editing a random case) rather than by `verif.cases.random_case`.
_EDITED_FLAGS = ("t_edges", "window_underflow", "acc_extreme", "requant_edges")
#: Flags whose scenario must raise an error flag.
_ERROR_FLAGS = ("invalid_codes", "invalid_x", "nan_scale", "window_overflow", "nan_exp",
                "window_underflow")


def _pow2_exponent(cfg: ArrayConfig, mode: Mode, t: int) -> int:
    """E8M0 weight exponent giving ``t`` with an activation exponent of 127."""
    return int(pow2_weight_exponent(mode.fmt, t, E8M0_BIAS if mode.mx_act else None,
                                    mode.activation_format))


def _edit_case(cfg: ArrayConfig, case: PlannedCase, layer, x, x_exp):
    """Apply the edge scenarios `verif.cases` does not generate itself."""
    if "t_edges" in case.flags:
        scales = layer.scales.copy()
        scales[0] = _pow2_exponent(cfg, case.mode, cfg.t_min)
        scales[-1] = _pow2_exponent(cfg, case.mode, cfg.t_max)
        layer = layer.copy(scales=scales)
        if x_exp is not None:
            x_exp = x_exp.copy()
            x_exp[:, 0] = x_exp[:, -1] = E8M0_BIAS
    if "window_underflow" in case.flags:
        scales = layer.scales.copy()
        scales[-1, 0] = _pow2_exponent(cfg, case.mode, cfg.t_min - 1)
        layer = layer.copy(scales=scales)
    if "requant_edges" in case.flags:
        shift = layer.out_shift.copy()
        shift[0], shift[-1] = OUT_SHIFT_MIN, OUT_SHIFT_MAX
        mult = layer.out_mult.copy()
        mult[0], mult[-1] = OUT_MULT_MAX, OUT_MULT_MIN
        layer = layer.copy(out_shift=shift, out_mult=mult)
    if "acc_extreme" in case.flags:
        # Every product at its largest magnitude, both signs (column parity), the scale at its
        # extreme: the accumulator reaches the bound its width was derived from.
        x = np.full_like(x, -128)
        lo, hi = extreme_codes(layer.format)
        codes = np.where(np.arange(layer.shape[1]) % 2 == 0, lo, hi)
        layer = layer.copy(codes=np.broadcast_to(codes, layer.codes.shape).astype(np.uint8))
        if layer.scale_kind == "int":
            layer = layer.copy(scales=np.full_like(layer.scales, -(1 << (cfg.scale_bits - 1))))
        elif layer.scale_kind == "pow2":
            layer = layer.copy(scales=np.full_like(
                layer.scales, _pow2_exponent(cfg, case.mode, cfg.t_max)))
    return layer, x, x_exp


def materialize(cfg: ArrayConfig, case: PlannedCase, seed: int) -> dict:
    """Random data and the golden result of one planned case."""
    if "exhaustive" in case.flags:
        layer, x, x_exp = exhaustive_case(cfg, case.mode.fmt, M=case.M, K=case.K, N=case.N)
    else:
        kw = {f: True for f in case.flags if f not in _EDITED_FLAGS}
        layer, x, x_exp = random_case(seed + case.index, cfg, case.mode, case.M, case.K,
                                      case.N, group=case.group, **kw)
        layer, x, x_exp = _edit_case(cfg, case, layer, x, x_exp)
    y, err = gemm(x, layer, x_exp=x_exp, x_format=case.mode.activation_format,
                  frac_bits=cfg.frac_bits, t_min=cfg.t_min, t_max=cfg.t_max,
                  out_stage=case.mode.out_stage)
    if any(f in _ERROR_FLAGS for f in case.flags):
        assert err.any(), f"{case.name}: the scenario should raise an error flag"
    if "acc_extreme" in case.flags:
        assert np.abs(y).max() >= 1 << (cfg.acc_bits - 3), f"{case.name}: bound not reached"
    act_p, wgt_p, prm_p, out_p = TRAFFIC[case.traffic]
    return {"name": case.name, "layer": layer, "x": x, "x_exp": x_exp, "y": y,
            "err": np.asarray(err, bool), "out_stage": case.mode.out_stage,
            "in_pattern": list(act_p), "wgt_pattern": list(wgt_p), "prm_pattern": list(prm_p),
            "out_pattern": list(out_p), "reset_mid": case.reset_mid,
            "x_format": case.mode.activation_format}
