"""The grouped (MoE) GEMM on the RTL: one GEMM per expert, all in one in-band sequence.

The token rows routed to each expert (`golden.moe.expert_slots`) are gathered into one GEMM
with that expert's layer and mode; the GEMMs run back to back in one native simulation with
their modes as in-band descriptors (`verif.native.run_gemms_native`, ``inband=True``), and
the result rows are scattered back to token order. Experts without tokens are left out of the
stream. The result equals `golden.moe.grouped_gemm` bit for bit.
"""

from __future__ import annotations

import time

import numpy as np

from gen.pack import PackError
from golden.moe import check_experts, check_routing, expert_slots, out_stages
from golden.quant import MX_BLOCK
from hw.config import ArrayConfig, ConfigError, Mode
from verif.runner import RunError, RunResult, ideal_cycles, prepare_layer

__all__ = ["run_grouped"]


def run_grouped(cfg: ArrayConfig, experts: list, x: np.ndarray, routing, *, x_exp=None,
                out_stage="raw", traffic=None, sim: str = "verilator",
                progress=None) -> RunResult:
    """Run the grouped GEMM of ``experts`` on ``x`` routed by ``routing`` on the RTL.

    Parameters
    ----------
    cfg : ArrayConfig
        The configuration simulated (native harness).
    experts : list of Layer
        The experts, all [K, N]; modes may differ.
    x : ndarray of int8, shape (M, K)
        Activations of every token.
    routing : array_like of int, shape (M,) or (M, k)
        Expert index (indices) per token, as for `golden.moe.grouped_gemm`.
    x_exp : ndarray of uint8, shape (M, K/32), optional
        MXINT8 exponents, shared by every expert (all ``pow2``).
    out_stage : str or sequence of str
        ``raw`` or ``requant``, for all experts or one per expert.
    traffic : verif.native.Traffic, optional
        Valid/ready traffic (default full rate).

    Returns
    -------
    RunResult
        ``y`` and ``err`` shaped as `golden.moe.grouped_gemm` returns them; the report has
        ``total_cycles`` (first beat of the first GEMM to the last result row of the last),
        ``ideal_cycles`` (the sum over the GEMMs run) and one entry per expert.
    """
    from verif.native import run_gemms_native

    x = np.asarray(x)
    if x.ndim != 2 or x.dtype != np.int8:
        raise RunError(f"activations must be a 2-D int8 array, not {x.dtype} {x.shape}")
    M, K = x.shape
    try:
        stages = out_stages(out_stage, len(experts))
        check_experts(experts, K, stages, x_exp)
        r = check_routing(routing, len(experts), M)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    if x_exp is not None and (x_exp.ndim != 2 or x_exp.shape != (M, K // MX_BLOCK)):
        raise RunError(f"x_exp must have shape ({M}, {K // MX_BLOCK}), got {x_exp.shape}")
    k, N = r.shape[1], int(experts[0].shape[1])
    t0 = time.monotonic()
    gemms, entries = [], []
    for e, slots in enumerate(expert_slots(r, len(experts))):
        layer, stage = experts[e], stages[e]
        mode = Mode(layer.format, layer.sparsity, layer.scale_kind, mx_act=x_exp is not None,
                    out_stage=stage)
        entry = {"expert": e, "mode": mode.name, "tokens": int(slots.size)}
        entries.append(entry)
        if slots.size == 0:
            continue
        if layer.bias is not None and stage == "requant":
            b = np.asarray(layer.bias, np.int64)
            if b.min(initial=0) < -(1 << 31) or b.max(initial=0) >= 1 << 31:
                raise RunError(f"expert {e}: layer key 'bias': the hardware's bias is int32; "
                               "values exceed it")
        tokens = slots // k
        padded, xp = prepare_layer(cfg, layer, x[tokens])
        try:
            cfg.check_mode(mode, group=int(padded.group), k=int(padded.shape[0]))
        except ConfigError as exc:
            raise RunError(f"this configuration ({cfg.name}) cannot run expert {e}: "
                           f"{exc}") from None
        gemms.append({"layer": padded, "x": xp, "out_stage": stage, "slots": slots,
                      "x_exp": None if x_exp is None else x_exp[tokens], "entry": entry})
        entry["ideal_cycles"] = ideal_cycles(cfg, mode, int(slots.size), N, K)
    if progress:
        progress(f"model {cfg.name} ({cfg.rows}x{cfg.cols}, {sim}); {len(gemms)} expert GEMMs "
                 f"in one in-band sequence")
    try:
        out = run_gemms_native(cfg, gemms, traffic=traffic, sim=sim, inband=True,
                               quiet=progress is None)
    except PackError as exc:
        raise RunError(f"this configuration ({cfg.name}) cannot run the experts: {exc}") from None
    dtype = np.int8 if all(s == "requant" for s in stages) else np.int64
    y = np.zeros((M * k, N), dtype)
    err = np.zeros((M * k, N), bool)
    for g, (ye, erre), cycles, beats in zip(gemms, out["results"], out["cycles"], out["beats"],
                                            strict=True):
        y[g["slots"]] = ye
        err[g["slots"]] = erre
        g["entry"].update(cycles=int(cycles), beats=int(beats))
    shape = (M, N) if np.ndim(routing) == 1 else (M, k, N)
    ideal = sum(g["entry"]["ideal_cycles"] for g in gemms)
    total = int(out["total_cycles"])
    report = {
        "preset": cfg.name, "grouped": True, "experts": entries, "M": M, "N": N, "K": K,
        "top_k": k, "rows": cfg.rows, "cols": cfg.cols, "gemms": len(gemms),
        "skipped_experts": [e["expert"] for e in entries if e["tokens"] == 0],
        "total_cycles": total, "ideal_cycles": ideal,
        "sum_expert_cycles": sum(g["entry"]["cycles"] for g in gemms),
        "utilization": ideal / total if total else 0.0,
        "beats": sum(out["beats"]), "errors": int(err.sum()), "engine": "native", "sim": sim,
        "traffic": None if traffic is None else traffic.to_dict(),
        "wall_seconds": round(time.monotonic() - t0, 2),
        "sim_seconds": round(out["sim_seconds"], 3),
    }
    return RunResult(y=y.reshape(shape), err=err.reshape(shape), report=report)
