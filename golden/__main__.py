"""Command line of the golden model: ``python -m golden {compress,import,quantize,
requant-params,gemm,dequantize,info} ...``.

Exit status: 0 success, 2 user error (one line on stderr, no traceback), 3 the GEMM ran but
raised an error flag on some output.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .blocks import parse_block
from .calibrate import smooth_factors, wanda_saliency
from .compress import NVFP4_GROUP, NVFP4_SCALE_BITS, compress, compress_nvfp4, load_weights
from .formats import (
    E8M0_NAN,
    FORMATS,
    MX_ACT_FORMATS,
    SCALE_KINDS,
    decode,
    format_info,
    pow2_exponent,
)
from .gemm import dequantize_weights, gemm, gemm_float, group_sum_bits
from .host import dequantize_output, requant_params
from .layer import LayerError, load_layer, save_layer
from .metrics import bits_per_weight, metadata_floor, sqnr_db
from .moe import grouped_gemm
from .quant import quantize_activations_int8, quantize_activations_mx
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
        f"scales {b['scales']:.3f}" + (f", block mask {b['mask']:.3f}" if "mask" in b else "")
        + ")"
    )


def _nvfp4_options(args) -> None:
    """Refuse compress options that contradict --nvfp4 (or are missing without it)."""
    if not args.nvfp4:
        for option, value in (("--format", args.format), ("--scale", args.scale)):
            if value is None:
                raise UsageError(f"the following argument is required: {option} "
                                 "(or give --nvfp4)")
        return
    fixed = (("--format", args.format, "fp4_e2m1"), ("--scale", args.scale, "int"),
             ("--group", args.group, NVFP4_GROUP))
    for option, value, want in fixed:
        if value is not None and value != want:
            raise UsageError(f"--nvfp4 means {option} {want}, not {value}")
    if args.scale_bits is not None and args.scale_bits < NVFP4_SCALE_BITS:
        raise UsageError(f"--nvfp4 needs --scale-bits >= {NVFP4_SCALE_BITS} (E4M3 scales * 2^9), "
                         f"not {args.scale_bits}")
    if args.rceil or args.zero_points:
        raise UsageError("--rceil and --zero-points do not apply to --nvfp4")


def cmd_compress(args) -> int:
    """Compress float weights into a layer file and print a one-line summary."""
    _nvfp4_options(args)
    if args.zero_points and not format_info(args.format).has_zero_point:
        with_zero = ", ".join(f.name for f in FORMATS.values() if f.has_zero_point)
        raise UsageError(f"--zero-points applies to {with_zero} only, not {args.format}")
    if args.saliency is not None and args.saliency_from_x is not None:
        raise UsageError("give either --saliency or --saliency-from-x, not both")
    try:
        w = load_weights(args.weights)
    except ValueError as exc:
        if "must be floating point" in str(exc):
            raise UsageError(f"{exc}: integer tensors are already quantized; bring GPTQ, AWQ, "
                             "PyTorch 2:4 or BitNet I2_S checkpoints in with `python -m golden "
                             "import` (docs/IMPORTERS.md)") from None
        raise
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
    tensor_note, tensor_scale = "", 1.0
    if args.nvfp4:
        if _block_options(args):
            raise UsageError("--nvfp4 does not combine with --block yet; prune blocks first")
        layer, tensor_scale = compress_nvfp4(w, sparsity=args.sparsity, saliency=saliency,
                                             scale_bits=args.scale_bits or NVFP4_SCALE_BITS)
        tensor_out = args.tensor_scale_out or _stem(args.output) + ".tscale.npy"
        np.save(tensor_out, np.float32(tensor_scale))
        tensor_note = (f" (NVFP4: fp32 tensor scale {tensor_scale:.6g} in {tensor_out}; "
                       "multiply it into the activation scale)")
    else:
        layer = compress(
            w,
            fmt=args.format,
            sparsity=args.sparsity,
            group=args.group,
            scale_kind=args.scale,
            scale_bits=16 if args.scale_bits is None else args.scale_bits,
            rceil=args.rceil,
            saliency=saliency,
            **_block_options(args),
        )
    save_layer(args.output, layer)
    sqnr = sqnr_db(w, dequantize_weights(layer) * tensor_scale)
    print(
        f"{args.output}: {layer.format} {layer.sparsity} G={layer.group} "
        f"scale={layer.scale_kind} K={layer.K} N={layer.N}: {_bits_summary(layer)}, "
        f"SQNR {sqnr:.2f} dB{smoothed}{tensor_note}"
    )
    return 0


def _block_options(args) -> dict:
    """The compressor's block-sparsity keywords from ``--block``, ``--block-density``, ..."""
    if args.block is None:
        if args.block_density is not None or args.block_x is not None:
            raise UsageError("--block-density and --block-x need --block BKxBN")
        return {}
    if args.block_density is None:
        raise UsageError("--block needs --block-density D (fraction of blocks kept)")
    try:
        block = parse_block(args.block)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    x = None if args.block_x is None else _load_npy(args.block_x, "block score activations")
    return {"block": block, "block_density": args.block_density, "block_x": x}


def _smooth_path(output: str) -> str:
    """Default file of the smoothing factors: ``L.npz`` → ``L.smooth.npy``."""
    stem = output[:-4] if output.endswith(".npz") else output
    return stem + ".smooth.npy"


def _grouped_gemm(args, x, x_exp):
    """``gemm --experts``: the grouped (MoE) GEMM of `golden.moe.grouped_gemm`."""
    if args.routing is None:
        raise UsageError("--experts needs --routing R.npy (expert index per token row)")
    experts = []
    for e, path in enumerate(args.experts.split(",")):
        try:
            experts.append(load_layer(path))
        except LayerError as exc:
            raise UsageError(f"expert {e} ({path}): {exc}") from None
    stages = args.out_stage if args.out_stages is None else args.out_stages.split(",")
    t_min, t_max = args.t_window
    return grouped_gemm(x, experts, _load_npy(args.routing, "routing"), x_exp=x_exp,
                        x_format=args.x_format, frac_bits=args.frac_bits, t_min=t_min,
                        t_max=t_max, out_stage=stages)


def cmd_gemm(args) -> int:
    """Run the bit-exact GEMM on int8 or MX activations and write the result."""
    if (args.layer is None) == (args.experts is None):
        raise UsageError("give one of --layer L.npz or --experts A.npz,B.npz,... (with "
                         "--routing)")
    if args.experts is None and (args.routing or args.out_stages):
        raise UsageError("--routing and --out-stages go with --experts")
    layer = None if args.experts else load_layer(args.layer)
    x = _load_npy(args.x, "activations")
    x_exp = None if args.x_exp is None else _load_npy(args.x_exp, "x_exp")
    if args.x_format not in (None, "int8") and x_exp is None:
        raise UsageError(f"--x-format {args.x_format} needs the block exponents --x-exp E.npy")
    t_min, t_max = args.t_window
    if args.experts:
        y, err = _grouped_gemm(args, x, x_exp)
    else:
        y, err = gemm(
            x,
            layer,
            x_exp=x_exp,
            x_format=args.x_format,
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
            "(invalid weight or activation code, NaN scale, exponent window or int32 "
            "saturation)",
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
    if layer.block_mask is not None:
        bk, bn = (int(v) for v in layer.block_shape)
        lines.append(f"blocks      {bk}x{bn}, {int(layer.block_mask.sum())} of "
                     f"{layer.block_mask.size} kept ({float(layer.block_mask.mean()):.1%})")
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
        + (f" + block mask {bpw['mask']:.3f}" if "mask" in bpw else "")
    )
    if layer.scale_kind == "pow2":
        e = layer.scales.astype(np.int64)
        finite = pow2_exponent(layer.format, e[e != E8M0_NAN])
        t_range = f"[{finite.min()}, {finite.max()}]" if finite.size else "none"
        lines.append(
            f"exponents   weight t = e_w-127{info.pow2_adj:+d} in {t_range}, "
            f"{int((e == E8M0_NAN).sum())} NaN scales; MX activations add e_x-127 and "
            + ", ".join(f"{FORMATS[f].pow2_adj:+d} ({f})" for f in MX_ACT_FORMATS)
        )
    x_formats = ("int8", *MX_ACT_FORMATS) if layer.scale_kind == "pow2" else ("int8",)
    lines.append("group sums  |P_g| in " + ", ".join(
        f"{group_sum_bits(layer, f)} bits ({f} activations)" for f in x_formats))
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



# -- real checkpoints ------------------------------------------------------------------------

#: ``golden import`` kinds: the tensors each reads under ``--prefix P`` (``P.qweight``, ...).
IMPORT_TENSORS = {
    "gptq": ("qweight", "qzeros", "scales", "g_idx?"),
    "awq": ("qweight", "qzeros", "scales"),
    "sparse24": ("weight", "weight_mask?"),
    "sparse24-packed": ("values", "meta"),
    "bitnet-i2s": ("weight", "weight_scale?"),
    "nvfp4": ("weight", "weight_scale", "weight_scale_2"),
}
#: ``nvfp4`` tensor names of compressed-tensors checkpoints (read when ``P.weight_packed`` is
#: present; ``weight_global_scale`` divides the weights).
NVFP4_CT_TENSORS = ("weight_packed", "weight_scale", "weight_global_scale")


def _read_tensors(path: str, prefix: str, names) -> dict[str, np.ndarray]:
    """``{name: tensor}`` of ``prefix.name`` in a safetensors file (``name?``: optional)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="np") as f:
            keys = set(f.keys())
            out = {}
            for name in names:
                optional = name.endswith("?")
                name = name.rstrip("?")
                key = f"{prefix}.{name}" if prefix else name
                if key in keys:
                    out[name] = np.asarray(f.get_tensor(key))
                elif not optional:
                    near = sorted(k for k in keys if k.startswith(prefix))[:6]
                    raise UsageError(f"tensor {key!r} not found in {path}"
                                     + (f" (under {prefix!r}: {', '.join(near)})" if near
                                        else ""))
            return out
    except UsageError:
        raise
    except FileNotFoundError:
        raise UsageError(f"checkpoint {path!r} does not exist") from None
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise UsageError(f"cannot read {path} as safetensors ({exc})") from None


def _shape(text: str) -> tuple[int, int]:
    try:
        out, inp = (int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected OUT,IN, not {text!r}") from None
    return out, inp


def cmd_import(args) -> int:
    """Read a producer's packed tensors from safetensors and write a layer file."""
    from . import importers

    if args.kind == "nvfp4":
        return _import_nvfp4(args)
    t = _read_tensors(args.checkpoint, args.prefix, IMPORT_TENSORS[args.kind])
    if args.kind == "gptq":
        imp = importers.import_gptq(t["qweight"], t["qzeros"], t["scales"], g_idx=t.get("g_idx"),
                                    version=args.gptq_version, scale_bits=args.scale_bits,
                                    int4_if_symmetric=args.int4_if_symmetric)
    elif args.kind == "awq":
        imp = importers.import_awq(t["qweight"], t["qzeros"], t["scales"],
                                   scale_bits=args.scale_bits,
                                   int4_if_symmetric=args.int4_if_symmetric)
    elif args.kind == "sparse24":
        imp = importers.import_semi_structured_dense(
            t["weight"], t.get("weight_mask"), fmt=args.format, scale_kind=args.scale,
            group=args.group, scale_bits=args.scale_bits)
    elif args.kind == "sparse24-packed":
        imp = importers.import_semi_structured(
            t["values"], t["meta"], meta_layout=args.meta_layout, fmt=args.format,
            scale_kind=args.scale, group=args.group, scale_bits=args.scale_bits)
    else:
        if args.shape is None:
            raise UsageError("bitnet-i2s needs --shape OUT,IN (GGML ne1, ne0)")
        scale = t.get("weight_scale")
        imp = importers.import_bitnet_i2s(
            t["weight"].reshape(-1).view(np.uint8), args.shape, block=args.block,
            scale=None if scale is None else float(np.asarray(scale, np.float64).reshape(-1)[0]),
            scale_bits=args.scale_bits)
    save_layer(args.output, imp.layer)
    layer = imp.layer
    notes = "exact" if imp.exact else (
        f"scales rounded (largest relative error {imp.scale_error:.2e})" if imp.values_exact
        else "element values quantized")
    print(f"{args.output}: {args.kind} -> {layer.format} {layer.sparsity} G={layer.group} "
          f"scale={layer.scale_kind} K={layer.K} N={layer.N}: {_bits_summary(layer)}; "
          f"{notes}")
    if imp.perm is not None:
        perm_out = args.perm_out or _stem(args.output) + ".perm.npy"
        np.save(perm_out, imp.perm)
        print(f"act-order: feed the activations as x[:, perm] with perm in {perm_out}")
    return 0


def _import_nvfp4(args) -> int:
    """``golden import nvfp4``: ModelOpt or compressed-tensors tensors (fp8 scales read raw)."""
    from . import importers

    def key(name):
        return f"{args.prefix}.{name}" if args.prefix else name

    keys = [key(n) for n in IMPORT_TENSORS["nvfp4"] + NVFP4_CT_TENSORS]
    try:
        t = importers.read_safetensors_raw(args.checkpoint, keys)
    except FileNotFoundError:
        raise UsageError(f"checkpoint {args.checkpoint!r} does not exist") from None
    convention, names = "modelopt", IMPORT_TENSORS["nvfp4"]
    if key("weight_packed") in t:
        convention, names = "compressed-tensors", NVFP4_CT_TENSORS
    missing = [key(n) for n in names if key(n) not in t]
    if missing:
        raise UsageError(f"tensor {missing[0]!r} not found in {args.checkpoint} (nvfp4 reads "
                         f"{', '.join(IMPORT_TENSORS['nvfp4'])} or {', '.join(NVFP4_CT_TENSORS)})")
    packed, scale, tensor = (t[key(n)] for n in names)
    imp = importers.import_nvfp4(packed, scale, tensor, convention=convention,
                                 scale_bits=max(args.scale_bits, NVFP4_SCALE_BITS))
    save_layer(args.output, imp.layer)
    tensor_out = args.tensor_scale_out or _stem(args.output) + ".tscale.npy"
    np.save(tensor_out, np.float64(imp.tensor_scale))
    layer = imp.layer
    print(f"{args.output}: nvfp4 ({convention}) -> {layer.format} {layer.sparsity} "
          f"G={layer.group} scale={layer.scale_kind} K={layer.K} N={layer.N}: "
          f"{_bits_summary(layer)}; exact; tensor scale {imp.tensor_scale:.6g} in {tensor_out} "
          "(multiply it into the activation scale)")
    return 0


def _stem(path: str) -> str:
    for ext in (".npz", ".npy"):
        if path.endswith(ext):
            return path[: -len(ext)]
    return path


def cmd_quantize(args) -> int:
    """Float activations → int8 codes (per token or per tensor) or MX codes + exponents."""
    x = _load_npy(args.x, "float activations")
    if x.dtype.kind != "f":
        raise UsageError(f"activations {args.x!r} must be floating point, not {x.dtype}")
    if x.ndim != 2:
        raise UsageError(f"activations {args.x!r} must be 2-D [M, K], not {x.shape}")
    if args.kind in MX_ACT_FORMATS:
        if x.shape[1] % 32:
            raise UsageError(f"MX activations ({args.kind}) need K a multiple of 32, not "
                             f"{x.shape[1]}")
        x_q, x_exp = quantize_activations_mx(x, args.kind, rceil=args.rceil)
        side, side_out = x_exp, args.exp_out or _stem(args.output) + ".exp.npy"
        what = (f"uint8 exponents [M, K/32] (pass as --x-exp with --x-format {args.kind}; "
                "x = element * 2^(x_exp - 127))")
    else:
        if args.rceil:
            raise UsageError("--rceil applies to the MX kinds only")
        if args.per_tensor:
            x_q, s = quantize_activations_int8(x.reshape(1, -1))
            x_q, side = x_q.reshape(x.shape), np.float64(s[0])
        else:
            x_q, side = quantize_activations_int8(x)
        side_out = args.scale_out or _stem(args.output) + ".scale.npy"
        what = ("float64 scale (per tensor)" if args.per_tensor else
                "float64 scales per token [M]") + ": x = x_q * scale"
    np.save(args.output, x_q)
    np.save(side_out, side)
    print(f"{args.output}: {args.kind} codes {list(x_q.shape)}; {side_out}: {what}")
    return 0


def _scalar_or_file(text: str, what: str) -> float:
    """A float given inline or as a one-element .npy."""
    try:
        return float(text)
    except ValueError:
        pass
    a = _load_npy(text, what)
    if a.size != 1:
        raise UsageError(f"{what} {text!r} must hold one value (a per-tensor scale), not "
                         f"{a.size}; quantize with --per-tensor")
    return float(a.reshape(-1)[0])


def cmd_requant_params(args) -> int:
    """Write out_mult/out_shift/bias/out_zp into a layer from float scales."""
    layer = load_layer(args.layer)
    x_scale = _scalar_or_file(args.x_scale, "activation scale")
    if (args.y_scale is None) == (args.y_scale_from is None):
        raise UsageError("give the output scale as --y-scale S or --y-scale-from Y.npy")
    if args.y_scale is not None:
        y_scale = _scalar_or_file(args.y_scale, "output scale")
    else:
        y_cal = _load_npy(args.y_scale_from, "calibration outputs")
        amax = float(np.abs(y_cal.astype(np.float64)).max(initial=0.0))
        if not amax > 0:
            raise UsageError(f"calibration outputs {args.y_scale_from!r} are all zero")
        y_scale = amax / 127.0
    bias = None if args.bias is None else _load_npy(args.bias, "float bias")
    out = requant_params(layer, x_scale, y_scale, bias=bias, zp=args.zp,
                         frac_bits=args.frac_bits)
    save_layer(args.output, out)
    y_scale_out = args.y_scale_out or _stem(args.output) + ".yscale.npy"
    np.save(y_scale_out, np.float64(y_scale))
    print(f"{args.output}: requant for x_scale {x_scale:.6g}, y_scale {y_scale:.6g}, zp "
          f"{args.zp}: out_mult {int(out.out_mult.min())}..{int(out.out_mult.max())}, "
          f"out_shift {int(out.out_shift.min())}..{int(out.out_shift.max())}"
          + ("" if bias is None else ", bias in accumulator units")
          + f"; output scale in {y_scale_out}")
    return 0


def cmd_dequantize(args) -> int:
    """Integer results → floats; with --ref-x/--ref-w the SQNR against the float product."""
    layer = load_layer(args.layer)
    y = _load_npy(args.y, "results")
    x_scale = None if args.x_scale is None else (
        _load_npy(args.x_scale, "activation scales") if args.x_scale.endswith(".npy")
        else float(args.x_scale))
    y_scale = None if args.y_scale is None else _scalar_or_file(args.y_scale, "output scale")
    yf = dequantize_output(y, layer, x_scale=x_scale, y_scale=y_scale,
                           frac_bits=args.frac_bits)
    np.save(args.output, yf)
    msg = f"{args.output}: float64 {list(yf.shape)}"
    if (args.ref_x is None) != (args.ref_w is None):
        raise UsageError("give both --ref-x and --ref-w for the comparison")
    if args.ref_x is not None:
        ref = gemm_float(_load_npy(args.ref_x, "float activations"),
                         _load_npy(args.ref_w, "float weights"))
        if ref.shape != yf.shape:
            raise UsageError(f"the float product has shape {ref.shape}, the results {yf.shape}")
        msg += f"; SQNR against the float product {sqnr_db(ref, yf):.2f} dB"
    print(msg)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m golden`` argument parser."""
    parser = _Parser(prog="golden", description="Bit-exact golden model of the compressed GEMM.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("compress", help="prune, quantize and pack float weights",
                       description="Compress float weights [K, N] into a layer file (.npz).")
    p.add_argument("weights", help="FILE.npy (float [K, N]) or FILE.safetensors:TENSOR "
                                   "(PyTorch [out, in], transposed to [K, N])")
    p.add_argument("--format", choices=list(FORMATS), help="element format (required unless "
                                                          "--nvfp4)")
    p.add_argument("--sparsity", default="dense", choices=list(SPARSITY_PATTERNS))
    p.add_argument("--group", type=int, default=None,
                   help="group size along K (default: K, or 32 for pow2)")
    p.add_argument("--scale", choices=list(SCALE_KINDS), help="scale kind (required unless "
                                                             "--nvfp4)")
    p.add_argument("--scale-bits", type=int, default=None,
                   help="width of int scales (default 16; 19 with --nvfp4)")
    p.add_argument("--nvfp4", action="store_true",
                   help="NVFP4: fp4_e2m1 elements, an E4M3 scale per 16 as an int scale "
                        "(E4M3 * 2^9), the fp32 tensor scale written beside the layer")
    p.add_argument("--tensor-scale-out", metavar="T.npy",
                   help="--nvfp4: where to write the fp32 tensor scale (default OUTPUT with "
                        ".tscale.npy)")
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
    p.add_argument("--block", metavar="BKxBN",
                   help="block sparsity: drop whole BK x BN blocks (SPEC §3)")
    p.add_argument("--block-density", type=float, metavar="D",
                   help="fraction of the blocks kept, by block norm (with --block)")
    p.add_argument("--block-x", metavar="X.npy",
                   help="calibration activations [M, K]: activation-aware block scores")
    p.add_argument("-o", "--output", required=True, metavar="L.npz")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("gemm", help="run the bit-exact GEMM",
                       description="Y = requant(sum_g scale_g * P_g) on int8 or MX "
                                   "activations.")
    p.add_argument("--x", required=True, metavar="X.npy",
                   help="int8 activations [M, K], or MX element codes (int8 for mxint8, uint8 "
                        "for fp8) with --x-exp")
    p.add_argument("--layer", metavar="L.npz", help="the layer (or --experts)")
    p.add_argument("--experts", metavar="A.npz,B.npz,...",
                   help="grouped (MoE) GEMM: expert layer files, all [K, N]")
    p.add_argument("--routing", metavar="R.npy",
                   help="with --experts: int expert index per token row [M], or [M, k] for "
                        "top-k (result [M, k, N], uncombined)")
    p.add_argument("--out-stages", metavar="S,S,...",
                   help="with --experts: raw or requant per expert (default --out-stage)")
    p.add_argument("--x-format", choices=("int8", *MX_ACT_FORMATS), default=None,
                   help="activation format (default int8, or mxint8 with --x-exp)")
    p.add_argument("--x-exp", metavar="E.npy", help="uint8 E8M0 block exponents [M, K/32] of "
                                                    "MX activations")
    p.add_argument("--frac-bits", type=int, default=16, help="pow2 fractional bits (default 16)")
    p.add_argument("--t-window", type=_parse_window, default=(-32, 8), metavar="LO:HI",
                   help="pow2 exponent window (default -32:8; write --t-window=-40:8)")
    p.add_argument("--out-stage", choices=["raw", "requant"], default="raw")
    p.add_argument("-o", "--output", required=True, metavar="Y.npy",
                   help="int64 raw accumulator or int8 requantized output")
    p.add_argument("--err-out", metavar="E.npy", help="write the bool error flags [M, N]")
    p.set_defaults(func=cmd_gemm)

    p = sub.add_parser("import", help="a GPTQ / AWQ / 2:4 / BitNet / NVFP4 checkpoint layer -> "
                                      "layer file",
                       description="Read one linear layer of a quantized checkpoint "
                                   "(safetensors) and write it as a layer file; the tensor "
                                   "layouts are in docs/IMPORTERS.md.")
    p.add_argument("kind", choices=list(IMPORT_TENSORS),
                   help="; ".join(f"{k}: {', '.join(v)}" for k, v in IMPORT_TENSORS.items()))
    p.add_argument("checkpoint", metavar="FILE.safetensors")
    p.add_argument("--prefix", default="", metavar="P",
                   help="tensor name prefix, e.g. model.layers.0.mlp.down_proj (reads P.qweight "
                        "...; a name with '?' is optional)")
    p.add_argument("--gptq-version", type=int, choices=(1, 2), default=1,
                   help="GPTQ zero-point convention: 1 stores z-1 (AutoGPTQ), 2 stores z")
    p.add_argument("--int4-if-symmetric", action="store_true",
                   help="GPTQ/AWQ: write int4 instead of uint4 when every zero point is 8")
    p.add_argument("--format", default="int8", choices=("int8", "int4"),
                   help="2:4 element format (default int8)")
    p.add_argument("--scale", default="int", choices=list(SCALE_KINDS),
                   help="2:4 scale kind (default int)")
    p.add_argument("--group", type=int, default=None, help="2:4 group size (default K)")
    p.add_argument("--meta-layout", default="plain", choices=("plain", "cutlass"),
                   help="sparse24-packed metadata layout")
    p.add_argument("--shape", type=_shape, metavar="OUT,IN", help="bitnet-i2s weight shape")
    p.add_argument("--tensor-scale-out", metavar="T.npy",
                   help="nvfp4: where to write the per-tensor scale (default OUTPUT with "
                        ".tscale.npy)")
    p.add_argument("--block", type=int, default=128, choices=(64, 128),
                   help="bitnet-i2s block (128 x86, 64 ARM builds)")
    p.add_argument("--scale-bits", type=int, default=16, help="width of int scales (default 16)")
    p.add_argument("--perm-out", metavar="P.npy",
                   help="GPTQ act-order input permutation (default OUTPUT with .perm.npy)")
    p.add_argument("-o", "--output", required=True, metavar="L.npz")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("quantize", help="float activations -> int8 or MX codes",
                       description="Quantize float activations [M, K] for the GEMM.")
    p.add_argument("x", metavar="X.npy", help="float activations [M, K]")
    p.add_argument("--kind", default="int8", choices=("int8", *MX_ACT_FORMATS),
                   help="int8: symmetric, scale max|x|/127 per token (or --per-tensor); "
                        "mxint8, fp8_e4m3, fp8_e5m2: OCP MX blocks of 32 with E8M0 exponents "
                        "(floor(log2 amax) - emax_elem, elements RNE, saturating)")
    p.add_argument("--per-tensor", action="store_true",
                   help="int8: one scale for the whole tensor (what requant needs)")
    p.add_argument("--rceil", action="store_true",
                   help="MX kinds: RCEIL, round amax/max_elem up to a power of two")
    p.add_argument("--scale-out", metavar="S.npy",
                   help="int8 scales (default OUTPUT with .scale.npy)")
    p.add_argument("--exp-out", metavar="E.npy",
                   help="MX exponents (default OUTPUT with .exp.npy)")
    p.add_argument("-o", "--output", required=True, metavar="XQ.npy")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("requant-params", help="float scales -> out_mult/out_shift in a layer",
                       description="Set a layer's int8 output stage from float scales with "
                                   "TFLite's QuantizeMultiplier rule (M0 in [2^30, 2^31), "
                                   "shift).")
    p.add_argument("layer", metavar="L.npz")
    p.add_argument("--x-scale", required=True, metavar="S|S.npy",
                   help="per-tensor activation scale (x = x_q * S; 1 for MXINT8)")
    p.add_argument("--y-scale", metavar="S|S.npy", help="int8 output scale")
    p.add_argument("--y-scale-from", metavar="Y.npy",
                   help="calibrate the output scale as max|Y|/127 from float outputs")
    p.add_argument("--bias", metavar="B.npy", help="float bias [N]")
    p.add_argument("--zp", type=int, default=0, help="output zero point (default 0)")
    p.add_argument("--y-scale-out", metavar="S.npy",
                   help="where to write the output scale (default OUTPUT with .yscale.npy)")
    p.add_argument("--frac-bits", type=int, default=16, help="pow2 fractional bits (default 16)")
    p.add_argument("-o", "--output", required=True, metavar="L.npz")
    p.set_defaults(func=cmd_requant_params)

    p = sub.add_parser("dequantize", help="integer results -> floats (and SQNR vs float)",
                       description="Raw accumulators times x_scale and 2^scale_exp, or int8 "
                                   "outputs times the output scale.")
    p.add_argument("y", metavar="Y.npy", help="int64 raw or int8 requantized results")
    p.add_argument("--layer", required=True, metavar="L.npz")
    p.add_argument("--x-scale", metavar="S|S.npy", help="activation scale(s) of raw results")
    p.add_argument("--y-scale", metavar="S|S.npy", help="output scale of int8 results")
    p.add_argument("--frac-bits", type=int, default=16, help="pow2 fractional bits (default 16)")
    p.add_argument("--ref-x", metavar="X.npy", help="float activations for the comparison")
    p.add_argument("--ref-w", metavar="W.npy", help="float weights [K, N] for the comparison")
    p.add_argument("-o", "--output", required=True, metavar="YF.npy")
    p.set_defaults(func=cmd_dequantize)

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
