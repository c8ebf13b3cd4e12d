"""`gen.pack` round trip: pack GEMMs, read every stream back through the layouts, compare.

Each beat the packer produced is decoded with the hardware's own `lib.data` layouts
(``Layout.from_bits``) and compared with the layer and activations it was packed from, tile by
tile; result beats built through the result layout come back from `Packer.assemble`.
"""

import numpy as np
import pytest
from amaranth.hdl import Const
from amaranth.lib import data

from gen.pack import Packer, PackError
from gen.presets import preset
from golden.sparsity import padding_idx, parse_sparsity
from golden.tables import E8M0_BIAS, MX_BLOCK
from hw.config import FORMAT_BITS, FORMAT_CODES, SCALE_CODES, SPARSITY_CODES, Mode
from hw.lanemap import lane_map
from verif.cases import random_case

CASES = [
    ("tiny", Mode("int8"), 5, 64, 3, None),
    ("tiny", Mode("int4", "2:4", "int"), 3, 64, 5, 16),
    ("tiny", Mode("uint4", "dense", "int"), 2, 96, 2, 32),
    ("tiny", Mode("ternary", "2:4", "pow2", mx_act=True), 3, 64, 3, None),
    ("tiny", Mode("fp4_e2m1", "1:4", "pow2", out_stage="requant"), 4, 64, 5, None),
    ("default", Mode("int2", "4:8", "none", out_stage="requant"), 6, 128, 7, None),
    ("default", Mode("mxint8", "2:8", "pow2"), 4, 64, 4, None),
]


def _ids(case):
    return f"{case[0]}-{case[1].name}"


def _lanes(cfg, mode, slot_bytes, lanes):
    """The ``lanes`` stored codes of a beat, read from their multipliers (`hw.lanemap`)."""
    bits = FORMAT_BITS[mode.fmt]
    lps = 8 // bits
    order = lane_map(cfg).modes[(mode.fmt, mode.sparsity)]
    return [(slot_bytes[s] >> (q // (4 // lps)) * bits) & ((1 << bits) - 1)
            for s, q in order.lane_mult[:lanes]]


def _check_act_beat(cfg, lay, mode, word, x, x_exp, m0, kb, step):
    """One activation beat: every row's window (at the lane order's positions), MX exponent."""
    M = x.shape[0]
    k_pos = lane_map(cfg).modes[(mode.fmt, mode.sparsity)].k_pos
    act = lay.act_beat.from_bits(word)
    for r in range(cfg.rows):
        inside = m0 + r < M
        want = [0] * cfg.window
        if inside:
            for k, v in enumerate(x[m0 + r, kb * step:(kb + 1) * step].tolist()):
                want[k_pos[k]] = v
        assert list(act.x[r]) == want, (m0, kb, r)
        if lay.has_x_exp:
            mx = x_exp is not None and inside
            e = x_exp[m0 + r, kb * step // MX_BLOCK] if mx else E8M0_BIAS
            assert act.x_exp[r] == e


def _check_packet(cfg, pkt, layer, mode, n, kb, lanes, g, padding):
    """One column's weight packet: lane codes, indices, scale and zero point."""
    inside = n < int(layer.shape[1])
    rows = slice(kb * lanes, (kb + 1) * lanes)
    codes = _lanes(cfg, mode, list(pkt.codes), lanes)
    assert codes == (layer.codes[rows, n].tolist() if inside else [0] * lanes)
    if cfg.idx_bits:
        order = lane_map(cfg)
        mults = order.modes[(mode.fmt, mode.sparsity)].lane_mult[:lanes]
        idx = [list(pkt.idx)[order.idx_index(mult)] for mult in mults]
        if layer.idx is None:
            want = [0] * lanes
        else:
            want = (layer.idx[rows, n] if inside else padding[rows]).tolist()
        assert idx == want
    if mode.scale_kind == "int":
        bits = cfg.scale_field_bits
        scale = pkt.scale - (1 << bits) * (pkt.scale >> (bits - 1))  # as signed
        assert scale == (int(layer.scales[g, n]) if inside else 0)
    elif mode.scale_kind == "pow2":
        assert pkt.scale == (int(layer.scales[g, n]) if inside else E8M0_BIAS)
    if layer.zeros is not None:
        assert pkt.zero == (int(layer.zeros[g, n]) if inside else 0)


def _check_prm_beat(cfg, lay, word, layer, n0):
    """One parameter beat: the requant parameters of every column inside the layer."""
    prm = data.ArrayLayout(lay.col_params, cfg.cols).from_bits(word)
    for c in range(cfg.cols):
        n = n0 + c
        if n < int(layer.shape[1]):
            want = (int(layer.bias[n]), int(layer.out_mult[n]), int(layer.out_shift[n]),
                    int(layer.out_zp[n]))
            assert (prm[c].bias, prm[c].mult, prm[c].shift, prm[c].zp) == want


def _check_results_round_trip(cfg, packer, prog, M, N, out_stage):
    """Result rows built through the result layout come back from `Packer.assemble`."""
    rng = np.random.default_rng(3)
    lim = 128 if out_stage == "requant" else 1 << (cfg.acc_bits - 1)
    y = rng.integers(-lim, lim, (len(prog.tiles) * cfg.rows, cfg.cols))
    err = rng.random(y.shape) < 0.2
    words = [
        Const.cast(packer.lay.res_beat.const({
            "value": y[i].tolist(), "err": err[i].astype(int).tolist(),
            "last": int(i % cfg.rows == cfg.rows - 1)}).as_value()).value
        for i in range(y.shape[0])
    ]
    assert packer.unpack_result(words[0]) == (y[0].tolist(), err[0].astype(int).tolist(),
                                              int(cfg.rows == 1))
    got_y, got_err = packer.assemble(prog, words)
    want_y = np.zeros((M, N), np.int64)
    want_err = np.zeros((M, N), bool)
    for t, (m0, n0) in enumerate(prog.tiles):
        r = np.arange(cfg.rows)
        c = np.arange(cfg.cols)
        keep_r, keep_c = r[m0 + r < M], c[n0 + c < N]
        want_y[np.ix_(m0 + keep_r, n0 + keep_c)] = y[t * cfg.rows + keep_r][:, keep_c]
        want_err[np.ix_(m0 + keep_r, n0 + keep_c)] = err[t * cfg.rows + keep_r][:, keep_c]
    assert np.array_equal(got_y, want_y.astype(got_y.dtype))
    assert np.array_equal(got_err, want_err)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_every_stream_round_trips(case):
    preset_name, mode, M, K, N, group = case
    cfg = preset(preset_name)
    packer = Packer(cfg)
    lay = packer.lay
    layer, x, x_exp = random_case(11, cfg, mode, M, K, N, group=group)
    prog = packer.pack(layer, x, x_exp=x_exp, out_stage=mode.out_stage)
    n_sp, _ = parse_sparsity(mode.sparsity)
    step, kb_count = prog.step, prog.k_beats
    lanes = cfg.lanes_used(mode.fmt, mode.sparsity)
    G = int(layer.group)
    padding = padding_idx(kb_count * lanes, n_sp)

    word = lay.mode.from_bits(prog.mode_word)
    assert (word.fmt, word.sparsity, word.scale) == (
        FORMAT_CODES[mode.fmt], SPARSITY_CODES[mode.sparsity], SCALE_CODES[mode.scale_kind])
    assert (word.mx_act, word.requant) == (int(mode.mx_act), int(mode.out_stage == "requant"))
    assert (word.k_beats, word.group_beats) == (K // step, G // step)
    assert len(prog.tiles) == -(-M // cfg.rows) * -(-N // cfg.cols)
    assert prog.beats == len(prog.tiles) * kb_count == len(prog.wgt_beats)

    for t, (m0, n0) in enumerate(prog.tiles):
        for kb in range(kb_count):
            beat = t * kb_count + kb
            _check_act_beat(cfg, lay, mode, prog.act_beats[beat], x, x_exp, m0, kb, step)
            wgt = lay.wgt_beat.from_bits(prog.wgt_beats[beat])
            for c in range(cfg.cols):
                _check_packet(cfg, wgt.col[c], layer, mode, n0 + c, kb, lanes, kb * step // G,
                              padding)
        if mode.out_stage == "requant":
            _check_prm_beat(cfg, lay, prog.prm_beats[t], layer, n0)
    assert len(prog.prm_beats) == (len(prog.tiles) if mode.out_stage == "requant" else 0)
    _check_results_round_trip(cfg, packer, prog, M, N, mode.out_stage)


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_unpack_results_equals_unpack_result_word_by_word(name):
    """The numpy decode of many result beats equals the layout's own, beat by beat."""
    packer = Packer(preset(name))
    width = packer.lay.res_beat.size
    rng = np.random.default_rng(11)
    words = [int.from_bytes(rng.bytes(width // 8 + 1), "little") % (1 << width)
             for _ in range(500)] + [0, (1 << width) - 1]
    values, err, last = packer.unpack_results(words)
    for i, word in enumerate(words):
        assert (values[i].tolist(), err[i].astype(int).tolist(), int(last[i])) == \
            packer.unpack_result(word)


def test_assemble_checks_the_last_flags_and_the_count():
    cfg = preset("tiny")
    packer = Packer(cfg)
    layer, x, _ = random_case(5, cfg, Mode("int8"), cfg.rows, 32, cfg.cols)
    prog = packer.pack(layer, x)
    row = {"value": [0] * cfg.cols, "err": [0] * cfg.cols}
    words = [Const.cast(packer.lay.res_beat.const({**row, "last": 0}).as_value()).value
             for _ in range(cfg.rows)]
    with pytest.raises(PackError, match="'last' flag"):
        packer.assemble(prog, words)
    with pytest.raises(PackError, match="expected"):
        packer.assemble(prog, words[:-1])
