"""SPEC §6 requantization of one column: the int8 output stage's arithmetic pipeline."""

import re

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.config import ArrayConfig
from hw.layouts import Layouts

__all__ = ["RequantStage"]

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


class RequantStage(wiring.Component):
    """SPEC §6 requantization of one column, pipelined, with a shared advance enable.

    ``y = sat8(RDBPOT(SRDHM(sat32(acc + bias) · 2^max(sh,0), M0), max(−sh,0)) + zp)`` with
    gemmlowp rounding; ``acc + bias`` shifted left that does not fit int32 saturates and raises
    ``err``. Latency ``latency`` (8) cycles of ``advance``; one value per advancing cycle.
    Stages: bias add; int32 range check and left shift; 32×32 product as two partial products;
    their sum; SRDHM (one add and a shift, see below); RDBPOT's rounding bias; its right
    shift; zero point and int8 saturation.
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
        # Stage 2: range check and left shift.
        over, under = accb > hi1, accb < lo1
        shifted = Signal(signed(32))
        m.d.comb += shifted.eq(accb[:32] << left1)
        v2 = stage("v2", Mux(over, INT32_MAX, Mux(under, INT32_MIN, shifted)), signed(32))
        err2 = stage("err2", over | under)
        right2, mult2, zp2 = stage("right2", right1), stage("mult2", mult1), stage("zp2", zp1)
        # Stage 3: v · M0 as two 32×16 partial products (M0 is positive, below 2^31).
        lo3 = stage("lo3", v2 * mult2[:16].as_unsigned(), signed(49))
        hi3 = stage("hi3", v2 * mult2[16:32].as_signed(), signed(48))
        err3, right3, zp3 = stage("err3", err2), stage("right3", right2), stage("zp3", zp2)
        # Stage 4: the 64-bit product.
        ab4 = stage("ab4", (hi3 << 16) + lo3, signed(64))
        err4, right4, zp4 = stage("err4", err3), stage("right4", right3), stage("zp4", zp3)
        # Stage 5: SRDHM, (ab + nudge) / 2^31 truncating toward zero. With the nudge
        # 2^30 for ab >= 0 and 1 − 2^30 below, both cases equal floor((ab + 2^30) / 2^31):
        # one adder and an arithmetic shift. The RDBPOT rounding constant is looked up here,
        # a stage ahead of its use.
        high5 = stage("high5", (ab4 + (1 << 30)) >> 31, signed(33))
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
