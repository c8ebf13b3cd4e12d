"""The RTL runner: execute a compressed GEMM of any size on the simulated core.

M and N are tiled (and padded) by the packer; a per-channel K that is not a multiple of the
beat is padded with zero weights. The model is built once per configuration and cached.
Two engines run the same RTL: ``native`` (default; the Verilog harness of `verif.native`,
stimulus and results in files) and ``cocotb`` (the testbench `verif.tb_core`, with functional
coverage; about two orders of magnitude slower).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from gen.pack import Packer, PackError, fp8_activation_format
from golden.layer import Layer, pad_k
from hw.config import ArrayConfig, ConfigError, Mode

__all__ = ["ENGINES", "RunError", "RunResult", "prepare_layer", "run_layer", "ideal_cycles"]

ENGINES = ("native", "cocotb")


class RunError(ValueError):
    """A GEMM the runner cannot execute on this configuration (the message says why)."""


@dataclass
class RunResult:
    """A layer run on the RTL: results, error flags, cycles and the run's report."""

    y: np.ndarray
    err: np.ndarray
    report: dict


def ideal_cycles(cfg: ArrayConfig, mode: Mode, M: int, N: int, K: int) -> float:
    """``M·N·K / (rows·cols·peak MACs per PE per cycle in this mode)``."""
    return M * N * K / (cfg.rows * cfg.cols * cfg.step_k(mode.fmt, mode.sparsity))


def prepare_layer(cfg: ArrayConfig, layer: Layer, x: np.ndarray) -> tuple[Layer, np.ndarray]:
    """Pad a per-channel K up to a whole number of beats (zero weights, zero activations)."""
    K = int(layer.shape[0])
    if layer.format not in cfg.formats or layer.sparsity not in cfg.sparsity:
        return layer, x  # the packer names the problem
    step = cfg.step_k(layer.format, layer.sparsity)
    if K % step == 0 or int(layer.group) != K or layer.scale_kind == "pow2":
        return layer, x
    Kp = math.ceil(K / step) * step
    xp = np.zeros((x.shape[0], Kp), x.dtype)  # zero codes: int8 0, fp8 +0
    xp[:, :K] = x
    return pad_k(layer, Kp), xp


def _block_summary(layer: Layer) -> dict:
    """Block shape and kept fraction of a block-sparse layer for the report (else nothing)."""
    if layer.block_mask is None:
        return {}
    return {"block_shape": [int(v) for v in layer.block_shape],
            "block_density": float(np.mean(layer.block_mask != 0))}


def run_layer(cfg: ArrayConfig, layer: Layer, x: np.ndarray, *, x_exp=None,
              out_stage: str = "raw", waves: bool | str = False, progress=None,
              sim: str = "verilator", engine: str = "native", traffic=None,
              x_format: str | None = None) -> RunResult:
    """Run ``x @ layer`` on the RTL; return the result exactly as ``golden gemm`` would.

    ``x`` holds int8 activations, or MX element codes with ``x_exp``: ``x_format``
    ``'mxint8'`` (the default with ``x_exp``; int8 codes) or ``'fp8_e4m3'`` / ``'fp8_e5m2'``
    (uint8 codes), as `golden.gemm.gemm` takes them.

    ``engine`` is ``native`` or ``cocotb``; ``traffic`` (a `verif.native.Traffic`, default
    full rate) throttles the streams the same way on both. ``waves`` (cocotb engine only) may
    be a path: the FST waveform is written there (else kept in the report's ``waves`` entry
    only while the temporary run directory exists).
    """
    if engine not in ENGINES:
        raise RunError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if waves and engine != "cocotb":
        raise RunError("waveforms come from the cocotb engine (use --cocotb with --waves)")

    x = np.asarray(x)
    try:
        fp8 = fp8_activation_format(x, x_exp, x_format)
    except PackError as exc:
        raise RunError(str(exc)) from None
    K, N = (int(v) for v in layer.shape)
    if x.shape[1] != K:
        raise RunError(f"activations have K={x.shape[1]}, the layer has K={K}")
    M = x.shape[0]
    mode = Mode(layer.format, layer.sparsity, layer.scale_kind, mx_act=x_exp is not None,
                out_stage=out_stage, x_format=fp8)
    if layer.bias is not None and out_stage == "requant":
        b = np.asarray(layer.bias, np.int64)
        if b.min(initial=0) < -(1 << 31) or b.max(initial=0) >= 1 << 31:
            raise RunError("layer key 'bias': the hardware's bias is int32; values exceed it")
    padded, xp = prepare_layer(cfg, layer, x)
    try:
        step = cfg.check_mode(mode, group=int(padded.group), k=int(padded.shape[0]))
        # The native engine packs into files itself (each row and column tile once).
        prog = (Packer(cfg).pack(padded, xp, x_exp=x_exp, out_stage=out_stage, x_format=fp8)
                if engine == "cocotb" else None)
    except (ConfigError, PackError) as exc:
        raise RunError(f"this configuration ({cfg.name}) cannot run the layer: {exc}") from None
    k_beats = int(padded.shape[0]) // step
    n_tiles = -(-M // cfg.rows) * -(-N // cfg.cols)
    t0 = time.monotonic()
    if progress:
        progress(f"model {cfg.name} ({cfg.rows}x{cfg.cols}, {sim}, {engine})")
    report = {}
    if engine == "native":
        from verif.native import run_gemm_native
        if progress:
            progress(f"packing and simulating {n_tiles} tiles of up to {k_beats} beats "
                     f"in mode {mode.name}")
        try:
            out = run_gemm_native(cfg, padded, xp, x_exp=x_exp, out_stage=out_stage,
                                  traffic=traffic, sim=sim, quiet=progress is None,
                                  x_format=fp8)
        except PackError as exc:
            raise RunError(f"this configuration ({cfg.name}) cannot run the layer: "
                           f"{exc}") from None
        y, err, entry = out["y"], out["err"], {"cycles": out["cycles"], "beats": out["beats"]}
        sim_seconds = out["sim_seconds"]
    else:
        from verif.launch import run_cases
        from verif.toolchain import build_model
        model = build_model(cfg, sim=sim, waves=bool(waves), quiet=progress is None)
        if progress:
            progress(f"simulating {n_tiles} tiles x {k_beats} beats "
                     f"({prog.beats} beats) in mode {mode.name}")
        case = {"name": "run", "layer": padded, "x": xp, "x_exp": x_exp,
                "out_stage": out_stage, "x_format": fp8}
        if traffic is not None:
            case.update(traffic.patterns())
        t_sim = time.monotonic()
        report = run_cases(model, [case], waves=bool(waves), progress=progress,
                           waves_to=waves if isinstance(waves, str) else None)
        sim_seconds = time.monotonic() - t_sim
        y, err = report["results"]["run"]
        entry = report["cases"][0]
    ideal = ideal_cycles(cfg, mode, M, N, K)
    summary = {
        "preset": cfg.name, "mode": mode.name, "format": mode.fmt, "sparsity": mode.sparsity,
        "scale_kind": mode.scale_kind, "mx_act": mode.mx_act,
        "x_format": mode.activation_format or "int8", "out_stage": out_stage,
        "M": M, "N": N, "K": K, "K_padded": int(padded.shape[0]),
        "rows": cfg.rows, "cols": cfg.cols, "step_k": step, "tiles": n_tiles,
        "beats": entry["beats"], "cycles": entry["cycles"], "ideal_cycles": ideal,
        "kept_beats": entry["beats"] / (n_tiles * k_beats),
        "utilization": ideal / entry["cycles"] if entry["cycles"] else 0.0,
        "macs_per_cycle": M * N * K / entry["cycles"] if entry["cycles"] else 0.0,
        "frac_bits": cfg.frac_bits if mode.scale_kind == "pow2" else 0,
        "acc_bits": cfg.acc_bits, "errors": int(np.asarray(err).sum()),
        "engine": engine, "sim": sim, "wall_seconds": round(time.monotonic() - t0, 2),
        "sim_seconds": round(sim_seconds, 3),
        "cycles_per_second": round(entry["cycles"] / sim_seconds) if sim_seconds else 0,
    }
    summary.update(_block_summary(layer))
    if report.get("waves"):
        summary["waves"] = report["waves"]
    return RunResult(y=y, err=err, report=summary)
