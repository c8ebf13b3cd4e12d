"""SPEC §6 requantization of one column: the int8 output stage's arithmetic pipeline."""

import re

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.tables import INT32_MAX
from hw.config import ArrayConfig
from hw.layouts import Layouts

__all__ = ["RequantStage"]


class RequantStage(wiring.Component):
    """SPEC §6 requantization of one column, pipelined, with a shared advance enable.

    ``y = sat8(RDBPOT(SRDHM(sat32(acc + bias) · 2^max(sh,0), M0), max(−sh,0)) + zp)`` with
    gemmlowp rounding; ``acc + bias`` shifted left that does not fit int32 saturates and raises
    ``err``. Latency ``latency`` (8) cycles of ``advance``; one value per advancing cycle.
    Stages: bias add; int32 range check and left shift (the saturation itself is applied after
    the product, see stage 2); 32×32 product as four 16×16 partial
    products (one DSP each); the middle sum beside the outer part's rounding increment; their
    sum, which is SRDHM (see below); RDBPOT's rounding bias; its right shift; zero point and
    int8 saturation.
    """

    latency = 8

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        lay = Layouts(cfg)
        super().__init__({
            "advance": In(1),
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
            with m.If(adv):
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
        # accb · 2^left fits int32 iff −2^(31−left) <= accb <= (2^31 − 1) >> left.
        hi_bound = Signal(signed(33))
        lo_bound = Signal(signed(33))
        with m.Switch(left):
            for k in range(32):
                with m.Case(k):
                    m.d.comb += [hi_bound.eq(INT32_MAX >> k), lo_bound.eq(-(1 << (31 - k)))]
        hi1, lo1 = stage("hi1", hi_bound), stage("lo1", lo_bound)
        # Stage 2: range check and left shift. The saturation is not applied to v (that mux
        # sat in front of the DSPs' input registers, on the critical path): a saturated v is
        # INT32_MAX or INT32_MIN, whose SRDHM with M0 is known in closed form (`_saturated`)
        # and chosen at stage 5 instead of the product.
        over, under = accb > hi1, accb < lo1
        shifted = Signal(signed(32))
        m.d.comb += shifted.eq(accb[:32] << left1)
        v2 = stage("v2", shifted, signed(32))
        over2, under2 = stage("over2", over), stage("under2", under)
        err2 = stage("err2", over | under)
        right2, mult2, zp2 = stage("right2", right1), stage("mult2", mult1), stage("zp2", zp1)
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
        err3, right3, zp3 = stage("err3", err2), stage("right3", right2), stage("zp3", zp2)
        over3, under3 = stage("over3", over2), stage("under3", under2)
        # Stage 4: ab = hh·2^32 + ll + (lh + hl)·2^16. hh·2^32 + ll is a concatenation (ll is
        # unsigned, below 2^32); SRDHM's rounding 2^30 is added to it here, an increment of
        # its bits 30 and up, beside the middle sum.
        outer4 = stage("outer4", Cat(ll3[:30], Cat(ll3[30:32], hh3).as_signed() + 1),
                       signed(64))
        mid4 = stage("mid4", lh3 + hl3, signed(34))
        err4, right4, zp4 = stage("err4", err3), stage("right4", right3), stage("zp4", zp3)
        over4, under4 = stage("over4", over3), stage("under4", under3)
        # Stage 5: SRDHM, (ab + nudge) / 2^31 truncating toward zero. With the nudge
        # 2^30 for ab >= 0 and 1 − 2^30 below, both cases equal floor((ab + 2^30) / 2^31):
        # one adder (the 2^30 is in outer4) and an arithmetic shift. The RDBPOT rounding
        # constant is looked up here, a stage ahead of its use.
        high5 = stage("high5", Mux(over4, sat_max, Mux(under4, sat_min,
                                                          (outer4 + (mid4 << 16)) >> 31)),
                      signed(33))
        err5, right5, zp5 = stage("err5", err4), stage("right5", right4), stage("zp5", zp4)
        half = Signal(unsigned(31))
        m.d.comb += half.eq(Mux(right4 == 0, 0, Const(1, 32) << (right4 - 1)[:5]))
        half5 = stage("half5", half)
        half_m1_5 = stage("half_m1_5", half - (right4 != 0), unsigned(31))
        # Stage 6: RDBPOT (round half away from zero) as one biased add: x / 2^e rounds to
        # floor((x + 2^(e−1) − [x < 0]) / 2^e) for e >= 1, and x for e = 0 (both biases 0).
        biased6 = stage("biased6", high5 + Mux(high5 < 0, half_m1_5, half5), signed(34))
        err6, right6, zp6 = stage("err6", err5), stage("right6", right5), stage("zp6", zp5)
        # Stage 7: the rounding shift.
        quot7 = stage("quot7", biased6 >> right6, signed(34))
        err7, zp7 = stage("err7", err6), stage("zp7", zp6)
        # Stage 8: zero point and int8 saturation.
        rounded = Signal(signed(35))
        m.d.comb += rounded.eq(quot7 + zp7)
        with m.If(adv):
            m.d.sync += [
                self.y.eq(Mux(rounded > 127, 127, Mux(rounded < -128, -128, rounded))),
                self.err.eq(err7),
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
        gt1_2 = stage("sat_gt1_2", m0 > (1 << 30))
        gt3_2 = stage("sat_gt3_2", m0 > (3 << 30))
        m0_2 = stage("sat_m0_2", m0)
        min2 = stage("sat_min2", -m0, signed(34))
        max3 = stage("sat_max3", m0_2 - gt1_2 - gt3_2, signed(34))
        min3 = stage("sat_min3", min2)
        return stage("sat_max4", max3), stage("sat_min4", min3)
