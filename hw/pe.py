"""The unified compression processing element and its building blocks.

One PE reinterprets each 8-bit weight slot at run time as 1 int8, 2 int4/uint4/fp4 or
4 int2/ternary lanes; the N:M indices of the lanes drive the activation select; a group partial
sum is scaled (integer multiplier or power-of-two shifter) into an exact wide accumulator.
Physical multipliers are addressed by ``(slot, quarter)``: quarter 0 serves every format,
quarter 2 the 4- and 2-bit formats, quarters 1 and 3 the 2-bit formats only, and each is only
as wide as the enabled formats that use it.
"""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.formats import decode
from golden.tables import ELEMENT_FORMATS as FORMATS
from golden.tables import MX_ACT_FORMAT
from hw.config import (
    FORMAT_CODES,
    FORMAT_POW2_ADJ,
    LANE_SHIFT_CHUNK,
    SCALE_CODES,
    SPARSITY_CODES,
    ArrayConfig,
)
from hw.lanemap import lane_map
from hw.layouts import Layouts

__all__ = [
    "LaneDecoder", "ActivationDecode", "ActivationSelect", "LaneDecode", "LaneSelect",
    "LaneProducts", "AdderTree", "BeatRegister", "ScaleOperand", "Scaler", "WideAccumulator",
    "ProcessingElement",
    "adder_tree", "decode_minifloat", "decoded_layout", "delay", "register_port",
    "select_reachable", "shift_add_product",
]


def delay(m: Module, value, depth: int, *, name: str, reset_less: bool = True):
    """``value`` through ``depth`` registers (one per pipeline stage); the last one is returned.

    The one way control and side data travel along a pipeline: every stage's copy is a
    register named ``<name><stage>``. Beat control (``valid`` bits) is reset, datapath copies
    are reset-less (see docs/ARCHITECTURE.md, reset policy).
    """
    for i in range(depth):
        reg = Signal.like(value, name=f"{name}{i + 1}", reset_less=reset_less)
        m.d.sync += reg.eq(value)
        value = reg
    return value


def register_port(m: Module, port, value, *, name: str) -> None:
    """Drive the output ``port`` from a reset-less register of ``value``.

    A datapath output (see docs/ARCHITECTURE.md, reset policy): Amaranth resets an output
    port assigned in ``m.d.sync`` itself, which would bring the core's reset to every stage
    component's output register (the lane DSPs' among them).
    """
    reg = Signal(port.shape(), name=name, reset_less=True)
    m.d.sync += reg.eq(value)
    m.d.comb += port.eq(reg)


#: Attribute of every intermediate sum: Yosys' ``alumacc`` would otherwise merge a tree of
#: additions into one multi-operand ``$macc``, which it maps to LUT logic instead of carry
#: chains (twice the LUTs of the same adders on CCU2C, measured on the lane products).
KEEP = {"keep": 1}

#: Attribute of a register that must stay a copy of its own: the beat control is the same
#: delay line for every PE of an anti-diagonal, and synthesis merges identical registers, so
#: without it one flip-flop drives the restart muxes of up to four PEs on `default`. Yosys
#: honours ``keep`` on cells only; `flows.synth` moves it from the register's net onto its
#: flip-flop.
REPLICA = {"keep": 1}


def adder_tree(values, m: Module | None = None, *, name: str = "sum"):
    """Balanced sum of Amaranth values (a chain would make the critical path linear).

    With a module ``m``, every intermediate sum is a kept signal of its own (`KEEP`), so each
    addition maps to one carry chain.
    """
    values = list(values)
    if not values:
        return Const(0, signed(2))
    level = 0
    while len(values) > 1:
        nxt = []
        for i in range(0, len(values) - 1, 2):
            total = values[i] + values[i + 1]
            if m is not None:
                sig = Signal(total.shape(), name=f"{name}_l{level}_{i // 2}", attrs=KEEP)
                m.d.comb += sig.eq(total)
                total = sig
            nxt.append(total)
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
        level += 1
    return values[0]


def shift_add_product(m: Module, x, w, *, name: str):
    """``x · w`` for a narrow signed ``w`` as a balanced sum of shifted copies of ``x``.

    Two's complement: ``w = −w[b−1]·2^(b−1) + Σ_j w[j]·2^j``, so the product is a sum of
    ``b`` partial products (the top one subtracted), each ``x << j`` or 0, added on carry chains
    (`adder_tree` with kept sums). Yosys' own soft multiplier maps a signed 8×5 product to
    about 160 LUT4s; this form to about 80.
    """
    bits = len(w)
    width = len(x) + bits
    terms = []
    for j in range(bits):
        sig = Signal(signed(width), name=f"{name}_pp{j}")
        m.d.comb += sig.eq(Mux(w[j], x.as_signed() << j, 0))
        terms.append(sig)
    top = terms.pop()
    if not terms:  # a 1-bit weight: 0 or −1
        return -top
    # The top term is subtracted by its pair's adder (a subtraction is one carry chain).
    head = terms.pop()
    diff = Signal(signed(width + 1), name=f"{name}_top", attrs=KEEP)
    m.d.comb += diff.eq(head - top)
    terms.append(diff)
    return adder_tree(terms, m, name=name)


def _quarter_formats(cfg: ArrayConfig, quarter: int):
    """Enabled formats that use ``quarter`` of a slot, with the lane's sub-index in the slot."""
    out = []
    for fmt in cfg.formats:
        lps = cfg.lanes_per_slot(fmt)
        stride = 4 // lps
        if quarter % stride == 0:
            out.append((fmt, quarter // stride))
    return out


class LaneDecoder(wiring.Component):
    """Decode one lane of a weight slot to the signed integer the multiplier sees.

    Combinational (latency 0). One branch per code → integer rule of the format table
    (`golden.tables.ENCODINGS`): ``value = decode(code) − zero`` for formats with a zero
    point; invalid codes (ternary ``10``, fp8 NaN and Inf) give 0 and raise ``invalid``. An fp8
    (``minifloat``) code gives ``value = ±significand << (shift mod LANE_SHIFT_CHUNK)`` and
    ``coarse = shift div LANE_SHIFT_CHUNK`` (`golden.formats.minifloat_fields`): the integer is
    ``value · 2**(LANE_SHIFT_CHUNK · coarse)``, and ``coarse`` exists only on a quarter that
    an fp8 format uses.

    Parameters
    ----------
    cfg : ArrayConfig
        The configuration (its enabled formats).
    quarter : int
        Which quarter of the slot this lane's multiplier sits on (0…3).
    """

    latency = 0

    def __init__(self, cfg: ArrayConfig, quarter: int):
        self._cfg = cfg
        self._quarter = quarter
        self._formats = _quarter_formats(cfg, quarter)
        if not self._formats:
            raise ValueError(f"quarter {quarter} is unused by formats {cfg.formats}")
        self.value_bits = cfg.quarter_value_bits[quarter]
        self.coarse_max = cfg.quarter_coarse_max[quarter]
        ports = {
            "slot": In(8),
            "fmt": In(Layouts(cfg).mode.members["fmt"]),
            "value": Out(signed(self.value_bits)),
            "invalid": Out(1),
        }
        if self.coarse_max:
            ports["coarse"] = Out(range(self.coarse_max + 1))
        if cfg.has_zero_points:
            ports["zero"] = In(cfg.zero_point_bits)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        # Every format's value from the slot alone, its zero point subtracted, and only then
        # the format's choice: the format (a register a cycle ahead) selects among finished
        # values instead of sitting in front of the subtraction's carry chain (format → code
        # → zero point → choice was a routed critical path of `tiny`).
        decoded = []
        for fmt, sub in self._formats:
            info = FORMATS[fmt]
            code = self.slot[sub * info.bits:(sub + 1) * info.bits]
            value = Signal(signed(self.value_bits), name=f"value_{fmt}")
            coarse = None
            if info.encoding == "twos_complement":
                m.d.comb += value.eq(code.as_signed())
            elif info.encoding == "unsigned":
                m.d.comb += value.eq(code)
            elif info.encoding in ("ternary", "e2m1"):
                # The golden codec's table of at most 16 codes: a LUT4 per value bit, no
                # negation on a carry chain.
                table, _ = decode(fmt, np.arange(info.n_codes))
                with m.Switch(code):
                    for c, v in enumerate(table.tolist()):
                        if v:
                            with m.Case(c):
                                m.d.comb += value.eq(v)
            elif info.encoding == "minifloat":
                coarse = self._minifloat(m, info, code, value, fmt)
            else:  # pragma: no cover - golden.tables checks every row's encoding
                raise AssertionError(f"{fmt}: no decoder for {info.encoding}")
            bad = Signal(name=f"bad_{fmt}")
            if info.invalid_codes:
                m.d.comb += bad.eq(Cat(code == c for c in info.invalid_codes).any())
                if info.encoding == "minifloat":
                    with m.If(bad):
                        m.d.comb += value.eq(0)
            if info.has_zero_point:
                shifted = Signal(signed(self.value_bits), name=f"value_{fmt}_minus_zero")
                m.d.comb += shifted.eq(value - self.zero[:info.zero_point_bits])
                value = shifted
            decoded.append((fmt, value, bad, coarse))
        with m.Switch(self.fmt):
            for fmt, value, bad, coarse in decoded:
                with m.Case(FORMAT_CODES[fmt]):
                    m.d.comb += [self.value.eq(value), self.invalid.eq(bad)]
                    if coarse is not None:
                        m.d.comb += self.coarse.eq(coarse)
        return m

    def _minifloat(self, m: Module, info, code, value, fmt: str):
        """``S E…E M…M`` → ``value``; returns its ``coarse`` (`decode_minifloat`)."""
        v, c = decode_minifloat(m, info, code, self.value_bits, name=fmt)
        m.d.comb += value.eq(v)
        return c


def decode_minifloat(m: Module, info, code, value_bits: int, *, name: str):
    """An fp8 code as ``(v, c)`` with integer ``v · 2**(LANE_SHIFT_CHUNK · c)`` (combinational).

    ``S E…E M…M``: ``v = ±significand << (shift mod LANE_SHIFT_CHUNK)``, ``c = shift div
    LANE_SHIFT_CHUNK``, with the significand and shift of `golden.formats.minifloat_fields`.
    Invalid codes are the caller's to flag (the weights' lane decoder and the activations' row
    decoder both force them to 0).
    """
    e_bits, m_bits = info.float_bits
    bias = (1 << (e_bits - 1)) - 1
    sign = code[e_bits + m_bits]
    exp, man = code[m_bits:m_bits + e_bits], code[:m_bits]
    significand = Signal(m_bits + 1, name=f"sig_{name}")
    m.d.comb += significand.eq(Mux(exp == 0, man, Cat(man, Const(1, 1))))
    # shift = max(E, 1) − bias − M − pow2_adj, never negative (golden.tables).
    offset = bias + m_bits + info.pow2_adj
    shift = Signal(e_bits, name=f"shift_{name}")
    m.d.comb += shift.eq(Mux(exp == 0, 1, exp) - offset)
    fine_bits = (LANE_SHIFT_CHUNK - 1).bit_length()
    mag = Signal(value_bits, name=f"mag_{name}")
    v = Signal(signed(value_bits), name=f"v_{name}")
    m.d.comb += [mag.eq(significand << shift[:fine_bits]), v.eq(Mux(sign, -mag, mag))]
    return v, shift[fine_bits:]


class ActivationDecode(wiring.Component):
    """The row edge's decode of one activation window (combinational, latency 0).

    With fp8 activations (``cfg.fp8_activations``) each 8-bit code becomes ``{v, c}``
    (`decode_minifloat`) by the mode's ``x_fmt``; int8 and MXINT8 codes pass as ``v`` with
    ``c = 0``. ``bad`` is set when some position holds an invalid code (NaN, Inf), which counts
    as 0 and flags every output of the row (SPEC §2). Once per row, not per PE.
    """

    latency = 0

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        lay = Layouts(cfg)
        super().__init__({"codes": In(lay.x_codes), "x_fmt": In(lay.mode.members["x_fmt"]),
                          "window": Out(lay.x_window), "bad": Out(1)})

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        bad = []
        for p in range(cfg.window):
            code, out = self.codes[p].as_unsigned(), self.window[p]
            pos_bad = Signal(name=f"bad{p}")
            with m.Switch(self.x_fmt):
                with m.Case(0):
                    m.d.comb += out.v.eq(code.as_signed())
                for fmt in cfg.fp8_activations:
                    info = FORMATS[fmt]
                    with m.Case(cfg.x_fmt_codes[fmt]):
                        v, c = decode_minifloat(m, info, code, cfg.x_value_bits,
                                                name=f"{fmt}_{p}")
                        m.d.comb += [out.v.eq(v), out.c.eq(c)]
                        for invalid in info.invalid_codes:
                            with m.If(code == invalid):
                                m.d.comb += [out.v.eq(0), pos_bad.eq(1)]
            bad.append(pos_bad)
        m.d.comb += self.bad.eq(Cat(*bad).any())
        return m


def select_reachable(m: Module, window, reach: list[int], pos, x) -> None:
    """Drive ``x`` with ``window[reach[pos]]``: one mux over only the reachable positions
    (``pos`` counts among them; with one position there is no mux and ``pos`` is unused)."""
    if len(reach) == 1:
        m.d.comb += x.eq(window[reach[0]])
        return
    with m.Switch(pos):
        for i, p in enumerate(reach):
            with m.Case(i):
                m.d.comb += x.eq(window[p])


class ActivationSelect(wiring.Component):
    """Pick the activation of one multiplier from the window, by the co-designed lane order.

    Combinational (latency 0). `hw.lanemap.LaneMap` says, per mode, which window block (and
    N:M index) this multiplier reads; ``active`` is low when the mode leaves it unused. Only
    the positions some enabled mode can reach are wired (`reachable`), and ``pos`` counts
    among them: a multiplier with one reachable position has no mux at all. The ``j``-th slot
    of an N:M block reaches only the indices ``j … M − N + j`` (a valid layer's indices are
    strictly increasing, SPEC §3); ``bad_idx`` flags an index outside them, which the column
    decoder reports as an invalid code.
    """

    latency = 0

    def __init__(self, cfg: ArrayConfig, slot: int, quarter: int):
        self._cfg = cfg
        self._slot = slot
        self._quarter = quarter
        self._map = lane_map(cfg)
        lay = Layouts(cfg)
        ports = {
            "window": In(lay.x_window),
            "fmt": In(lay.mode.members["fmt"]),
            "sparsity": In(lay.mode.members["sparsity"]),
            "x": Out(lay.x_elem),
            "pos": Out(range(max(len(self.reachable), 2))),
            "active": Out(1),
            "bad_idx": Out(1),
        }
        if cfg.idx_bits:
            ports["idx"] = In(lay.packet.members["idx"])
        super().__init__(ports)

    @property
    def reachable(self) -> list[int]:
        """Window positions some enabled mode can select for this multiplier."""
        return self._map.reach((self._slot, self._quarter))

    def select(self, m: Module, window, pos, x) -> None:
        """Drive ``x`` with ``window[reachable[pos]]`` (`select_reachable`)."""
        select_reachable(m, window, self.reachable, pos, x)

    def routes(self):
        """``{(fmt, pattern): (base, m, lo, hi)}`` for every mode that uses this multiplier."""
        mult = (self._slot, self._quarter)
        return {key: lanes.routes[mult] for key, lanes in self._map.modes.items()
                if mult in lanes.routes}

    def elaborate(self, platform):
        m = Module()
        fmt_bits = len(self.fmt)
        reach = self.reachable
        lane = self._map.idx_index((self._slot, self._quarter))
        with m.Switch(Cat(self.fmt, self.sparsity)):
            for (fmt, pattern), (base, mm, lo, hi) in self.routes().items():
                with m.Case(FORMAT_CODES[fmt] | (SPARSITY_CODES[pattern] << fmt_bits)):
                    m.d.comb += self.active.eq(1)
                    # The reachable positions base + lo … base + hi are consecutive in reach.
                    first = reach.index(base + lo)
                    if mm == 1:
                        m.d.comb += self.pos.eq(first)
                        continue
                    idx = self.idx[lane]
                    out_of_reach = [t for t, used in ((idx < lo, lo > 0),
                                                      (idx > hi, hi < (1 << len(idx)) - 1))
                                    if used]
                    if out_of_reach:
                        m.d.comb += self.bad_idx.eq(Cat(*out_of_reach).any())
                    width = (hi - lo).bit_length()
                    if lo == 0 and first % (1 << width) == 0:
                        m.d.comb += self.pos.eq(Cat(idx[:width], Const(first >> width)))
                    else:
                        m.d.comb += self.pos.eq(first + (idx - lo))
        self.select(m, self.window, self.pos, self.x)
        return m


def _weight_layout(cfg: ArrayConfig) -> data.StructLayout:
    """Decoded weights of every lane, each as wide as the formats on its multiplier: ``w<i>``
    and, on a lane an fp8 format uses, its coarse shift ``c<i>`` (`LaneDecoder`)."""
    fields = {}
    for i, (_, q) in enumerate(cfg.lanes):
        fields[f"w{i}"] = signed(cfg.quarter_value_bits[q])
        if cfg.quarter_coarse_max[q]:
            fields[f"c{i}"] = range(cfg.quarter_coarse_max[q] + 1)
    return data.StructLayout(fields)


def _complement_lanes(cfg: ArrayConfig) -> list[int]:
    """Indices into ``cfg.lanes`` of `ArrayConfig.complement_lanes`.

    For ``w`` in −2 … 1 such a lane registers ``x``, ``2x`` or 0 by ``w``'s low bit, inverted
    when ``w`` is negative: one LUT4 per bit (``x_j``, ``x_{j−1}`` and the two weight bits),
    where the sum of the two gated copies (``w_0 · x − w_1 · 2x``) took one LUT per gated bit
    beside its carry chain. The ``+1`` of each negative lane is counted once per PE instead
    (``neg``, `AdderTree`).
    """
    return [i for i, lane in enumerate(cfg.lanes) if lane in cfg.complement_lanes]


def _product_layout(cfg: ArrayConfig) -> data.StructLayout:
    """Every lane's product ``p<i>`` and, with `_complement_lanes`, ``neg``: how many of those
    lanes carry a negative weight (their products are ``p<i> + 1``)."""
    fields = {
        f"p{i}": signed(cfg.x_value_bits + cfg.quarter_value_bits[q]
                        + LANE_SHIFT_CHUNK * (cfg.quarter_coarse_max[q] + cfg.x_coarse_max))
        for i, (_, q) in enumerate(cfg.lanes)}
    complement = _complement_lanes(cfg)
    if complement:
        fields["neg"] = range(len(complement) + 1)
    return data.StructLayout(fields)


def _position_layout(cfg: ArrayConfig) -> data.StructLayout | None:
    """Every lane's window position (lanes with one reachable position have no field)."""
    sel = {mult: lane_map(cfg).reach(mult) for mult in cfg.lanes}
    pos = {f"pos{i}": range(len(sel[mult])) for i, mult in enumerate(cfg.lanes)
           if len(sel[mult]) > 1}
    return data.StructLayout(pos) if pos else None


def decoded_layout(cfg: ArrayConfig) -> data.StructLayout:
    """A column's weight packet after `LaneDecode`: what travels down the column to every PE.

    ``w`` holds every lane's decoded weight (zero point subtracted, 0 on a lane the mode leaves
    unused), ``pos`` every lane's window position (counted among the positions it can reach;
    lanes with one reachable position have no field), ``invalid`` the packet's invalid-code
    flag, ``scale`` the group scale and, with pow2 scales, ``u_w`` and ``nan_w`` the
    column's term of the pow2 shift offset and its NaN flag (`ExponentSum`). ``pos`` runs one
    cycle ahead of the other fields (`LaneDecode`), in step with the raw beat's window.
    """
    pos = _position_layout(cfg)
    fields = {"w": _weight_layout(cfg), "invalid": unsigned(1)}
    if pos is not None:
        fields["pos"] = pos
    if cfg.scale_field_bits:
        fields["scale"] = unsigned(cfg.scale_field_bits)
    if "pow2" in cfg.scale_kinds:
        fields["u_w"] = ExponentSum.u_shape
        fields["nan_w"] = unsigned(1)
    return data.StructLayout(fields)


class LaneDecode(wiring.Component):
    """Decode a column's weight packet once, at the top of the column (``latency`` = 1).

    Every PE of a column sees the same weight packet, so format decode, zero points, fp4 →
    integer and the N:M window positions are computed here once per column instead of once
    per PE (`LaneDecoder` and the position half of `ActivationSelect` for every lane); the PEs
    keep only the activation mux (`LaneSelect`). Throughput one packet per cycle.

    The positions leave a cycle ahead of the other fields, in the cycle of the raw packet and
    in step with the first PE's ``row_in``, so the PEs' DSP lanes can select (and register)
    their activations a cycle before the multiplier's input register (`LaneSelect`). Every PE
    forwards the whole packet through one register, so the lead holds down the column. The
    lane values, the positions and which lanes the mode uses are decoded from
    ``packet_ahead`` and ``mode_ahead`` (the packet ``packet`` will be in the next cycle, and
    its mode) into registers, so every path here and in the first PE's select starts at a
    register; the weights then take one more register (the unused lanes forced to 0) and leave
    with ``packet``'s group scale. With pow2 scales ``u_offset`` is ``packet``'s
    `pow2_offset` (formed once for every column by the core), which the decoder adds to the
    group's ``e_w``.
    """

    latency = 1

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        lay = Layouts(cfg)
        ports = {
            "packet": In(lay.packet),
            "mode_ahead": In(lay.mode),
            "packet_ahead": In(lay.packet),
            "decoded": Out(decoded_layout(cfg)),
        }
        if "pow2" in cfg.scale_kinds:
            ports["u_offset"] = In(ExponentSum.u_shape)
        super().__init__(ports)

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        invalid_terms = []
        layout = decoded_layout(cfg)
        has_pos = "pos" in dict(layout.members)
        # Decoded a cycle ahead, from the packet ahead: every lane's value, coarse shift,
        # invalid flag, position and whether the mode uses it; pos leaves from its register
        # (a cycle ahead), w, invalid and scale take one more register.
        decoded = Signal(layout, name="decoded_reg", reset_less=True)
        for i, (s, q) in enumerate(cfg.lanes):
            dec = LaneDecoder(cfg, q)
            sel = ActivationSelect(cfg, s, q)
            m.submodules[f"dec_{s}_{q}"] = dec
            m.submodules[f"sel_{s}_{q}"] = sel
            m.d.comb += [
                dec.slot.eq(self.packet_ahead.codes[s]),
                dec.fmt.eq(self.mode_ahead.fmt),
                sel.fmt.eq(self.mode_ahead.fmt),
                sel.sparsity.eq(self.mode_ahead.sparsity),
            ]
            if cfg.has_zero_points:
                m.d.comb += dec.zero.eq(self.packet_ahead.zero)
            if cfg.idx_bits:
                m.d.comb += sel.idx.eq(self.packet_ahead.idx)
            active = Signal(name=f"active{i}", reset_less=True)
            value = Signal.like(dec.value, name=f"value{i}", reset_less=True)
            bad = Signal(name=f"bad{i}", reset_less=True)
            m.d.sync += [active.eq(sel.active), value.eq(dec.value),
                         bad.eq((dec.invalid | sel.bad_idx) & sel.active)]
            invalid_terms.append(bad)
            m.d.sync += decoded.w[f"w{i}"].eq(Mux(active, value, 0))
            if dec.coarse_max:
                coarse = Signal.like(dec.coarse, name=f"coarse{i}", reset_less=True)
                m.d.sync += [coarse.eq(dec.coarse), decoded.w[f"c{i}"].eq(coarse)]
            if has_pos and f"pos{i}" in dict(layout.members["pos"].members):
                pos = Signal.like(sel.pos, name=f"pos{i}", reset_less=True)
                m.d.sync += pos.eq(sel.pos)
                m.d.comb += self.decoded.pos[f"pos{i}"].eq(pos)
        m.d.sync += decoded.invalid.eq(Cat(*invalid_terms).any())
        m.d.comb += [self.decoded.w.eq(decoded.w), self.decoded.invalid.eq(decoded.invalid)]
        if cfg.scale_field_bits:
            m.d.sync += decoded.scale.eq(self.packet.scale)
            m.d.comb += self.decoded.scale.eq(decoded.scale)
        if "pow2" in cfg.scale_kinds:
            # The column's term of the pow2 shift offset (`ExponentSum`); the mode's part
            # (`pow2_offset`) comes formed and registered, in step with ``packet``.
            e_w = self.packet.scale[:8]
            m.d.sync += [decoded.u_w.eq(e_w + self.u_offset), decoded.nan_w.eq(e_w == 0xFF)]
            m.d.comb += [self.decoded.u_w.eq(decoded.u_w),
                         self.decoded.nan_w.eq(decoded.nan_w)]
        return m


class LaneSelect(wiring.Component):
    """The N:M activation select of every lane, inside the PE (``latency`` = 1).

    Each lane's activation is taken from the window through one mux over only the positions
    some enabled mode can reach (`ActivationSelect.reachable`). The decoded weight passes
    alongside; an unused lane carries weight 0, so its product is 0 whatever it selects.
    ``latency`` counts from the decoded weights (``decoded.w``, which arrive
    `LaneDecode.latency` cycles after the raw beat) to the registered ``w`` and ``x``.

    A lane with a mux selects in one of two equivalent ways:

    * a LUT lane selects from ``window`` (the PE's forwarded window) by ``pos`` (the positions
      in step with it), and ``x`` registers the result;
    * a DSP lane (`ArrayConfig.hard_lanes`) selects a cycle earlier, from ``window_ahead``
      (the PE's ``row_in``) by ``decoded.pos`` (which runs a cycle ahead), into a fabric
      register beside the mux; ``x`` registers that again and becomes the multiplier's own
      input register (`flows.ecp5_dsp`), so no logic sits between the fabric and the DSP.
    """

    latency = 1

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        lay = Layouts(cfg)
        self._lanes = cfg.lanes
        ports = {
            "decoded": In(decoded_layout(cfg)),
            "window": In(lay.x_window),
            "window_ahead": In(lay.x_window),
            "w": Out(_weight_layout(cfg)),
            "x": Out(data.ArrayLayout(lay.x_elem, len(self._lanes))),
            "invalid": Out(1),
        }
        if cfg.fp8_activations:
            ports["x_bad"] = In(1)
        if _position_layout(cfg) is not None:
            ports["pos"] = In(_position_layout(cfg))
        super().__init__(ports)
        self._x_elem = lay.x_elem

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        order = lane_map(cfg)
        for i, mult in enumerate(self._lanes):
            reach = order.reach(mult)
            if not reach:
                continue
            x_sel = Signal(self._x_elem, name=f"x_sel{i}")
            if len(reach) == 1:
                select_reachable(m, self.window, reach, None, x_sel)
            elif mult in cfg.hard_lanes:
                select_reachable(m, self.window_ahead, reach, self.decoded.pos[f"pos{i}"],
                                 x_sel)
                x_early = Signal(self._x_elem, name=f"x_early{i}", reset_less=True)
                m.d.sync += x_early.eq(x_sel)
                x_sel = x_early
            else:
                select_reachable(m, self.window, reach, self.pos[f"pos{i}"], x_sel)
            register_port(m, self.x[i], x_sel, name=f"x{i}")
        invalid = self.decoded.invalid | self.x_bad if cfg.fp8_activations else self.decoded.invalid
        register_port(m, self.w, self.decoded.w, name="w_reg")
        register_port(m, self.invalid, invalid, name="invalid_reg")
        return m


class LaneProducts(wiring.Component):
    """``x · w`` of every lane, registered: ``latency`` = 1, one beat per cycle.

    A lane with a coarse shift (fp8 formats) multiplies ``x · v`` and shifts the product left
    by ``LANE_SHIFT_CHUNK · c``: a choice of a few constants, not a barrel shifter. A 2-bit LUT
    lane (`_complement_lanes`) leaves ``x · w`` as the one's complement ``x · w − 1`` when
    ``w < 0``, and ``neg`` counts those lanes, so the products sum to the lanes' dot product.
    """

    latency = 1

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        self._n = len(cfg.lanes)
        self._hard = [mult in cfg.hard_lanes for mult in cfg.lanes]
        super().__init__({
            "w": In(_weight_layout(cfg)),
            "x": In(data.ArrayLayout(Layouts(cfg).x_elem, self._n)),
            "products": Out(_product_layout(cfg)),
        })

    def complemented(self) -> list[int]:
        """Indices of the lanes built as one's complements (`_complement_lanes`). The formal
        proof's reference (`verif.formal.ReferenceLaneProducts`) builds none: every lane as
        a product, ``neg`` = 0."""
        return _complement_lanes(self._cfg)

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        complement = self.complemented()
        for i in range(self._n):
            x, w = self.x[i], self.w[f"w{i}"]
            if i in complement:
                # w = 1, 0, −1, −2: x, 0, ~x, ~2x (the +1 of the last two counted in neg).
                xs = x.as_signed()
                magnitude = Mux(w[0], xs, Mux(w[1], xs << 1, 0))
                register_port(m, self.products[f"p{i}"], Mux(w[1], ~magnitude, magnitude),
                              name=f"p{i}")
                continue
            coarse_terms = []  # the coarse shifts of the weight (fp8) and activation (fp8)
            w_coarse_max = cfg.quarter_coarse_max[cfg.lanes[i][1]]
            if w_coarse_max:
                coarse_terms.append(self.w[f"c{i}"])
            if cfg.fp8_activations:
                coarse_terms.append(x.c)
                x = x.v
            # `ArrayConfig.hard_lanes`: a plain product, for a DSP block.
            product = x * w if self._hard[i] else shift_add_product(m, x, w, name=f"lane{i}")
            # Reset-less: no reset net reaches the DSP lanes' output registers.
            out = Signal.like(self.products[f"p{i}"], name=f"p{i}", reset_less=True)
            m.d.comb += self.products[f"p{i}"].eq(out)
            if not coarse_terms:
                m.d.sync += out.eq(product)
                continue
            coarse = Signal(range(w_coarse_max + cfg.x_coarse_max + 1), name=f"coarse{i}")
            m.d.comb += coarse.eq(sum(coarse_terms))
            with m.Switch(coarse):
                for c in range(w_coarse_max + cfg.x_coarse_max + 1):
                    with m.Case(c):
                        m.d.sync += out.eq(product << (LANE_SHIFT_CHUNK * c))
        if "neg" in self.products.shape().members:
            register_port(m, self.products.neg, sum(self.w[f"w{i}"][1] for i in complement),
                          name="neg")
        return m


class AdderTree(wiring.Component):
    """Balanced sum of the lane products in three registered levels.

    ``latency`` = 3, one beat per cycle; ``beat`` is ``beat_bits`` wide (exact).

    The first level adds the DSP lanes' products (`ArrayConfig.hard_lanes`, held in the
    multipliers' output registers) in pairs, one carry chain behind the route out of the DSPs,
    and the LUT lanes' products in groups of four (two carry chains, next to their registers);
    a DSP product left over from the pairs is copied into a fabric register. The second level
    adds those partial sums in groups of four (for `tiny` seven: four DSP pairs, two LUT quads
    and the count of negative one's complement lanes, `LaneProducts`), the third adds what
    the second leaves. No level has more than two carry chains in a row, so the route between
    the DSP row and the `Scaler`'s multiplier is cut twice.
    """

    latency = 3

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        self._n = len(cfg.lanes)
        super().__init__({
            "products": In(_product_layout(cfg)),
            "beat": Out(signed(cfg.beat_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        products = [self.products[f"p{j}"] for j in range(self._n)]
        dsp = [p for p, lane in zip(products, cfg.lanes, strict=True) if lane in cfg.hard_lanes]
        lut = [p for p, lane in zip(products, cfg.lanes, strict=True)
               if lane not in cfg.hard_lanes]
        if _complement_lanes(cfg):
            lut.append(self.products.neg)  # the one's complements' +1s
        groups = ([(f"dsp_pair{i // 2}", dsp[i:i + 2]) for i in range(0, len(dsp), 2)]
                  + [(f"quad{i // 4}", lut[i:i + 4]) for i in range(0, len(lut), 4)])
        terms = [self._registered_sum(m, name, group) for name, group in groups]
        partials = [self._registered_sum(m, f"partial{i // 4}", terms[i:i + 4])
                    for i in range(0, len(terms), 4)]
        register_port(m, self.beat, adder_tree(partials, m, name="beat"), name="beat_sum")
        return m

    def _registered_sum(self, m: Module, name: str, values) -> Signal:
        """The sum of ``values`` (a balanced tree) in a reset-less ``beat_bits`` register."""
        part = Signal(signed(self._cfg.beat_bits), name=name, reset_less=True)
        m.d.sync += part.eq(adder_tree(values, m, name=name))
        return part


def _contrib_ctl_layout() -> data.StructLayout:
    """Control of one beat's contribution: valid, its group's end, its tile's bounds, err."""
    return data.StructLayout({"valid": 1, "group_last": 1, "tile_first": 1, "tile_last": 1,
                              "err": 1})


def _beat_ctl_layout(cfg: ArrayConfig) -> data.StructLayout:
    """Control of one beat partial: the beat control (`Layouts.ctl`) and the lanes' error."""
    return data.StructLayout({**dict(Layouts(cfg).ctl.members), "err": 1})


class BeatRegister(wiring.Component):
    """A beat's partial sum over all lanes with its control, registered (``latency`` = 1).

    The register in front of the `Scaler`'s multiplier (it becomes the MULT18X18D's input
    register), beside `ScaleOperand`, so that both operands of the product are registered.
    ``o_ctl.err`` is the lanes' error flag of a valid beat (an invalid ternary code).
    """

    latency = 1

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        lay = Layouts(cfg)
        super().__init__({
            "beat": In(signed(cfg.beat_bits)),
            "ctl": In(lay.ctl),
            "invalid": In(1),
            "o_beat": Out(signed(cfg.beat_bits)),
            "o_ctl": Out(_beat_ctl_layout(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        ctl = self.ctl
        beat = Signal.like(self.beat, name="beat_reg", reset_less=True)
        o_ctl = Signal.like(self.o_ctl, name="ctl_reg")
        m.d.sync += [beat.eq(self.beat), o_ctl.err.eq(self.invalid & ctl.valid)]
        m.d.sync += [o_ctl[name].eq(ctl[name]) for name in ctl.shape().members]
        m.d.comb += [self.o_beat.eq(beat), self.o_ctl.eq(o_ctl)]
        return m


def pow2_offset(m: Module, cfg: ArrayConfig, mode) -> Signal:
    """The mode's part of a group's pow2 shift offset (combinational).

    ``adj − 254 + frac_bits − shift_min`` (SPEC §4): ``adj`` is the weight format's exponent
    adjustment plus, with MX activations, the element format's. The core forms it once for
    every column; each column's `LaneDecode` adds it to the group's ``e_w`` (`ExponentSum`).
    """
    adj = Signal(signed(6), name="pow2_adj")
    with m.Switch(mode.fmt):
        for fmt, value in FORMAT_POW2_ADJ.items():
            if fmt in cfg.formats:
                with m.Case(FORMAT_CODES[fmt]):
                    m.d.comb += adj.eq(value)
    adj_x = Signal(signed(6), name="pow2_adj_x")  # the MX activations' element format
    with m.If(mode.mx_act):
        m.d.comb += adj_x.eq(FORMAT_POW2_ADJ[MX_ACT_FORMAT])
        for fmt in cfg.fp8_activations:
            with m.If(mode.x_fmt == cfg.x_fmt_codes[fmt]):
                m.d.comb += adj_x.eq(FORMAT_POW2_ADJ[fmt])
    offset = Signal(ExponentSum.u_shape, name="pow2_offset")
    m.d.comb += offset.eq(adj + adj_x - 254 + cfg.frac_bits - cfg.shift_min)
    return offset


class ExponentSum(wiring.Component):
    """A group's pow2 shift offset ``u`` and its NaN check, registered (``latency`` = 1).

    ``u = (e_w − 127) + (e_x − 127) + adj + frac_bits − shift_min`` (SPEC §4; ``adj`` the
    formats' exponent adjustments): the `Scaler` multiplies by ``2^(u mod CHUNK)`` and shifts
    by a constant that ``u div CHUNK`` picks. The sum is split by where its terms vary: the
    column's ``u_w = e_w + adj − 254 + frac_bits − shift_min`` and its NaN flag come with the
    decoded packet (`LaneDecode`, once per column, `pow2_offset`), and the row edge puts 127
    into ``e_x`` unless the mode has MX activations (`hw.core.Core`), so each PE adds two
    numbers. Runs in the delay line that carries the group's scale to `ScaleOperand`, one stage
    before its end, so `ScaleOperand` starts from ``u`` in a register and only decodes it (the
    sum in front of the scaler's DSP input was `default`'s routed critical path).
    """

    latency = 1
    u_shape = signed(12)

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        super().__init__({"u_w": In(self.u_shape), "nan_w": In(1), "e_x": In(8),
                          "u": Out(self.u_shape), "exp_nan": Out(1)})

    def elaborate(self, platform):
        m = Module()
        u_reg = Signal(self.u_shape, name="u_reg", reset_less=True)
        nan_reg = Signal(name="nan_reg", reset_less=True)
        m.d.sync += [u_reg.eq(self.u_w + self.e_x),
                     nan_reg.eq(self.nan_w | (self.e_x == 0xFF))]
        m.d.comb += [self.u.eq(u_reg), self.exp_nan.eq(nan_reg)]
        return m


class ScaleOperand(wiring.Component):
    """The multiplier operand of a group's scale, and the pow2 shift's coarse part and checks.

    ``latency`` = 1; runs beside `BeatRegister`, so the `Scaler`'s multipliers see two
    registered operands (the beat partial and ``operand``) and nothing in front of them.

    * ``none``: ``operand = 1``; ``int``: ``operand = s`` (the signed group scale);
    * ``pow2``: from `ExponentSum`'s ``u = t + frac_bits − shift_min`` (``t`` the group's
      shift, SPEC §4; the contribution is ``floor(P_g · 2^(t + frac_bits))``):
      ``operand = 2^(u mod CHUNK)``, and ``coarse = 1 + u div CHUNK`` selects the `Scaler`'s
      constant shift (``0 <= u <= shift_max − shift_min`` inside the window); ``coarse`` is 0
      for the other scale kinds. ``bad`` is set for a NaN exponent (0xFF) or ``t`` outside
      ``[t_min, t_max]``.
    """

    latency = 1

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        lay = Layouts(cfg)
        ports = {
            "mode": In(lay.mode),
            "operand": Out(signed(Scaler.operand_width(cfg))),
            "coarse": Out(range(max(Scaler.coarse_count(cfg) + 1, 2))),
            "bad": Out(1),
        }
        if cfg.scale_field_bits:
            ports["scale"] = In(cfg.scale_field_bits)
        if "pow2" in cfg.scale_kinds:
            ports["u"] = In(ExponentSum.u_shape)
            ports["exp_nan"] = In(1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        cfg, mode = self._cfg, self.mode
        chunk = Scaler.CHUNK
        operand = Signal.like(self.operand, name="operand_next")
        coarse = Signal.like(self.coarse, name="coarse_next")
        bad = Signal(name="bad_next")
        # The operand is the int scale or 2^fine, fine = 0 for `none` (and for a scale code
        # this build lacks, which the core's mode check flags): no arm of the operand's mux
        # is a constant, so Yosys infers no synchronous reset on its register, which becomes
        # the MULT18X18D's input register (a logic-driven DSP reset pin failed to route).
        fine_bits = (chunk - 1).bit_length()
        fine = Signal(fine_bits, name="fine")
        power = Signal(unsigned(chunk + 1), name="power")
        if "pow2" in cfg.scale_kinds:
            # chunk is a power of two: u mod chunk and u div chunk are bit fields (inside the
            # window u >= 0; outside it the contribution is 0 anyway).
            u = self.u
            is_pow2 = mode.scale == SCALE_CODES["pow2"]
            out_of_window = (u < 0) | (u > cfg.shift_max - cfg.shift_min)
            m.d.comb += [fine.eq(Mux(is_pow2, u[:fine_bits], 0)),
                         coarse.eq(Mux(is_pow2, u[fine_bits:len(u) - 1] + 1, 0)),
                         bad.eq(is_pow2 & (self.exp_nan | out_of_window))]
        m.d.comb += power.eq(Const(1, unsigned(chunk + 1)) << fine)
        if "int" in cfg.scale_kinds:
            is_int = mode.scale == SCALE_CODES["int"]
            m.d.comb += operand.eq(Mux(is_int, self.scale[:cfg.scale_bits].as_signed(), power))
        else:
            m.d.comb += operand.eq(power)
        op_out = Signal.like(self.operand, name="operand_out", reset_less=True)
        coarse_out = Signal.like(self.coarse, name="coarse_out", reset_less=True)
        bad_out = Signal(name="bad_out", reset_less=True)
        m.d.sync += [op_out.eq(operand), coarse_out.eq(coarse), bad_out.eq(bad)]
        m.d.comb += [self.operand.eq(op_out), self.coarse.eq(coarse_out), self.bad.eq(bad_out)]
        return m


class Scaler(wiring.Component):
    """A beat's contribution to the accumulator, on one multiplier per 17 bits of a beat.

    ``beat · s``, ``beat · 2^shift`` or ``beat`` by the mode's scale kind, in units of
    ``2^−acc_frac_bits`` (``latency`` = 2, one beat per cycle).

    Every scale kind is a product ``beat · b`` followed by a constant shift:

    * ``none``: ``b = 1``; ``int``: ``b = s`` (the signed group scale);
    * ``pow2``: ``b = 2^(u mod 16)`` and a shift by ``16·(u div 16) + shift_min``, chosen from
      a handful of constants (`ScaleOperand` gives ``b`` and the choice). No barrel shifter:
      the fine shift is the multiplier.

    Every beat of a group carries the group's scale, so the group's ``P_g · b`` is the sum of
    its beats' products ``beat · b``: the multiplier takes the beat partial (``beat_bits``, 18
    on the int8 arrays: one MULT18X18D), and the sum is the `WideAccumulator`'s. A right
    shift keeps its fraction bits (``acc_frac_bits`` of them: every shift here is a left one),
    which the accumulator clears at the group's last beat: the SPEC's floor of ``P_g ·
    2^shift``, exact.

    1. ``beat · b`` (as partial products of 17 bits of the beat where it is wider than one
       multiplier), in the MULT18X18D's output register;
    2. the product's pieces joined and shifted by the coarse constant (``pow2``; a mux of
       wires), or 0 with the error flag on a NaN or out-of-window exponent.
    """

    latency = 2
    #: Width of the fine pow2 shift done by the multiplier (``b = 2^(u mod CHUNK)``).
    CHUNK = 16
    #: Bits of the beat partial one multiplier takes (signed 18 × 18, the top one signed).
    PIECE = 17

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        ports = {
            "beat": In(signed(cfg.beat_bits)),
            "i_ctl": In(_beat_ctl_layout(cfg)),
            "contrib": Out(signed(cfg.acc_bits + cfg.acc_frac_bits)),
            "o_ctl": Out(_contrib_ctl_layout()),
        }
        ports["operand"] = In(signed(self.operand_width(cfg)))
        ports["coarse"] = In(range(max(self.coarse_count(cfg) + 1, 2)))
        ports["bad"] = In(1)
        super().__init__(ports)

    @classmethod
    def operand_width(cls, cfg: ArrayConfig) -> int:
        """Signed width of the multiplier operand ``b``."""
        bits = 2
        if "int" in cfg.scale_kinds:
            bits = max(bits, cfg.scale_bits)
        if "pow2" in cfg.scale_kinds:
            bits = max(bits, min(cls.CHUNK, cfg.shift_max - cfg.shift_min + 1) + 1)
        return bits

    @classmethod
    def coarse_count(cls, cfg: ArrayConfig) -> int:
        """Constant pow2 shifts the `Scaler` chooses from (0 without pow2)."""
        if "pow2" not in cfg.scale_kinds:
            return 0
        return (cfg.shift_max - cfg.shift_min) // cls.CHUNK + 1

    @property
    def operand_bits(self) -> int:
        """Signed width of the multiplier operand ``b``."""
        return self.operand_width(self._cfg)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        pow2 = "pow2" in cfg.scale_kinds
        chunk = self.CHUNK
        operand = self.operand  # registered by ScaleOperand
        beat = self.beat  # registered by BeatRegister
        # Stage 1: the beat's product(s): unsigned 17-bit pieces from the bottom, the top
        # piece signed (at most 18 bits, so each is one signed 18 × 18 multiplier).
        ctl1 = Signal.like(self.i_ctl, name="ctl1", attrs=REPLICA)  # this PE's own copy
        m.d.sync += ctl1.eq(self.i_ctl)
        pieces = []
        lo = 0
        while cfg.beat_bits - lo > self.PIECE + 1:
            pieces.append((lo, beat[lo:lo + self.PIECE].as_unsigned()))
            lo += self.PIECE
        pieces.append((lo, beat[lo:].as_signed()))
        prods = []
        for i, (at, piece) in enumerate(pieces):
            prod = Signal(signed(len(piece) + 1 + self.operand_bits), name=f"prod{i}",
                          reset_less=True)
            m.d.sync += prod.eq(piece * operand)
            prods.append((at, prod))
        if pow2:
            n_coarse = self.coarse_count(cfg)
            coarse1 = Signal(range(n_coarse + 1), name="coarse1", reset_less=True)
            bad1 = Signal(name="bad1", reset_less=True)
            # 0: no shift (none, int); 1 + h: a pow2 shift by chunk·h + shift_min.
            m.d.sync += [coarse1.eq(self.coarse), bad1.eq(self.bad)]
        # Stage 2: the pieces joined, shifted into the accumulator's units (2^-frac). Only valid
        # beats count; the accumulator sums them (there is no group sum here: the route out of
        # the DSP row ends at the contribution's register, behind at most the coarse mux).
        frac = cfg.acc_frac_bits
        product = Signal(signed(cfg.beat_bits + 1 + self.operand_bits), name="product")
        m.d.comb += product.eq(sum(prod << at for at, prod in prods))
        contrib = Signal(signed(cfg.acc_bits + frac), name="contrib", reset_less=True)
        ctl2 = Signal(_contrib_ctl_layout(), name="ctl2")
        m.d.sync += [ctl2.valid.eq(ctl1.valid), ctl2.group_last.eq(ctl1.group_last),
                     ctl2.tile_first.eq(ctl1.tile_first), ctl2.tile_last.eq(ctl1.tile_last),
                     ctl2.err.eq(ctl1.err)]
        if pow2:
            with m.Switch(coarse1):
                with m.Case(0):
                    m.d.sync += contrib.eq(product << frac)
                for h in range(n_coarse):
                    amount = chunk * h + cfg.shift_min + frac  # >= 0
                    with m.Case(h + 1):
                        m.d.sync += contrib.eq(product << amount)
            with m.If(bad1):
                m.d.sync += [contrib.eq(0), ctl2.err.eq(1)]
        else:
            m.d.sync += contrib.eq(product)
        m.d.comb += [self.contrib.eq(contrib), self.o_ctl.eq(ctl2)]
        return m


class WideAccumulator(wiring.Component):
    """The exact accumulator of a tile's contributions, a sticky error bit (``latency`` = 1).

    It adds every beat's contribution (`Scaler`) and keeps ``acc_frac_bits`` fraction bits
    below the ``acc_bits`` of the result; it clears them at a group's last beat, which floors
    the group's ``P_g · 2^shift`` (SPEC §4: the integer part before the group is a multiple of
    the unit, so the floor of the sum is that part plus the group's floor). A tile's last beat
    copies the integer part of the sum to the result (shadow) register, so the next tile
    accumulates while this one drains, and clears the accumulator.

    The clear is the registers' synchronous reset (the domain's reset, or a valid beat that
    ends the tile or, for the fraction bits, the group), so the adder's input is the
    accumulator itself: no restart mux in front of the carry chain. A tile therefore starts
    from 0 only if the previous one ended, which the core guarantees: every tile it starts
    ends with a ``tile_last`` beat, and a reset clears a tile cut short.
    """

    latency = 1

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        super().__init__({
            "contrib": In(signed(cfg.acc_bits + cfg.acc_frac_bits)),
            "i_ctl": In(_contrib_ctl_layout()),
            "result": Out(signed(cfg.acc_bits)),
            "result_err": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, ctl = self._cfg, self.i_ctl
        frac = cfg.acc_frac_bits
        acc = Signal(signed(cfg.acc_bits), name="acc")
        acc_err = Signal(name="acc_err")
        acc_next = Signal(signed(cfg.acc_bits + frac))
        err_next = Signal()
        if frac:  # no zero-width register: Verilog has none
            acc_frac = Signal(frac, name="acc_frac")
            m.d.comb += acc_next.eq(Cat(acc_frac, acc).as_signed() + self.contrib)
        else:
            m.d.comb += acc_next.eq(acc + self.contrib)
        m.d.comb += err_next.eq(acc_err | ctl.err)
        result = Signal(signed(cfg.acc_bits), reset_less=True)  # read only once drained
        result_err = Signal(reset_less=True)
        m.d.comb += [self.result.eq(result), self.result_err.eq(result_err)]
        tile_end = ctl.valid & ctl.tile_last
        with m.If(ctl.valid):
            m.d.sync += [acc.eq(acc_next[frac:]), acc_err.eq(err_next)]
            if frac:
                m.d.sync += acc_frac.eq(acc_next[:frac])
        if frac:
            with m.If(ctl.valid & ctl.group_last):
                m.d.sync += acc_frac.eq(0)
        with m.If(tile_end):
            m.d.sync += [result.eq(acc_next[frac:]), result_err.eq(err_next),
                         acc.eq(0), acc_err.eq(0)]
            if frac:
                m.d.sync += acc_frac.eq(0)
        return m


class ProcessingElement(wiring.Component):
    """One output-stationary PE of the array, composed of stage components.

    Pipeline (one beat per cycle, never stalls; bubbles carry ``ctl.valid = 0``):

    ================================  =======  ==================================================
    component                         latency  does
    ================================  =======  ==================================================
    (`LaneDecode`, column edge)       1        lane decode + N:M position, once per column
    `LaneSelect`                      1        activation select (DSP lanes: a cycle earlier)
    `LaneProducts`                    1        lane products
    `AdderTree`                       3        beat partial over all lanes
    `BeatRegister` ∥ `ScaleOperand`   1        beat partial ∥ multiplier operand, checks
    `Scaler`                          2        ``beat · b`` on a multiplier, their group's sum
                                               ``P_g · b``, coarse shift
    `WideAccumulator`                 1        exact accumulator, result (shadow) register
    ================================  =======  ==================================================

    ``wgt_in`` is the column's decoded packet (`decoded_layout`), which the core's
    `LaneDecode` at the top of the column delivers ``LaneDecode.latency`` cycles after the
    raw beat, i.e. in step with this PE's forwarded window (``row_out``); its positions run
    a cycle ahead, in step with ``row_in``, for the DSP lanes' early select (`LaneSelect`).

    ``latency`` (the sum, 10) is the number of cycles from a beat entering the column decoder
    and ``row_in`` to its effect on ``result``. Activations and control pass to the right,
    decoded weight packets down, each through one register (``forward_latency`` = 1). The
    beat control, the lanes' error flag and the group's scale travel beside the data through
    `delay`.
    """

    STAGES = (LaneSelect, LaneProducts, AdderTree, BeatRegister, Scaler, WideAccumulator)
    #: The lane products' component, `LaneProducts`. The formal proof of a whole PE
    #: (`verif.formal`) builds the PE around a reference of the same ports and latency; two
    #: proofs of their own show that both give the adder tree the same beat sums.
    lane_products_cls = LaneProducts
    latency = LaneDecode.latency + sum(stage.latency for stage in STAGES)
    forward_latency = 1
    #: Cycles from a beat entering the column decoder and ``row_in`` to where the PE reads
    #: ``mode`` (`ExponentSum`'s stage), a stage before `ScaleOperand`, which reads a
    #: registered copy.
    mode_read = (LaneDecode.latency + LaneSelect.latency + LaneProducts.latency
                 + AdderTree.latency - ExponentSum.latency)

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        self._lay = lay = Layouts(cfg)
        super().__init__({
            "mode": In(lay.mode),
            "row_in": In(lay.row_beat),
            "wgt_in": In(decoded_layout(cfg)),
            "row_out": Out(lay.row_beat),
            "wgt_out": Out(decoded_layout(cfg)),
            "result": Out(signed(cfg.acc_bits)),
            "result_err": Out(1),
        })

    def elaborate(self, platform):
        cfg, lay = self._cfg, self._lay
        m = Module()
        mode = self.mode
        assert ScaleOperand.latency == BeatRegister.latency  # parallel branches stay aligned

        # Systolic forwarding. `row_out` is also this PE's window delayed by one cycle, in step
        # with the decoded weights; `wgt_out.pos` likewise the positions (which lead the rest
        # of the packet by a cycle). The lane select reads both pairs. Only the beat control
        # is reset: data registers are reset-less (a reset net reaching every datapath
        # flip-flop set the routed Fmax).
        row_fwd = Signal(lay.row_beat, name="row_fwd", reset_less=True)
        wgt_fwd = Signal(decoded_layout(cfg), name="wgt_fwd", reset_less=True)
        ctl_fwd = Signal(lay.ctl, name="ctl_fwd")
        m.d.sync += [row_fwd.eq(self.row_in), wgt_fwd.eq(self.wgt_in),
                     ctl_fwd.eq(self.row_in.ctl)]
        m.d.comb += [self.row_out.eq(row_fwd), self.row_out.ctl.eq(ctl_fwd),
                     self.wgt_out.eq(wgt_fwd)]

        m.submodules.lane_select = lanes = LaneSelect(cfg)
        m.submodules.lane_products = products = self.lane_products_cls(cfg)
        m.submodules.adder_tree = tree = AdderTree(cfg)
        m.submodules.beat_register = beat_reg = BeatRegister(cfg)
        m.submodules.scaler = scaler = Scaler(cfg)
        m.submodules.accumulator = acc = WideAccumulator(cfg)
        if _position_layout(cfg) is not None:
            m.d.comb += lanes.pos.eq(self.wgt_out.pos)
        m.d.comb += [
            lanes.decoded.eq(self.wgt_in), lanes.window.eq(self.row_out.x),
            lanes.window_ahead.eq(self.row_in.x),
            *([lanes.x_bad.eq(self.row_out.x_bad)] if cfg.fp8_activations else []),
            products.w.eq(lanes.w), products.x.eq(lanes.x),
            tree.products.eq(products.products),
            beat_reg.beat.eq(tree.beat),
            scaler.beat.eq(beat_reg.o_beat), scaler.i_ctl.eq(beat_reg.o_ctl),
            acc.contrib.eq(scaler.contrib), acc.i_ctl.eq(scaler.o_ctl),
            self.result.eq(acc.result), self.result_err.eq(acc.result_err),
        ]
        # Beat control and the group's scale, alongside the data up to the beat register. The
        # decoded packet (and its scale) is LaneDecode.latency behind the row beat.
        to_beat_reg = LaneSelect.latency + LaneProducts.latency + AdderTree.latency
        m.d.comb += [
            beat_reg.ctl.eq(delay(m, self.row_in.ctl, LaneDecode.latency + to_beat_reg,
                                  name="ctl", reset_less=False)),
            beat_reg.invalid.eq(delay(m, lanes.invalid, to_beat_reg - LaneSelect.latency,
                                      name="invalid")),
        ]
        # The mode arrives a stage before ScaleOperand, which reads a copy.
        mode_q = Signal.like(mode, name="mode_q", reset_less=True)
        m.d.sync += mode_q.eq(mode)
        m.submodules.scale_operand = operand = ScaleOperand(cfg)
        m.d.comb += [operand.mode.eq(mode_q), scaler.operand.eq(operand.operand),
                     scaler.coarse.eq(operand.coarse), scaler.bad.eq(operand.bad)]
        if cfg.scale_field_bits:
            m.d.comb += operand.scale.eq(delay(m, self.wgt_in.scale, to_beat_reg, name="scale"))
        if "pow2" in cfg.scale_kinds:
            # The exponents' sum is formed in the last stage of their delay line.
            m.submodules.exponent_sum = exps = ExponentSum(cfg)
            pre = to_beat_reg - ExponentSum.latency
            assert pre >= 0 and LaneDecode.latency + pre == self.mode_read
            m.d.comb += [
                exps.u_w.eq(delay(m, self.wgt_in.u_w, pre, name="u_w")),
                exps.nan_w.eq(delay(m, self.wgt_in.nan_w, pre, name="nan_w")),
                exps.e_x.eq(delay(m, self.row_in.x_exp, LaneDecode.latency + pre, name="xexp")),
                operand.u.eq(exps.u), operand.exp_nan.eq(exps.exp_nan),
            ]
        return m
