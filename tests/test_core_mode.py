"""Illegal mode words: every result of the GEMM carries the error flag, and the core drains."""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Const
from amaranth.sim import Simulator

from gen.pack import Packer
from gen.presets import PRESETS
from golden.gemm import gemm
from hw.config import FORMAT_CODES, MX_BLOCK, SCALE_CODES, SPARSITY_CODES, Mode
from hw.core import Core
from hw.layouts import Layouts
from verif.amsim import simulate_program
from verif.cases import random_case


def _legal_program(cfg):
    dense = [m for m in cfg.modes if m.sparsity == "dense"]
    # With fp8 activations: one whose weight format some fp8 activation format does not
    # pair with (`ArrayConfig.x_pairs`), so that pair's word differs in ``x_fmt`` only.
    unpaired = [m for m in dense if m.x_format and _unpaired(cfg, m.fmt)]
    mode = (unpaired or dense)[0]
    k = 64 if cfg.k_max >= 64 else cfg.k_max
    layer, x, x_exp = random_case(3, cfg, mode, cfg.rows, k, cfg.cols)
    packer = Packer(cfg)
    prog = packer.pack(layer, x, x_exp=x_exp, x_format=mode.activation_format)
    return mode, packer, prog, (layer, x, x_exp)


def _unpaired(cfg, fmt: str) -> list[str]:
    return [x for x in cfg.fp8_activations if (fmt, x) not in cfg.x_pairs]


def _fields(cfg, word):
    lay = Layouts(cfg)
    out = {}
    for name, field in lay.mode:
        out[name] = (word >> field.offset) & ((1 << field.width) - 1)
    return out


def _word(cfg, **fields):
    lay = Layouts(cfg)
    return Const.cast(lay.mode.const(fields).as_value()).value


def _illegal_words(cfg, legal):
    """Mode words this build must refuse, named by what is wrong with them."""
    base = _fields(cfg, legal)
    out = {}
    missing = [f for f in FORMAT_CODES if f not in cfg.formats]
    if missing:
        out["format not enabled"] = {**base, "fmt": FORMAT_CODES[missing[0]]}
    # The field is as wide as the enabled codes need: the next code, when it still fits.
    beyond = max(FORMAT_CODES[f] for f in cfg.formats) + 1
    if beyond < 1 << Layouts(cfg).mode.members["fmt"].width:
        out["format code beyond the enabled ones"] = {**base, "fmt": beyond}
    missing = [p for p in SPARSITY_CODES if p not in cfg.sparsity]
    if missing:
        out["sparsity not enabled"] = {**base, "sparsity": SPARSITY_CODES[missing[0]]}
    missing = [k for k in SCALE_CODES if k not in cfg.scale_kinds]
    if missing:
        out["scale kind not enabled"] = {**base, "scale": SCALE_CODES[missing[0]]}
    if base["scale"] != SCALE_CODES["pow2"]:
        out["MX activations without pow2"] = {**base, "mx_act": 1}
    out["group_beats = 0"] = {**base, "group_beats": 0}
    out["group_beats > k_beats"] = {**base, "group_beats": base["k_beats"] + 1}
    if not cfg.requant:
        out["requant not generated"] = {**base, "requant": 1}
    if cfg.fp8_activations and base["x_fmt"]:
        out["fp8 activations without MX"] = {**base, "mx_act": 0}
        fmt = next(f for f, code in FORMAT_CODES.items() if code == base["fmt"])
        for x in _unpaired(cfg, fmt)[:1]:
            out[f"{fmt} weights with {x} activations (not a pair)"] = {
                **base, "x_fmt": cfg.x_fmt_codes[x]}
        beyond = len(cfg.fp8_activations) + 1
        if beyond < 1 << Layouts(cfg).mode.members["x_fmt"].width:
            out["x_fmt beyond the enabled formats"] = {**base, "x_fmt": beyond}
    return out


@pytest.mark.parametrize("name", list(PRESETS))
def test_illegal_mode_words_raise_the_error_flag(name):
    cfg = PRESETS[name].replace(rows=2, cols=2, k_max=min(PRESETS[name].k_max, 1024))
    mode, packer, prog, (layer, x, x_exp) = _legal_program(cfg)
    # The legal word: exact results, no flag.
    words, _ = simulate_program(cfg, prog)
    y, err = packer.assemble(prog, words)
    want, want_err = gemm(x, layer, x_exp=x_exp, x_format=mode.activation_format,
                          frac_bits=cfg.frac_bits, t_min=cfg.t_min, t_max=cfg.t_max)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(err, want_err)
    assert not cfg.fp8_activations or mode.x_format, "the fp8 activation words are exercised"
    for what, fields in _illegal_words(cfg, prog.mode_word).items():
        bad = dataclasses.replace(prog, mode_word=_word(cfg, **fields))
        words, _ = simulate_program(cfg, bad)  # every row still comes out (no hang, no loss)
        _, err = packer.assemble(bad, words)
        assert err.all(), f"{name}: {what}: error flag not raised"


def test_pow2_group_other_than_one_mx_block_is_flagged():
    cfg = PRESETS["mxfp4"].replace(rows=2, cols=2)
    mode = Mode("fp4_e2m1", "dense", "pow2")
    layer, x, x_exp = random_case(4, cfg, mode, 2, 64, 2)
    packer = Packer(cfg)
    prog = packer.pack(layer, x, x_exp=x_exp)
    fields = _fields(cfg, prog.mode_word)
    step = cfg.step_k(mode.fmt, mode.sparsity)
    assert fields["group_beats"] == MX_BLOCK // step
    bad = dataclasses.replace(prog, mode_word=_word(cfg, **{**fields, "group_beats": 1}))
    words, _ = simulate_program(cfg, bad)
    assert packer.assemble(bad, words)[1].all()


def test_k_beats_zero_closes_every_beat_and_flags_it():
    """k_beats = 0 cannot hang the core: each beat closes a tile whose rows are flagged."""
    cfg = PRESETS["tiny"]
    _, packer, prog, _ = _legal_program(cfg)
    word = _word(cfg, **{**_fields(cfg, prog.mode_word), "k_beats": 0})
    dut = Core(cfg)
    rows = []

    async def bench(ctx):
        ctx.set(dut.mode.as_value(), word)
        ctx.set(dut.res.ready, 1)
        for i in range(2):
            ctx.set(dut.act.valid, 1)
            ctx.set(dut.wgt.valid, 1)
            ctx.set(dut.act.payload.as_value(), prog.act_beats[i])
            ctx.set(dut.wgt.payload.as_value(), prog.wgt_beats[i])
            while not ctx.get(dut.act.ready):
                await ctx.tick()
            await ctx.tick()
        ctx.set(dut.act.valid, 0)
        ctx.set(dut.wgt.valid, 0)
        for _ in range(200):
            if ctx.get(dut.res.valid):
                rows.append(ctx.get(dut.res.payload.as_value()))
            await ctx.tick()
        assert not ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(rows) == 2 * cfg.rows
    for word_ in rows:
        _, err, _ = packer.unpack_result(word_)
        assert all(err)
