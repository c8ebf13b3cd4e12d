"""``python -m verif``: run compressed GEMMs on the simulated RTL."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from gen.cli import Parser, add_config_args, config_from_args
from golden.tables import MX_ACT_FORMATS
from hw.config import FP8_FORMATS, ConfigError


def _load_npy(path: str, what: str) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {what} {path!r}: {exc}") from None
    if not isinstance(data, np.ndarray):  # an .npz archive
        data.close()
        raise UserError(f"{what} {path!r} must be a single .npy array, not an .npz archive")
    return data


class UserError(Exception):
    """A user mistake, reported in one line with exit status 2."""


def _progress(message: str) -> None:
    print(f"[verif] {message}", file=sys.stderr, flush=True)


def cxx_missing() -> str | None:
    """Why Verilator cannot compile a model here (None when it can)."""
    if shutil.which("c++") or shutil.which("g++") or shutil.which("clang++"):
        return None
    return "Verilator needs a C++ compiler on PATH (Debian: apt-get install g++)"


def fst_support_missing() -> str | None:
    """Why Verilator cannot write FST waveforms here (None when it can): its FST writer needs
    the lz4 headers and a C++ compiler.
    """
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        return "no C++ compiler on PATH (Debian: apt-get install g++)"
    proc = subprocess.run([cxx, "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return "--waves needs liblz4 for FST dumps (Debian: apt-get install liblz4-dev)"
    return None


def _mismatches(y, err, y_ref, err_ref) -> tuple[int, int]:
    """(mismatching outputs, mismatching error flags) of an RTL result vs the golden one."""
    y, y_ref = np.asarray(y, np.int64), np.asarray(y_ref, np.int64)
    return int((y != y_ref).sum()), int((np.asarray(err) != np.asarray(err_ref)).sum())


def _save_result(args, out, result) -> dict:
    """Write the result, the error flags (``--err-out``) and the report; return the report."""
    np.save(out, result.y)
    if args.err_out:
        np.save(args.err_out, result.err)
    if args.report:
        Path(args.report).write_text(json.dumps(result.report, indent=2) + "\n")
    return result.report


def _check_and_exit_code(args, result, reference, what: str) -> int:
    """``--check`` against ``reference()`` (the golden ``(y, err)``), then the exit code:
    1 on a mismatch, 3 when outputs carry the error flag, else 0."""
    if args.check:
        y_ref, err_ref = reference()
        bad_y, bad_err = _mismatches(result.y, result.err, y_ref, err_ref)
        if bad_y or bad_err or result.y.dtype != np.asarray(y_ref).dtype:
            print(f"check: MISMATCH against {what}: {bad_y} of {result.y.size} outputs and "
                  f"{bad_err} error flags differ", file=sys.stderr)
            return 1
        print(f"check: bit-exact against {what} ({result.y.size} outputs and their error "
              "flags)")
    if result.report["errors"]:
        print(f"python -m verif run: {result.report['errors']} outputs carry the error flag "
              "(invalid code, NaN scale or exponent window); see --err-out", file=sys.stderr)
        return 3
    return 0


def _run_inputs(args, load_layer, LayerError):
    """The layer (a list of experts with ``--experts``), activations, activation exponents
    and output path of ``verif run``."""
    if (args.layer is None) == (args.experts is None):
        raise UserError("give one of --layer L.npz or --experts A.npz,B.npz,... (with "
                        "--routing)")
    if args.experts is None and (args.routing or args.out_stages):
        raise UserError("--routing and --out-stages go with --experts")
    layers = []
    for e, path in enumerate([args.layer] if args.experts is None else args.experts.split(",")):
        try:
            layers.append(load_layer(path))
        except LayerError as exc:
            what = "" if args.experts is None else f"expert {e}: "
            raise UserError(f"{what}invalid layer file {path}: {exc}") from None
    layer = layers if args.experts else layers[0]
    x = _load_npy(args.x, "activations")
    fp8 = args.x_format in FP8_FORMATS
    want = np.uint8 if fp8 else np.int8
    if x.dtype != want or x.ndim != 2:
        what = f"{args.x_format} activation codes" if fp8 else "activations"
        raise UserError(f"{what} {args.x} must be a 2-D {np.dtype(want).name} array, not "
                        f"{x.dtype} {x.shape}")
    if args.x_format not in (None, "int8") and not args.x_exp:
        raise UserError(f"--x-format {args.x_format} (MX activations) needs --x-exp E.npy, the "
                        f"uint8 block exponents [M, K/32]")
    if args.x_format == "int8" and args.x_exp:
        raise UserError("--x-exp goes with MX activations: name their --x-format "
                        "(mxint8, fp8_e4m3, fp8_e5m2)")
    if x.shape[0] == 0:
        raise UserError(f"activations {args.x} have no rows (shape {x.shape}): nothing to run")
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output directory {out.parent}: "
                        f"{exc.strerror or exc}") from None
    x_exp = None
    if args.x_exp:
        x_exp = _load_npy(args.x_exp, "activation exponents")
        if x_exp.dtype != np.uint8:
            raise UserError(f"activation exponents {args.x_exp} must be uint8, not {x_exp.dtype}")
    return layer, x, x_exp, out


def _check_toolchain(args) -> None:
    """One-line errors for a missing C++ compiler (or lz4 headers, for waveforms)."""
    why = cxx_missing()
    if why:
        raise UserError(why)
    if args.waves:
        why = fst_support_missing()
        if why:
            raise UserError(why)


def _run_experts(args, cfg, experts, x, x_exp, out) -> int:
    """``verif run --experts``: the grouped GEMM in one in-band sequence (`verif.moe`)."""
    from golden.moe import grouped_gemm
    from verif.moe import run_grouped
    from verif.native import Traffic
    from verif.runner import RunError

    if args.routing is None:
        raise UserError("--experts needs --routing R.npy (expert index per token row)")
    if args.x_format in FP8_FORMATS:
        raise UserError("--experts takes int8 or MXINT8 activations (the golden grouped GEMM "
                        f"has no {args.x_format} activations)")
    if args.cocotb or args.waves:
        raise UserError("--experts runs on the native harness only (no --cocotb / --waves)")
    routing = _load_npy(args.routing, "routing")
    stages = args.out_stage if args.out_stages is None else args.out_stages.split(",")
    traffic = (None if args.traffic_seed is None
               else Traffic.random(np.random.default_rng(args.traffic_seed)))
    try:
        result = run_grouped(cfg, experts, x, routing, x_exp=x_exp, out_stage=stages,
                             traffic=traffic, sim=args.sim, progress=_progress)
    except RunError as exc:
        raise UserError(str(exc)) from None
    rep = _save_result(args, out, result)
    print(f"grouped GEMM: {rep['gemms']} of {len(experts)} experts (skipped "
          f"{rep['skipped_experts'] or 'none'}), M={rep['M']} N={rep['N']} K={rep['K']} on "
          f"{rep['rows']}x{rep['cols']} -> {rep['total_cycles']} cycles in one in-band sequence "
          f"(sum of ideal {rep['ideal_cycles']:.0f}, utilization {rep['utilization']:.3f}), "
          f"wrote {out}")
    return _check_and_exit_code(
        args, result, lambda: grouped_gemm(x, experts, routing, x_exp=x_exp,
                                           frac_bits=cfg.frac_bits, t_min=cfg.t_min,
                                           t_max=cfg.t_max, out_stage=stages),
        "the golden grouped GEMM")


def cmd_run(args) -> int:
    """Run a layer file on the simulated core and write the result."""
    from golden.gemm import gemm
    from golden.layer import LayerError, load_layer
    from verif.runner import RunError, run_layer

    cfg = config_from_args(args)
    layer, x, x_exp, out = _run_inputs(args, load_layer, LayerError)
    _check_toolchain(args)
    if args.experts:
        return _run_experts(args, cfg, layer, x, x_exp, out)
    try:
        waves = str(Path(args.out).with_suffix(".fst")) if args.waves else False
        traffic = None
        if args.traffic_seed is not None:
            from verif.native import Traffic
            traffic = Traffic.random(np.random.default_rng(args.traffic_seed))
        result = run_layer(cfg, layer, x, x_exp=x_exp, out_stage=args.out_stage,
                           waves=waves, progress=_progress, sim=args.sim,
                           engine="cocotb" if args.cocotb else "native", traffic=traffic,
                           x_format=args.x_format)
    except RunError as exc:
        raise UserError(str(exc)) from None
    rep = _save_result(args, out, result)
    print(f"{rep['mode']}: M={rep['M']} N={rep['N']} K={rep['K']} on {rep['rows']}x{rep['cols']}"
          f" -> {rep['cycles']} cycles (ideal {rep['ideal_cycles']:.0f}, utilization "
          f"{rep['utilization']:.3f}; {rep['engine']} on {rep['sim']}, "
          f"{rep['cycles_per_second']:.3g} cycles/s), wrote {out}")
    if rep.get("waves"):
        print(f"waveform: {rep['waves']}")
    return _check_and_exit_code(
        args, result, lambda: gemm(x, layer, x_exp=x_exp, x_format=args.x_format,
                                   frac_bits=cfg.frac_bits, t_min=cfg.t_min, t_max=cfg.t_max,
                                   out_stage=args.out_stage),
        "the golden model")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m verif`` argument parser."""
    parser = Parser(prog="python -m verif", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    p = sub.add_parser("run", help="run a layer file on the simulated core")
    add_config_args(p)
    p.add_argument("--x", required=True, help="activations [M, K] (.npy): int8, or the element "
                   "codes of --x-format")
    p.add_argument("--layer", help="compressed layer file (.npz), or --experts")
    p.add_argument("--experts", metavar="A.npz,B.npz,...",
                   help="grouped (MoE) GEMM: expert layer files, run as one in-band sequence")
    p.add_argument("--routing", metavar="R.npy",
                   help="with --experts: int expert index per token row [M], or [M, k]")
    p.add_argument("--out-stages", metavar="S,S,...",
                   help="with --experts: raw or requant per expert (default --out-stage)")
    p.add_argument("--x-format", choices=("int8", *MX_ACT_FORMATS), default=None,
                   help="activation format: int8 (default), or MX activations with --x-exp: "
                        "mxint8 (int8 codes, the default with --x-exp), fp8_e4m3 or fp8_e5m2 "
                        "(uint8 codes; the configuration must enable them, e.g. the mxfp8 "
                        "preset)")
    p.add_argument("--x-exp", help="uint8 E8M0 block exponents [M, K/32] of MX activations "
                                   "(.npy)")
    p.add_argument("--out-stage", choices=("raw", "requant"), default="raw")
    p.add_argument("-o", "--out", required=True, help="result .npy (int64 raw, int8 requant)")
    p.add_argument("--err-out", help="write the per-output error flags (.npy, bool)")
    p.add_argument("--report", help="JSON report: cycles, ideal_cycles, utilization, ...")
    p.add_argument("--check", action="store_true",
                   help="compare the result and error flags with the golden GEMM (exit 1 on "
                        "a mismatch)")
    p.add_argument("--waves", action="store_true",
                   help="dump an FST waveform beside the result (Y.fst; needs liblz4-dev; "
                        "with --cocotb)")
    p.add_argument("--cocotb", action="store_true",
                   help="run on the cocotb testbench instead of the native harness")
    p.add_argument("--sim", choices=("verilator", "icarus"), default="verilator")
    p.add_argument("--traffic-seed", type=int, metavar="S",
                   help="random valid/ready traffic on every stream from seed S (default: "
                        "full rate); the same on both engines")
    return parser


def main(argv=None) -> int:
    """Run ``python -m verif``; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "run":
            return cmd_run(args)
    except (UserError, ConfigError) as exc:
        print(f"python -m verif {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
