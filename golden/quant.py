"""Quantizers (SPEC §4) and the float → stored scale conversions of each scale kind.

Vocabulary used throughout:

* *element domain*: the real value of an element as its producer means it (``fp4_e2m1`` ±6,
  ``mxint8`` code/64, integers for the integer formats), see `golden.formats.decode_float`;
* *MAC domain*: the integer the multiplier sees (`golden.formats.decode`), which is the element
  value times ``2**−pow2_adj``. A weight is ``w ≈ (v − z) · S_mac`` with
  ``S_mac = S_elem · 2**pow2_adj``.

Group statistics (amax, min/max, mean|w|) are taken over the weights that pruning kept only;
pruned weights are not part of any group's range.
"""

from __future__ import annotations

import numpy as np

from .formats import FORMATS, activation_format, decode, encode, format_info
from .tables import E8M0_BIAS, MX_ACT_FORMATS, MX_BLOCK

__all__ = [
    "ELEMENT_MAX",
    "MX_BLOCK",
    "column_pow2_exponents",
    "expand_groups",
    "group_amax",
    "group_float_scales",
    "int_scales",
    "quantize_activations_int8",
    "quantize_activations_mx",
    "quantize_activations_mxint8",
    "quantize_elements",
    "quantize_mx",
    "quantize_asymmetric",
    "quantize_symmetric",
    "quantize_ternary",
    "quantize_uint2",
    "quantize_uint4",
    "shared_exponents",
    "uint4_zero_points",
    "zero_points",
]

# Largest element a symmetric quantizer emits, in the element domain (SPEC §4: ±(2^(b−1)−1)).
ELEMENT_MAX = {f.name: f.symmetric_max for f in FORMATS.values() if not f.has_zero_point}


def _as_weights(w) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D [K, N], got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("weights contain NaN or infinity")
    return w


def _grouped(a: np.ndarray, group: int) -> np.ndarray:
    K, N = a.shape
    if group <= 0 or K % group:
        raise ValueError(f"group size {group} does not divide K={K}")
    return a.reshape(K // group, group, N)


def expand_groups(a, group: int) -> np.ndarray:
    """Repeat a per-(group, column) array ``[K/G, N]`` to per-(k, column) ``[K, N]``."""
    return np.repeat(np.asarray(a), group, axis=0)


def _keep(w: np.ndarray, keep) -> np.ndarray:
    if keep is None:
        return np.ones(w.shape, dtype=bool)
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != w.shape:
        raise ValueError(f"keep mask shape {keep.shape} differs from weights {w.shape}")
    return keep


def _floor_log2(x: np.ndarray) -> np.ndarray:
    """Exact ``floor(log2(x))`` for positive floats."""
    _, e = np.frexp(x)
    return e.astype(np.int64) - 1


def _ceil_log2(x: np.ndarray) -> np.ndarray:
    """Exact ``ceil(log2(x))`` for positive floats."""
    m, e = np.frexp(x)
    return e.astype(np.int64) - (m == 0.5)


# ----------------------------------------------------------------------------- float scales


def group_float_scales(fmt: str, w, group: int, keep=None) -> tuple[np.ndarray, np.ndarray]:
    """Float scale of every (group, column) in the element domain, per SPEC §4.

    Parameters
    ----------
    fmt : str
        Element format.
    w : array_like of float, shape (K, N)
    group : int
        Group size along K.
    keep : array_like of bool, shape (K, N), optional
        Weights kept by pruning; statistics use these only.

    Returns
    -------
    scale : ndarray of float64, shape (K/G, N)
        ``amax / element_max`` for the symmetric formats (``int8`` 127, ``int4`` 7, ``int2`` 1,
        ``fp4_e2m1`` 6, ``mxint8`` 127/64, ``fp8_e4m3`` 448, ``fp8_e5m2`` 57344);
        ``γ = mean|w|`` for ``ternary``; ``(max − min) / 15`` for ``uint4`` (``/ 3`` for
        ``uint2``) with GPTQ's range that always includes 0 (an all zero group gets GPTQ's
        ``[−1, 1]``). Groups whose statistic is 0 get scale 0.
    wmin : ndarray of float64, shape (K/G, N)
        The range minimum used by the zero-point formats (``min(min w, 0)``); zeros for the
        other formats.
    """
    info = format_info(fmt)
    w = _as_weights(w)
    kept = _keep(w, keep)
    wg = _grouped(np.where(kept, w, 0.0), group)
    if fmt == "ternary":
        count = _grouped(kept, group).sum(axis=1)
        gamma = np.abs(wg).sum(axis=1) / np.maximum(count, 1)
        return gamma, np.zeros_like(gamma)
    if info.has_zero_point:
        # GPTQ Quantizer.find_params: the range always contains 0; an empty one becomes [-1, 1].
        lo = np.minimum(np.where(_grouped(kept, group), wg, np.inf).min(axis=1), 0.0)
        hi = np.maximum(np.where(_grouped(kept, group), wg, -np.inf).max(axis=1), 0.0)
        empty = (lo == 0) & (hi == 0)
        lo = np.where(empty, -1.0, lo)
        hi = np.where(empty, 1.0, hi)
        return (hi - lo) / float(info.value_max - info.value_min), lo
    amax = np.abs(wg).max(axis=1)
    return amax / ELEMENT_MAX[fmt], np.zeros_like(amax)


def group_amax(w, group: int, keep=None) -> np.ndarray:
    """``max |w|`` over the kept weights of every (group, column), shape (K/G, N)."""
    w = _as_weights(w)
    return np.abs(_grouped(np.where(_keep(w, keep), w, 0.0), group)).max(axis=1)


def zero_points(wmin, scale, fmt: str = "uint4") -> np.ndarray:
    """GPTQ zero point ``z = clamp(round(−min / s), 0, zero_max)`` (RNE); 0 where ``s == 0``.

    ``zero_max`` is the format's largest zero point: 15 for ``uint4``, 3 for ``uint2``.
    """
    info = format_info(fmt)
    if not info.has_zero_point:
        raise ValueError(f"{fmt} has no zero points")
    wmin = np.asarray(wmin, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    safe = np.where(scale > 0, scale, 1.0)
    z = np.clip(np.rint(-wmin / safe), 0, info.zero_max)
    return np.where(scale > 0, z, 0).astype(np.uint8)


def uint4_zero_points(wmin, scale) -> np.ndarray:
    """GPTQ zero point ``z = clamp(round(−min / s), 0, 15)`` (RNE); 0 where ``s == 0``."""
    return zero_points(wmin, scale, "uint4")


# ----------------------------------------------------------------------------- stored scales


def int_scales(scale_mac, scale_bits: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Float scales to ``scale_bits``-wide signed integers with a per column power of two.

    ``scale_mac ≈ s · 2**scale_exp[n]`` where ``scale_exp[n]`` is the smallest exponent that
    keeps the column's largest ``|scale|`` within ``2**(scale_bits−1) − 1``, so that value uses
    the full range. ``s = round(scale / 2**scale_exp)`` (RNE). An all-zero column gets
    ``scale_exp = 0`` and zero scales.

    Returns
    -------
    s : ndarray of int32, shape like ``scale_mac``
    scale_exp : ndarray of int32, shape (N,)
    """
    if not 2 <= int(scale_bits) <= 32:
        raise ValueError(f"scale_bits must lie in 2..32, got {scale_bits}")
    scale_mac = np.asarray(scale_mac, dtype=np.float64)
    qs = float((1 << (int(scale_bits) - 1)) - 1)
    smax = np.abs(scale_mac).max(axis=0)
    pos = smax > 0
    safe = np.where(pos, smax, 1.0)
    e = _ceil_log2(safe / qs)
    # Fix the float division's last-bit doubt with exact comparisons (ldexp is exact).
    e = e + (np.ldexp(qs, e) < safe)
    e = e - (np.ldexp(qs, e - 1) >= safe)
    e = np.where(pos, e, 0)
    s = np.rint(np.ldexp(scale_mac, -e[None, :]))
    return np.clip(s, -qs, qs).astype(np.int32), e.astype(np.int32)


def column_pow2_exponents(scale_mac) -> np.ndarray:
    """Per column exponent of the ``none`` kind: the column's largest scale rounded up to 2**e.

    Returns int32 ``[N]``; an all-zero column gets 0.
    """
    smax = np.abs(np.asarray(scale_mac, dtype=np.float64)).max(axis=0)
    return np.where(smax > 0, _ceil_log2(np.where(smax > 0, smax, 1.0)), 0).astype(np.int32)


def shared_exponents(fmt: str, stat, rceil: bool = False) -> np.ndarray:
    """Shared power-of-two exponents (unbiased, int64) for ``pow2`` scales.

    Parameters
    ----------
    fmt : str
        Element format.
    stat : array_like of float
        Per block statistic: ``amax`` for every format but ``ternary``, ``γ = mean|w|`` there.
    rceil : bool
        False: OCP MX §6.3 ``floor(log2(amax)) − emax_elem`` (``emax_elem`` = floor(log2 of the
        largest element): fp4 2, mxint8 0, fp8_e4m3 8, fp8_e5m2 15, int8 6, int4 2, int2 0),
        elements then saturate.
        True: RCEIL, the smallest ``e`` with ``amax ≤ element_max · 2**e`` (no saturation).
        For ``ternary`` the scale is γ itself: ``floor(log2 γ)`` or ``ceil(log2 γ)``.

    Returns
    -------
    ndarray of int64
        Exponents clamped to the E8M0 range −127..127; a zero statistic gives 0 (scale 1.0,
        harmless because the block's elements are all 0, and inside every exponent window).
    """
    stat = np.asarray(stat, dtype=np.float64)
    pos = stat > 0
    safe = np.where(pos, stat, 1.0)
    if fmt == "ternary":
        e = _ceil_log2(safe) if rceil else _floor_log2(safe)
    elif rceil:
        emax = ELEMENT_MAX[fmt]
        e = _ceil_log2(safe / emax)
        e = e + (np.ldexp(emax, e) < safe)
        e = e - (np.ldexp(emax, e - 1) >= safe)
    else:
        e = _floor_log2(safe) - int(_floor_log2(np.array(ELEMENT_MAX[fmt])))
    return np.clip(np.where(pos, e, 0), -E8M0_BIAS, E8M0_BIAS).astype(np.int64)


# ----------------------------------------------------------------------------- elements


def quantize_elements(fmt: str, w, scale_elem, zeros=None) -> np.ndarray:
    """Quantize weights with given per-element scales (element domain) to codes.

    Symmetric formats: ``clamp(round(w / s), ±element_max)`` then `golden.formats.encode` (RNE,
    ``fp4_e2m1`` and the fp8 formats through ``ml_dtypes``, saturating); the float formats'
    negative zero is normalised to code 0. ``uint4`` / ``uint2``: ``clamp(round(w / s) + z, 0,
    15 / 3)``. Where ``s == 0`` the element is 0 (code ``z`` for the zero-point formats).

    Parameters
    ----------
    fmt : str
    w : array_like of float, shape (K, N)
    scale_elem : array_like of float, broadcastable to (K, N)
    zeros : array_like of int, broadcastable to (K, N), optional
        Zero points (``uint4``, ``uint2``).

    Returns
    -------
    ndarray of uint8, shape (K, N)
    """
    info = format_info(fmt)
    w = np.asarray(w, dtype=np.float64)
    s = np.broadcast_to(np.asarray(scale_elem, dtype=np.float64), w.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = w / s
    zero_scale = s == 0
    if zero_scale.any():
        ratio[zero_scale] = 0.0
    if info.has_zero_point:
        z = np.zeros(w.shape) if zeros is None else np.broadcast_to(zeros, w.shape)
        q = np.clip(np.rint(ratio) + z, info.value_min, info.value_max)
        return q.astype(np.uint8)
    emax = ELEMENT_MAX[fmt]
    np.clip(ratio, -emax, emax, out=ratio)  # symmetric: ±(2^(b−1)−1), fp4 ±6, mxint8 ±127/64
    codes = encode(fmt, ratio)
    if info.encoding in ("e2m1", "minifloat"):
        codes[codes == info.n_codes // 2] = 0  # −0.0 → +0.0
    return codes


def quantize_symmetric(w, bits: int, group: int, keep=None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric integer quantization per group (SPEC §4, TFLite / AWQ style).

    ``s = amax / (2**(bits−1) − 1)``, ``q = clamp(round(w / s), ±(2**(bits−1) − 1))`` (RNE).

    Returns
    -------
    q : ndarray of int64, shape (K, N)
    s : ndarray of float64, shape (K/G, N)
    """
    fmt = {8: "int8", 4: "int4", 2: "int2"}.get(bits)
    if fmt is None:
        raise ValueError(f"symmetric int quantization supports 8, 4 or 2 bits, not {bits}")
    s, _ = group_float_scales(fmt, w, group, keep)
    q, _ = decode(fmt, quantize_elements(fmt, w, expand_groups(s, group)))
    return q, s


def quantize_asymmetric(w, group: int, keep=None, fmt: str = "uint4"):
    """GPTQ asymmetric quantization per group (SPEC §4): ``uint4`` or ``uint2``.

    ``s = (max − min) / q_max``, ``z = round(−min / s)``, ``q = clamp(round(w / s) + z, 0,
    q_max)`` with ``q_max`` = 15 (``uint4``) or 3 (``uint2``), RNE, GPTQ's range that always
    contains 0.

    Returns
    -------
    q : ndarray of uint8, shape (K, N)
    s : ndarray of float64, shape (K/G, N)
    z : ndarray of uint8, shape (K/G, N)
    """
    if not format_info(fmt).has_zero_point:
        raise ValueError(f"asymmetric quantization needs a zero-point format, not {fmt}")
    s, wmin = group_float_scales(fmt, w, group, keep)
    z = zero_points(wmin, s, fmt)
    q = quantize_elements(fmt, w, expand_groups(s, group), expand_groups(z, group))
    return q, s, z


def quantize_uint4(w, group: int, keep=None):
    """GPTQ asymmetric uint4 per group: ``s = (max − min)/15``, ``z = round(−min/s)``.

    Returns
    -------
    q : ndarray of uint8, shape (K, N)
        ``clamp(round(w/s) + z, 0, 15)``.
    s : ndarray of float64, shape (K/G, N)
    z : ndarray of uint8, shape (K/G, N)
    """
    return quantize_asymmetric(w, group, keep, "uint4")


def quantize_uint2(w, group: int, keep=None):
    """GPTQ asymmetric 2-bit per group: ``s = (max − min)/3``, ``z = round(−min/s)``.

    Returns ``(q, s, z)`` as `quantize_asymmetric`, with ``q`` in 0..3 and ``z`` in 0..3.
    """
    return quantize_asymmetric(w, group, keep, "uint2")


def quantize_ternary(w, group: int, keep=None) -> tuple[np.ndarray, np.ndarray]:
    """BitNet b1.58 ternary per group: ``γ = mean|w|``, ``q = clamp(round(w/γ), −1, 1)``.

    Returns
    -------
    q : ndarray of int64, shape (K, N), values −1, 0, 1
    gamma : ndarray of float64, shape (K/G, N)
    """
    gamma, _ = group_float_scales("ternary", w, group, keep)
    q, _ = decode("ternary", quantize_elements("ternary", w, expand_groups(gamma, group)))
    return q, gamma


def quantize_mx(w, fmt: str, keep=None, rceil: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """OCP MX block quantization along K (blocks of 32) with E8M0 shared scales.

    Parameters
    ----------
    w : array_like of float, shape (K, N)
    fmt : str
        Element format (``fp4_e2m1``, ``mxint8``, ``fp8_e4m3``, ``fp8_e5m2``, or a symmetric
        int format / ``ternary``): MXFP4, MXINT8, MXFP8 (E4M3 / E5M2) and the int variants.
    keep : array_like of bool, optional
        Pruning mask; block statistics use kept weights only.
    rceil : bool
        Use RCEIL instead of OCP's floor rule (see `shared_exponents`).

    Returns
    -------
    codes : ndarray of uint8, shape (K, N)
    e8m0 : ndarray of uint8, shape (K/32, N)
    """
    if "pow2" not in format_info(fmt).allowed_scales:
        raise ValueError(f"{fmt} cannot use pow2 scales")
    if fmt == "ternary":
        stat, _ = group_float_scales(fmt, w, MX_BLOCK, keep)
    else:
        stat = group_amax(w, MX_BLOCK, keep)
    e = shared_exponents(fmt, stat, rceil)
    codes = quantize_elements(fmt, w, expand_groups(np.ldexp(1.0, e), MX_BLOCK))
    return codes, (e + E8M0_BIAS).astype(np.uint8)


# ----------------------------------------------------------------------------- activations


def _as_activations(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"activations must be 2-D [M, K], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("activations contain NaN or infinity")
    return x


def quantize_activations_int8(x) -> tuple[np.ndarray, np.ndarray]:
    """Per token symmetric int8: ``x_q = round(x · 127 / max|x|)`` (RNE).

    Returns
    -------
    x_q : ndarray of int8, shape (M, K)
    scale : ndarray of float64, shape (M,)
        ``max|x| / 127`` so that ``x ≈ x_q · scale``; 1.0 for an all-zero row (as TFLite).
    """
    x = _as_activations(x)
    amax = np.abs(x).max(axis=1, keepdims=True) if x.size else np.zeros((x.shape[0], 1))
    safe = np.where(amax > 0, amax, 1.0)
    x_q = np.clip(np.rint(x * 127.0 / safe), -127, 127).astype(np.int8)
    return x_q, np.where(amax[:, 0] > 0, amax[:, 0] / 127.0, 1.0)


def quantize_activations_mx(x, fmt: str = "mxint8", rceil: bool = False):
    """OCP MX activations: blocks of 32 along K, an E8M0 exponent per (token, block).

    The shared exponent follows OCP MX §6.3, ``floor(log2(amax)) − emax_elem`` (``emax_elem``
    0 for ``mxint8``, 8 for ``fp8_e4m3``, 15 for ``fp8_e5m2``), or RCEIL with ``rceil=True``;
    the elements are RNE and saturating (`quantize_mx`), −0 becomes +0.

    Parameters
    ----------
    x : array_like of float, shape (M, K)
        K a multiple of 32.
    fmt : str
        Activation format, one of ``mxint8``, ``fp8_e4m3``, ``fp8_e5m2``.
    rceil : bool
        Round ``amax / element_max`` up to a power of two instead (no saturation).

    Returns
    -------
    x_q : ndarray, shape (M, K)
        Element codes: int8 for ``mxint8`` (value ``x_q / 64``), uint8 fp8 codes otherwise.
    x_exp : ndarray of uint8, shape (M, K/32)
        E8M0 exponents: ``x ≈ decode_float(fmt, x_q) · 2**(x_exp − 127)``.
    """
    if activation_format(fmt) is None:
        raise ValueError(f"{fmt} is not an MX activation format ({', '.join(MX_ACT_FORMATS)})")
    x = _as_activations(x)
    if x.shape[1] % MX_BLOCK:
        raise ValueError(f"MX activations need K a multiple of {MX_BLOCK}, got K={x.shape[1]}")
    codes, e8m0 = quantize_mx(x.T, fmt, rceil=rceil)
    codes = codes.T.copy()
    return (codes.view(np.int8) if format_info(fmt).encoding == "twos_complement" else codes,
            e8m0.T.copy())


def quantize_activations_mxint8(x, rceil: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """OCP MXINT8 activations: blocks of 32 along K, E8M0 exponent per (token, block).

    Returns
    -------
    x_q : ndarray of int8, shape (M, K)
        Element codes (value ``x_q / 64``), RNE, saturating to ±127.
    x_exp : ndarray of uint8, shape (M, K/32)
        E8M0 exponents: ``x ≈ x_q / 64 · 2**(x_exp − 127)``.
    """
    return quantize_activations_mx(x, "mxint8", rceil)
