"""Element formats: code tables, decoding to MAC integers, encoding from floats, E8M0.

Every weight slot holds one element code, LSB-aligned in a byte (SPEC §2, §7). ``decode``
turns codes into the small integer the multiplier sees; ``decode_float`` into the real element
value a producer (PyTorch, OCP MX) means; ``encode`` goes back from real element values with
round-to-nearest-even and saturation to the format's full code range.

The three views relate as ``decode_float = decode * 2**pow2_adj`` for ``fp4_e2m1`` (×2 integers,
adj −1) and ``mxint8`` (code/64, adj −6), and ``decode_float = decode`` for the integer formats.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

__all__ = [
    "FORMATS",
    "SCALE_KINDS",
    "FormatInfo",
    "decode",
    "decode_float",
    "e8m0_to_float",
    "encode",
    "float_to_e8m0",
    "format_info",
]

SCALE_KINDS = ("none", "int", "pow2")

E8M0_BIAS = 127
E8M0_NAN = 0xFF


@dataclass(frozen=True)
class FormatInfo:
    """Static description of one element format (SPEC §2, NUMERICS.md scale table).

    Attributes
    ----------
    name : str
        Format name as written in layer files.
    bits : int
        Code width; a slot byte holds the code in its low ``bits`` bits.
    lanes_per_slot : int
        ``8 // bits``: how many elements of this format a byte-wide lane group carries.
    signed : bool
        Whether decoded integers can be negative.
    has_zero_point : bool
        True for ``uint4`` only: the MAC sees ``value − z``.
    value_min, value_max : int
        Range of the decoded integer the multiplier sees (``decode``), over all valid codes.
    pow2_adj : int
        Exponent adjustment folded into ``pow2`` scales (−1 for ``fp4_e2m1``, −6 for ``mxint8``).
    allowed_scales : tuple of str
        Scale kinds this format may be combined with.
    """

    name: str
    bits: int
    lanes_per_slot: int
    signed: bool
    has_zero_point: bool
    value_min: int
    value_max: int
    pow2_adj: int
    allowed_scales: tuple[str, ...]

    @property
    def n_codes(self) -> int:
        """Number of distinct codes, ``2**bits``."""
        return 1 << self.bits


def _info(name, bits, signed, vmin, vmax, adj=0, zp=False, scales=SCALE_KINDS) -> FormatInfo:
    return FormatInfo(name, bits, 8 // bits, signed, zp, vmin, vmax, adj, tuple(scales))


FORMATS: dict[str, FormatInfo] = {
    f.name: f
    for f in (
        _info("int8", 8, True, -128, 127),
        _info("int4", 4, True, -8, 7),
        _info("uint4", 4, False, 0, 15, zp=True, scales=("none", "int")),
        _info("int2", 2, True, -2, 1),
        _info("ternary", 2, True, -1, 1),
        _info("fp4_e2m1", 4, True, -12, 12, adj=-1),
        _info("mxint8", 8, True, -128, 127, adj=-6),
    )
}

# fp4 e2m1 magnitudes ×2, indexed by the 3 low bits (EE M): 0, 0.5, 1, 1.5, 2, 3, 4, 6 → ×2.
_FP4_X2 = np.array([0, 1, 2, 3, 4, 6, 8, 12], dtype=np.int64)


def _build_table(info: FormatInfo) -> tuple[np.ndarray, np.ndarray]:
    codes = np.arange(info.n_codes, dtype=np.int64)
    invalid = np.zeros(info.n_codes, dtype=bool)
    if info.name == "uint4":
        values = codes
    elif info.name == "ternary":
        values = np.array([0, 1, 0, -1], dtype=np.int64)
        invalid[0b10] = True
    elif info.name == "fp4_e2m1":
        values = np.where(codes & 0b1000, -1, 1) * _FP4_X2[codes & 0b111]
    else:  # two's complement: int8, int4, int2, mxint8
        values = np.where(codes >= info.n_codes // 2, codes - info.n_codes, codes)
    return values.astype(np.int64), invalid


_TABLES = {name: _build_table(info) for name, info in FORMATS.items()}


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

    ``fp4_e2m1`` gives ``±0 .. ±6`` (code ``0b1000`` is −0.0), ``mxint8`` gives ``code/64``, the
    integer formats give their integer; the invalid ternary code gives 0.0.
    """
    info = format_info(fmt)
    values, _ = decode(fmt, codes)
    out = values.astype(np.float64) * 2.0**info.pow2_adj
    if fmt == "fp4_e2m1":
        out = np.where(np.asarray(codes) == 0b1000, -0.0, out)
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
        Codes, LSB-aligned. ``fp4_e2m1`` keeps the sign of zero (−0.0 → ``0b1000``);
        ternary: −1 → ``0b11``, 0 → ``0b00``, +1 → ``0b01``.
    """
    info = format_info(fmt)
    x = np.asarray(values, dtype=np.float64)
    if np.isnan(x).any():
        raise ValueError(f"cannot encode NaN as {fmt}")
    if fmt == "fp4_e2m1":
        # Clamp first: the SPEC asks for saturation whatever ml_dtypes' cast does at overflow.
        return np.clip(x, -6.0, 6.0).astype(ml_dtypes.float4_e2m1fn).view(np.uint8)
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
