"""The core's requant stage and the array on the Amaranth simulator, compared with golden."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from gen.presets import preset
from golden.gemm import gemm, requantize
from hw.config import ArrayConfig, Mode
from hw.requant import RequantStage
from verif.amsim import run_gemm
from verif.cases import random_case

TINY = preset("tiny")


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
    # Left shifts that fit int32, with acc beyond 32 bits where the bias brings it back.
    fit = slice(100, 200)
    shift[fit] = rng.integers(0, 31, 100)
    bias[fit] = rng.integers(-(1 << 31), 1 << 31, 100)
    accb = np.array([rng.integers(-(1 << (31 - s)), (1 << (31 - s))) for s in shift[fit]])
    acc[fit] = accb - bias[fit]
    for i, (a, mm, sh) in enumerate(ties):
        acc[i], mult[i], shift[i], bias[i], zp[i] = a, mm, sh, 0, 0
    # One row, one column per case: every case has its own parameters.
    want_y, want_err = requantize(acc[None, :], bias=bias, out_mult=mult, out_shift=shift,
                                  out_zp=zp)
    want_y, want_err = want_y[0], want_err[0]
    got = _run_requant(cfg, acc, bias, mult, shift, zp)
    for i in range(n):
        assert got[i] == (want_y[i], int(want_err[i])), (i, acc[i], bias[i], mult[i], shift[i])


def _run_requant(cfg, acc, bias, mult, shift, zp):
    """The requant stage's ``(y, err)`` of each case, one case per cycle."""
    dut = RequantStage(cfg)
    n = len(acc)
    got = []

    async def bench(ctx):
        ctx.set(dut.advance, (1 << len(dut.advance)) - 1)
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
    return got[:n]


def test_requant_stage_left_shifts_at_the_int32_edges():
    """Every shift of the SPEC's range, with accb inside, at and just beyond int32 / 2^left.

    The left shift is folded into the rounding shift after the product, so the edges of the
    range check and both extreme multipliers are where it would go wrong.
    """
    from golden.tables import OUT_SHIFT_MAX, OUT_SHIFT_MIN
    cfg = TINY
    rng = np.random.default_rng(23)
    n = 2000
    shift = np.resize(np.arange(OUT_SHIFT_MIN, OUT_SHIFT_MAX + 1), n)
    mult = rng.integers(1 << 30, 1 << 31, n)
    mult[::7], mult[1::7] = 1 << 30, (1 << 31) - 1
    bias = rng.integers(-(1 << 31), 1 << 31, n)
    zp = rng.integers(-128, 128, n)
    accb = np.empty(n, np.int64)
    for i in range(n):
        lim = 1 << (31 - max(int(shift[i]), 0))
        edges = (-lim, lim - 1, lim, -lim - 1, 0, -1, 1)
        accb[i] = edges[i % 7] if i % 3 else rng.integers(-lim, lim)
    acc = accb - bias
    want_y, want_err = requantize(acc[None, :], bias=bias, out_mult=mult, out_shift=shift,
                                  out_zp=zp)
    got = _run_requant(cfg, acc, bias, mult, shift, zp)
    for i in range(n):
        assert got[i] == (want_y[0, i], int(want_err[0, i])), (i, acc[i], bias[i], mult[i],
                                                               shift[i])


def test_requant_stage_rounds_ties_at_every_shift():
    """Exact rounding ties of every shift, both signs: RDBPOT's halves for a right shift (with
    M0 = 2^30, SRDHM(2s, M0) = s), SRDHM's own for a left shift (M0 = 2^30 + 2^(30 − left)
    and an odd accb make ``accb · M0`` an odd multiple of 2^(30 − left)), and one step either
    side of each tie. The rounding bias is a thermometer and a carry, so each shift's bias
    and its sign rule are what it checks."""
    from golden.tables import OUT_SHIFT_MAX, OUT_SHIFT_MIN
    cfg = TINY
    rng = np.random.default_rng(31)
    acc, mult, shift = [], [], []
    for sh in range(OUT_SHIFT_MIN, OUT_SHIFT_MAX + 1):
        for _ in range(6):
            if sh <= 0:
                e = -sh
                k = int(rng.integers(0, 1 << max(0, 29 - e)))
                tie = k * (1 << e) + ((1 << e) >> 1)
                for s_val in (tie, -tie, tie + 1, -tie - 1, tie - 1, -tie + 1):
                    acc.append(2 * s_val)
                    mult.append(1 << 30)
                    shift.append(sh)
            else:
                lim = 1 << (31 - sh)
                odd = int(rng.integers(-lim // 2, lim // 2)) * 2 + 1
                for a in (odd, -odd, odd + 1, odd - 1):
                    acc.append(int(np.clip(a, -lim, lim - 1)))
                    mult.append((1 << 30) + (1 << (30 - sh)))
                    shift.append(sh)
    acc, mult, shift = (np.array(v, np.int64) for v in (acc, mult, shift))
    n = len(acc)
    bias = np.zeros(n, np.int64)
    zp = np.zeros(n, np.int64)
    want_y, want_err = requantize(acc[None, :], bias=bias, out_mult=mult, out_shift=shift,
                                  out_zp=zp)
    got = _run_requant(cfg, acc, bias, mult, shift, zp)
    for i in range(n):
        assert got[i] == (want_y[0, i], int(want_err[0, i])), (i, acc[i], mult[i], shift[i])


def test_requant_stage_zero_points_across_int32():
    """Zero points anywhere in int32, each against a quotient that brings the sum to the edges
    of int8 (and one step beyond): the saturation reads the int8 range from the sum's top
    bits, so wide zero points and sums just outside int8 are where it would go wrong."""
    from golden.gemm import rdbpot, srdhm
    from golden.tables import INT32_MAX, INT32_MIN
    cfg = TINY
    rng = np.random.default_rng(29)
    n = 1200
    mult = rng.integers(1 << 30, 1 << 31, n)
    shift = rng.integers(-31, 1, n)
    acc = rng.integers(INT32_MIN, INT32_MAX + 1, n)
    acc[::5] = rng.integers(-(1 << 12), 1 << 12, n // 5)
    bias = np.zeros(n, np.int64)
    quot = rdbpot(srdhm(acc, mult), -shift).astype(np.int64)
    edge = np.resize(np.array([127, 128, -128, -129, 0, 126, -127]), n)
    zp = np.clip(edge - quot + rng.integers(-2, 3, n) * (np.arange(n) % 2),
                 INT32_MIN, INT32_MAX)
    zp[:4] = INT32_MAX, INT32_MIN, INT32_MAX - 1, INT32_MIN + 1
    want_y, want_err = requantize(acc[None, :], bias=bias, out_mult=mult, out_shift=shift,
                                  out_zp=zp)
    assert {127, -128} <= set(want_y[0].tolist()) and len(set(want_y[0].tolist())) > 8
    got = _run_requant(cfg, acc, bias, mult, shift, zp)
    for i in range(n):
        assert got[i] == (want_y[0, i], int(want_err[0, i])), (i, acc[i], mult[i], shift[i],
                                                               zp[i])


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


@pytest.mark.slow
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


@pytest.mark.parametrize("flag", ["invalid_codes", "nan_scale", "window_overflow", "nan_exp"])
def test_error_flags(flag):
    mode = {"invalid_codes": Mode("ternary", "2:4", "none"),
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
