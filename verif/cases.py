"""Random compressed GEMMs with edge values, for every mode a configuration enables.

Layers are built directly from random codes (not through the quantizers) so that every code,
the extreme scales, all-zero and under-filled N:M blocks and −128 activations all occur.
"""

from __future__ import annotations

import numpy as np

from golden.blocks import canonical_block_arrays
from golden.formats import decode, format_info, pow2_weight_exponent
from golden.layer import Layer
from golden.sparsity import parse_sparsity
from golden.tables import MX_BLOCK, OUT_MULT_MAX, OUT_MULT_MIN, OUT_SHIFT_MAX, OUT_SHIFT_MIN
from hw.config import FP8_FORMATS, ArrayConfig, Mode

__all__ = ["random_layer", "random_activations", "random_case", "with_blocks", "block_case",
           "fp8_edge_codes"]



def extreme_codes(fmt: str) -> list[int]:
    """The codes of the most negative and the most positive decoded value of ``fmt``.

    Ties go to the highest code (so int2's −2 is ``0b10``, fp4's −6 is ``0xF``).
    """
    info = format_info(fmt)
    values, invalid = decode(fmt, np.arange(info.n_codes))
    values = np.where(invalid, 0, values)
    codes = np.arange(info.n_codes)
    lo = int(codes[values == values.min()].max())
    hi = int(codes[values == values.max()].max())
    return [lo, hi]


def _codes(rng, fmt: str, shape, zero_code, p_zero: float, allow_invalid: bool) -> np.ndarray:
    info = format_info(fmt)
    codes = rng.integers(0, info.n_codes, shape)
    if info.invalid_codes and not allow_invalid:
        # The first valid code of the largest value replaces each invalid one.
        codes[np.isin(codes, info.invalid_codes)] = extreme_codes(fmt)[1]
    # Extreme codes first in every column, so they always occur.
    flat = codes.reshape(-1, shape[-1])
    for i, e in enumerate(extreme_codes(fmt)[:flat.shape[0]]):
        flat[i] = e
    zero = rng.random(shape) < p_zero
    return np.where(zero, zero_code, codes)


def random_layer(rng: np.random.Generator, cfg: ArrayConfig, mode: Mode, K: int, N: int, *,
                 group: int | None = None, out_stage: str = "raw", p_zero: float = 0.15,
                 invalid_codes: bool = False, nan_scale: bool = False,
                 window_overflow: bool = False, mx_exp_center: int = 127) -> Layer:
    """A random layer in ``mode`` that ``cfg`` can run (or, with the flags, that sets errors)."""
    fmt, sparsity, kind = mode.fmt, mode.sparsity, mode.scale_kind
    n_sp, m_sp = parse_sparsity(sparsity)
    if group is None:
        group = MX_BLOCK if kind == "pow2" else K
    n_groups = K // group
    blocks = K // m_sp
    zeros = None
    zero_code = np.zeros((blocks * n_sp, N), np.int64)
    info = format_info(fmt)
    if info.has_zero_point:
        zeros = rng.integers(0, info.zero_max + 1, (n_groups, N)).astype(np.uint8)
        slot_group = (np.arange(blocks * n_sp) // n_sp * m_sp) // group
        zero_code = zeros[slot_group].astype(np.int64)
    codes = _codes(rng, fmt, (blocks * n_sp, N), zero_code, p_zero, invalid_codes)
    # A few whole blocks of zero-valued slots (all-zero blocks).
    dead = rng.random((blocks, N)) < 0.1
    codes = np.where(np.repeat(dead, n_sp, axis=0), zero_code, codes)
    if invalid_codes:  # every invalid code of the format (NaN and Inf of fp8) somewhere
        for bad in info.invalid_codes:
            codes[rng.integers(0, codes.shape[0]), rng.integers(0, N)] = bad
    idx = None
    if sparsity != "dense":
        # Strictly increasing positions: a random N-subset of each block, sorted.
        keys = rng.random((blocks, N, m_sp)).argsort(axis=2)[:, :, :n_sp]
        keys.sort(axis=2)
        idx = keys.transpose(0, 2, 1).reshape(blocks * n_sp, N).astype(np.uint8)
    scales = scale_exp = None
    if kind == "int":
        lim = 1 << (cfg.scale_bits - 1)
        scales = rng.integers(-lim, lim, (n_groups, N))
        scales.flat[0] = -lim
        if scales.size > 1:
            scales.flat[1] = lim - 1
        scales = scales.astype(np.int32)
        scale_exp = rng.integers(-20, 0, N).astype(np.int32)
    elif kind == "none":
        scale_exp = np.zeros(N, np.int32)
    elif kind == "pow2":
        e_x = mx_exp_center if mode.mx_act else None
        lo, hi = cfg.t_min + 4, cfg.t_max - 4
        if lo > hi:
            lo = hi = (cfg.t_min + cfg.t_max) // 2
        t = rng.integers(lo, hi + 1, (n_groups, N))
        t.flat[0] = lo
        if t.size > 1:
            t.flat[-1] = hi
        x_format = mode.activation_format if mode.mx_act else None
        e_w = pow2_weight_exponent(fmt, t, e_x, x_format)
        if window_overflow:
            e_w.flat[rng.integers(0, e_w.size)] = pow2_weight_exponent(fmt, cfg.t_max + 1, e_x,
                                                                       x_format)
        e_w = np.clip(e_w, 0, 254)
        if nan_scale:
            e_w.flat[rng.integers(0, e_w.size)] = 0xFF
        scales = e_w.astype(np.uint8)
    layer = Layer(format=fmt, sparsity=sparsity, group=group, scale_kind=kind, shape=(K, N),
                  codes=codes.astype(np.uint8), idx=idx, scales=scales, scale_exp=scale_exp,
                  zeros=zeros)
    if out_stage == "requant":
        layer = _with_requant(rng, layer)
    return layer


def _with_requant(rng, layer: Layer) -> Layer:
    N = layer.shape[1]
    bias = rng.integers(-(1 << 20), 1 << 20, N).astype(np.int32)
    mult = rng.integers(OUT_MULT_MIN, OUT_MULT_MAX + 1, N).astype(np.int32)
    mult[0] = OUT_MULT_MIN
    if N > 1:
        mult[1] = OUT_MULT_MAX
    shift = rng.integers(OUT_SHIFT_MIN, OUT_SHIFT_MAX + 1, N).astype(np.int32)
    shift[: max(N // 2, 1)] = rng.integers(-24, -8, max(N // 2, 1))  # mostly unsaturated
    zp = rng.integers(-128, 128, N).astype(np.int32)
    return layer.copy(bias=bias, out_mult=mult, out_shift=shift, out_zp=zp)


def fp8_edge_codes(fmt: str) -> list[int]:
    """The codes an fp8 activation regression must meet: ±0, ± the smallest subnormal, ± the
    largest normal, and 1.0 (its exponent at the bias)."""
    info = format_info(fmt)
    e_bits, m_bits = info.float_bits
    sign = 1 << (e_bits + m_bits)
    values, invalid = decode(fmt, np.arange(info.n_codes))
    top = int(np.flatnonzero(~invalid & (values == values.max()))[0])
    one = ((1 << (e_bits - 1)) - 1) << m_bits
    return [0, sign, 1, sign | 1, top, sign | top, one]


def random_activations(rng, M: int, K: int, *, mx: bool = False, center: int = 127,
                       nan_exp: bool = False, x_format: str | None = None,
                       invalid_x: bool = False):
    """Random int8 activations (−128 included) and, with ``mx``, E8M0 exponents.

    With an fp8 ``x_format`` the activations are uint8 codes: random valid codes with the
    `fp8_edge_codes` first, and with ``invalid_x`` every NaN / Inf code of the format too.
    """
    if x_format in FP8_FORMATS:
        info = format_info(x_format)
        x = rng.integers(0, 256, (M, K)).astype(np.uint8)
        invalid = np.isin(x, info.invalid_codes)
        x[invalid] = rng.integers(0, 0x40, int(invalid.sum()))  # valid in both formats
        edge = fp8_edge_codes(x_format)
        x.flat[:len(edge)] = edge[:x.size]
        if invalid_x:
            for bad in info.invalid_codes:
                x.flat[rng.integers(0, x.size)] = bad
    else:
        x = rng.integers(-128, 128, (M, K)).astype(np.int8)
        x.flat[0] = -128
    x_exp = None
    if mx:
        x_exp = rng.integers(center - 2, center + 3, (M, K // MX_BLOCK)).astype(np.uint8)
        if nan_exp:
            x_exp.flat[rng.integers(0, x_exp.size)] = 0xFF
    return x, x_exp


def random_case(seed: int, cfg: ArrayConfig, mode: Mode, M: int, K: int, N: int, **kw):
    """(layer, x, x_exp) of one random GEMM, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    x, x_exp = random_activations(rng, M, K, mx=mode.mx_act, nan_exp=kw.pop("nan_exp", False),
                                  x_format=mode.x_format, invalid_x=kw.pop("invalid_x", False))
    layer = random_layer(rng, cfg, mode, K, N, out_stage=mode.out_stage, **kw)
    return layer, x, x_exp


def with_blocks(rng, layer: Layer, block: tuple[int, int], density: float) -> Layer:
    """``layer`` with a random block mask (each block kept with probability ``density``).

    Dropped blocks are made canonical (`golden.blocks.canonical_block_arrays`); at least one
    block is kept.
    """
    K, N = (int(v) for v in layer.shape)
    bk, bn = block
    mask = (rng.random((K // bk, N // bn)) < density).astype(np.uint8)
    if not mask.any():
        mask.flat[rng.integers(0, mask.size)] = 1
    codes, idx, scales, zeros = canonical_block_arrays(
        layer.codes, layer.idx, layer.scales, layer.zeros, block_shape=block, block_mask=mask,
        n_sp=layer.n_sp, m_sp=layer.m_sp, group=int(layer.group), scale_kind=layer.scale_kind)
    return layer.copy(codes=codes, idx=idx, scales=scales, zeros=zeros,
                      block_shape=np.asarray(block, np.int64), block_mask=mask)


def block_case(seed: int, cfg: ArrayConfig, mode: Mode, M: int, K: int, N: int,
               block: tuple[int, int], density: float = 0.5, **kw):
    """(layer, x, x_exp) of `random_case` with a random block mask (`with_blocks`)."""
    layer, x, x_exp = random_case(seed, cfg, mode, M, K, N, **kw)
    rng = np.random.default_rng(seed + 7919)
    return with_blocks(rng, layer, block, density), x, x_exp


def exhaustive_case(cfg: ArrayConfig, fmt: str, *, M: int = 16, K: int = 4096, N: int = 16):
    """Every code × every int8 activation × every lane position, in one dense GEMM.

    ``x[m, k] = (k + 17m) mod 256 − 128`` and ``code[k, n] = (k // 256 + 16n) mod n_codes``:
    within each run of 256 k one code meets all 256 activations, the runs step through the
    codes, and the 17m offset moves every activation through every lane position.
    """
    info = format_info(fmt)
    n_codes = info.n_codes
    k = np.arange(K)
    x = (((k[None, :] + 17 * np.arange(M)[:, None]) % 256) - 128).astype(np.int8)
    codes = ((k[:, None] // 256 + 16 * np.arange(N)[None, :]) % n_codes).astype(np.uint8)
    if info.invalid_codes:
        codes[np.isin(codes, info.invalid_codes)] = extreme_codes(fmt)[0]
    zeros = None
    if info.has_zero_point:
        zeros = (np.arange(N) % (info.zero_max + 1)).astype(np.uint8)[None, :]
    layer = Layer(format=fmt, sparsity="dense", group=K, scale_kind="none", shape=(K, N),
                  codes=codes, scale_exp=np.zeros(N, np.int32), zeros=zeros)
    return layer, x, None
