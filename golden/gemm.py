"""The bit-exact compressed GEMM (SPEC §1, §4–§6, NUMERICS.md).

Every group sum ``P_g`` is an exact integer. It is computed with float64 matrix products, which
are exact here because every operand, product and partial sum is an integer far below 2**53
(checked before each product, with margin), whatever order or blocking the BLAS uses.
"""

from __future__ import annotations

import numpy as np

from .formats import E8M0_BIAS, E8M0_NAN, FORMATS, activation_format, decode, pow2_exponent
from .layer import Layer, validate_layer
from .quant import MX_BLOCK, expand_groups
from .sparsity import unpack_nm
from .tables import (
    ACT_MAX,
    INT32_MAX,
    INT32_MIN,
    OUT_MULT_MAX,
    OUT_MULT_MIN,
    OUT_SHIFT_MAX,
    OUT_SHIFT_MIN,
    signed_width,
)

__all__ = [
    "decode_activations",
    "dequantize_weights",
    "exact_matmul",
    "gemm",
    "gemm_float",
    "gemm_raw",
    "group_sum_bits",
    "mac_weights",
    "rdbpot",
    "requantize",
    "srdhm",
]

# Float64 products are used only while every partial sum stays below this bound. 2**53 would be
# enough for plain summation; the margin keeps exactness under any blocking a BLAS may choose.
_EXACT_FLOAT_BOUND = 2.0**50
_INT64_BOUND = 2.0**62


def mac_weights(layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """Dense weights as the MAC sees them: ``value − z`` at stored slots, 0 where pruned.

    Returns
    -------
    w : ndarray of float64, shape (K, N)
        Exact small integers (float64 so they feed BLAS directly).
    invalid_columns : ndarray of bool, shape (N,)
        Columns holding an invalid code (ternary ``0b10``) in any slot.
    """
    values, invalid = decode(layer.format, layer.codes)
    invalid_columns = invalid.any(axis=0)
    if layer.is_dense:
        w = values.astype(np.float64)
        if layer.zeros is not None:
            w -= expand_groups(layer.zeros, layer.group)
        return w, invalid_columns
    dense_codes, stored = unpack_nm(layer.codes, layer.idx, layer.n_sp, layer.m_sp, layer.K)
    w, _ = decode(layer.format, dense_codes)
    w = w.astype(np.float64)
    if layer.zeros is not None:
        w -= expand_groups(layer.zeros, layer.group)
    w *= stored  # pruned positions are real zeros, even for uint4 (NUMERICS.md)
    return w, invalid_columns


def _check_activations(x, K: int, x_format: str | None = None) -> np.ndarray:
    # int8 and MXINT8 element codes travel as int8, fp8 element codes as their uint8 bytes.
    want = np.int8 if x_format in (None, "mxint8") else np.uint8
    what = "int8" if x_format is None else f"{x_format} codes"
    if not isinstance(x, np.ndarray) or x.dtype != want:
        dtype = getattr(x, "dtype", type(x).__name__)
        raise ValueError(f"activations x ({what}) must be an array of {np.dtype(want).name}, "
                         f"got {dtype}")
    if x.ndim != 2 or x.shape[1] != K:
        raise ValueError(f"activations x must have shape [M, {K}] like the layer, got {x.shape}")
    return x


def decode_activations(x, x_format: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Activations as the MAC sees them (SPEC §1): the §2 integer of each element code.

    Parameters
    ----------
    x : ndarray, shape (M, K)
        int8 activations (``x_format`` None or ``'int8'``), MXINT8 codes (int8) or fp8 codes
        (uint8, ``'fp8_e4m3'`` / ``'fp8_e5m2'``).
    x_format : str, optional
        Activation format.

    Returns
    -------
    values : ndarray of float64, shape (M, K)
        Exact integers: the int8 value, the MXINT8 code, or the fp8 value · 2**9 / 2**16.
    invalid : ndarray of bool, shape (M, K)
        fp8 NaN / Inf codes (they count 0).
    """
    x_format = activation_format(x_format)
    x = np.asarray(x)
    if x_format is None:
        return x.astype(np.float64), np.zeros(x.shape, dtype=bool)
    values, invalid = decode(x_format, x.view(np.uint8) if x.dtype == np.int8 else x)
    return values.astype(np.float64), invalid


def group_sum_bits(layer: Layer, x_format: str | None = None) -> int:
    """Signed width of the largest ``|P_g|`` of ``layer`` with ``x_format`` activations.

    ``|P_g| <= (G · N_sp / M_sp) · max|x| · max|w − z|`` with ``max|x|`` 128 for int8 and
    MXINT8, 448·2**9 for E4M3, 57344·2**16 for E5M2 (an E4M3 × E4M3 product alone needs 37
    bits with its sign, E5M2 × int8 40).
    """
    x_format = activation_format(x_format)
    x_max = ACT_MAX if x_format is None else FORMATS[x_format].mac_abs_max
    bound = layer.group * layer.n_sp // layer.m_sp * x_max * FORMATS[layer.format].mac_abs_max
    return signed_width(-bound, bound)


def _check_x_exp(x_exp, M: int, K: int, scale_kind: str):
    if x_exp is None:
        return None
    if scale_kind != "pow2":
        raise ValueError(f"x_exp (MX activations) needs pow2 scales, layer has {scale_kind!r}")
    x_exp = np.asarray(x_exp)
    if x_exp.dtype != np.uint8:
        raise ValueError(f"x_exp must be uint8 E8M0 exponents, got {x_exp.dtype}")
    if x_exp.shape != (M, K // MX_BLOCK):
        raise ValueError(f"x_exp must have shape ({M}, {K // MX_BLOCK}), got {x_exp.shape}")
    return x_exp.astype(np.int64)


def _floor_shift(p: np.ndarray, shift) -> np.ndarray:
    """``floor(p · 2**shift)`` for int64 (or Python int) ``p`` and integer ``shift``."""
    shift = np.asarray(shift, dtype=np.int64)
    if p.dtype == object:
        s = np.broadcast_to(shift, p.shape).astype(object)
        return np.where(s >= 0, p << np.maximum(s, 0), p >> np.maximum(-s, 0))  # >>: floor
    if shift.size and shift.min() >= 0:
        return np.left_shift(p, shift)
    left = np.left_shift(p, np.clip(shift, 0, 62))
    right = np.right_shift(p, np.clip(-shift, 0, 63))  # arithmetic shift: floor
    return np.where(shift >= 0, left, right)


def exact_matmul(a: np.ndarray, b: np.ndarray, amax=None, bmax=None) -> np.ndarray:
    """``a @ b`` exactly, for float64 matrices holding integers (|entries| < 2**53).

    One float64 product when every partial sum stays below 2**50; otherwise the wider operand
    is split into high and low halves (``a = hi · 2**L + lo``, both exact) recursively and the
    partial products are recombined exactly. Returns int64, or an object array of Python ints
    when the result could leave the int64 range (fp8 × fp8 group sums need up to 69 bits).
    """
    amax = float(np.abs(a).max(initial=0.0)) if amax is None else float(amax)
    bmax = float(np.abs(b).max(initial=0.0)) if bmax is None else float(bmax)
    bound = a.shape[1] * amax * bmax
    if bound < _EXACT_FLOAT_BOUND or max(amax, bmax) <= 1:  # ±1 operands: nothing to split
        return (a @ b).astype(np.int64)
    split_a = amax >= bmax
    top = amax if split_a else bmax
    shift = max(int(top).bit_length() // 2, 1)
    unit = float(1 << shift)
    v = a if split_a else b
    hi = np.floor(v / unit)  # exact: division by a power of two, floor of an exact quotient
    lo = v - hi * unit  # 0 <= lo < 2**shift
    hmax = float(np.ceil(top / unit))
    if split_a:
        p_hi, p_lo = exact_matmul(hi, b, hmax, bmax), exact_matmul(lo, b, unit - 1, bmax)
    else:
        p_hi, p_lo = exact_matmul(a, hi, amax, hmax), exact_matmul(a, lo, amax, unit - 1)
    if bound < _INT64_BOUND and p_hi.dtype != object and p_lo.dtype != object:
        return (p_hi << shift) + p_lo
    return p_hi.astype(object) * (1 << shift) + p_lo.astype(object)


def _to_int64(a: np.ndarray) -> np.ndarray:
    """An int64 or object (Python int) array whose values fit int64, as int64."""
    return a if a.dtype == np.int64 else a.astype(np.int64)


def _group_products(xf: np.ndarray, w: np.ndarray, group: int):
    """Yield ``(g, P_g)`` with ``P_g`` the exact group sums (int64 or Python ints), (M, N)."""
    for g in range(w.shape[0] // group):
        sl = slice(g * group, (g + 1) * group)
        yield g, exact_matmul(xf[:, sl], w[sl])


def _accumulate_int(xf, w, layer: Layer, xmax: float) -> np.ndarray:
    """``Σ_g P_g · s`` for the ``int`` kind (``s = 1`` for ``none``)."""
    if layer.scale_kind == "none":
        s = None
        ws = w
    else:
        s = layer.scales.astype(np.int64)
        ws = w * expand_groups(s.astype(np.float64), layer.group)
    if w.size == 0 or xmax * np.abs(ws).sum(axis=0).max() < _EXACT_FLOAT_BOUND:
        return (xf @ ws).astype(np.int64)  # one exact product over all groups
    smax = 1.0 if s is None else float(np.abs(s).max())
    if layer.K * xmax * float(np.abs(w).max()) * smax >= _INT64_BOUND:
        raise ValueError("int GEMM result could exceed int64; the golden model refuses it")
    acc = np.zeros((xf.shape[0], layer.N), dtype=np.int64)
    for g, p in _group_products(xf, w, layer.group):
        p = _to_int64(p)
        acc += p if s is None else p * s[g]
    return acc


def _pow2_bound(xf, w, t_w, bad_w, x_exp, G, frac_bits, t_min, t_max) -> float:
    """An upper bound of ``|acc|`` of a ``pow2`` GEMM (float64, rounded up in effect).

    ``|floor(P · 2**s)| <= G · max|x| · max|w| · 2**s + 1`` per contribution; contributions with
    a NaN scale or ``t`` outside the window count 0. First one bound over the whole GEMM with
    each group's largest ``t``; when that is too coarse, the bound of every output.
    """
    M, N = xf.shape[0], w.shape[1]
    n_groups = w.shape[0] // G
    x_mg = np.abs(xf).reshape(M, n_groups, G).max(axis=2, initial=0.0)  # [M, G_count]
    w_gn = np.abs(w).reshape(n_groups, G, N).max(axis=1, initial=0.0)  # [G_count, N]
    t_w = np.where(bad_w, t_min - 1, t_w)
    b = None
    if x_exp is not None:
        b = np.where(x_exp == E8M0_NAN, t_min - 1 - t_w.max(initial=0), x_exp - E8M0_BIAS)
    t_hi = t_w.max(axis=1, initial=t_min) + (0 if b is None else b.max(axis=0, initial=0))
    scale = np.ldexp(1.0, np.minimum(t_hi, t_max) + frac_bits)
    coarse = (G * x_mg.max(axis=0, initial=0.0) * w_gn.max(axis=1, initial=0.0) * scale).sum()
    if coarse + n_groups < _INT64_BOUND:
        return float(coarse + n_groups)
    bound = np.zeros((M, N))
    for g in range(n_groups):
        t = t_w[g][None, :] + (0 if b is None else b[:, g][:, None])
        inside = (t >= t_min) & (t <= t_max)
        bound += np.where(inside, G * x_mg[:, g][:, None] * w_gn[g][None, :]
                          * np.ldexp(1.0, np.clip(t, t_min, t_max) + frac_bits) + 1, 0.0)
    return float(bound.max(initial=0.0))


def _accumulate_pow2(xf, w, layer: Layer, x_exp, xmax, frac_bits, t_min, t_max, fold=True,
                     x_format=None):
    """``Σ_g floor(P_g · 2**(t + frac_bits))`` with NaN / window errors (NUMERICS.md).

    Left-shifted contributions are exact, so with ``fold=True`` they are folded into the
    operands and summed by one product. Without ``x_exp`` shift and error depend on (group,
    column) only: left shifts fold into the weights, right shifts (floor) run per group on the
    columns that need them. With ``x_exp`` a group folds when all its shifts are left shifts
    and none of its outputs errs; the other groups run one by one. ``fold=False`` runs every
    group on its own (the straightforward form, kept as a cross-check).
    """
    M, N = xf.shape[0], layer.N
    e_w = layer.scales.astype(np.int64)
    # [G_count, N]; with MX activations their adjustment, the exponents come in below.
    t_w = pow2_exponent(layer.format, e_w, None if x_exp is None else E8M0_BIAS, x_format)
    bad_w = e_w == E8M0_NAN
    G = layer.group
    if _pow2_bound(xf, w, t_w, bad_w, x_exp, G, frac_bits, t_min, t_max) >= _INT64_BOUND:
        raise ValueError(
            f"pow2 accumulator could exceed int64 with t_max={t_max}, frac_bits={frac_bits}"
        )
    acc = np.zeros((M, N), dtype=np.int64)
    if x_exp is None:
        bad = bad_w | (t_w < t_min) | (t_w > t_max)  # [G_count, N]
        shift = t_w + frac_bits
        left = ~bad & (shift >= 0)
        right = ~bad & (shift < 0)
        factor = np.where(left, np.ldexp(1.0, np.clip(shift, 0, 62)), 0.0)
        w_left = w * expand_groups(factor, G)  # exact: small integers times powers of two
        if fold and xmax * np.abs(w_left).sum(axis=0).max(initial=0.0) < _EXACT_FLOAT_BOUND:
            acc += (xf @ w_left).astype(np.int64)
        else:
            for g in np.flatnonzero(left.any(axis=1)):
                sl = slice(g * G, (g + 1) * G)
                p = exact_matmul(xf[:, sl], w[sl] * left[g])
                acc += _to_int64(_floor_shift(p, np.where(left[g], shift[g], 0)))
        for g in np.flatnonzero(right.any(axis=1)):
            sl = slice(g * G, (g + 1) * G)
            cols = np.flatnonzero(right[g])
            p = exact_matmul(xf[:, sl], w[sl][:, cols])
            acc[:, cols] += _to_int64(_floor_shift(p, shift[g, cols]))  # floor
        return acc, np.broadcast_to(bad.any(axis=0), (M, N)).copy()
    b = x_exp - E8M0_BIAS  # [M, G_count] activation exponents
    t_lo = t_w.min(axis=1) + b.min(axis=0)
    t_hi = t_w.max(axis=1) + b.max(axis=0)
    # A group folds when none of its outputs errs and every shift is a left shift; then
    # P·2**(a + b) = Σ (x·2**(b + c)) (w·2**(a − c)) with c = min a, both factors integers.
    clean = ~bad_w.any(axis=1) & ~(x_exp == E8M0_NAN).any(axis=0)
    clean &= (t_lo >= t_min) & (t_hi <= t_max) & (t_lo + frac_bits >= 0)
    if fold and clean.any():
        c = t_w.min(axis=1)
        w_fold = w * expand_groups(
            np.where(clean[:, None], np.ldexp(1.0, np.where(clean[:, None], t_w - c[:, None], 0)),
                     0.0), G)
        x_pow = np.where(clean[None, :], b + c[None, :] + frac_bits, 0)
        x_fold = xf * expand_groups(np.where(clean[None, :], np.ldexp(1.0, x_pow), 0.0).T, G).T
        worst = float(np.abs(x_fold).max(initial=0.0)) * np.abs(w_fold).sum(axis=0).max()
        if worst < _EXACT_FLOAT_BOUND:
            acc += (x_fold @ w_fold).astype(np.int64)
        else:
            clean[:] = False
    err = np.zeros((M, N), dtype=bool)
    for g in np.flatnonzero(~clean) if fold else range(layer.n_groups):
        sl = slice(g * G, (g + 1) * G)
        p = exact_matmul(xf[:, sl], w[sl])
        t = t_w[g][None, :] + b[:, g][:, None]
        bad = bad_w[g][None, :] | (x_exp[:, g] == E8M0_NAN)[:, None]
        bad = bad | (t < t_min) | (t > t_max)  # [M, N]
        contribution = _floor_shift(p, np.where(bad, 0, t + frac_bits))
        if bad.any():
            contribution[bad] = 0
            err |= bad
        acc += _to_int64(contribution)
    return acc, err


def gemm_raw(x, layer: Layer, *, x_exp=None, x_format: str | None = None, frac_bits: int = 16,
             t_min: int = -32, t_max: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The raw accumulator of the compressed GEMM, bit-exact (SPEC §1, §5, §6 ``raw``).

    Parameters
    ----------
    x : ndarray, shape (M, K)
        Activations: int8, or MX element codes with ``x_exp`` (int8 for ``mxint8``, uint8 for
        ``fp8_e4m3`` / ``fp8_e5m2``). An element enters ``P_g`` as its SPEC §2 integer; fp8
        NaN / Inf codes count 0 and flag every output of their row.
    layer : Layer
        Compressed weights (validated here).
    x_exp : ndarray of uint8, shape (M, K/32), optional
        E8M0 exponents of MX activations (``pow2`` layers only).
    x_format : str, optional
        Activation format: ``'int8'`` (plain, no ``x_exp``), ``'mxint8'``, ``'fp8_e4m3'`` or
        ``'fp8_e5m2'``; default ``'mxint8'`` when ``x_exp`` is given, else ``'int8'``. Adds
        ``adj_x`` = −6 / −9 / −16 to ``t`` (SPEC §4).
    frac_bits : int
        Fractional bits of the ``pow2`` fixed-point accumulator.
    t_min, t_max : int
        Allowed window of ``t = (e_w − 127) + (e_x − 127) + adj_w + adj_x``.

    Returns
    -------
    acc : ndarray of int64, shape (M, N)
        ``Σ_g P_g · s`` (``int``; ``s = 1`` for ``none``) or ``Σ_g floor(P_g · 2**(t+frac_bits))``
        (``pow2``); erroneous contributions count 0.
    err : ndarray of bool, shape (M, N)
        Sticky error flags: invalid weight code in the column (ternary ``0b10``, fp8 NaN/Inf),
        invalid activation code in the row, NaN scale, ``t`` outside the window.
    """
    validate_layer(layer)
    x_format = activation_format(x_format, x_exp)
    if x_format is not None and x_exp is None:
        raise ValueError(f"{x_format} activations need their block exponents x_exp "
                         f"[M, K/{MX_BLOCK}]")
    x = _check_activations(x, layer.K, x_format)
    if int(frac_bits) < 0 or int(t_min) > int(t_max):
        raise ValueError(f"need frac_bits >= 0 and t_min <= t_max, got {frac_bits}, "
                         f"[{t_min}, {t_max}]")
    x_exp = _check_x_exp(x_exp, x.shape[0], layer.K, layer.scale_kind)
    w, invalid_columns = mac_weights(layer)
    xf, invalid_x = decode_activations(x, x_format)
    xmax = float(np.abs(xf).max(initial=0.0))
    err = np.broadcast_to(invalid_columns, (x.shape[0], layer.N)).copy()
    err |= invalid_x.any(axis=1)[:, None]
    if layer.scale_kind == "pow2":
        acc, err_pow2 = _accumulate_pow2(
            xf, w, layer, x_exp, xmax, int(frac_bits), int(t_min), int(t_max), x_format=x_format
        )
        err |= err_pow2
    else:
        acc = _accumulate_int(xf, w, layer, xmax)
    return acc, err


# ----------------------------------------------------------------------------- output stage


def _int32_operand(name: str, a) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    if a.size and (a.min() < INT32_MIN or a.max() > INT32_MAX):
        raise ValueError(f"{name} must lie in the int32 range")
    return a


def srdhm(a, b) -> np.ndarray:
    """Gemmlowp ``SaturatingRoundingDoublingHighMul`` on int32 values held in int64.

    ``(a·b + nudge) / 2**31`` with ``nudge = 2**30`` for ``a·b ≥ 0`` else ``1 − 2**30`` and a
    division truncating towards zero; ``a = b = −2**31`` saturates to ``2**31 − 1``.
    """
    a = _int32_operand("srdhm a", a)
    b = _int32_operand("srdhm b", b)
    ab = a * b  # |ab| <= 2**62: no int64 overflow
    num = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    q = np.where(num >= 0, num >> 31, -((-num) >> 31))  # truncating division by 2**31
    return np.where((a == b) & (a == INT32_MIN), INT32_MAX, q)


def rdbpot(x, exponent) -> np.ndarray:
    """Gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero.

    ``exponent`` in 0..31; computed as gemmlowp does, with a mask, remainder and threshold.
    """
    x = _int32_operand("rdbpot x", x)
    exponent = np.asarray(exponent, dtype=np.int64)
    if exponent.size and (exponent.min() < 0 or exponent.max() > 31):
        raise ValueError("rdbpot exponent must lie in 0..31")
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def _per_column(name: str, value, N: int, lo: int, hi: int, allow_scalar: bool = False):
    a = np.asarray(value)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got {a.dtype}")
    a = a.astype(np.int64)
    if a.shape != (N,) and not (allow_scalar and a.ndim == 0):
        raise ValueError(f"{name} must have shape ({N},), got {a.shape}")
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}]")
    return a


def requantize(acc, layer: Layer | None = None, *, bias=None, out_mult=None, out_shift=None,
               out_zp=None) -> tuple[np.ndarray, np.ndarray]:
    """TFLite / gemmlowp requantization of the raw accumulator to int8 (SPEC §6).

    ``acc' = acc + bias``; ``v = acc' · 2**max(sh, 0)`` saturated to int32 (error flag when it
    saturates, NUMERICS.md); ``y = sat8(RDBPOT(SRDHM(v, M0), max(−sh, 0)) + zp)``.

    Parameters
    ----------
    acc : array_like of int64, shape (M, N)
        Raw accumulator (`gemm_raw`).
    layer : Layer, optional
        Source of ``bias``, ``out_mult``, ``out_shift``, ``out_zp``; keywords override it.
    bias : array_like of int, shape (N,), optional
        Default 0.
    out_mult : array_like of int, shape (N,)
        ``M0`` in ``[2**30, 2**31)``; required (here or in the layer).
    out_shift : array_like of int, shape (N,)
        ``sh`` in ``[−31, 30]``; required.
    out_zp : int or array_like of int, shape (N,), optional
        Output zero point, default 0.

    Returns
    -------
    y : ndarray of int8, shape (M, N)
    err : ndarray of bool, shape (M, N)
        True where ``acc'·2**max(sh,0)`` left the int32 range.
    """
    def pick(value, key):
        if value is None and layer is not None:
            return getattr(layer, key)
        return value

    bias, out_mult = pick(bias, "bias"), pick(out_mult, "out_mult")
    out_shift, out_zp = pick(out_shift, "out_shift"), pick(out_zp, "out_zp")
    acc = np.asarray(acc)
    if acc.ndim != 2 or acc.dtype.kind not in "iu":
        raise ValueError(f"acc must be a 2-D integer array, got {acc.dtype} {acc.shape}")
    acc = acc.astype(np.int64)
    N = acc.shape[1]
    if out_mult is None or out_shift is None:
        raise ValueError("requantization needs out_mult and out_shift")
    m0 = _per_column("out_mult", out_mult, N, OUT_MULT_MIN, OUT_MULT_MAX)
    sh = _per_column("out_shift", out_shift, N, OUT_SHIFT_MIN, OUT_SHIFT_MAX)
    b = _per_column("bias", 0 if bias is None else bias, N, -(1 << 62), 1 << 62,
                    allow_scalar=True)
    zp = _per_column("out_zp", 0 if out_zp is None else out_zp, N, INT32_MIN, INT32_MAX,
                     allow_scalar=True)
    if acc.size and np.abs(acc).max() > (1 << 62):
        raise ValueError("acc magnitude above 2**62 cannot be requantized without overflow")
    acc_b = acc + b
    left = np.maximum(sh, 0)
    lo = -(np.int64(1) << (31 - left))  # acc_b · 2**left fits int32 iff lo <= acc_b <= hi
    hi = np.int64(INT32_MAX) >> left
    sat = (acc_b < lo) | (acc_b > hi)
    v = np.where(sat, np.where(acc_b < 0, INT32_MIN, INT32_MAX), np.clip(acc_b, lo, hi) << left)
    y = rdbpot(srdhm(v, m0), np.maximum(-sh, 0)) + zp
    return np.clip(y, -128, 127).astype(np.int8), sat


def gemm(x, layer: Layer, *, x_exp=None, x_format: str | None = None, frac_bits: int = 16,
         t_min: int = -32, t_max: int = 8, out_stage: str = "raw") -> tuple[np.ndarray, np.ndarray]:
    """The whole compressed GEMM: `gemm_raw`, then optionally `requantize` with the layer's stage.

    Returns ``(int64 acc, err)`` for ``out_stage='raw'`` and ``(int8 y, err)`` for
    ``'requant'``, where ``err`` is the union of both stages' flags.
    """
    if out_stage not in ("raw", "requant"):
        raise ValueError(f"out_stage must be 'raw' or 'requant', not {out_stage!r}")
    if out_stage == "requant" and (layer.out_mult is None or layer.out_shift is None):
        raise ValueError("out_stage 'requant' needs a layer with out_mult and out_shift")
    acc, err = gemm_raw(x, layer, x_exp=x_exp, x_format=x_format, frac_bits=frac_bits,
                        t_min=t_min, t_max=t_max)
    if out_stage == "raw":
        return acc, err
    y, err_requant = requantize(acc, layer)
    return y, err | err_requant


# ----------------------------------------------------------------------------- float views


def dequantize_weights(layer: Layer) -> np.ndarray:
    """The float weights a layer stands for, ``[K, N]`` float64.

    ``(v − z) · scale · 2**scale_exp[n]`` with ``scale`` = 1 (``none``), ``s`` (``int``) or
    ``2**(e − 127 + pow2_adj)`` (``pow2``; E8M0 NaN gives NaN); pruned positions are 0.
    """
    validate_layer(layer)
    w, _ = mac_weights(layer)
    if layer.scale_kind == "int":
        w *= expand_groups(layer.scales.astype(np.float64), layer.group)
    elif layer.scale_kind == "pow2":
        e = layer.scales.astype(np.int64)
        factor = np.where(
            e == E8M0_NAN, np.nan, np.ldexp(1.0, pow2_exponent(layer.format, e))
        )
        w *= expand_groups(factor, layer.group)
    if layer.scale_exp is not None:
        w *= np.ldexp(1.0, layer.scale_exp.astype(np.int64))[None, :]
    return w


def gemm_float(x_float, w_float) -> np.ndarray:
    """Plain float64 reference product ``x @ w`` (for SQNR and error-bound checks)."""
    return np.asarray(x_float, dtype=np.float64) @ np.asarray(w_float, dtype=np.float64)
