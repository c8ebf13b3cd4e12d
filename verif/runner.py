"""The RTL runner: execute a compressed GEMM of any size on the simulated core.

M and N are tiled (and padded) by the packer; a per-channel K that is not a multiple of the
beat is padded with zero weights. The model is built once per configuration and cached.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from gen.pack import Packer, PackError
from golden.layer import Layer, pad_k
from hw.config import ArrayConfig, ConfigError, Mode

__all__ = ["RunError", "RunResult", "prepare_layer", "run_layer", "ideal_cycles"]


class RunError(ValueError):
    """A GEMM the runner cannot execute on this configuration (the message says why)."""


@dataclass
class RunResult:
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
    xp = np.zeros((x.shape[0], Kp), np.int8)
    xp[:, :K] = x
    return pad_k(layer, Kp), xp


def run_layer(cfg: ArrayConfig, layer: Layer, x: np.ndarray, *, x_exp=None,
              out_stage: str = "raw", waves: bool | str = False, progress=None,
              sim: str = "verilator") -> RunResult:
    """Run ``x @ layer`` on the RTL; return the result exactly as ``golden gemm`` would.

    ``waves`` may be a path: the FST waveform is written there (else kept in the report's
    ``waves`` entry only while the temporary run directory exists).
    """
    from verif.launch import run_cases
    from verif.toolchain import build_model

    x = np.asarray(x)
    if x.ndim != 2 or x.dtype != np.int8:
        raise RunError(f"activations must be a 2-D int8 array, not {x.dtype} {x.shape}")
    K, N = (int(v) for v in layer.shape)
    if x.shape[1] != K:
        raise RunError(f"activations have K={x.shape[1]}, the layer has K={K}")
    M = x.shape[0]
    mode = Mode(layer.format, layer.sparsity, layer.scale_kind, mx_act=x_exp is not None,
                out_stage=out_stage)
    if layer.bias is not None and out_stage == "requant":
        b = np.asarray(layer.bias, np.int64)
        if b.min(initial=0) < -(1 << 31) or b.max(initial=0) >= 1 << 31:
            raise RunError("layer key 'bias': the hardware's bias is int32; values exceed it")
    padded, xp = prepare_layer(cfg, layer, x)
    try:
        cfg.check_mode(mode, group=int(padded.group), k=int(padded.shape[0]))
        prog = Packer(cfg).pack(padded, xp, x_exp=x_exp, out_stage=out_stage)
    except (ConfigError, PackError) as exc:
        raise RunError(f"this configuration ({cfg.name}) cannot run the layer: {exc}") from None
    t0 = time.monotonic()
    if progress:
        progress(f"model {cfg.name} ({cfg.rows}x{cfg.cols}, {sim})")
    model = build_model(cfg, sim=sim, waves=bool(waves), quiet=progress is None)
    if progress:
        progress(f"simulating {len(prog.tiles)} tiles x {prog.k_beats} beats "
                 f"({prog.beats} beats) in mode {mode.name}")
    case = {"name": "run", "layer": padded, "x": xp, "x_exp": x_exp, "out_stage": out_stage}
    report = run_cases(model, [case], waves=bool(waves), progress=progress,
                       waves_to=waves if isinstance(waves, str) else None)
    y, err = report["results"]["run"]
    entry = report["cases"][0]
    ideal = ideal_cycles(cfg, mode, M, N, K)
    summary = {
        "preset": cfg.name, "mode": mode.name, "format": mode.fmt, "sparsity": mode.sparsity,
        "scale_kind": mode.scale_kind, "mx_act": mode.mx_act, "out_stage": out_stage,
        "M": M, "N": N, "K": K, "K_padded": int(padded.shape[0]),
        "rows": cfg.rows, "cols": cfg.cols, "step_k": prog.step, "tiles": len(prog.tiles),
        "beats": prog.beats, "cycles": entry["cycles"], "ideal_cycles": ideal,
        "utilization": ideal / entry["cycles"] if entry["cycles"] else 0.0,
        "macs_per_cycle": M * N * K / entry["cycles"] if entry["cycles"] else 0.0,
        "frac_bits": cfg.frac_bits if mode.scale_kind == "pow2" else 0,
        "acc_bits": cfg.acc_bits, "errors": int(np.asarray(err).sum()),
        "wall_seconds": round(time.monotonic() - t0, 2),
    }
    if report.get("waves"):
        summary["waves"] = report["waves"]
    return RunResult(y=y, err=err, report=summary)
