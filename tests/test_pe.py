"""The PE's building blocks and one PE on the Amaranth simulator, compared with golden."""

import hashlib
import itertools

import numpy as np
import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from gen.presets import preset
from golden.formats import FORMATS, decode, pow2_exponent
from golden.gemm import gemm
from golden.sparsity import parse_sparsity
from hw.config import FORMAT_BITS, FORMAT_CODES, LANE_SHIFT_CHUNK, SPARSITY_CODES
from hw.lanemap import lane_map
from hw.pe import ActivationDecode, ActivationSelect, LaneDecoder
from verif.amsim import run_gemm
from verif.cases import random_case

TINY = preset("tiny")


class LaneMac(wiring.Component):
    """Decoder of one quarter followed by the lane's multiplier, as the PE wires them."""

    def __init__(self, cfg, quarter):
        self.dec = LaneDecoder(cfg, quarter)
        width = 8 + self.dec.value_bits + LANE_SHIFT_CHUNK * self.dec.coarse_max
        super().__init__({"slot": In(8), "fmt": In(len(self.dec.fmt)), "zero": In(4),
                          "x": In(signed(8)), "product": Out(signed(width)), "invalid": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dec = dec = self.dec
        product = dec.value * self.x
        if dec.coarse_max:  # fp8: v · 2**(CHUNK · c), as `LaneProducts` shifts it
            product = product << (dec.coarse * LANE_SHIFT_CHUNK)
        m.d.comb += [dec.slot.eq(self.slot), dec.fmt.eq(self.fmt), dec.zero.eq(self.zero),
                     self.product.eq(product), self.invalid.eq(dec.invalid)]
        return m


def _config_with(fmt: str):
    """`TINY`, or with an opt-in format (fp8, uint2) enabled beside its own."""
    if fmt in TINY.formats:
        return TINY
    return TINY.replace(formats=(*TINY.formats, fmt), scale_kinds=("none", "int"),
                        mx_activations=False, k_max=256)


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
    zeros = range(FORMATS[fmt].zero_max + 1)
    rng = np.random.default_rng(7)
    for sub in range(lps):
        quarter = sub * (4 // lps)
        dut = LaneMac(_config_with(fmt), quarter)

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
    which the packer writes at window position ``k_pos[k]``. The indices of a valid layer
    rise strictly within a block, so slot ``j % N`` has ``j % N ≤ idx ≤ M − N + j % N``; any
    other index (random ones here, up to the field's width) raises ``bad_idx``.
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
                for _ in range(16):
                    window = rng.integers(-128, 128, cfg.window)
                    idx = rng.integers(0, 1 << cfg.idx_bits, cfg.max_lanes)
                    ctx.set(sel.window, [int(v) for v in window])
                    ctx.set(sel.idx, [int(v) for v in idx])
                    assert ctx.get(sel.active) == int(j is not None), (fmt, pattern, s, q)
                    if j is None:
                        continue
                    lane_idx = int(idx[order.idx_index((s, q))]) if m > 1 else 0
                    within = m == 1 or j % n <= lane_idx <= m - n + j % n
                    assert ctx.get(sel.bad_idx) == int(not within), (fmt, pattern, j, lane_idx)
                    if within:
                        k = (j // n) * m + lane_idx
                        assert ctx.get(sel.x) == window[lanes.k_pos[k]], (fmt, pattern, j)

        _run_comb(sel, bench)


PE_CFG = TINY.replace(rows=1, cols=1, name="upe_pe")


def _check_random_gemm(cfg, mode, M, K, N):
    """A random GEMM of ``mode``, seeded by the mode's name, on ``cfg``'s array = golden."""
    # A stable digest of the mode (``hash`` of a str is salted per process).
    seed = int.from_bytes(hashlib.sha256(mode.name.encode()).digest()[:4], "little") % 1000
    layer, x, x_exp = random_case(seed, cfg, mode, M, K, N)
    want, want_err = gemm(x, layer, x_exp=x_exp, frac_bits=cfg.frac_bits, t_min=cfg.t_min,
                          t_max=cfg.t_max)
    y, err, _ = run_gemm(cfg, layer, x, x_exp=x_exp)
    np.testing.assert_array_equal(y, want, err_msg=mode.name)
    np.testing.assert_array_equal(err, want_err, err_msg=mode.name)


@pytest.mark.parametrize("mode", [m for m in PE_CFG.modes if m.sparsity in ("dense", "2:4")],
                         ids=lambda m: m.name)
def test_pe_random(mode):
    """One PE (a 1×1 array) on a seeded random GEMM per format × scale kind."""
    _check_random_gemm(PE_CFG, mode, 2, 64, 2)


def test_pe_pow2_floors_each_group_once():
    """The accumulator's fraction bits: ``floor(P_g · 2^shift)`` per group, not per beat
    and not once over the sum. Shift −1 on every group; ``P`` = 2 (two beats of 1), 1, 1:
    the SPEC's 1 + 0 + 0 = 1, against 2 unfloored and 0 floored per beat."""
    mode = next(m for m in PE_CFG.modes if m.name == "int8-dense-pow2")
    layer, x, x_exp = random_case(0, PE_CFG, mode, 1, 96, 1)
    e_w = next(e for e in range(255)
               if int(pow2_exponent("int8", np.array([e]))[0]) + PE_CFG.frac_bits == -1)
    codes = np.zeros_like(layer.codes)
    codes[[0, 31, 32, 64], 0] = 1  # int8 code 1 is the value 1
    assert PE_CFG.step_k("int8", "dense") < 32  # k 0 and 31 lie in different beats
    layer = layer.copy(codes=codes, scales=np.full_like(layer.scales, e_w))
    x = np.ones_like(x)
    want, want_err = gemm(x, layer, frac_bits=PE_CFG.frac_bits, t_min=PE_CFG.t_min,
                          t_max=PE_CFG.t_max)
    assert want.tolist() == [[1]] and not want_err.any()
    y, err, _ = run_gemm(PE_CFG, layer, x)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(err, want_err)


@pytest.mark.parametrize("dsp_lanes", [0, 8, len(PE_CFG.lanes)])
def test_pe_hard_lanes(dsp_lanes):
    """Lanes moved between DSP products and shift-add logic compute the same GEMM."""
    cfg = PE_CFG.replace(dsp_lanes=dsp_lanes)
    quarters = {q for _, q in cfg.hard_lanes}
    assert len(cfg.hard_lanes) == dsp_lanes and (dsp_lanes < 8 or quarters >= {0, 2})
    for mode in cfg.modes:
        if mode.sparsity not in ("dense", "2:4") or mode.fmt not in (
                "int8", "uint4", "fp4_e2m1", "int2"):
            continue
        _check_random_gemm(cfg, mode, 2, 64, 2)


@pytest.mark.parametrize("name", ["int8-4:8-none", "int4-2:8-int", "int2-2:4-none"])
def test_select_lead_down_the_column(name):
    """A 2×2 array whose DSP and LUT lanes both have select muxes (``dsp_lanes`` = 4: the
    quarter-0 lanes on DSPs, quarter 2 in LUTs): the DSP lanes' early select, with positions
    a cycle ahead of the weights through every PE's forwarding, equals the LUT lanes' select."""
    cfg = TINY.replace(dsp_lanes=4)
    mode = next(m for m in cfg.modes if m.name == name)
    reach = lane_map(cfg).reach
    assert any(len(reach(mult)) > 1 for mult in cfg.hard_lanes)
    assert any(len(reach(mult)) > 1 for mult in set(cfg.lanes) - cfg.hard_lanes)
    _check_random_gemm(cfg, mode, 4, 64, 4)


def test_activation_decode_every_fp8_code():
    """`ActivationDecode` (row edge): every code of each fp8 activation format, and int8 codes,
    in every window position: ``v · 2**(8c)`` = the golden integer, NaN / Inf give 0 and
    ``bad``."""
    cfg = preset("mxfp8")
    dut = ActivationDecode(cfg)
    rng = np.random.default_rng(11)
    failures = []

    async def bench(ctx):
        for fmt, x_fmt in cfg.x_fmt_codes.items():
            ctx.set(dut.x_fmt, x_fmt)
            codes = np.arange(256)
            if fmt is None:  # int8 / MXINT8 codes pass through
                values, invalid = codes - 256 * (codes >= 128), np.zeros(256, bool)
            else:
                values, invalid = decode(fmt, codes)
            for code in codes:
                # The code at one position, valid random codes elsewhere.
                window = rng.integers(0, 0x40, cfg.window)
                pos = int(code) % cfg.window
                window[pos] = code
                ctx.set(dut.codes, [int(c) - 256 * (c >= 128) for c in window])
                v = ctx.get(dut.window[pos].v)
                c = ctx.get(dut.window[pos].c)
                got = (v << (LANE_SHIFT_CHUNK * c), ctx.get(dut.bad))
                want = (0 if invalid[code] else int(values[code]), int(invalid[code]))
                if got != want:
                    failures.append(f"{fmt} code {code:#04x}: {got} != {want}")

    _run_comb(dut, bench)
    assert not failures, "; ".join(failures[:5])
