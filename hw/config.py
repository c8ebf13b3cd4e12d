"""The array configuration: one frozen dataclass, the single source of truth for every width.

Nothing here imports Amaranth, so the golden model, the packer, the testbenches and the synthesis
scripts can all read a configuration (or its JSON manifest) without elaborating hardware.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from dataclasses import dataclass, field
from pathlib import Path

from golden import tables as _tables
from golden.formats import minifloat_fields
from golden.sparsity import parse_sparsity

__all__ = [
    "FORMAT_CODES", "SPARSITY_CODES", "SCALE_CODES", "FORMAT_BITS", "FORMAT_WMAX",
    "FORMAT_SCALES", "HW_FORMATS", "DEFAULT_FORMATS", "FP8_FORMATS",
    "OPT_IN_FORMATS",
    "LANE_SHIFT_CHUNK", "ConfigError", "ArrayConfig", "Mode",
]

#: The fp8 rows: their lanes widen every slot's first multiplier and every sum after it.
FP8_FORMATS = tuple(n for n, f in _tables.ELEMENT_FORMATS.items() if f.encoding == "minifloat")
#: Formats a configuration enables only by naming them (the ``mxfp8`` and ``gptq2`` presets),
#: because they cost every other mode area (docs/PERFORMANCE.md, ablation): the fp8 rows, and
#: ``uint2``, whose zero point widens the 2-bit lanes' multipliers to 3 bits.
OPT_IN_FORMATS = (*FP8_FORMATS, "uint2")

# Every per-format fact below is derived from the one table, `golden.tables`.
_FORMATS = _tables.ELEMENT_FORMATS
#: Element formats the hardware implements, in table (code) order.
HW_FORMATS = tuple(_FORMATS)

#: The formats of a configuration that does not name its own: all but `OPT_IN_FORMATS`.
DEFAULT_FORMATS = tuple(f for f in HW_FORMATS if f not in OPT_IN_FORMATS)

#: Runtime encodings of the per-GEMM mode fields (the hardware's `mode` port uses these codes).
FORMAT_CODES = {f.name: f.code for f in _FORMATS.values()}
SPARSITY_CODES = {p.name: p.code for p in _tables.SPARSITY_PATTERNS.values()}
SCALE_CODES = {k.name: k.code for k in _tables.SCALE_KINDS.values()}
OUT_STAGES = ("raw", "requant")

#: Code width of each element format (SPEC §2).
FORMAT_BITS = {f.name: f.bits for f in _FORMATS.values()}
#: Largest |value − zero point| the MAC can see for each format (bounds the datapath widths).
FORMAT_WMAX = {f.name: f.mac_abs_max for f in _FORMATS.values()}
#: A decoded ``minifloat`` (fp8) weight reaches its multiplier as ``v · 2**(CHUNK · c)``:
#: ``v = ±significand << (shift mod CHUNK)`` (a narrow signed value a DSP multiplies) and the
#: coarse ``c = shift div CHUNK``, applied to the product (SPEC §2 allows any exact
#: (significand, shift) form). Every other format has ``v`` = its value and ``c`` = 0.
LANE_SHIFT_CHUNK = 8


def _lane_form(info: _tables.ElementFormat) -> tuple[int, int]:
    """Signed width of a format's lane value ``v`` (zero point subtracted) and its largest ``c``."""
    if info.encoding != "minifloat":
        return info.value_bits, 0
    codes = [c for c in range(info.n_codes) if c not in info.invalid_codes]
    _, significand, shift = minifloat_fields(info, codes)
    v = significand << (shift % LANE_SHIFT_CHUNK)
    return _tables.signed_width(-int(v.max()), int(v.max())), int((shift // LANE_SHIFT_CHUNK).max())


#: Signed width of the decoded lane value ``v`` and the largest coarse shift ``c`` per format.
FORMAT_VALUE_BITS = {f.name: _lane_form(f)[0] for f in _FORMATS.values()}
FORMAT_COARSE_MAX = {f.name: _lane_form(f)[1] for f in _FORMATS.values()}
#: Scale kinds each format may use (docs/NUMERICS.md).
FORMAT_SCALES = {f.name: f.allowed_scales for f in _FORMATS.values()}
#: Nonzero pow2 exponent adjustments of the weight formats (SPEC §4).
FORMAT_POW2_ADJ = {f.name: f.pow2_adj for f in _FORMATS.values() if f.pow2_adj}
MX_BLOCK = _tables.MX_BLOCK
ACT_MAX = _tables.ACT_MAX  # |int8 activation| bound


class ConfigError(ValueError):
    """An invalid or contradictory generator configuration (message names the parameter)."""


def _tuple_of(name, value, allowed):
    if isinstance(value, str):
        value = (value,)
    try:
        value = tuple(value)
    except TypeError:
        raise ConfigError(f"{name} must be a list of names, not {value!r}") from None
    if not value:
        raise ConfigError(f"{name} must enable at least one entry")
    for v in value:
        if v not in allowed:
            raise ConfigError(f"{name}: unknown entry {v!r}; choose from {', '.join(allowed)}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{name} lists an entry twice: {value!r}")
    # Canonical order (the order of `allowed`) keeps emission deterministic.
    return tuple(a for a in allowed if a in value)


def _int(name, value, lo=None, hi=None):
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, not {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ConfigError(f"{name} must be an integer, not {value!r}") from None
    if lo is not None and value < lo:
        raise ConfigError(f"{name} must be at least {lo}, not {value}")
    if hi is not None and value > hi:
        raise ConfigError(f"{name} must be at most {hi}, not {value}")
    return value


@dataclass(frozen=True)
class Mode:
    """One runtime mode of a GEMM: what the packer, the runner and the benchmarks iterate over."""

    fmt: str
    sparsity: str = "dense"
    scale_kind: str = "none"
    mx_act: bool = False
    out_stage: str = "raw"
    #: The fp8 element format of MX activations (SPEC §1); None: int8, or MXINT8 with
    #: ``mx_act``.
    x_format: str | None = None

    @property
    def activation_format(self) -> str | None:
        """The activation format as `golden.gemm` names it: None (int8), ``'mxint8'``, fp8."""
        return self.x_format or ("mxint8" if self.mx_act else None)

    @property
    def name(self) -> str:
        """Mode name: format, sparsity, scale kind, then ``mxact`` (MXINT8 activations) or
        ``mx<fp8 format>`` (fp8 ones), then ``requant``."""
        parts = [self.fmt, self.sparsity, self.scale_kind]
        if self.x_format:
            parts.append(f"mx{self.x_format}")
        elif self.mx_act:
            parts.append("mxact")
        if self.out_stage != "raw":
            parts.append(self.out_stage)
        return "-".join(parts)


@dataclass(frozen=True, kw_only=True)
class ArrayConfig:
    """Every generator parameter of the unified compression PE array.

    Parameters
    ----------
    rows, cols : int
        Array size: a tile covers ``rows`` tokens (output rows) × ``cols`` output columns.
    slots : int
        8-bit weight slots per PE per cycle (power of two). A slot carries 1 int8, 2 4-bit or
        4 2-bit lanes.
    window : int
        Activation window V: int8 activations (consecutive k) per PE per cycle (power of two,
        at most 32). Peak dense-equivalent MACs per PE per cycle are
        ``min(window, slots · lanes_per_slot · M_sp / N_sp)``.
    formats, sparsity, scale_kinds : tuple of str
        Enabled element formats (SPEC §2), N:M patterns (SPEC §3) and scale kinds (SPEC §4).
        Hardware is only generated for what is enabled.
    mx_activations : bool
        Accept MXINT8 activations (a per-32 block exponent with every activation beat).
    fp8_activations : tuple of str
        fp8 element formats MX activations may also use (`FP8_FORMATS`; needs
        ``mx_activations``). Activations are decoded at the row edge, and a weight format ×
        activation format pair whose exact accumulator would need more than 64 bits is not a
        mode of the configuration (`x_pairs`).
    requant : bool
        Generate the int8 requantizing output stage (SPEC §6).
    scale_bits : int
        Width of signed ``int`` scales.
    k_max : int
        Largest reduction length K of one GEMM (bounds the accumulator).
    frac_bits : int
        Fractional bits of the accumulator in ``pow2`` GEMMs.
    t_min, t_max : int
        Window of the ``pow2`` exponent ``t = (e_w−127) + (e_x−127) + adj``; outside it the
        hardware raises the error flag instead of shifting.
    acc_bits : int or None
        Accumulator width; None derives the minimum safe width, an explicit value smaller than
        that is refused.
    dsp_lanes : int or None
        At most this many multiplier lanes per PE built as plain products, which synthesis
        maps to DSP blocks (`hard_lanes`; 0 … 4·slots); the others are shift-add products in
        LUTs. Lanes are taken widest
        first (every slot's quarter 0, then quarter 2, then 1 and 3). None: the lanes whose
        weights have 8 or more bits (the int8 lanes).
    """

    rows: int = 4
    cols: int = 4
    slots: int = 4
    window: int = 16
    formats: tuple[str, ...] = DEFAULT_FORMATS
    sparsity: tuple[str, ...] = tuple(SPARSITY_CODES)
    scale_kinds: tuple[str, ...] = tuple(SCALE_CODES)
    mx_activations: bool = True
    fp8_activations: tuple[str, ...] = ()
    requant: bool = True
    scale_bits: int = 16
    k_max: int = 4096
    frac_bits: int = 16
    t_min: int = -32
    t_max: int = 8
    acc_bits: int | None = None
    dsp_lanes: int | None = None
    name: str = field(default="upe_core")

    def __post_init__(self):  # noqa: C901 - one flat check per parameter, in order
        s = object.__setattr__
        s(self, "rows", _int("rows", self.rows, 1, 64))
        s(self, "cols", _int("cols", self.cols, 1, 64))
        s(self, "slots", _int("slots", self.slots, 1, 32))
        s(self, "window", _int("window", self.window, 1, 32))
        for name in ("slots", "window"):
            v = getattr(self, name)
            if v & (v - 1):
                raise ConfigError(f"{name} must be a power of two, not {v}")
        s(self, "formats", _tuple_of("formats", self.formats, tuple(_tables.ELEMENT_FORMATS)))
        s(self, "sparsity", _tuple_of("sparsity", self.sparsity, tuple(SPARSITY_CODES)))
        s(self, "scale_kinds", _tuple_of("scale_kinds", self.scale_kinds, tuple(SCALE_CODES)))
        if not isinstance(self.mx_activations, bool):
            raise ConfigError(f"mx_activations must be true or false, not {self.mx_activations!r}")
        if not isinstance(self.requant, bool):
            raise ConfigError(f"requant must be true or false, not {self.requant!r}")
        s(self, "scale_bits", _int("scale_bits", self.scale_bits, 2, 32))
        s(self, "k_max", _int("k_max", self.k_max, 1, 1 << 20))
        s(self, "frac_bits", _int("frac_bits", self.frac_bits, 0, 48))
        s(self, "t_min", _int("t_min", self.t_min, -300, 300))
        s(self, "t_max", _int("t_max", self.t_max, -300, 300))
        if self.dsp_lanes is not None:
            s(self, "dsp_lanes", _int("dsp_lanes", self.dsp_lanes, 0, 4 * self.slots))
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(f"name must be a Verilog identifier, not {self.name!r}")
        if self.t_min > self.t_max:
            raise ConfigError(f"t_min ({self.t_min}) must not exceed t_max ({self.t_max})")
        if self.mx_activations and "pow2" not in self.scale_kinds:
            raise ConfigError("mx_activations needs the pow2 scale kind (MX block exponents)")
        if isinstance(self.fp8_activations, str) or self.fp8_activations:
            s(self, "fp8_activations",
              _tuple_of("fp8_activations", self.fp8_activations, FP8_FORMATS))
            if not self.mx_activations:
                raise ConfigError("fp8_activations needs mx_activations (MX block exponents)")
        else:
            s(self, "fp8_activations", ())
        usable = [f for f in self.formats if any(k in self.scale_kinds for k in FORMAT_SCALES[f])]
        if len(usable) != len(self.formats):
            bad = sorted(set(self.formats) - set(usable))
            raise ConfigError(f"formats {bad} cannot use any enabled scale kind "
                              f"{list(self.scale_kinds)}")
        for pattern in self.sparsity:
            n, m = parse_sparsity(pattern)
            if m > self.window:
                raise ConfigError(f"sparsity {pattern} needs window >= {m}, not {self.window}")
            for fmt in self.formats:
                if self.lanes_per_beat(fmt) < n:
                    raise ConfigError(
                        f"sparsity {pattern} with format {fmt} needs at least {n} lanes per "
                        f"beat; slots={self.slots} gives {self.lanes_per_beat(fmt)}")
        if "pow2" in self.scale_kinds:
            for fmt in self.formats:
                for pattern in self.sparsity:
                    if MX_BLOCK % self.step_k(fmt, pattern):
                        raise ConfigError("pow2 needs a beat that divides the 32-element MX block")
            if self.k_max % MX_BLOCK:
                raise ConfigError(f"k_max must be a multiple of {MX_BLOCK} with pow2 scales")
        derived = self.min_acc_bits
        if self.acc_bits is None:
            s(self, "acc_bits", derived)
        else:
            s(self, "acc_bits", _int("acc_bits", self.acc_bits, 2, 64))
            if self.acc_bits < derived:
                raise ConfigError(
                    f"acc_bits={self.acc_bits} could overflow: this configuration needs at "
                    f"least {derived} (k_max={self.k_max}, scale_bits={self.scale_bits}, "
                    f"t_max={self.t_max}, frac_bits={self.frac_bits})")
        if self.acc_bits > 64:
            raise ConfigError(
                f"the accumulator would need {self.acc_bits} bits (more than 64); lower k_max, "
                f"scale_bits, t_max or frac_bits")
        paired = {x for _, x in self.x_pairs}
        for x in self.fp8_activations:
            if x not in paired:
                raise ConfigError(
                    f"fp8_activations: {x} pairs with no enabled weight format (every pair's "
                    f"exact accumulator would exceed 64 bits with k_max={self.k_max}, "
                    f"t_max={self.t_max}, frac_bits={self.frac_bits}); lower them or drop {x}")

    # -- derived quantities ----------------------------------------------------------------

    @staticmethod
    def lanes_per_slot(fmt: str) -> int:
        """Elements of ``fmt`` in one 8-bit slot."""
        return _FORMATS[fmt].lanes_per_slot

    def lanes_per_beat(self, fmt: str) -> int:
        """Lanes of ``fmt`` in one weight packet."""
        return self.slots * self.lanes_per_slot(fmt)

    def step_k(self, fmt: str, sparsity: str = "dense") -> int:
        """Dense-equivalent k covered by one beat = peak MACs per PE per cycle in this mode."""
        n, m = parse_sparsity(sparsity)
        return min(self.window, (self.lanes_per_beat(fmt) // n) * m)

    def lanes_used(self, fmt: str, sparsity: str = "dense") -> int:
        """Lanes that carry a weight in one beat of this mode."""
        n, m = parse_sparsity(sparsity)
        return self.step_k(fmt, sparsity) // m * n

    @property
    def idx_bits(self) -> int:
        """Width of one N:M index (0 when only dense is enabled)."""
        m_max = max(parse_sparsity(p)[1] for p in self.sparsity)
        return (m_max - 1).bit_length()

    @property
    def max_lanes(self) -> int:
        """Lanes of the narrowest enabled format (the N:M index count)."""
        return self.slots * max(self.lanes_per_slot(f) for f in self.formats)

    @property
    def has_zero_points(self) -> bool:
        """Whether an enabled format has a zero point."""
        return self.zero_point_bits > 0

    @property
    def zero_point_bits(self) -> int:
        """Width of the per-group zero point field (0 when no enabled format has one)."""
        return max(_FORMATS[f].zero_point_bits for f in self.formats)

    @property
    def quarter_value_bits(self) -> tuple[int, ...]:
        """Signed width of the decoded weight in each quarter of a slot (0: quarter unused).

        Quarter q of a slot is used by a format with L lanes per slot when q is a multiple of
        4 / L, so quarter 0 serves every format, quarter 2 the 4- and 2-bit ones, quarters 1
        and 3 the 2-bit ones only. Each multiplier is only as wide as the formats that use it.
        """
        widths = []
        for q in range(4):
            w = 0
            for f in self.formats:
                if q % (4 // self.lanes_per_slot(f)) == 0:
                    w = max(w, FORMAT_VALUE_BITS[f])
            widths.append(w)
        return tuple(widths)

    @property
    def quarter_coarse_max(self) -> tuple[int, ...]:
        """Largest coarse shift ``c`` of a decoded weight in each quarter (`LANE_SHIFT_CHUNK`)."""
        return tuple(max((FORMAT_COARSE_MAX[f] for f in self.formats
                          if q % (4 // self.lanes_per_slot(f)) == 0), default=0)
                     for q in range(4))

    @property
    def lanes(self) -> tuple[tuple[int, int], ...]:
        """The PE's multiplier lanes ``(slot, quarter)`` the enabled formats use, in PE order."""
        return tuple((s, q) for s in range(self.slots) for q in range(4)
                     if self.quarter_value_bits[q])

    @property
    def hard_lanes(self) -> frozenset[tuple[int, int]]:
        """Lanes built as plain products (DSP blocks), from `dsp_lanes`."""
        if self.dsp_lanes is None:
            return frozenset(m for m in self.lanes if self.quarter_value_bits[m[1]] >= 8)
        by_width = sorted(self.lanes, key=lambda m: ((0, 2, 1, 3).index(m[1]), m[0]))
        return frozenset(by_width[:self.dsp_lanes])  # at most: every lane when it has fewer

    @property
    def complement_lanes(self) -> frozenset[tuple[int, int]]:
        """LUT lanes (not `hard_lanes`) of 2-bit weights without a coarse shift: their
        product leaves `hw.pe.LaneProducts` as the one's complement ``x · w − 1`` when
        ``w < 0``, the ``+1`` counted once per PE."""
        if self.fp8_activations:
            return frozenset()
        return frozenset(m for m in self.lanes if m not in self.hard_lanes
                         and self.quarter_value_bits[m[1]] == 2
                         and not self.quarter_coarse_max[m[1]])

    @property
    def hard_lane_min_bits(self) -> int | None:
        """Narrowest weight of a `hard_lanes` product (None without hard lanes)."""
        return min((self.quarter_value_bits[q] for _, q in self.hard_lanes), default=None)

    @property
    def wmax(self) -> int:
        """Largest |value − zero point| of the enabled formats."""
        return max(FORMAT_WMAX[f] for f in self.formats)

    @property
    def scale_field_bits(self) -> int:
        """Width of the per-group scale field in a weight packet."""
        bits = 0
        if "int" in self.scale_kinds:
            bits = self.scale_bits
        if "pow2" in self.scale_kinds:
            bits = max(bits, 8)
        return bits

    # -- activation formats: int8 and MXINT8 (|x| <= 128), fp8 (`fp8_activations`) ----------

    @property
    def x_value_bits(self) -> int:
        """Signed width of a decoded activation's value ``v`` (8 without fp8 activations)."""
        return max([8, *(FORMAT_VALUE_BITS[f] for f in self.fp8_activations)])

    @property
    def x_coarse_max(self) -> int:
        """Largest coarse shift ``c`` of a decoded activation (0 without fp8 activations)."""
        return max([0, *(FORMAT_COARSE_MAX[f] for f in self.fp8_activations)])

    @property
    def x_fmt_codes(self) -> dict[str | None, int]:
        """Codes of the mode's ``x_fmt`` field: 0 for int8 / MXINT8 codes (None), then the
        `fp8_activations` in order."""
        return {None: 0, **{x: i + 1 for i, x in enumerate(self.fp8_activations)}}

    def _fp8_pair_acc_bound(self, fmt: str, x_format: str) -> int:
        """Largest |accumulator| of a pow2 GEMM of ``fmt`` weights and ``x_format``
        activations (groups of one MX block)."""
        groups = -(-self.k_max // MX_BLOCK)
        p32 = MX_BLOCK * FORMAT_WMAX[x_format] * FORMAT_WMAX[fmt]
        return groups * (p32 << max(self.shift_max, 0))

    @property
    def x_pairs(self) -> tuple[tuple[str, str], ...]:
        """``(weight format, fp8 activation format)`` pairs that are modes: ``pow2`` weights
        whose exact accumulator fits 64 bits (an E5M2 × E5M2 product alone needs 65)."""
        if "pow2" not in self.scale_kinds:
            return ()
        return tuple((f, x) for f in self.formats for x in self.fp8_activations
                     if "pow2" in FORMAT_SCALES[f]
                     and _signed_bits(self._fp8_pair_acc_bound(f, x)) <= 64)

    @property
    def beat_bits(self) -> int:
        """Signed width of one beat's partial sum over all lanes."""
        x_max = {f: ACT_MAX for f in self.formats}
        for f, x in self.x_pairs:
            x_max[f] = max(x_max[f], FORMAT_WMAX[x])
        bound = 0
        for f in self.formats:
            for p in self.sparsity:
                bound = max(bound, self.lanes_used(f, p) * x_max[f] * FORMAT_WMAX[f])
        return _signed_bits(bound)

    @property
    def shift_max(self) -> int:
        """Largest left shift of a pow2 contribution."""
        return self.t_max + self.frac_bits

    @property
    def shift_min(self) -> int:
        """Smallest (most negative) shift of a pow2 contribution."""
        return self.t_min + self.frac_bits

    @property
    def acc_frac_bits(self) -> int:
        """Fraction bits the PE's accumulator keeps below the result's integer part.

        The `Scaler` hands every beat's ``beat · b`` to the accumulator (there is no group sum
        of its own), so a pow2 contribution with a right shift (``shift_min < 0``) arrives with
        up to ``−shift_min`` fraction bits; the accumulator clears them at the group's last
        beat, which is the SPEC's ``floor`` of the group's ``P_g · 2^shift`` (its integer
        part is a multiple of ``2^acc_frac_bits`` then). 0 without pow2 or right shifts.
        """
        if "pow2" not in self.scale_kinds:
            return 0
        return max(0, -self.shift_min)

    @property
    def min_acc_bits(self) -> int:
        """Minimum accumulator width that can never overflow (SPEC §5): int8 and MXINT8
        activations with every format, fp8 activations with the formats of `x_pairs`."""
        bound = 0
        p_int8 = self.k_max * ACT_MAX * self.wmax  # int8 activations, group = K
        if "none" in self.scale_kinds:
            bound = max(bound, p_int8)
        if "int" in self.scale_kinds:
            bound = max(bound, p_int8 * (1 << (self.scale_bits - 1)))
        if "pow2" in self.scale_kinds:
            groups = -(-self.k_max // MX_BLOCK)
            p32 = MX_BLOCK * ACT_MAX * self.wmax
            bound = max(bound, groups * (p32 << max(self.shift_max, 0)))
            for f, x in self.x_pairs:
                bound = max(bound, self._fp8_pair_acc_bound(f, x))
        return _signed_bits(bound)

    @property
    def modes(self) -> list[Mode]:
        """Every runtime mode this configuration can run (format × sparsity × scale kind)."""
        out = []
        for f in self.formats:
            for p in self.sparsity:
                for k in self.scale_kinds:
                    if k not in FORMAT_SCALES[f]:
                        continue
                    out.append(Mode(f, p, k))
                    if k == "pow2" and self.mx_activations:
                        out.append(Mode(f, p, k, mx_act=True))
                        out += [Mode(f, p, k, mx_act=True, x_format=x)
                                for x in self.fp8_activations if (f, x) in self.x_pairs]
        return out

    def _check_activation_format(self, mode: Mode) -> None:
        """Raise ConfigError unless the mode's fp8 activation format is one this config runs."""
        if mode.x_format is None:
            return
        if not mode.mx_act:
            raise ConfigError(f"{mode.x_format} activations are MX activations: they need "
                              "their block exponents (mx_act)")
        if mode.x_format not in self.fp8_activations:
            raise ConfigError(
                f"{mode.x_format} activations are not enabled in this configuration "
                f"(fp8_activations: {', '.join(self.fp8_activations) or 'none'})")
        if (mode.fmt, mode.x_format) not in self.x_pairs:
            raise ConfigError(
                f"{mode.fmt} weights with {mode.x_format} activations could overflow the "
                f"64-bit exact accumulator (k_max={self.k_max}, t_max={self.t_max}, "
                f"frac_bits={self.frac_bits}); this configuration does not run the pair")

    def check_mode(self, mode: Mode, *, group: int | None = None, k: int | None = None):
        """Raise ConfigError unless this configuration can run ``mode`` (and group, K)."""
        if mode.fmt not in self.formats:
            raise ConfigError(f"format {mode.fmt} is not enabled in this configuration "
                              f"(enabled: {', '.join(self.formats)})")
        if mode.sparsity not in self.sparsity:
            raise ConfigError(f"sparsity {mode.sparsity} is not enabled in this configuration "
                              f"(enabled: {', '.join(self.sparsity)})")
        if mode.scale_kind not in self.scale_kinds:
            raise ConfigError(f"scale kind {mode.scale_kind} is not enabled in this "
                              f"configuration (enabled: {', '.join(self.scale_kinds)})")
        if mode.scale_kind not in FORMAT_SCALES[mode.fmt]:
            raise ConfigError(f"format {mode.fmt} cannot use scale kind {mode.scale_kind}")
        if mode.mx_act and not (self.mx_activations and mode.scale_kind == "pow2"):
            raise ConfigError("MXINT8 activations need a pow2 GEMM on a configuration with "
                              "mx_activations enabled")
        self._check_activation_format(mode)
        if mode.out_stage not in OUT_STAGES:
            raise ConfigError(f"output stage must be raw or requant, not {mode.out_stage!r}")
        if mode.out_stage == "requant" and not self.requant:
            raise ConfigError("this configuration has no requant output stage")
        step = self.step_k(mode.fmt, mode.sparsity)
        if k is not None:
            if k > self.k_max:
                raise ConfigError(f"K={k} exceeds this configuration's k_max={self.k_max}")
            if k % step:
                raise ConfigError(f"K={k} is not a multiple of the beat ({step}) in this mode")
        if group is not None:
            if group % step:
                raise ConfigError(f"group {group} is not a multiple of the beat ({step}) in "
                                  f"mode {mode.name}")
            if mode.scale_kind == "pow2" and group != MX_BLOCK:
                raise ConfigError(f"pow2 scales need group {MX_BLOCK}, not {group}")
        return step

    @property
    def peak_macs_per_cycle(self) -> dict[str, int]:
        """Dense-equivalent MACs per cycle of the whole array, per format × sparsity."""
        return {f"{f}/{p}": self.step_k(f, p) * self.rows * self.cols
                for f in self.formats for p in self.sparsity}

    # -- serialization -----------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Every parameter, tuples as lists (JSON-ready)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        """The configuration as sorted, indented JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ArrayConfig:
        """Build a configuration from a mapping, refusing unknown keys."""
        if not isinstance(data, dict):
            raise ConfigError(f"a configuration must be a mapping, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(repr(k) if not isinstance(k, str) else k for k in set(data) - known)
        if unknown:
            raise ConfigError(f"unknown configuration parameter(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path, base: ArrayConfig | None = None) -> ArrayConfig:
        """Read a ``.json`` or ``.toml`` file (keys override ``base`` when given)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
        try:
            if path.suffix == ".toml":
                import tomllib
                data = tomllib.loads(text)
            else:
                data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"configuration {path} is not valid: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"configuration {path} must hold a mapping of parameters, not a "
                              f"{type(data).__name__}")
        if isinstance(data, dict) and "config" in data and isinstance(data["config"], dict):
            data = data["config"]  # accept a manifest too
        merged = {**(base.to_dict() if base else {}), **data}
        if base is not None and data.get("acc_bits") is None:
            merged["acc_bits"] = None
        return cls.from_dict(merged)

    def replace(self, **changes) -> ArrayConfig:
        """A copy with some parameters changed (``acc_bits`` re-derived unless given)."""
        data = {**self.to_dict(), **changes}
        if "acc_bits" not in changes:
            data["acc_bits"] = None
        return ArrayConfig.from_dict(data)


def _signed_bits(bound: int) -> int:
    """Bits of a two's complement number holding every value in [−bound, bound]."""
    return max(int(bound).bit_length() + 1, 2)


def ceil_log2(n: int) -> int:
    return max(math.ceil(math.log2(n)), 0) if n > 1 else 0
