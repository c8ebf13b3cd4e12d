"""The unified compression processing element and its building blocks.

One PE reinterprets each 8-bit weight slot at run time as 1 int8, 2 int4/uint4/fp4 or
4 int2/ternary lanes; the N:M indices of the lanes drive the activation select; a group partial
sum is scaled (integer multiplier or power-of-two shifter) into an exact wide accumulator.
Physical multipliers are addressed by ``(slot, quarter)``: quarter 0 serves every format,
quarter 2 the 4- and 2-bit formats, quarters 1 and 3 the 2-bit formats only, and each is only
as wide as the enabled formats that use it.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gen.config import (
    FORMAT_CODES,
    FORMAT_POW2_ADJ,
    SCALE_CODES,
    SPARSITY_CODES,
    ArrayConfig,
    _parse_nm,
)
from hw.layouts import Layouts

__all__ = ["LaneDecoder", "ActivationSelect", "ProcessingElement", "adder_tree"]


def adder_tree(values):
    """Balanced sum of Amaranth values (a chain would make the critical path linear)."""
    values = list(values)
    if not values:
        return Const(0, signed(2))
    while len(values) > 1:
        nxt = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


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

    Combinational (latency 0). ``value = decode(code) − zero`` (zero only for uint4);
    ternary code ``10`` gives 0 and raises ``invalid``.

    Parameters
    ----------
    cfg : ArrayConfig
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
        ports = {
            "slot": In(8),
            "fmt": In(Layouts(cfg).mode.members["fmt"]),
            "value": Out(signed(self.value_bits)),
            "invalid": Out(1),
        }
        if cfg.has_zero_points:
            ports["zero"] = In(4)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        with m.Switch(self.fmt):
            for fmt, sub in self._formats:
                bits = 8 // self._cfg.lanes_per_slot(fmt)
                code = self.slot[sub * bits:(sub + 1) * bits]
                with m.Case(FORMAT_CODES[fmt]):
                    if fmt in ("int8", "mxint8", "int4", "int2"):
                        m.d.comb += self.value.eq(code.as_signed())
                    elif fmt == "uint4":
                        m.d.comb += self.value.eq(code - self.zero)
                    elif fmt == "ternary":
                        with m.Switch(code):
                            with m.Case(0b01):
                                m.d.comb += self.value.eq(1)
                            with m.Case(0b11):
                                m.d.comb += self.value.eq(-1)
                            with m.Case(0b10):
                                m.d.comb += self.invalid.eq(1)
                    elif fmt == "fp4_e2m1":
                        sign, exp, man = code[3], code[1:3], code[0]
                        mag = Signal(unsigned(4))
                        with m.Switch(exp):
                            with m.Case(0):
                                m.d.comb += mag.eq(man)
                            with m.Default():
                                m.d.comb += mag.eq(Cat(man, 1) << (exp - 1)[:2])
                        m.d.comb += self.value.eq(Mux(sign, -mag, mag))
                    else:  # pragma: no cover - FORMAT_CODES and this table move together
                        raise AssertionError(fmt)
        return m


class ActivationSelect(wiring.Component):
    """Pick the activation of one lane from the window: ``x[(j // N)·M + idx_j]``.

    Combinational (latency 0). The logical lane ``j`` of a physical multiplier depends on the
    format; ``active`` is low when the mode leaves this lane unused (the window caps it).
    Only the positions some enabled mode can reach are wired: the routing tax made explicit.
    """

    latency = 0

    def __init__(self, cfg: ArrayConfig, slot: int, quarter: int):
        self._cfg = cfg
        self._slot = slot
        self._quarter = quarter
        lay = Layouts(cfg)
        ports = {
            "window": In(lay.x_window),
            "fmt": In(lay.mode.members["fmt"]),
            "sparsity": In(lay.mode.members["sparsity"]),
            "x": Out(signed(8)),
            "active": Out(1),
        }
        if cfg.idx_bits:
            ports["idx"] = In(lay.packet.members["idx"])
        super().__init__(ports)

    def routes(self):
        """``{(fmt, pattern): (lane, base, m)}`` for every mode that uses this multiplier."""
        cfg = self._cfg
        out = {}
        for fmt, sub in _quarter_formats(cfg, self._quarter):
            lane = self._slot * cfg.lanes_per_slot(fmt) + sub
            for pattern in cfg.sparsity:
                n, mm = _parse_nm(pattern)
                if lane < cfg.lanes_used(fmt, pattern):
                    out[(fmt, pattern)] = (lane, (lane // n) * mm, mm)
        return out

    def elaborate(self, platform):
        m = Module()
        fmt_bits = len(self.fmt)
        routes = self.routes()
        reachable = sorted({base + i for (_, base, mm) in routes.values() for i in range(mm)})
        # The mode picks a position (a constant block base with the lane's index bits below
        # it: bases are multiples of M, so no adder); one mux then serves every mode.
        pos = Signal(range(self._cfg.window), name="pos")
        with m.Switch(Cat(self.fmt, self.sparsity)):
            for (fmt, pattern), (lane, base, mm) in routes.items():
                with m.Case(FORMAT_CODES[fmt] | (SPARSITY_CODES[pattern] << fmt_bits)):
                    m.d.comb += self.active.eq(1)
                    if mm == 1:
                        m.d.comb += pos.eq(base)
                    else:
                        width = (mm - 1).bit_length()
                        m.d.comb += pos.eq(Cat(self.idx[lane][:width], Const(base >> width)))
        with m.Switch(pos):
            for p in reachable:
                with m.Case(p):
                    m.d.comb += self.x.eq(self.window[p])
        return m


class ProcessingElement(wiring.Component):
    """One output-stationary PE of the array.

    Pipeline (one beat per cycle, never stalls; bubbles carry ``ctl.valid = 0``):

    1. lane decode + activation select (registered)
    2. lane products
    3. beat partial (balanced adder tree over every lane)
    4. group partial ``P_g`` (sum of the group's beats)
    5. scale stage: ``none`` passes ``P_g``, ``int`` multiplies by the group scale, ``pow2``
       shifts by ``t + frac_bits`` and raises the error flag for NaN or out-of-window exponents
    6. wide accumulator; the tile's last contribution is copied to the result (shadow) register
       so the next tile accumulates while this one drains

    ``latency`` (6) is the number of cycles from a beat on the inputs to its effect on
    ``result``. Activations and control pass to the right, weight packets down, each through
    one register (``forward_latency`` = 1).
    """

    latency = 6
    forward_latency = 1

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        self._lay = lay = Layouts(cfg)
        super().__init__({
            "mode": In(lay.mode),
            "row_in": In(lay.row_beat),
            "wgt_in": In(lay.packet),
            "row_out": Out(lay.row_beat),
            "wgt_out": Out(lay.packet),
            "result": Out(signed(cfg.acc_bits)),
            "result_err": Out(1),
        })

    def elaborate(self, platform):
        cfg, lay = self._cfg, self._lay
        m = Module()
        mode = self.mode

        # Systolic forwarding.
        m.d.sync += [self.row_out.eq(self.row_in), self.wgt_out.eq(self.wgt_in)]

        # Stage 1: decode + select.
        lanes = []
        invalid_terms = []
        for s in range(cfg.slots):
            for q in range(4):
                if not cfg.quarter_value_bits[q]:
                    continue
                dec = LaneDecoder(cfg, q)
                sel = ActivationSelect(cfg, s, q)
                m.submodules[f"dec_{s}_{q}"] = dec
                m.submodules[f"sel_{s}_{q}"] = sel
                m.d.comb += [
                    dec.slot.eq(self.wgt_in.codes[s]),
                    dec.fmt.eq(mode.fmt),
                    sel.window.eq(self.row_in.x),
                    sel.fmt.eq(mode.fmt),
                    sel.sparsity.eq(mode.sparsity),
                ]
                if cfg.has_zero_points:
                    m.d.comb += dec.zero.eq(self.wgt_in.zero)
                if cfg.idx_bits:
                    m.d.comb += sel.idx.eq(self.wgt_in.idx)
                w1 = Signal(signed(dec.value_bits), name=f"w_{s}_{q}")
                x1 = Signal(signed(8), name=f"x_{s}_{q}")
                m.d.sync += [
                    w1.eq(Mux(sel.active, dec.value, 0)),
                    x1.eq(Mux(sel.active, sel.x, 0)),
                ]
                invalid_terms.append(dec.invalid & sel.active)
                lanes.append((w1, x1))

        ctl1, ctl2, ctl3, ctl4 = (Signal(lay.ctl, name=f"ctl{i}") for i in (1, 2, 3, 4))
        inv1, inv2, inv3 = (Signal(name=f"invalid{i}") for i in (1, 2, 3))
        scale_w = max(cfg.scale_field_bits, 1)
        scale1, scale2, scale3 = (Signal(scale_w, name=f"scale{i}") for i in (1, 2, 3))
        xexp1, xexp2, xexp3 = (Signal(8, name=f"xexp{i}", init=127) for i in (1, 2, 3))
        m.d.sync += [
            ctl1.eq(self.row_in.ctl),
            inv1.eq(Cat(*invalid_terms).any() & self.row_in.ctl.valid),
        ]
        if cfg.scale_field_bits:
            m.d.sync += scale1.eq(self.wgt_in.scale)
        if lay.has_x_exp:
            m.d.sync += xexp1.eq(self.row_in.x_exp)

        # Stage 2: products.
        prods = []
        for i, (w1, x1) in enumerate(lanes):
            p = Signal(signed(8 + len(w1)), name=f"prod{i}")
            m.d.sync += p.eq(x1 * w1)
            prods.append(p)
        m.d.sync += [ctl2.eq(ctl1), inv2.eq(inv1), scale2.eq(scale1), xexp2.eq(xexp1)]

        # Stage 3: beat partial.
        beat = Signal(signed(cfg.beat_bits))
        m.d.sync += [beat.eq(adder_tree(prods)), ctl3.eq(ctl2), inv3.eq(inv2),
                     scale3.eq(scale2), xexp3.eq(xexp2)]

        # Stage 4: group partial.
        group_acc = Signal(signed(cfg.p_bits))
        group_err = Signal()
        group_tile_first = Signal()
        p_sum = Signal(signed(cfg.p_bits))
        err_sum = Signal()
        tile_first_sum = Signal()
        m.d.comb += [
            p_sum.eq(Mux(ctl3.group_first, 0, group_acc) + beat),
            err_sum.eq(Mux(ctl3.group_first, 0, group_err) | inv3),
            tile_first_sum.eq(Mux(ctl3.group_first, ctl3.tile_first, group_tile_first)),
        ]
        with m.If(ctl3.valid):
            m.d.sync += [group_acc.eq(p_sum), group_err.eq(err_sum),
                         group_tile_first.eq(tile_first_sum)]
        p4 = Signal(signed(cfg.p_bits))
        err4 = Signal()
        scale4 = Signal(scale_w)
        xexp4 = Signal(8, init=127)
        m.d.sync += [
            ctl4.valid.eq(ctl3.valid & ctl3.group_last),
            ctl4.tile_first.eq(tile_first_sum),
            ctl4.tile_last.eq(ctl3.tile_last),
            p4.eq(p_sum), err4.eq(err_sum), scale4.eq(scale3), xexp4.eq(xexp3),
        ]

        # Stage 5: scale.
        contrib = Signal(signed(cfg.acc_bits))
        err5 = Signal()
        valid5, tile_first5, tile_last5 = Signal(), Signal(), Signal()
        m.d.sync += [valid5.eq(ctl4.valid), tile_first5.eq(ctl4.tile_first),
                     tile_last5.eq(ctl4.tile_last)]
        with m.Switch(mode.scale):
            if "none" in cfg.scale_kinds:
                with m.Case(SCALE_CODES["none"]):
                    m.d.sync += [contrib.eq(p4), err5.eq(err4)]
            if "int" in cfg.scale_kinds:
                with m.Case(SCALE_CODES["int"]):
                    s_int = scale4[:cfg.scale_bits].as_signed()
                    m.d.sync += [contrib.eq(p4 * s_int), err5.eq(err4)]
            if "pow2" in cfg.scale_kinds:
                with m.Case(SCALE_CODES["pow2"]):
                    self._pow2_stage(m, p4, err4, scale4, xexp4, contrib, err5)

        # Stage 6: wide accumulator with sticky error, shadow copy at the tile's end.
        acc = Signal(signed(cfg.acc_bits))
        acc_err = Signal()
        acc_next = Signal(signed(cfg.acc_bits))
        err_next = Signal()
        m.d.comb += [
            acc_next.eq(Mux(tile_first5, 0, acc) + contrib),
            err_next.eq(Mux(tile_first5, 0, acc_err) | err5),
        ]
        with m.If(valid5):
            m.d.sync += [acc.eq(acc_next), acc_err.eq(err_next)]
            with m.If(tile_last5):
                m.d.sync += [self.result.eq(acc_next), self.result_err.eq(err_next)]
        return m

    def _pow2_stage(self, m, p4, err4, scale4, xexp4, contrib, err5):
        """``floor(P · 2^(t + frac_bits))`` with the SPEC §4 exponent adjustments."""
        cfg, mode = self._cfg, self.mode
        adj = Signal(signed(5))
        with m.Switch(mode.fmt):
            for fmt, value in FORMAT_POW2_ADJ.items():
                if fmt in cfg.formats:
                    with m.Case(FORMAT_CODES[fmt]):
                        m.d.comb += adj.eq(value)
        e_w = scale4[:8]
        e_x = Mux(mode.mx_act, xexp4, 127)
        t = Signal(signed(12))
        m.d.comb += t.eq(e_w + e_x - 254 + adj - Mux(mode.mx_act, 6, 0))
        nan = (e_w == 0xFF) | (mode.mx_act & (xexp4 == 0xFF))
        out_of_window = (t < cfg.t_min) | (t > cfg.t_max)
        shift = Signal(signed(12))
        m.d.comb += shift.eq(t + cfg.frac_bits)
        shifted = Signal(signed(cfg.acc_bits))
        if cfg.shift_max >= 0:
            left_bits = max(cfg.shift_max.bit_length(), 1)
            left = Signal(unsigned(left_bits))
            m.d.comb += left.eq(Mux(shift > 0, shift, 0))
        if cfg.shift_min < 0:
            # A right shift by p_bits or more leaves only the sign: clamp it there (exact).
            right_max = min(-cfg.shift_min, cfg.p_bits)
            right = Signal(range(right_max + 1))
            m.d.comb += right.eq(Mux(shift < -right_max, right_max, Mux(shift < 0, -shift, 0)))
        if cfg.shift_max >= 0 and cfg.shift_min < 0:
            m.d.comb += shifted.eq(Mux(shift >= 0, p4 << left, p4 >> right))
        elif cfg.shift_max >= 0:
            m.d.comb += shifted.eq(p4 << left)
        else:
            m.d.comb += shifted.eq(p4 >> right)
        bad = nan | out_of_window
        m.d.sync += [contrib.eq(Mux(bad, 0, shifted)), err5.eq(err4 | bad)]
