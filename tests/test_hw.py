"""Hardware blocks on the Amaranth simulator, compared with the golden model."""

import itertools

import numpy as np
import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from gen.presets import preset
from golden.formats import decode
from golden.gemm import gemm, requantize
from golden.sparsity import parse_sparsity
from hw.config import FORMAT_BITS, FORMAT_CODES, SPARSITY_CODES, ArrayConfig, Mode
from hw.core import RequantStage
from hw.lanemap import lane_map
from hw.pe import ActivationSelect, LaneDecoder
from verif.amsim import run_gemm
from verif.cases import random_case

TINY = preset("tiny")


class LaneMac(wiring.Component):
    """Decoder of one quarter followed by the lane's multiplier, as the PE wires them."""

    def __init__(self, cfg, quarter):
        self.dec = LaneDecoder(cfg, quarter)
        super().__init__({"slot": In(8), "fmt": In(3), "zero": In(4), "x": In(signed(8)),
                          "product": Out(signed(8 + self.dec.value_bits)), "invalid": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dec = dec = self.dec
        m.d.comb += [dec.slot.eq(self.slot), dec.fmt.eq(self.fmt), dec.zero.eq(self.zero),
                     self.product.eq(dec.value * self.x), self.invalid.eq(dec.invalid)]
        return m


def _run_comb(dut, bench):
    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("fmt", list(FORMAT_CODES))
def test_lane_decode_times_every_activation(fmt):
    """Every code of every lane position × every int8 activation (× every zero point)."""
    bits = FORMAT_BITS[fmt]
    lps = 8 // bits
    values, invalid = decode(fmt, np.arange(1 << bits))
    xs = np.arange(-128, 128)
    zeros = range(16) if fmt == "uint4" else (0,)
    rng = np.random.default_rng(7)
    for sub in range(lps):
        quarter = sub * (4 // lps)
        dut = LaneMac(TINY, quarter)

        async def bench(ctx, sub=sub, dut=dut):
            ctx.set(dut.fmt, FORMAT_CODES[fmt])
            for z in zeros:
                ctx.set(dut.zero, z)
                for code in range(1 << bits):
                    other = int(rng.integers(0, 256))  # the other lanes' bits must not matter
                    mask = ((1 << bits) - 1) << (sub * bits)
                    ctx.set(dut.slot, (other & ~mask) | (code << (sub * bits)))
                    want_w = 0 if invalid[code] else int(values[code]) - z
                    assert ctx.get(dut.invalid) == int(invalid[code]), (fmt, code)
                    for x in xs:
                        ctx.set(dut.x, int(x))
                        assert ctx.get(dut.product) == want_w * int(x), (fmt, sub, code, z, x)

        _run_comb(dut, bench)


@pytest.mark.parametrize("pattern", list(SPARSITY_CODES))
def test_activation_select_every_mode(pattern):
    """Each multiplier selects what the packer's lane order puts there (hw.lanemap).

    Logical lane ``j`` of a mode (block ``j // N``, stored slot ``j % N``) sits on multiplier
    ``lane_mult[j]``; its activation is beat-local ``k = (j // N)·M + idx`` (dense: ``k = j``),
    which the packer writes at window position ``k_pos[k]``.
    """
    cfg = TINY
    n, m = parse_sparsity(pattern)
    order = lane_map(cfg)
    rng = np.random.default_rng(3)
    for s, q in itertools.product(range(cfg.slots), range(4)):
        if not cfg.quarter_value_bits[q]:
            continue
        sel = ActivationSelect(cfg, s, q)

        async def bench(ctx, sel=sel, s=s, q=q):
            ctx.set(sel.sparsity, SPARSITY_CODES[pattern])
            for fmt in cfg.formats:
                lanes = order.modes[(fmt, pattern)]
                ctx.set(sel.fmt, FORMAT_CODES[fmt])
                j = lanes.lane_mult.index((s, q)) if (s, q) in lanes.lane_mult else None
                for _ in range(8):
                    window = rng.integers(-128, 128, cfg.window)
                    idx = rng.integers(0, m, cfg.max_lanes)
                    ctx.set(sel.window, [int(v) for v in window])
                    ctx.set(sel.idx, [int(v) for v in idx])
                    assert ctx.get(sel.active) == int(j is not None), (fmt, pattern, s, q)
                    if j is not None:
                        k = (j // n) * m + (idx[order.idx_index((s, q))] if m > 1 else 0)
                        assert ctx.get(sel.x) == window[lanes.k_pos[k]], (fmt, pattern, j)

        _run_comb(sel, bench)


def test_requant_stage_matches_golden():
    cfg = TINY
    rng = np.random.default_rng(11)
    n = 400
    acc = rng.integers(-(1 << 40), 1 << 40, n)
    acc[:100] = rng.integers(-(1 << 20), 1 << 20, 100)
    # Hand-picked rounding ties: SRDHM nudge and RDBPOT halves of both signs.
    ties = [(3, 1 << 30, -1), (-3, 1 << 30, -1), (5, 1 << 30, -2), (-5, 1 << 30, -2),
            (1, (1 << 31) - 1, 0), (-1, (1 << 31) - 1, 0), (0, 1 << 30, 30), (255, 1 << 30, 0)]
    bias = rng.integers(-(1 << 31), 1 << 31, n)
    mult = rng.integers(1 << 30, 1 << 31, n)
    shift = rng.integers(-31, 31, n)
    zp = rng.integers(-300, 300, n)
    for i, (a, mm, sh) in enumerate(ties):
        acc[i], mult[i], shift[i], bias[i], zp[i] = a, mm, sh, 0, 0
    # One row, one column per case: every case has its own parameters.
    want_y, want_err = requantize(acc[None, :], bias=bias, out_mult=mult, out_shift=shift,
                                  out_zp=zp)
    want_y, want_err = want_y[0], want_err[0]
    dut = RequantStage(cfg)
    got = []

    async def bench(ctx):
        ctx.set(dut.advance, 1)
        for i in range(n + dut.latency):
            j = min(i, n - 1)
            ctx.set(dut.acc, int(acc[j]))
            ctx.set(dut.params, {"bias": int(bias[j]), "mult": int(mult[j]),
                                 "shift": int(shift[j]), "zp": int(zp[j])})
            await ctx.tick()
            if i >= dut.latency - 1:
                got.append((ctx.get(dut.y), ctx.get(dut.err)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for i in range(n):
        assert got[i] == (want_y[i], int(want_err[i])), (i, acc[i], bias[i], mult[i], shift[i])


def _modes_covering(cfg: ArrayConfig):
    """Every format × sparsity once, cycling scale kinds, MX activations and output stages."""
    by_pair = {}
    for mode in cfg.modes:
        by_pair.setdefault((mode.fmt, mode.sparsity), []).append(mode)
    out = []
    for i, (_pair, modes) in enumerate(sorted(by_pair.items())):
        mode = modes[i % len(modes)]
        if mode.scale_kind == "int" and i % 2:
            mode = Mode(mode.fmt, mode.sparsity, "int", out_stage="requant")
        out.append(mode)
    return out


PE_CFG = TINY.replace(rows=1, cols=1, name="upe_pe")


@pytest.mark.parametrize("mode", [m for m in PE_CFG.modes if m.sparsity in ("dense", "2:4")],
                         ids=lambda m: m.name)
def test_pe_random(mode):
    """One PE (a 1×1 array) on a seeded random GEMM per format × scale kind."""
    seed = abs(hash(mode.name)) % 1000
    layer, x, x_exp = random_case(seed, PE_CFG, mode, 2, 64, 2)
    want, want_err = gemm(x, layer, x_exp=x_exp, frac_bits=PE_CFG.frac_bits,
                          t_min=PE_CFG.t_min, t_max=PE_CFG.t_max)
    y, err, _ = run_gemm(PE_CFG, layer, x, x_exp=x_exp)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(err, want_err)


@pytest.mark.parametrize("mode", _modes_covering(TINY), ids=lambda m: m.name)
def test_array_gemm(mode):
    """A 3×3 output (tiles with padding) on the 2×2 array, with idle cycles and backpressure."""
    seed = sum(map(ord, mode.name))
    layer, x, x_exp = random_case(seed, TINY, mode, 3, 64, 3)
    want, want_err = gemm(x, layer, x_exp=x_exp, frac_bits=TINY.frac_bits, t_min=TINY.t_min,
                          t_max=TINY.t_max, out_stage=mode.out_stage)
    y, err, _ = run_gemm(TINY, layer, x, x_exp=x_exp, out_stage=mode.out_stage,
                         in_pattern=(1, 1, 0), out_pattern=(1, 0))
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(err, want_err)


@pytest.mark.parametrize("flag", ["invalid_ternary", "nan_scale", "window_overflow", "nan_exp"])
def test_error_flags(flag):
    mode = {"invalid_ternary": Mode("ternary", "2:4", "none"),
            "nan_scale": Mode("fp4_e2m1", "dense", "pow2"),
            "window_overflow": Mode("int4", "dense", "pow2"),
            "nan_exp": Mode("mxint8", "dense", "pow2", mx_act=True)}[flag]
    layer, x, x_exp = random_case(5, TINY, mode, 2, 64, 2, **{flag: True})
    want, want_err = gemm(x, layer, x_exp=x_exp, frac_bits=TINY.frac_bits, t_min=TINY.t_min,
                          t_max=TINY.t_max)
    assert want_err.any()
    y, err, _ = run_gemm(TINY, layer, x, x_exp=x_exp)
    np.testing.assert_array_equal(err, want_err)
    np.testing.assert_array_equal(y, want)
