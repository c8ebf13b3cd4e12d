"""SPEC §6 requantization of one column: the int8 output stage's arithmetic pipeline."""

import re

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.config import ArrayConfig
from hw.layouts import Layouts

__all__ = ["RequantStage"]


class RequantStage(wiring.Component):
    """SPEC §6 requantization of one column, pipelined, advancing on one enable.

    ``y = sat8(RDBPOT(SRDHM(sat32(acc + bias) · 2^max(sh,0), M0), max(−sh,0)) + zp)`` with
    gemmlowp rounding; ``acc + bias`` shifted left that does not fit int32 saturates and raises
    ``err``. Latency ``latency`` (9) cycles of advancing; one value per advancing cycle.
    ``advance`` holds one copy of the enable per stage (``advance[k]`` enables stage ``k + 1``
    and the last the output register; the driver keeps them equal in every cycle), so no
    single net enables every register of the pipeline.
    Stages: bias add; int32 range check (one reduction of the bits that differ from the sign;
    the saturation itself is applied after the product, see stage 2); 32×32 product as four
    16×16 partial products (one DSP each); the middle sum beside the outer part's rounding
    increment; their sum, which is SRDHM (see below); the rounding bias (a thermometer and the
    adder's carry); the rounding shift (32 bits out, levels trimmed to the reachable bits);
    the zero point; the int8 saturation.
    """

    latency = 9

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        lay = Layouts(cfg)
        super().__init__({
            "advance": In(self.latency),
            "acc": In(signed(cfg.acc_bits)),
            "params": In(lay.col_params),
            "y": Out(signed(8)),
            "err": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        adv = self.advance

        depth = []  # the stage number of every register, from its name's suffix

        def stage(name, value, shape=None):
            """A register of this pipeline (``<name><stage>``), loaded when it advances.

            Reset-less: the output stage's valid bits say which values are real.
            """
            depth.append(int(re.search(r"(\d+)$", name).group(1)))
            reg = Signal(shape if shape is not None else value.shape(), name=name,
                         reset_less=True)
            with m.If(adv[depth[-1] - 1]):
                m.d.sync += reg.eq(value)
            return reg

        sh = self.params.shift
        # Stage 1: bias; the int32 bounds of the left shift, looked up from the parameters
        # here so that stage 2 is only a compare (the lookup in series with the compare was
        # the critical path of the int8 array).
        accb = stage("accb1", self.acc + self.params.bias, signed(max(cfg.acc_bits, 32) + 1))
        left = Signal(unsigned(5))
        m.d.comb += left.eq(Mux(sh > 0, sh, 0))
        left1 = stage("left1", left)
        right1 = stage("right1", Mux(sh < 0, -sh, 0), unsigned(5))
        mult1 = stage("mult1", self.params.mult)
        zp1 = stage("zp1", self.params.zp)
        # accb · 2^left fits int32 iff accb fits 32 − left bits: iff its bits 31 − left and up
        # all equal its sign. `need` marks the bits 1…30 that must (bit i iff left >= 31 − i;
        # bits 31 and up always do), a thermometer of the shift looked up here, so that stage 2
        # is one reduction of the bits that differ from the sign (no compare on a carry chain).
        need = Signal(30)
        with m.Switch(left):
            for k in range(32):
                with m.Case(k):
                    m.d.comb += need.eq(sum(1 << (i - 1) for i in range(1, 31) if k >= 31 - i))
        need1 = stage("need1", need)
        # Stage 2: range check and left shift. The saturation is not applied to v (that mux
        # sat in front of the DSPs' input registers, on the critical path): a saturated v is
        # INT32_MAX or INT32_MIN, whose SRDHM with M0 is known in closed form (`_saturated`)
        # and chosen at stage 5 instead of the product.
        # Inside the range accb fits 32 − left bits, so v = accb · 2^left and SRDHM(v, M0) =
        # floor((accb·M0 + 2^(30−left)) / 2^(31−left)): the DSPs multiply accb itself (only a
        # register in front of them; the shift there was the routed critical path of the int8
        # and unified arrays) and the left shift becomes the rounding right shift of stage 7,
        # which a row with left > 0 does not need for RDBPOT (then right = 0).
        sign = accb[-1]
        differs = accb.as_unsigned() ^ sign.replicate(len(accb))
        out_of_range = differs[31:].any() | (differs[1:31] & need1).any()
        over, under = out_of_range & ~sign, out_of_range & sign
        v2 = stage("v2", accb[:32].as_signed(), signed(32))
        over2, under2 = stage("over2", over), stage("under2", under)
        err2 = stage("err2", out_of_range)
        right2, mult2, zp2 = stage("right2", right1), stage("mult2", mult1), stage("zp2", zp1)
        left2 = stage("left2", left1)
        sat_max, sat_min = self._saturated(stage, mult1)
        # Stage 3: v · M0 as four 16×16 partial products, one MULT18X18D each with nothing
        # but registers around it: v = vh·2^16 + vl (vh signed), M0 = mh·2^16 + ml (M0 is
        # positive, below 2^31).
        vl, vh = v2[:16].as_unsigned(), v2[16:32].as_signed()
        ml, mh = mult2[:16].as_unsigned(), mult2[16:32].as_unsigned()
        ll3 = stage("ll3", vl * ml, unsigned(32))
        lh3 = stage("lh3", vl * mh, unsigned(32))
        hl3 = stage("hl3", vh * ml, signed(33))
        hh3 = stage("hh3", vh * mh, signed(32))
        err3, zp3 = stage("err3", err2), stage("zp3", zp2)
        over3, under3 = stage("over3", over2), stage("under3", under2)
        # The row's final rounding shift: 31 − left with a left shift (round half up, the
        # rest of SRDHM), else RDBPOT's right.
        up3 = stage("up3", left2 != 0)
        post3 = stage("post3", Mux(left2 != 0, 31 - left2, right2), unsigned(5))
        # Stage 4: ab = hh·2^32 + ll + (lh + hl)·2^16. hh·2^32 + ll is a concatenation (ll is
        # unsigned, below 2^32); without a left shift SRDHM's rounding 2^30 is added to it
        # here, an increment of its bits 30 and up, beside the middle sum.
        outer4 = stage("outer4", Cat(ll3[:30], Cat(ll3[30:32], hh3).as_signed() + ~up3),
                       signed(64))
        mid4 = stage("mid4", lh3 + hl3, signed(34))
        err4, zp4 = stage("err4", err3), stage("zp4", zp3)
        over4, under4 = stage("over4", over3), stage("under4", under3)
        up4, post4 = stage("up4", up3), stage("post4", post3)
        # Stage 6's rounding bias, looked up two stages ahead from the 5-bit shift (a table, no
        # carry chain): the bias is 2^(e−1) = (2^(e−1) − 1) + 1, or 2^(e−1) − 1 for RDBPOT's
        # negative values, so one thermometer ``2^(e−1) − 1`` and the carry into its add.
        below_half = Signal(30)
        with m.Switch(post3):
            for e in range(2, 32):
                with m.Case(e):
                    m.d.comb += below_half.eq((1 << (e - 1)) - 1)
        below_half4 = stage("below_half4", below_half)
        rounds4 = stage("rounds4", post3 != 0)
        # Stage 5: without a left shift SRDHM, (ab + nudge) / 2^31 truncating toward zero.
        # With the nudge 2^30 for ab >= 0 and 1 − 2^30 below, both cases equal floor((ab +
        # 2^30) / 2^31): one adder (the 2^30 is in outer4) and an arithmetic shift. With a
        # left shift, ab itself (its rounding shift is stage 7's). A saturated row takes the
        # closed form, final with a left shift (no shift after it).
        # |ab| <= 2^62 − 2^31 (v an int32, M0 below 2^31, the nudge 2^30 included): ab and x5
        # fit 63 bits (the 65 of the sum's operands would make the rounding add 66 bits wide).
        total = Signal(signed(63))
        m.d.comb += total.eq(outer4 + (mid4 << 16))
        saturated = over4 | under4
        x5 = stage("x5", Mux(saturated, Mux(over4, sat_max, sat_min),
                             Mux(up4, total, total >> 31)), signed(63))
        final = saturated & up4  # nothing after it: no rounding, no shift
        below_half5 = stage("below_half5", Mux(final, 0, below_half4))
        rounds5 = stage("rounds5", rounds4 & ~final)
        up5 = stage("up5", up4)
        post5 = stage("post5", Mux(final, 0, post4), unsigned(5))
        err5, zp5 = stage("err5", err4), stage("zp5", zp4)
        # Stage 6: one biased add. RDBPOT (round half away from zero): x / 2^e rounds to
        # floor((x + 2^(e−1) − [x < 0]) / 2^e) for e >= 1, and x for e = 0 (both biases 0);
        # SRDHM's remaining rounding after a left shift: floor((x + 2^(e−1)) / 2^e).
        # The bias as ``below_half + carry``: one add of ``2·x + carry`` and ``2·below_half + 1``
        # (one carry chain, the carry in its lowest bit), halved.
        carry = rounds5 & ~(x5[-1] & ~up5)
        # 2·|x5| + 2^31 <= 2^63 − 2^31: the doubled sum fits 64 bits, the biased value 63.
        doubled = Signal(signed(64))
        m.d.comb += doubled.eq(Cat(carry, x5).as_signed() + Cat(Const(1, 1), below_half5))
        biased6 = stage("biased6", doubled[1:].as_signed(), signed(63))
        post6, err6, zp6 = stage("post6", post5), stage("err6", err5), stage("zp6", zp5)
        # Stage 7: the rounding shift.
        # The quotient is an int32, so only bits post … post + 31 of biased6 matter: a
        # logarithmic shifter from the largest step down, each level only as wide as the
        # bits still reachable (47, 39, 35, 33, 32 instead of 63 on every level).
        bits = biased6
        for b in reversed(range(len(post6))):
            step = 1 << b
            width = 32 + step - 1
            bits = Mux(post6[b], bits[step:step + width], bits[:width])
        quot7 = stage("quot7", bits.as_signed(), signed(32))
        err7, zp7 = stage("err7", err6), stage("zp7", zp6)
        # Stage 8: the zero point. Stage 9: the int8 range. The sum is an int8 iff its bits 7
        # and up are all equal: two reductions (LUTs), one register behind the add (the add,
        # the reductions and the choice in one cycle were the critical path of `tiny` and the
        # 2×2 int8 array at every seed).
        rounded8 = stage("rounded8", quot7 + zp7, signed(33))
        err8 = stage("err8", err7)
        top = rounded8[7:]
        with m.If(adv[-1]):
            m.d.sync += [
                self.y.eq(Mux(~top.any() | top.all(), rounded8[:8].as_signed(),
                              Mux(rounded8[-1], -128, 127))),
                self.err.eq(err8),
            ]
        # The stages above, then the output register: the latency the class states.
        assert max(depth) + 1 == self.latency, (max(depth), self.latency)
        return m

    @staticmethod
    def _saturated(stage, mult1):
        """SRDHM(INT32_MAX, M0) and SRDHM(INT32_MIN, M0) at stage 4, from M0 at stage 1.

        With M0 read as the unsigned 32-bit value the partial products use, ``floor((v·M0 +
        2^30) / 2^31)`` is ``M0 − [M0 > 2^30] − [M0 > 3·2^30]`` for ``v = 2^31 − 1`` and
        ``−M0`` for ``v = −2^31`` (for a valid M0 in [2^30, 2^31): ``M0 − [M0 > 2^30]`` and
        ``−M0``), exactly what the product path gives for those v.
        """
        m0 = mult1.as_unsigned()
        # The compares with 2^30 and 3·2^30 read M0's two top bits and whether any bit below
        # them is set (LUTs, no carry chain); [M0 > 2^30] + [M0 > 3·2^30] is then the 2-bit
        # number (gt3, gt1 ^ gt3), subtracted in one carry chain.
        low = m0[:30].any()
        gt1 = m0[31] | (m0[30] & low)
        gt3 = m0[31] & m0[30] & low
        gt1_2, gt3_2 = stage("sat_gt1_2", gt1), stage("sat_gt3_2", gt3)
        m0_2 = stage("sat_m0_2", m0)
        min2 = stage("sat_min2", -m0, signed(34))
        max3 = stage("sat_max3", m0_2 - Cat(gt1_2 ^ gt3_2, gt3_2), signed(34))
        min3 = stage("sat_min3", min2)
        return stage("sat_max4", max3), stage("sat_min4", min3)
