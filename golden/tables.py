"""The numeric facts of the array, once: element formats, N:M patterns, scale kinds, constants.

This module imports nothing of the project (and nothing but the standard library), so every
layer can derive from it: the golden codecs and quantizer limits (`golden.formats`,
`golden.quant`), the configuration's widths and the hardware's mode codes (`hw.config`,
`hw.layouts`), the testbench's stimuli and coverage bins (`verif`). Adding an element format
starts with one row of `ELEMENT_FORMATS` (docs/ARCHITECTURE.md, "Adding an element format").
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ACT_BITS",
    "ACT_MAX",
    "E8M0_BIAS",
    "E8M0_BITS",
    "E8M0_NAN",
    "ELEMENT_FORMATS",
    "ENCODINGS",
    "INT32_MAX",
    "INT32_MIN",
    "MX_ACT_FORMAT",
    "MX_ACT_FORMATS",
    "MX_BLOCK",
    "OUT_MULT_MAX",
    "OUT_MULT_MIN",
    "OUT_SHIFT_MAX",
    "OUT_SHIFT_MIN",
    "SCALE_KINDS",
    "SLOT_BITS",
    "SPARSITY_PATTERNS",
    "ElementFormat",
    "ScaleKind",
    "SparsityPattern",
    "signed_width",
]

#: Width of one weight slot; a slot holds ``SLOT_BITS // bits`` elements.
SLOT_BITS = 8
#: Width of one int8 activation, and the bound ``|x| ≤ ACT_MAX`` of its value.
ACT_BITS = 8
ACT_MAX = 1 << (ACT_BITS - 1)
#: Elements per shared exponent of the ``pow2`` (MX) scale kind and of MXINT8 activations.
MX_BLOCK = 32
#: E8M0 exponents: ``2**(code − E8M0_BIAS)``, code ``E8M0_NAN`` is NaN.
E8M0_BITS = 8
E8M0_BIAS = 127
E8M0_NAN = 0xFF
#: Element format of MXINT8 activations (its ``pow2_adj`` enters the exponent ``t``).
MX_ACT_FORMAT = "mxint8"
#: Element formats of MX activations (SPEC §1, the *activation format*): codes with an E8M0
#: exponent per 32 consecutive k; each format's ``pow2_adj`` is the ``adj_x`` of SPEC §4.
MX_ACT_FORMATS = ("mxint8", "fp8_e4m3", "fp8_e5m2")
#: Requant output stage parameters (SPEC §6): ``M0`` in ``[2**30, 2**31)``, shift −31…30.
OUT_MULT_MIN, OUT_MULT_MAX = 1 << 30, (1 << 31) - 1
OUT_SHIFT_MIN, OUT_SHIFT_MAX = -31, 30
#: The int32 range the requant stage saturates ``acc + bias`` (shifted left) to (SPEC §6).
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1

#: Code → value rules a format can use; each has one branch in `golden.formats` and one in the
#: hardware's lane decoder.
ENCODINGS = ("twos_complement", "unsigned", "ternary", "e2m1", "minifloat")


def signed_width(lo: int, hi: int) -> int:
    """Width of the narrowest two's complement number holding every integer in ``[lo, hi]``."""
    n = 1
    while not (-(1 << (n - 1)) <= lo and hi < 1 << (n - 1)):
        n += 1
    return n


@dataclass(frozen=True)
class ElementFormat:
    """One element format (SPEC §2, docs/NUMERICS.md scale table).

    Attributes
    ----------
    name : str
        Format name as written in layer files and configurations.
    code : int
        Runtime code of the format in the hardware's ``mode.fmt`` field.
    bits : int
        Code width; a slot byte holds ``SLOT_BITS // bits`` codes, LSB first.
    encoding : str
        Code → integer rule (one of `ENCODINGS`).
    value_min, value_max : int
        Range of the decoded integer the multiplier sees before the zero point, over all
        valid codes.
    zero_point_bits : int
        Width of the per-group zero point ``z`` (0: no zero point); the MAC sees ``value − z``.
    pow2_adj : int
        Exponent folded into ``pow2`` scales: real element value = decoded · ``2**pow2_adj``.
    allowed_scales : tuple of str
        Scale kinds the format may be combined with.
    invalid_codes : tuple of int
        Codes that decode to 0 and raise the error flag.
    magnitudes : tuple of int, optional
        Float table: decoded magnitude of each code without the sign bit (``e2m1`` only).
    float_bits : tuple of int, optional
        ``(exponent bits, mantissa bits)`` of a ``minifloat`` code ``S E…E M…M`` (OCP fp8):
        bias ``2**(E−1) − 1``, subnormals at exponent 0, decoded integer = value ·
        ``2**−pow2_adj``.
    """

    name: str
    code: int
    bits: int
    encoding: str
    value_min: int
    value_max: int
    zero_point_bits: int = 0
    pow2_adj: int = 0
    allowed_scales: tuple[str, ...] = ("none", "int", "pow2")
    invalid_codes: tuple[int, ...] = ()
    magnitudes: tuple[int, ...] | None = None
    float_bits: tuple[int, int] | None = None

    @property
    def lanes_per_slot(self) -> int:
        """Elements of this format in one slot byte."""
        return SLOT_BITS // self.bits

    @property
    def n_codes(self) -> int:
        """Number of distinct codes, ``2**bits``."""
        return 1 << self.bits

    @property
    def signed(self) -> bool:
        """Whether decoded integers can be negative."""
        return self.value_min < 0

    @property
    def has_zero_point(self) -> bool:
        """Whether the MAC sees ``value − z`` with a per-group zero point ``z``."""
        return self.zero_point_bits > 0

    @property
    def zero_max(self) -> int:
        """Largest zero point (0 without one)."""
        return (1 << self.zero_point_bits) - 1

    @property
    def mac_min(self) -> int:
        """Smallest ``value − z`` the multiplier can see."""
        return self.value_min - self.zero_max

    @property
    def mac_max(self) -> int:
        """Largest ``value − z`` the multiplier can see (``z = 0``)."""
        return self.value_max

    @property
    def mac_abs_max(self) -> int:
        """Largest ``|value − z|``: bounds every datapath width."""
        return max(-self.mac_min, self.mac_max)

    @property
    def value_bits(self) -> int:
        """Signed width of the decoded lane value after the zero point subtraction."""
        return signed_width(self.mac_min, self.mac_max)

    @property
    def n_valid_codes(self) -> int:
        """Number of codes that are not invalid."""
        return self.n_codes - len(self.invalid_codes)

    @property
    def symmetric_max(self) -> float:
        """Largest element a symmetric quantizer emits, in the element domain (SPEC §4)."""
        return self.value_max * 2.0**self.pow2_adj


@dataclass(frozen=True)
class SparsityPattern:
    """One N:M pattern (SPEC §3): keep ``n`` of every ``m`` consecutive k; dense is 1:1."""

    name: str
    code: int
    n: int
    m: int


@dataclass(frozen=True)
class ScaleKind:
    """One scale kind (SPEC §4) and its runtime code in the hardware's ``mode.scale`` field."""

    name: str
    code: int


def _rows(*rows):
    return {r.name: r for r in rows}


#: Every element format, in canonical (code) order.
ELEMENT_FORMATS: dict[str, ElementFormat] = _rows(
    ElementFormat("int8", 0, 8, "twos_complement", -128, 127),
    ElementFormat("int4", 1, 4, "twos_complement", -8, 7),
    ElementFormat("uint4", 2, 4, "unsigned", 0, 15, zero_point_bits=4,
                  allowed_scales=("none", "int")),
    ElementFormat("int2", 3, 2, "twos_complement", -2, 1),
    ElementFormat("ternary", 4, 2, "ternary", -1, 1, invalid_codes=(0b10,)),
    ElementFormat("fp4_e2m1", 5, 4, "e2m1", -12, 12, pow2_adj=-1,
                  magnitudes=(0, 1, 2, 3, 4, 6, 8, 12)),  # 0, 0.5, 1, 1.5, 2, 3, 4, 6 (×2)
    ElementFormat("mxint8", 6, 8, "twos_complement", -128, 127, pow2_adj=-6),
    ElementFormat("uint2", 7, 2, "unsigned", 0, 3, zero_point_bits=2,
                  allowed_scales=("none", "int")),
    # OCP E4M3 (``float8_e4m3fn``): no infinities, S.1111.111 is NaN; integer = value · 2**9.
    ElementFormat("fp8_e4m3", 8, 8, "minifloat", -229376, 229376, pow2_adj=-9,
                  invalid_codes=(0x7F, 0xFF), float_bits=(4, 3)),
    # OCP E5M2 (``float8_e5m2``): exponent 31 is Inf (mantissa 0) or NaN; integer = value · 2**16.
    ElementFormat("fp8_e5m2", 9, 8, "minifloat", -3758096384, 3758096384, pow2_adj=-16,
                  invalid_codes=(*range(0x7C, 0x80), *range(0xFC, 0x100)), float_bits=(5, 2)),
)

#: Every N:M pattern, in canonical (code) order.
SPARSITY_PATTERNS: dict[str, SparsityPattern] = _rows(
    SparsityPattern("dense", 0, 1, 1),
    SparsityPattern("1:4", 1, 1, 4),
    SparsityPattern("2:4", 2, 2, 4),
    SparsityPattern("2:8", 3, 2, 8),
    SparsityPattern("4:8", 4, 4, 8),
)

#: Every scale kind, in canonical (code) order.
SCALE_KINDS: dict[str, ScaleKind] = _rows(
    ScaleKind("none", 0),
    ScaleKind("int", 1),
    ScaleKind("pow2", 2),
)
