"""Command line of the golden model: ``python -m golden {compress,gemm,info} ...``.

Exit status: 0 success, 2 user error (one line on stderr, no traceback), 3 the GEMM ran but
raised an error flag on some output.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .calibrate import smooth_factors, wanda_saliency
from .compress import compress, load_weights
from .formats import E8M0_NAN, FORMATS, SCALE_KINDS, decode, format_info, pow2_exponent
from .gemm import dequantize_weights, gemm
from .layer import LayerError, load_layer, save_layer
from .metrics import bits_per_weight, metadata_floor, sqnr_db
from .sparsity import SPARSITY_PATTERNS

EXIT_USAGE = 2
EXIT_FLAGGED = 3


class UsageError(Exception):
    """A problem with the user's input, reported as one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _load_npy(path: str, what: str) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"cannot read {what} {path!r} as .npy ({exc})") from None
    if not isinstance(a, np.ndarray):
        a.close()
        raise UsageError(f"{what} {path!r} is an .npz archive, expected a single .npy array")
    return a


def _parse_window(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    try:
        if not sep:
            raise ValueError
        t_min, t_max = int(lo), int(hi)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI integers, got {text!r}") from None
    if t_min > t_max:
        raise argparse.ArgumentTypeError(f"window {text!r} has LO > HI")
    return t_min, t_max


def _bits_summary(layer) -> str:
    b = bits_per_weight(layer)
    return (
        f"{b['total']:.3f} bits/weight (values {b['values']:.3f}, metadata {b['metadata']:.3f}, "
        f"scales {b['scales']:.3f})"
    )


def cmd_compress(args) -> int:
    """Compress float weights into a layer file and print a one-line summary."""
    if args.zero_points and not format_info(args.format).has_zero_point:
        with_zero = ", ".join(f.name for f in FORMATS.values() if f.has_zero_point)
        raise UsageError(f"--zero-points applies to {with_zero} only, not {args.format}")
    if args.saliency is not None and args.saliency_from_x is not None:
        raise UsageError("give either --saliency or --saliency-from-x, not both")
    w = load_weights(args.weights)
    smoothed = ""
    if args.smooth is not None:
        x_cal = _load_npy(args.smooth, "smoothing activations")
        s = smooth_factors(x_cal, w, args.alpha)
        w = w * s[:, None]
        smooth_out = args.smooth_out or _smooth_path(args.output)
        np.save(smooth_out, s)
        smoothed = f" (smoothed, alpha {args.alpha:g}: divide activations by {smooth_out})"
    saliency = None
    if args.saliency is not None:
        saliency = _load_npy(args.saliency, "saliency")
        if saliency.shape != w.shape:
            raise UsageError(f"saliency shape {saliency.shape} differs from weights {w.shape}")
    elif args.saliency_from_x is not None:
        # Wanda |w|·‖x_k‖ is unchanged by smoothing, so the smoothed w may be used here.
        saliency = wanda_saliency(w, _load_npy(args.saliency_from_x, "Wanda activations"))
    layer = compress(
        w,
        fmt=args.format,
        sparsity=args.sparsity,
        group=args.group,
        scale_kind=args.scale,
        scale_bits=args.scale_bits,
        rceil=args.rceil,
        saliency=saliency,
    )
    save_layer(args.output, layer)
    sqnr = sqnr_db(w, dequantize_weights(layer))
    print(
        f"{args.output}: {layer.format} {layer.sparsity} G={layer.group} "
        f"scale={layer.scale_kind} K={layer.K} N={layer.N}: {_bits_summary(layer)}, "
        f"SQNR {sqnr:.2f} dB{smoothed}"
    )
    return 0


def _smooth_path(output: str) -> str:
    """Default file of the smoothing factors: ``L.npz`` → ``L.smooth.npy``."""
    stem = output[:-4] if output.endswith(".npz") else output
    return stem + ".smooth.npy"


def cmd_gemm(args) -> int:
    """Run the bit-exact GEMM on int8 activations and write the result."""
    layer = load_layer(args.layer)
    x = _load_npy(args.x, "activations")
    x_exp = None if args.x_exp is None else _load_npy(args.x_exp, "x_exp")
    t_min, t_max = args.t_window
    y, err = gemm(
        x,
        layer,
        x_exp=x_exp,
        frac_bits=args.frac_bits,
        t_min=t_min,
        t_max=t_max,
        out_stage=args.out_stage,
    )
    np.save(args.output, y)
    if args.err_out is not None:
        np.save(args.err_out, err)
    n_err = int(err.sum())
    if n_err:
        print(
            f"golden gemm: error flag set on {n_err} of {err.size} outputs "
            "(invalid code, NaN scale, exponent window or int32 saturation)",
            file=sys.stderr,
        )
        return EXIT_FLAGGED
    return 0


def cmd_info(args) -> int:
    """Describe a layer file: layout, bits per weight and validity."""
    layer = load_layer(args.layer)
    info = format_info(layer.format)
    bpw = bits_per_weight(layer)
    floor = metadata_floor(layer.n_sp, layer.m_sp)
    lines = [
        f"file        {args.layer}",
        f"format      {layer.format} ({info.bits} bits, MAC integers "
        f"{info.value_min}..{info.value_max}"
        f"{', zero points' if info.has_zero_point else ''})",
        f"sparsity    {layer.sparsity} (N_sp={layer.n_sp}, M_sp={layer.m_sp})",
        f"group       {layer.group} ({layer.n_groups} per column)",
        f"scale kind  {layer.scale_kind}"
        + (f" ({layer.scale_bits or 16}-bit scales)" if layer.scale_kind == "int" else ""),
        f"shape       K={layer.K} N={layer.N}",
    ]
    arrays = [
        f"{key} {getattr(layer, key).dtype}{list(getattr(layer, key).shape)}"
        for key in ("codes", "idx", "scales", "scale_exp", "zeros")
        if getattr(layer, key) is not None
    ]
    lines.append(f"arrays      {', '.join(arrays)}")
    stage = [key for key in ("bias", "out_mult", "out_shift", "out_zp")
             if getattr(layer, key) is not None]
    lines.append(f"output      {'requant (' + ', '.join(stage) + ')' if stage else 'raw only'}")
    lines.append(
        f"bits/weight {bpw['total']:.3f} = values {bpw['values']:.3f} + metadata "
        f"{bpw['metadata']:.3f} (floor {floor:.3f}) + scales {bpw['scales']:.3f}"
    )
    if layer.scale_kind == "pow2":
        e = layer.scales.astype(np.int64)
        finite = pow2_exponent(layer.format, e[e != E8M0_NAN])
        t_range = f"[{finite.min()}, {finite.max()}]" if finite.size else "none"
        lines.append(
            f"exponents   weight t = e_w-127{info.pow2_adj:+d} in {t_range}, "
            f"{int((e == E8M0_NAN).sum())} NaN scales"
        )
    _, invalid = decode(layer.format, layer.codes)
    n_invalid = int(invalid.sum())
    bad_codes = ", ".join(f"{c:#0{info.bits + 2}b}" for c in info.invalid_codes)
    if n_invalid:
        lines.append(
            f"validity    file valid; {n_invalid} invalid {layer.format} codes ({bad_codes}) "
            f"flag {int(invalid.any(axis=0).sum())} columns at run time"
        )
    elif info.invalid_codes:
        lines.append(f"validity    valid (0 invalid {layer.format} codes)")
    else:
        lines.append("validity    valid")
    print("\n".join(lines))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m golden`` argument parser."""
    parser = _Parser(prog="golden", description="Bit-exact golden model of the compressed GEMM.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("compress", help="prune, quantize and pack float weights",
                       description="Compress float weights [K, N] into a layer file (.npz).")
    p.add_argument("weights", help="FILE.npy (float [K, N]) or FILE.safetensors:TENSOR "
                                   "(PyTorch [out, in], transposed to [K, N])")
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("--sparsity", default="dense", choices=list(SPARSITY_PATTERNS))
    p.add_argument("--group", type=int, default=None,
                   help="group size along K (default: K, or 32 for pow2)")
    p.add_argument("--scale", required=True, choices=list(SCALE_KINDS))
    p.add_argument("--scale-bits", type=int, default=16, help="width of int scales (default 16)")
    p.add_argument("--rceil", action="store_true",
                   help="pow2: round amax/max_elem up to a power of two instead of OCP floor")
    p.add_argument("--saliency", metavar="S.npy", help="pruning score [K, N] instead of |w|")
    p.add_argument("--saliency-from-x", metavar="X.npy",
                   help="Wanda: prune by |w|*||x_k||_2 from float activations X [tokens, K]")
    p.add_argument("--smooth", metavar="X.npy",
                   help="SmoothQuant: fold s_k = max|x_k|^a / max|w_k|^(1-a) from float "
                        "activations X [tokens, K] into the weights (w*s) and write s")
    p.add_argument("--alpha", type=float, default=0.5, help="SmoothQuant strength (default 0.5)")
    p.add_argument("--smooth-out", metavar="S.npy",
                   help="where to write the factors s [K] (default: OUTPUT with .smooth.npy)")
    p.add_argument("--zero-points", action="store_true",
                   help="accepted for uint4 (which always has zero points), refused otherwise")
    p.add_argument("-o", "--output", required=True, metavar="L.npz")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("gemm", help="run the bit-exact GEMM",
                       description="Y = requant(sum_g scale_g * P_g) on int8 activations.")
    p.add_argument("--x", required=True, metavar="X.npy", help="int8 activations [M, K]")
    p.add_argument("--layer", required=True, metavar="L.npz")
    p.add_argument("--x-exp", metavar="E.npy", help="uint8 MXINT8 exponents [M, K/32]")
    p.add_argument("--frac-bits", type=int, default=16, help="pow2 fractional bits (default 16)")
    p.add_argument("--t-window", type=_parse_window, default=(-32, 8), metavar="LO:HI",
                   help="pow2 exponent window (default -32:8; write --t-window=-40:8)")
    p.add_argument("--out-stage", choices=["raw", "requant"], default="raw")
    p.add_argument("-o", "--output", required=True, metavar="Y.npy",
                   help="int64 raw accumulator or int8 requantized output")
    p.add_argument("--err-out", metavar="E.npy", help="write the bool error flags [M, N]")
    p.set_defaults(func=cmd_gemm)

    p = sub.add_parser("info", help="describe a layer file",
                       description="Print layout, bits per weight and validity of a layer.")
    p.add_argument("layer", metavar="L.npz")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv=None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, LayerError, ValueError, OSError) as exc:
        print(f"golden {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
