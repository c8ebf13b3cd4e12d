"""The cocotb regression plan: which GEMMs run on which configuration, in shards.

Each configuration is built once; its cases are split into shards that run as separate
simulations (in parallel under ``pytest -n``). Every case is reproducible from the base seed
(``UPE_SEED``, logged) and its index.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import numpy as np

from gen.config import MX_BLOCK, ArrayConfig, Mode, preset
from golden.gemm import gemm
from verif.cases import exhaustive_case, random_case

__all__ = ["REGRESSION_CONFIGS", "base_seed", "plan", "shard_cases"]

#: The configurations of the regression (name → config).
REGRESSION_CONFIGS: dict[str, ArrayConfig] = {
    "tiny": preset("tiny"),
    "default": preset("default"),
    "dense_int8": preset("dense_int8"),
    "nonsquare_3x5": preset("tiny").replace(rows=3, cols=5, name="upe_3x5"),
}
SHARDS = {"tiny": 3, "default": 4, "dense_int8": 1, "nonsquare_3x5": 2}

#: Traffic patterns: (act valid, weight valid, prm valid, result ready), cycled per case.
TRAFFIC = [
    ((1,), (1,), (1,), (1,)),                    # full rate
    ((1, 1, 0), (1, 0, 1, 1), (0, 1), (1, 0, 0)),  # idle inputs and heavy backpressure
    ((1,), (1,), (1,), (0, 0, 0, 1)),            # result stream mostly stalled
    ((0, 1), (1, 1, 1, 0), (1,), (1, 1, 0)),
]


def base_seed() -> int:
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


def plan(cfg_name: str) -> list[PlannedCase]:
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
        if cfg.requant and mode.scale_kind in ("int", "pow2"):
            stages.append("requant")
        for stage in stages:
            m = Mode(mode.fmt, mode.sparsity, mode.scale_kind, mode.mx_act, stage)
            M, K, N = next(shapes)
            for g in _groups(cfg, m, K):
                cases.append(PlannedCase(len(cases), m, M, K, N, g, next(traffic)))
    # Error-flag scenarios and reset in the middle of a GEMM.
    specials = []
    if "ternary" in cfg.formats:
        specials.append((Mode("ternary", cfg.sparsity[-1], cfg.scale_kinds[0]),
                         ("invalid_ternary",)))
    if "pow2" in cfg.scale_kinds:
        fmt = "fp4_e2m1" if "fp4_e2m1" in cfg.formats else cfg.formats[0]
        specials.append((Mode(fmt, "dense", "pow2"), ("nan_scale",)))
        specials.append((Mode(cfg.formats[0], "dense", "pow2"), ("window_overflow",)))
        if cfg.mx_activations:
            specials.append((Mode(cfg.formats[-1], "dense", "pow2", mx_act=True), ("nan_exp",)))
    for mode, flags in specials:
        cases.append(PlannedCase(len(cases), mode, rows + 1, 64, cols, None, 1, flags))
    if cfg_name == "default":
        for fmt in cfg.formats:
            if fmt != "mxint8":  # same decoder path as int8
                cases.append(PlannedCase(len(cases), Mode(fmt), 16, cfg.k_max, 16, None, 0,
                                         ("exhaustive",)))
    for i, mode in enumerate(cfg.modes[:: max(len(cfg.modes) // 3, 1)]):
        cases.append(PlannedCase(len(cases), mode, 2 * rows, 256, cols, None, i % len(TRAFFIC),
                                 reset_mid=True))
    return cases


def shard_cases(cfg_name: str, shard: int) -> list[PlannedCase]:
    n = SHARDS[cfg_name]
    return [c for c in plan(cfg_name) if c.index % n == shard]


def materialize(cfg: ArrayConfig, case: PlannedCase, seed: int) -> dict:
    """Random data and the golden result of one planned case."""
    if "exhaustive" in case.flags:
        layer, x, x_exp = exhaustive_case(cfg, case.mode.fmt, M=case.M, K=case.K, N=case.N)
    else:
        kw = {f: True for f in case.flags}
        layer, x, x_exp = random_case(seed + case.index, cfg, case.mode, case.M, case.K,
                                      case.N, group=case.group, **kw)
    y, err = gemm(x, layer, x_exp=x_exp, frac_bits=cfg.frac_bits, t_min=cfg.t_min,
                  t_max=cfg.t_max, out_stage=case.mode.out_stage)
    if case.flags and "exhaustive" not in case.flags:
        assert err.any(), f"{case.name}: the scenario should raise an error flag"
    act_p, wgt_p, prm_p, out_p = TRAFFIC[case.traffic]
    return {"name": case.name, "layer": layer, "x": x, "x_exp": x_exp, "y": y,
            "err": np.asarray(err, bool), "out_stage": case.mode.out_stage,
            "in_pattern": list(act_p), "wgt_pattern": list(wgt_p), "prm_pattern": list(prm_p),
            "out_pattern": list(out_p), "reset_mid": case.reset_mid}
