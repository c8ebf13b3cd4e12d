"""The compressor: float weights → pruned, quantized, packed `Layer` (SPEC §3, §4, §7)."""

from __future__ import annotations

import operator
import os

import numpy as np

from .blocks import (
    block_dense_keep,
    block_problem,
    block_scores,
    canonical_block_arrays,
    prune_blocks,
)
from .formats import SCALE_KINDS, decode, format_info
from .layer import Layer, validate_layer
from .quant import (
    _as_weights,
    column_pow2_exponents,
    expand_groups,
    group_float_scales,
    int_scales,
    quantize_elements,
    quantize_mx,
    zero_points,
)
from .sparsity import pack_nm, parse_sparsity, prune_nm
from .tables import MX_BLOCK

__all__ = ["compress", "compress_nvfp4", "load_weights", "nvfp4_layer", "resolve_group"]


def resolve_group(K: int, fmt: str, sparsity: str, scale_kind: str, group=None) -> int:
    """Check a (format, sparsity, group, scale kind) combination and return the group size.

    ``group=None`` means per-channel (``K``), or 32 for ``pow2``.

    Raises
    ------
    ValueError
        For an unknown format, sparsity or scale kind, a scale kind the format does not allow,
        a group that is not a multiple of the sparsity block or does not divide ``K``, or
        ``pow2`` with a group other than 32.
    """
    info = format_info(fmt)
    n_sp, m_sp = parse_sparsity(sparsity)
    if scale_kind not in SCALE_KINDS:
        raise ValueError(f"unknown scale kind {scale_kind!r}; expected none, int or pow2")
    if scale_kind not in info.allowed_scales:
        raise ValueError(
            f"scale kind {scale_kind!r} is not allowed for {fmt} "
            f"(allowed: {', '.join(info.allowed_scales)})"
        )
    if group is None:
        group = MX_BLOCK if scale_kind == "pow2" else K
    try:
        group = operator.index(group)
    except TypeError:
        raise ValueError(f"group must be an integer, not {group!r}") from None
    if K % m_sp:
        raise ValueError(f"K={K} is not divisible by the sparsity block M={m_sp} of {sparsity}")
    if scale_kind == "pow2" and group != MX_BLOCK:
        raise ValueError(f"pow2 (MX) scales need group {MX_BLOCK}, got {group}")
    if group <= 0 or K % group:
        raise ValueError(f"K={K} is not divisible by group {group}")
    if group % m_sp:
        raise ValueError(f"group {group} is not a multiple of the sparsity block M={m_sp}")
    return group


def compress(
    w_float,
    *,
    fmt: str,
    sparsity: str = "dense",
    group: int | None = None,
    scale_kind: str,
    scale_bits: int = 16,
    rceil: bool = False,
    saliency=None,
    block=None,
    block_density: float | None = None,
    block_x=None,
) -> Layer:
    """Prune, quantize and pack a float weight matrix into a `Layer`.

    Parameters
    ----------
    w_float : array_like of float, shape (K, N)
        Dense weights, reduction along K (rows), one column per output.
    fmt : str
        Element format.
    sparsity : str
        ``'dense'`` or ``'1:4'``, ``'2:4'``, ``'2:8'``, ``'4:8'``.
    group : int, optional
        Group size along K; default per-channel (K), or 32 for ``pow2``.
    scale_kind : str
        ``'none'``, ``'int'`` or ``'pow2'``.
    scale_bits : int
        Width of ``int`` scales (2..32).
    rceil : bool
        ``pow2`` only: round ``amax/element_max`` up to a power of two (no saturation) instead
        of OCP's floor rule.
    saliency : array_like of float, shape (K, N), optional
        Pruning score replacing ``|w|``.
    block : tuple of int, optional
        ``(bk, bn)``: block sparsity on top of the N:M pattern (SPEC §3, `golden.blocks`).
    block_density : float, optional
        Fraction of the blocks kept (required with ``block``): those of largest
        `golden.blocks.block_scores`, before N:M pruning.
    block_x : array_like of float, shape (M, K), optional
        Calibration activations: score blocks by ``Σ (w·‖x_k‖)²`` instead of ``Σ w²``.

    Returns
    -------
    Layer
        Validated, canonical layer: pruning first, then group statistics over the kept weights,
        scales converted to their stored form, elements quantized with the *stored* scale, and
        N:M slots packed canonically (a kept weight that quantized to zero is stored like a
        pruned one, so the file depends only on the dequantized weights).

    Notes
    -----
    ``scale_exp[n]`` is the power of two turning the integer GEMM result into floats
    (``w ≈ (v − z) · s · 2**scale_exp`` in the MAC domain, ``s = 1`` for ``none``); the
    element-domain factors of ``fp4_e2m1`` (1/2) and ``mxint8`` (1/64) are folded into it.
    """
    w = _as_weights(w_float)
    K, N = w.shape
    group = resolve_group(K, fmt, sparsity, scale_kind, group)
    if rceil and scale_kind != "pow2":
        raise ValueError("rceil only applies to pow2 scales")
    if scale_kind == "int" and not 2 <= operator.index(scale_bits) <= 32:
        raise ValueError(f"scale_bits must lie in 2..32, got {scale_bits}")
    info = format_info(fmt)
    n_sp, m_sp = parse_sparsity(sparsity)
    keep = prune_nm(w, n_sp, m_sp, saliency)
    block_mask = None
    if block is not None:
        problem = block_problem(block, K, N, m_sp, scale_kind)
        if problem or block_density is None:
            raise ValueError(f"block {tuple(block)}: {problem or 'needs a block density'}")
        block_mask = prune_blocks(w, block, block_density, score=block_scores(w, block, block_x))
        keep &= block_dense_keep(block, block_mask)
    w_kept = np.where(keep, w, 0.0)

    scales = scale_exp = zeros = None
    if scale_kind == "pow2":
        codes_dense, scales = quantize_mx(w, fmt, keep=keep, rceil=rceil)
    else:
        s_elem, wmin = group_float_scales(fmt, w, group, keep)
        s_mac = np.ldexp(s_elem, info.pow2_adj)
        if scale_kind == "int":
            scales, scale_exp = int_scales(s_mac, scale_bits)
            stored_mac = np.ldexp(scales.astype(np.float64), scale_exp[None, :])
        else:
            scale_exp = column_pow2_exponents(s_mac)
            stored_mac = np.broadcast_to(np.ldexp(1.0, scale_exp)[None, :], s_mac.shape)
        stored_elem = np.ldexp(stored_mac, -info.pow2_adj)
        if info.has_zero_point:
            zeros = zero_points(wmin, stored_elem, fmt)
        codes_dense = quantize_elements(
            fmt,
            w_kept,
            expand_groups(stored_elem, group),
            None if zeros is None else expand_groups(zeros, group),
        )

    if n_sp == m_sp:
        codes, idx = codes_dense, None
    else:
        values, _ = decode(fmt, codes_dense)
        z_dense = 0 if zeros is None else expand_groups(zeros, group).astype(np.int64)
        nonzero = keep & (values != z_dense)
        codes, idx = pack_nm(codes_dense, nonzero, n_sp, m_sp, 0 if zeros is None else zeros)

    if block_mask is not None:
        codes, idx, scales, zeros = canonical_block_arrays(
            codes, idx, scales, zeros, block_shape=block, block_mask=block_mask, n_sp=n_sp,
            m_sp=m_sp, group=group, scale_kind=scale_kind)
    layer = Layer(
        format=fmt,
        sparsity=sparsity,
        group=group,
        scale_kind=scale_kind,
        shape=(K, N),
        codes=np.ascontiguousarray(codes, dtype=np.uint8),
        idx=idx,
        scales=scales,
        scale_exp=scale_exp,
        zeros=zeros,
        scale_bits=int(scale_bits) if scale_kind == "int" else None,
        block_shape=None if block is None else np.asarray(block, np.int64),
        block_mask=block_mask,
    )
    validate_layer(layer)
    return layer


def load_weights(spec: str) -> np.ndarray:
    """Load a float weight matrix ``[K, N]`` for the compressor.

    Parameters
    ----------
    spec : str
        ``FILE.npy`` holding a float ``[K, N]`` array, or ``FILE.safetensors:TENSOR`` holding a
        PyTorch-layout ``[out, in]`` tensor, returned transposed as ``[K = in, N = out]``. The
        tensor name may be left out when the file holds exactly one tensor.

    Returns
    -------
    ndarray of float64, shape (K, N)

    Raises
    ------
    ValueError
        Unreadable file, unknown tensor, not 2-D, not floating point, or not finite.
    """
    path, sep, tensor = spec.partition(".safetensors:")
    if sep:
        path += ".safetensors"
    else:
        path, tensor = spec, None
    if not os.path.isfile(path):
        raise ValueError(f"weights file {path!r} does not exist")
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        try:
            with safe_open(path, framework="np") as f:
                names = list(f.keys())
                if tensor is None:
                    if len(names) != 1:
                        raise ValueError(
                            f"{path} holds {len(names)} tensors; name one as {path}:TENSOR "
                            f"({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})"
                        )
                    tensor = names[0]
                if tensor not in names:
                    raise ValueError(f"tensor {tensor!r} not found in {path}")
                a = f.get_tensor(tensor)
        except ValueError:
            raise
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise ValueError(f"cannot read {path} as safetensors ({exc})") from None
        a = np.asarray(a)
        if a.ndim != 2:
            raise ValueError(f"tensor {tensor!r} must be 2-D [out, in], got shape {a.shape}")
        a = a.T
    else:
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"cannot read {path} as .npy ({exc})") from None
        if not isinstance(a, np.ndarray):
            raise ValueError(f"{path} is not a single .npy array")
        if a.ndim != 2:
            raise ValueError(f"weights in {path} must be 2-D [K, N], got shape {a.shape}")
    if a.dtype.kind != "f" and "float" not in a.dtype.name:  # ml_dtypes floats are kind 'V'
        raise ValueError(f"weights must be floating point, got {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError("weights contain NaN or infinity")
    return np.ascontiguousarray(a)


# ----------------------------------------------------------------------------- NVFP4

#: NVFP4 (SPEC §4): FP4 E2M1 elements, an E4M3 scale per 16 consecutive k, an fp32 tensor scale.
NVFP4_GROUP = 16
#: Width of the ``int`` scale holding an E4M3 scale · 2**9 (up to 448 · 2**9 = 229 376).
NVFP4_SCALE_BITS = 19
#: ``scale_exp`` of an NVFP4 layer: the −9 of the E4M3 scale and the element's ×2.
NVFP4_SCALE_EXP = -10


def nvfp4_layer(codes, scale_codes, *, sparsity: str = "dense", idx=None,
                scale_bits: int = NVFP4_SCALE_BITS) -> Layer:
    """An NVFP4 weight as a SPEC ``int``-scale layer (``fp4_e2m1``, ``G = 16``).

    Parameters
    ----------
    codes : array_like of uint8
        E2M1 codes, ``[K, N]`` dense or N:M slots with ``idx``.
    scale_codes : array_like of uint8, shape (K/16, N)
        E4M3 block scale codes; the stored ``int`` scale is the E4M3 integer (value · 2**9).
        NaN codes are refused.
    sparsity, idx
        N:M pattern and slot indices of ``codes``.
    scale_bits : int
        Width of the stored scales, at least 19.

    Returns
    -------
    Layer
        ``scale_exp = −10`` in every column: ``w = v · s · 2**−10`` with ``v`` the ×2 element
        integer, the dequantization before the per-tensor scale.
    """
    from .formats import decode

    scale_codes = np.asarray(scale_codes)
    if scale_codes.dtype != np.uint8 or scale_codes.ndim != 2:
        raise ValueError(f"NVFP4 scales must be uint8 E4M3 codes [K/16, N], got "
                         f"{scale_codes.dtype} {scale_codes.shape}")
    if operator.index(scale_bits) < NVFP4_SCALE_BITS:
        raise ValueError(f"NVFP4 scales need scale_bits >= {NVFP4_SCALE_BITS} (E4M3 · 2**9 up to "
                         f"229376), got {scale_bits}")
    s, bad = decode("fp8_e4m3", scale_codes)
    if bad.any():
        g, n = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(f"NVFP4 block scale {g} of column {n} is an E4M3 NaN code "
                         f"({int(bad.sum())} NaN scales)")
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    n_sp, m_sp = parse_sparsity(sparsity)
    K, N = scale_codes.shape[0] * NVFP4_GROUP, scale_codes.shape[1]
    layer = Layer(format="fp4_e2m1", sparsity=sparsity, group=NVFP4_GROUP, scale_kind="int",
                  shape=(K, N), codes=codes, idx=idx, scales=s.astype(np.int32),
                  scale_exp=np.full(N, NVFP4_SCALE_EXP, np.int32),
                  scale_bits=int(scale_bits))
    validate_layer(layer)
    return layer


def compress_nvfp4(w_float, *, sparsity: str = "dense", saliency=None,
                   scale_bits: int = NVFP4_SCALE_BITS) -> tuple[Layer, float]:
    """Quantize float weights to NVFP4 the way NVIDIA's recipe does, as an ``int``-scale layer.

    Pruning first (as in `compress`); then, over the kept weights: the fp32 per-tensor scale
    ``T = amax / (6 · 448)`` (1.0 for an all-zero tensor); per block of 16 consecutive k the
    E4M3 scale ``RNE(block_amax / (6 · T))``, saturating at 448 (code 0 for an all-zero
    block); elements ``RNE(w / (scale · T))`` in E2M1, saturating at ±6, −0 as +0.

    Returns
    -------
    layer : Layer
        `nvfp4_layer`: ``fp4_e2m1``, ``G = 16``, ``int`` scales = E4M3 · 2**9,
        ``scale_exp = −10``.
    tensor_scale : float
        The fp32 per-tensor scale ``T`` (a float32 value): the weights are
        ``dequantize_weights(layer) · T``. It belongs to the host or the requant stage
        (multiply it into the activation scale of `golden.host.requant_params`).
    """
    from .formats import encode

    w = _as_weights(w_float)
    K, N = w.shape
    resolve_group(K, "fp4_e2m1", sparsity, "int", NVFP4_GROUP)
    n_sp, m_sp = parse_sparsity(sparsity)
    keep = prune_nm(w, n_sp, m_sp, saliency)
    w_kept = np.where(keep, w, 0.0)
    amax = float(np.abs(w_kept).max(initial=0.0))
    tensor_scale = float(np.float32(amax / (6.0 * 448.0))) if amax > 0 else 1.0
    if tensor_scale == 0.0 or not np.isfinite(tensor_scale):
        raise ValueError(f"weights with max |w| = {amax:g} have no float32 NVFP4 tensor scale")
    block_amax = np.abs(w_kept).reshape(K // NVFP4_GROUP, NVFP4_GROUP, N).max(axis=1)
    scale_codes = encode("fp8_e4m3", block_amax / (6.0 * tensor_scale))
    scale_codes[scale_codes == 0x80] = 0
    scale = np.ldexp(decode("fp8_e4m3", scale_codes)[0].astype(np.float64), -9)
    codes_dense = quantize_elements("fp4_e2m1", w_kept,
                                    expand_groups(scale * tensor_scale, NVFP4_GROUP))
    idx = None
    codes = codes_dense
    if n_sp != m_sp:
        values, _ = decode("fp4_e2m1", codes_dense)
        codes, idx = pack_nm(codes_dense, keep & (values != 0), n_sp, m_sp, 0)
    return nvfp4_layer(codes, scale_codes, sparsity=sparsity, idx=idx,
                       scale_bits=scale_bits), tensor_scale
