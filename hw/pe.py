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

from golden.sparsity import parse_sparsity
from hw.config import FORMAT_CODES, FORMAT_POW2_ADJ, SCALE_CODES, SPARSITY_CODES, ArrayConfig
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
            "pos": Out(range(cfg.window)),
            "active": Out(1),
        }
        if cfg.idx_bits:
            ports["idx"] = In(lay.packet.members["idx"])
        super().__init__(ports)

    @property
    def reachable(self) -> list[int]:
        """Window positions some enabled mode can select for this lane."""
        return sorted({base + i for (_, base, mm) in self.routes().values() for i in range(mm)})

    def select(self, m: Module, window, pos, x) -> None:
        """Drive ``x`` with ``window[pos]``, wiring only the reachable positions."""
        with m.Switch(pos):
            for p in self.reachable:
                with m.Case(p):
                    m.d.comb += x.eq(window[p])

    def routes(self):
        """``{(fmt, pattern): (lane, base, m)}`` for every mode that uses this multiplier."""
        cfg = self._cfg
        out = {}
        for fmt, sub in _quarter_formats(cfg, self._quarter):
            lane = self._slot * cfg.lanes_per_slot(fmt) + sub
            for pattern in cfg.sparsity:
                n, mm = parse_sparsity(pattern)
                if lane < cfg.lanes_used(fmt, pattern):
                    out[(fmt, pattern)] = (lane, (lane // n) * mm, mm)
        return out

    def elaborate(self, platform):
        m = Module()
        fmt_bits = len(self.fmt)
        routes = self.routes()
        # The mode picks a position (a constant block base with the lane's index bits below
        # it: bases are multiples of M, so no adder); one mux then serves every mode.
        pos = self.pos
        with m.Switch(Cat(self.fmt, self.sparsity)):
            for (fmt, pattern), (lane, base, mm) in routes.items():
                with m.Case(FORMAT_CODES[fmt] | (SPARSITY_CODES[pattern] << fmt_bits)):
                    m.d.comb += self.active.eq(1)
                    if mm == 1:
                        m.d.comb += pos.eq(base)
                    else:
                        width = (mm - 1).bit_length()
                        m.d.comb += pos.eq(Cat(self.idx[lane][:width], Const(base >> width)))
        self.select(m, self.window, pos, self.x)
        return m


class ProcessingElement(wiring.Component):
    """One output-stationary PE of the array.

    Pipeline (one beat per cycle, never stalls; bubbles carry ``ctl.valid = 0``):

    1. lane decode and the N:M position of every lane's activation (registered)
    2. activation select from the window, which the forwarding register has delayed by the
       same cycle
    3. lane products
    4. first half of the balanced adder tree over the lanes
    5. beat partial (rest of the tree)
    6. group partial ``P_g``; in parallel the ``pow2`` shift amount and error checks of the
       group's exponents
    7. scale operation: ``int`` multiplies by the group scale as two narrower partial products,
       ``pow2`` shifts by ``t + frac_bits``
    8. contribution: the partial products summed, or the shifted value (0 when the exponent was
       NaN or outside the window), or ``P_g`` for ``none``
    9. wide accumulator; the tile's last contribution is copied to the result (shadow) register
       so the next tile accumulates while this one drains

    ``latency`` (9) is the number of cycles from a beat on the inputs to its effect on
    ``result``. Activations and control pass to the right, weight packets down, each through
    one register (``forward_latency`` = 1).
    """

    latency = 9
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

        # Systolic forwarding. `row_out` is also this PE's window delayed by one cycle, which
        # stage 2 selects from. Only the beat control is reset: data registers are reset-less
        # (a reset net reaching every datapath flip-flop set the routed Fmax of the array).
        row_fwd = Signal(lay.row_beat, name="row_fwd", reset_less=True)
        wgt_fwd = Signal(lay.packet, name="wgt_fwd", reset_less=True)
        ctl_fwd = Signal(lay.ctl, name="ctl_fwd")
        m.d.sync += [row_fwd.eq(self.row_in), wgt_fwd.eq(self.wgt_in),
                     ctl_fwd.eq(self.row_in.ctl)]
        m.d.comb += [self.row_out.eq(row_fwd), self.row_out.ctl.eq(ctl_fwd),
                     self.wgt_out.eq(wgt_fwd)]

        # Stage 1: decode + activation position.
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
                w1 = Signal(signed(dec.value_bits), name=f"w1_{s}_{q}", reset_less=True)
                pos1 = Signal.like(sel.pos, name=f"pos1_{s}_{q}", reset_less=True)
                act1 = Signal(name=f"active1_{s}_{q}", reset_less=True)
                m.d.sync += [w1.eq(Mux(sel.active, dec.value, 0)), pos1.eq(sel.pos),
                             act1.eq(sel.active)]
                invalid_terms.append(dec.invalid & sel.active)
                lanes.append((sel, w1, pos1, act1))

        stages = range(1, 7)
        ctl = {i: Signal(lay.ctl, name=f"ctl{i}") for i in stages}
        inv = {i: Signal(name=f"invalid{i}", reset_less=True) for i in stages}
        scale_w = max(cfg.scale_field_bits, 1)
        scale = {i: Signal(scale_w, name=f"scale{i}", reset_less=True) for i in stages}
        xexp = {i: Signal(8, name=f"xexp{i}", init=127, reset_less=True) for i in stages}
        m.d.sync += [
            ctl[1].eq(self.row_in.ctl),
            inv[1].eq(Cat(*invalid_terms).any() & self.row_in.ctl.valid),
        ]
        if cfg.scale_field_bits:
            m.d.sync += scale[1].eq(self.wgt_in.scale)
        if lay.has_x_exp:
            m.d.sync += xexp[1].eq(self.row_in.x_exp)
        for i in range(2, 6):  # beat control travels with the data
            m.d.sync += [ctl[i].eq(ctl[i - 1]), inv[i].eq(inv[i - 1]),
                         scale[i].eq(scale[i - 1]), xexp[i].eq(xexp[i - 1])]

        # Stage 2: select the activation from the delayed window.
        pairs = []
        for i, (sel, w1, pos1, act1) in enumerate(lanes):
            x_sel = Signal(signed(8), name=f"x_sel{i}")
            sel.select(m, self.row_out.x, pos1, x_sel)
            x2 = Signal(signed(8), name=f"x2_{i}", reset_less=True)
            w2 = Signal.like(w1, name=f"w2_{i}", reset_less=True)
            m.d.sync += [x2.eq(Mux(act1, x_sel, 0)), w2.eq(w1)]
            pairs.append((x2, w2))

        # Stage 3: products.
        prods = []
        for i, (x2, w2) in enumerate(pairs):
            p = Signal(signed(8 + len(w2)), name=f"prod{i}", reset_less=True)
            m.d.sync += p.eq(x2 * w2)
            prods.append(p)

        # Stages 4 and 5: the adder tree, split in two halves.
        quads = []
        for i in range(0, len(prods), 4):
            q = Signal(signed(cfg.beat_bits), name=f"quad{i // 4}", reset_less=True)
            m.d.sync += q.eq(adder_tree(prods[i:i + 4]))
            quads.append(q)
        beat = Signal(signed(cfg.beat_bits), reset_less=True)
        m.d.sync += beat.eq(adder_tree(quads))

        # Stage 6: group partial; pow2 shift amount and checks from the group's exponents.
        c5 = ctl[5]
        # Partial sums restart on a group's (tile's) first beat: no reset needed.
        group_acc = Signal(signed(cfg.p_bits), reset_less=True)
        group_err = Signal(reset_less=True)
        group_tile_first = Signal(reset_less=True)
        p_sum = Signal(signed(cfg.p_bits))
        err_sum = Signal()
        tile_first_sum = Signal()
        m.d.comb += [
            p_sum.eq(Mux(c5.group_first, 0, group_acc) + beat),
            err_sum.eq(Mux(c5.group_first, 0, group_err) | inv[5]),
            tile_first_sum.eq(Mux(c5.group_first, c5.tile_first, group_tile_first)),
        ]
        with m.If(c5.valid):
            m.d.sync += [group_acc.eq(p_sum), group_err.eq(err_sum),
                         group_tile_first.eq(tile_first_sum)]
        p6 = Signal(signed(cfg.p_bits), reset_less=True)
        err6 = Signal(reset_less=True)
        valid6, tile_first6, tile_last6 = Signal(), Signal(), Signal()
        scale6 = Signal(scale_w, reset_less=True)
        m.d.sync += [
            valid6.eq(c5.valid & c5.group_last), tile_first6.eq(tile_first_sum),
            tile_last6.eq(c5.tile_last), p6.eq(p_sum), err6.eq(err_sum), scale6.eq(scale[5]),
        ]
        pow2 = "pow2" in cfg.scale_kinds
        if pow2:
            shift6, bad6 = self._pow2_params(m, scale[5], xexp[5])

        # Stage 7: the scale operation.
        valid7, tile_first7, tile_last7 = Signal(), Signal(), Signal()
        err7 = Signal(reset_less=True)
        m.d.sync += [valid7.eq(valid6), tile_first7.eq(tile_first6), tile_last7.eq(tile_last6),
                     err7.eq(err6)]
        p7 = Signal(signed(cfg.p_bits), reset_less=True)
        m.d.sync += p7.eq(p6)
        if "int" in cfg.scale_kinds:
            # P · s as two partial products (P's low 17 bits unsigned, the rest signed), so
            # each fits one DSP multiplier and the sum gets its own stage.
            lo_bits = min(17, cfg.p_bits - 1)
            s_int = scale6[:cfg.scale_bits].as_signed()
            prod_lo = Signal(signed(lo_bits + 1 + cfg.scale_bits), reset_less=True)
            prod_hi = Signal(signed(cfg.p_bits - lo_bits + cfg.scale_bits), reset_less=True)
            m.d.sync += [prod_lo.eq(p6[:lo_bits].as_unsigned() * s_int),
                         prod_hi.eq(p6[lo_bits:].as_signed() * s_int)]
        if pow2:
            shifted7 = Signal(signed(cfg.acc_bits), reset_less=True)
            bad7 = Signal(reset_less=True)
            m.d.sync += [shifted7.eq(self._pow2_shift(m, p6, shift6)), bad7.eq(bad6)]

        # Stage 8: the contribution.
        contrib = Signal(signed(cfg.acc_bits), reset_less=True)
        err8 = Signal(reset_less=True)
        valid8, tile_first8, tile_last8 = Signal(), Signal(), Signal()
        m.d.sync += [valid8.eq(valid7), tile_first8.eq(tile_first7), tile_last8.eq(tile_last7),
                     err8.eq(err7)]
        with m.Switch(mode.scale):
            if "none" in cfg.scale_kinds:
                with m.Case(SCALE_CODES["none"]):
                    m.d.sync += contrib.eq(p7)
            if "int" in cfg.scale_kinds:
                with m.Case(SCALE_CODES["int"]):
                    m.d.sync += contrib.eq((prod_hi << lo_bits) + prod_lo)
            if pow2:
                with m.Case(SCALE_CODES["pow2"]):
                    m.d.sync += [contrib.eq(Mux(bad7, 0, shifted7)), err8.eq(err7 | bad7)]

        # Stage 9: wide accumulator with sticky error, shadow copy at the tile's end.
        acc = Signal(signed(cfg.acc_bits), reset_less=True)  # restarts on a tile's first beat
        acc_err = Signal(reset_less=True)
        acc_next = Signal(signed(cfg.acc_bits))
        err_next = Signal()
        m.d.comb += [
            acc_next.eq(Mux(tile_first8, 0, acc) + contrib),
            err_next.eq(Mux(tile_first8, 0, acc_err) | err8),
        ]
        result = Signal(signed(cfg.acc_bits), reset_less=True)  # read only once drained
        result_err = Signal(reset_less=True)
        m.d.comb += [self.result.eq(result), self.result_err.eq(result_err)]
        with m.If(valid8):
            m.d.sync += [acc.eq(acc_next), acc_err.eq(err_next)]
            with m.If(tile_last8):
                m.d.sync += [result.eq(acc_next), result_err.eq(err_next)]
        return m

    def _pow2_params(self, m, scale, xexp):
        """Registered ``t + frac_bits`` and the error check of a group's exponents."""
        cfg, mode = self._cfg, self.mode
        # Everything that depends only on the (static) mode is folded into one registered
        # constant: adj − 254 + frac_bits − 6·mx_act.
        adj = Signal(signed(5))
        with m.Switch(mode.fmt):
            for fmt, value in FORMAT_POW2_ADJ.items():
                if fmt in cfg.formats:
                    with m.Case(FORMAT_CODES[fmt]):
                        m.d.comb += adj.eq(value)
        offset = Signal(signed(11), reset_less=True)
        m.d.sync += offset.eq(adj - 254 + cfg.frac_bits - Mux(mode.mx_act, 6, 0))
        e_w = scale[:8]
        e_x = Mux(mode.mx_act, xexp, 127)
        shift = Signal(signed(12))
        m.d.comb += shift.eq(e_w + e_x + offset)
        nan = (e_w == 0xFF) | (mode.mx_act & (xexp == 0xFF))
        out_of_window = ((shift < cfg.t_min + cfg.frac_bits)
                         | (shift > cfg.t_max + cfg.frac_bits))
        shift6, bad6 = Signal(signed(12), reset_less=True), Signal(reset_less=True)
        m.d.sync += [shift6.eq(shift), bad6.eq(nan | out_of_window)]
        return shift6, bad6

    def _pow2_shift(self, m, p, shift):
        """``floor(P · 2^shift)`` for shifts inside the configured window."""
        cfg = self._cfg
        shifted = Signal(signed(cfg.acc_bits))
        if cfg.shift_max >= 0:
            left = Signal(range(max(cfg.shift_max, 1) + 1))
            m.d.comb += left.eq(Mux(shift > 0, shift, 0))
        if cfg.shift_min < 0:
            # A right shift by p_bits or more leaves only the sign: clamp it there (exact).
            right_max = min(-cfg.shift_min, cfg.p_bits)
            right = Signal(range(right_max + 1))
            m.d.comb += right.eq(Mux(shift < -right_max, right_max, Mux(shift < 0, -shift, 0)))
        if cfg.shift_max >= 0 and cfg.shift_min < 0:
            m.d.comb += shifted.eq(Mux(shift >= 0, p << left, p >> right))
        elif cfg.shift_max >= 0:
            m.d.comb += shifted.eq(p << left)
        else:
            m.d.comb += shifted.eq(p >> right)
        return shifted
