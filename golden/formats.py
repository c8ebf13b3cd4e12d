"""Element formats: code tables, decoding to MAC integers, encoding from floats, E8M0.

Every weight slot holds one element code, LSB-aligned in a byte (SPEC §2, §7). ``decode``
turns codes into the small integer the multiplier sees; ``decode_float`` into the real element
value a producer (PyTorch, OCP MX) means; ``encode`` goes back from real element values with
round-to-nearest-even and saturation to the format's full code range.

The three views relate as ``decode_float = decode * 2**pow2_adj`` for ``fp4_e2m1`` (×2 integers,
adj −1), ``mxint8`` (code/64, adj −6), ``fp8_e4m3`` (value·2**9, adj −9) and ``fp8_e5m2``
(value·2**16, adj −16), and ``decode_float = decode`` for the integer formats. The fp8 NaN and
Inf codes decode to 0 with the invalid flag; `decode_float` gives them their float meaning.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from . import tables as _tables
from .tables import E8M0_BIAS, E8M0_NAN, MX_ACT_FORMATS

__all__ = [
    "FORMATS",
    "MX_ACT_FORMATS",
    "SCALE_KINDS",
    "FormatInfo",
    "activation_format",
    "decode",
    "decode_float",
    "e8m0_to_float",
    "encode",
    "float_to_e8m0",
    "format_info",
    "minifloat_fields",
    "pow2_exponent",
    "pow2_weight_exponent",
]

SCALE_KINDS = tuple(_tables.SCALE_KINDS)

#: The element format table (`golden.tables.ELEMENT_FORMATS`): name → `FormatInfo`.
FormatInfo = _tables.ElementFormat
FORMATS: dict[str, FormatInfo] = _tables.ELEMENT_FORMATS


def minifloat_fields(info: FormatInfo, codes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sign, significand and shift of ``minifloat`` codes: integer = ±significand << shift.

    ``S E…E M…M`` with bias ``2**(E−1) − 1`` and subnormals at ``E = 0``: value = significand ·
    ``2**(max(E, 1) − bias − M)``, so the integer the MAC sees (value · ``2**−pow2_adj``) is the
    significand shifted left by ``max(E, 1) − bias − M − pow2_adj`` (never negative: the
    adjustment leaves no fraction). The hardware's lane decoder computes the same three fields.
    """
    e_bits, m_bits = info.float_bits
    codes = np.asarray(codes, dtype=np.int64)
    bias = (1 << (e_bits - 1)) - 1
    exp = (codes >> m_bits) & ((1 << e_bits) - 1)
    man = codes & ((1 << m_bits) - 1)
    significand = np.where(exp == 0, man, man | (1 << m_bits))
    shift = np.maximum(exp, 1) - bias - m_bits - info.pow2_adj
    if shift.min() < 0:
        raise AssertionError(f"format {info.name}: pow2_adj {info.pow2_adj} leaves fractions")
    return (codes >> (e_bits + m_bits)) == 1, significand, shift


def _build_table(info: FormatInfo) -> tuple[np.ndarray, np.ndarray]:
    """Decoded integer and invalid flag of every code of ``info``: the codec of its encoding."""
    codes = np.arange(info.n_codes, dtype=np.int64)
    invalid = np.isin(codes, info.invalid_codes)
    if info.encoding == "unsigned":
        values = codes
    elif info.encoding == "twos_complement":
        values = np.where(codes >= info.n_codes // 2, codes - info.n_codes, codes)
    elif info.encoding == "ternary":  # 00 → 0, 01 → +1, 11 → −1, 10 invalid
        values = np.select([codes == 0b01, codes == 0b11], [1, -1], 0)
    elif info.encoding == "e2m1":  # sign bit on top, the float table below it
        sign_bit = info.n_codes // 2
        magnitudes = np.asarray(info.magnitudes, dtype=np.int64)
        values = np.where(codes & sign_bit, -1, 1) * magnitudes[codes & (sign_bit - 1)]
    elif info.encoding == "minifloat":
        negative, significand, shift = minifloat_fields(info, codes)
        values = np.where(negative, -1, 1) * (significand << shift)
    else:
        raise AssertionError(f"format {info.name}: no codec for encoding {info.encoding!r}")
    values = np.where(invalid, 0, values).astype(np.int64)
    if values.min() != info.value_min or values.max() != info.value_max:
        raise AssertionError(f"format {info.name}: table range {info.value_min}..{info.value_max}"
                             f" differs from its codec's {values.min()}..{values.max()}")
    return values, invalid


_TABLES = {name: _build_table(info) for name, info in FORMATS.items()}
#: ml_dtypes casts of the ``minifloat`` rows (OCP E4M3 without infinities, E5M2 IEEE-like).
_FLOAT8_DTYPES = {(4, 3): ml_dtypes.float8_e4m3fn, (5, 2): ml_dtypes.float8_e5m2}


def format_info(fmt: str) -> FormatInfo:
    """Return the `FormatInfo` of ``fmt``, raising ``ValueError`` for unknown names."""
    try:
        return FORMATS[fmt]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}"
        ) from None


def _check_codes(info: FormatInfo, codes) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise ValueError(f"{info.name} codes must be integers, not {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() >= info.n_codes):
        raise ValueError(f"{info.name} codes must lie in 0..{info.n_codes - 1}")
    return codes.astype(np.intp, copy=False)


def decode(fmt: str, codes) -> tuple[np.ndarray, np.ndarray]:
    """Decode element codes to the integers the MAC sees (SPEC §2).

    Parameters
    ----------
    fmt : str
        Format name (a key of `FORMATS`).
    codes : array_like of int
        Codes in ``0 .. 2**bits − 1``.

    Returns
    -------
    values : ndarray of int64
        Decoded integers: two's complement for ``int*``/``mxint8``, ``0..15`` for ``uint4``
        (zero point not applied), ``−1/0/+1`` for ``ternary``, ×2 values ``−12..12`` for
        ``fp4_e2m1`` (both zeros decode to 0).
    invalid : ndarray of bool
        True where the code is invalid (only ternary ``0b10``, which decodes to 0).
    """
    info = format_info(fmt)
    idx = _check_codes(info, codes)
    values, invalid = _TABLES[fmt]
    return values[idx], invalid[idx]


def decode_float(fmt: str, codes) -> np.ndarray:
    """Decode element codes to their real element value (float64).

    ``fp4_e2m1`` gives ``±0 .. ±6`` (code ``0b1000`` is −0.0), ``mxint8`` gives ``code/64``,
    ``fp8_e4m3`` ``±0 .. ±448`` and ``fp8_e5m2`` ``±0 .. ±57344`` (code ``0x80`` is −0.0; the
    NaN codes give NaN and the E5M2 Inf codes ±inf, as ``ml_dtypes`` does); the integer formats
    give their integer; the invalid ternary code gives 0.0.
    """
    info = format_info(fmt)
    values, invalid = decode(fmt, codes)
    out = values.astype(np.float64) * 2.0**info.pow2_adj
    if info.encoding in ("e2m1", "minifloat"):
        c = np.asarray(codes)
        out = np.where(c == info.n_codes // 2, -0.0, out)
        if info.encoding == "minifloat":
            e_bits, m_bits = info.float_bits
            negative = (c >> (e_bits + m_bits)) == 1
            inf = invalid & ((c & ((1 << m_bits) - 1)) == 0)
            special = np.copysign(np.where(inf, np.inf, np.nan), np.where(negative, -1.0, 1.0))
            out = np.where(invalid, special, out)
    return out


def encode(fmt: str, values) -> np.ndarray:
    """Encode real element values to codes with round-to-nearest-even and saturation.

    Saturation is to the format's full range (``int8`` −128…127, ``mxint8`` −2…127/64,
    ``fp4_e2m1`` ±6, ``ternary`` ±1), so ``encode(fmt, decode_float(fmt, c)) == c`` for every
    valid code ``c``. Symmetric quantizers clamp to ±(2^(b−1)−1) themselves before encoding.

    Parameters
    ----------
    fmt : str
        Format name.
    values : array_like of float
        Real element values (``fp4_e2m1``: ±6 scale; ``mxint8``: code/64 scale). NaN is refused.

    Returns
    -------
    ndarray of uint8
        Codes, LSB-aligned. ``fp4_e2m1`` and the fp8 formats keep the sign of zero (−0.0 →
        ``0b1000`` / ``0x80``) and never produce a NaN or Inf code (±inf saturate to the
        largest finite value, ±448 for E4M3, ±57344 for E5M2); ternary: −1 → ``0b11``,
        0 → ``0b00``, +1 → ``0b01``.
    """
    info = format_info(fmt)
    x = np.asarray(values, dtype=np.float64)
    if np.isnan(x).any():
        raise ValueError(f"cannot encode NaN as {fmt}")
    if info.encoding == "e2m1":
        # Clamp first: the SPEC asks for saturation whatever ml_dtypes' cast does at overflow.
        top = info.symmetric_max
        return np.clip(x, -top, top).astype(ml_dtypes.float4_e2m1fn).view(np.uint8)
    if info.encoding == "minifloat":  # RNE with subnormals; the cast does not saturate
        top = info.symmetric_max
        return np.clip(x, -top, top).astype(_FLOAT8_DTYPES[info.float_bits]).view(np.uint8)
    q = np.rint(x * 2.0**-info.pow2_adj if info.pow2_adj else x)  # rint: half to even
    np.clip(q, info.value_min, info.value_max, out=q)
    # Every value range fits int8; its bytes masked to the code width are the codes.
    return q.astype(np.int8).view(np.uint8) & np.uint8(info.n_codes - 1)


def e8m0_to_float(codes) -> np.ndarray:
    """E8M0 scale codes to float64: ``2**(code − 127)``; code 0xFF is NaN."""
    c = np.asarray(codes)
    if c.dtype.kind not in "iu" or (c.size and (c.min() < 0 or c.max() > 255)):
        raise ValueError("E8M0 codes must be integers in 0..255")
    c = c.astype(np.int64)
    return np.where(c == E8M0_NAN, np.nan, np.ldexp(1.0, c - E8M0_BIAS))


def float_to_e8m0(x) -> np.ndarray:
    """Float to the nearest E8M0 code, as ``ml_dtypes.float8_e8m0fnu`` casts.

    Powers of two ``2**e`` (−127 ≤ e ≤ 127) map exactly to ``e + 127``. Other values round
    half up in the mantissa (``1.5·2**e`` → ``2**(e+1)``), positive values below ``2**−127``
    saturate to code 0, and values ≥ ``1.5·2**127``, zero, negatives, inf and NaN give 0xFF.
    """
    x = np.asarray(x, dtype=np.float64)
    mant, exp = np.frexp(x)  # x = mant * 2**exp, mant in [0.5, 1)
    e = exp.astype(np.int64) - 1 + (mant >= 0.75)
    code = np.clip(e + E8M0_BIAS, 0, 255)
    bad = ~np.isfinite(x) | (x <= 0) | (code > 254)
    return np.where(bad, E8M0_NAN, code).astype(np.uint8)


def activation_format(x_format, x_exp=None) -> str | None:
    """Check an activation format name: None (plain int8) or one of `MX_ACT_FORMATS`.

    ``x_format=None`` with ``x_exp`` given means ``'mxint8'`` (the only MX activation format of
    earlier releases); ``'int8'`` means plain int8 activations and is returned as None.

    Raises
    ------
    ValueError
        For another name, or an MX format without ``x_exp`` / ``'int8'`` with it.
    """
    if x_format is None:
        return None if x_exp is None else _tables.MX_ACT_FORMAT
    if x_format == "int8":
        if x_exp is not None:
            raise ValueError("x_exp (MX block exponents) was given with plain int8 activations; "
                             f"name the activation format ({', '.join(MX_ACT_FORMATS)})")
        return None
    if x_format not in MX_ACT_FORMATS:
        raise ValueError(f"unknown activation format {x_format!r}; expected int8 or one of "
                         f"{', '.join(MX_ACT_FORMATS)}")
    return x_format


def pow2_exponent(fmt: str, e_w, e_x=None, x_format: str | None = None) -> np.ndarray:
    """The exponent ``t`` of a ``pow2`` contribution (SPEC §4, docs/NUMERICS.md).

    ``t = (e_w − 127) + adj_w`` with int8 activations, ``t = (e_w − 127) + (e_x − 127) + adj_w
    + adj_x`` with MX activations, where ``adj_w`` is the weight format's ``pow2_adj`` and
    ``adj_x`` the activation format's (−6 ``mxint8``, −9 ``fp8_e4m3``, −16 ``fp8_e5m2``). NaN
    codes (0xFF) are not treated here: callers mask them.

    Parameters
    ----------
    fmt : str
        Weight format.
    e_w : array_like of int
        E8M0 weight exponents.
    e_x : array_like of int, optional
        E8M0 activation exponents (broadcast against ``e_w``); None for int8 activations.
    x_format : str, optional
        Activation format of ``e_x`` (one of `MX_ACT_FORMATS`; default ``'mxint8'``).

    Returns
    -------
    ndarray of int64
    """
    t = np.asarray(e_w, dtype=np.int64) - E8M0_BIAS + format_info(fmt).pow2_adj
    x_format = activation_format(x_format, e_x)
    if e_x is not None:
        t = t + (np.asarray(e_x, dtype=np.int64) - E8M0_BIAS + FORMATS[x_format].pow2_adj)
    return t


def pow2_weight_exponent(fmt: str, t, e_x=None, x_format: str | None = None) -> np.ndarray:
    """The E8M0 weight exponent that gives exponent ``t`` (the inverse of `pow2_exponent`).

    Parameters
    ----------
    fmt : str
        Weight format.
    t : array_like of int
        Wanted exponents.
    e_x : array_like of int, optional
        E8M0 activation exponents the weight meets; None for int8 activations.
    x_format : str, optional
        Activation format of ``e_x`` (default ``'mxint8'``).

    Returns
    -------
    ndarray of int64
        Not clamped to the code range 0…254.
    """
    return np.asarray(t, dtype=np.int64) - pow2_exponent(fmt, 0, e_x, x_format)
