"""docs/INTERFACE.md's rules are enough to drive the core: beats built here from the manifest
and the documented rules alone (no Packer, no Layouts) equal `gen.pack.Packer`'s bit for bit.
"""

import numpy as np
import pytest

from gen.emit import manifest
from gen.pack import Packer
from gen.presets import PRESETS
from golden.compress import compress
from golden.host import requant_params


def _field(value: int, offset: int, width: int) -> int:
    return (int(value) & ((1 << width) - 1)) << offset


def documented_program(man, layer, x, out_stage):
    """Mode word, act/wgt/prm beats in stream order, following docs/INTERFACE.md."""
    lay = man["layouts"]
    rows, cols = man["rows"], man["cols"]
    mode = next(m for m in man["modes"] if (m["format"], m["sparsity"], m["scale_kind"],
                                            m["mx_act"]) ==
                (layer.format, layer.sparsity, layer.scale_kind, False))
    step, lanes = mode["step_k"], mode["lanes_used"]
    K, N = layer.shape
    n_sp, m_sp = (1, 1) if layer.sparsity == "dense" else map(int, layer.sparsity.split(":"))
    k_beats, group_beats = K // step, layer.group // step
    codes = man["codes"]
    m = lay["mode"]
    word = (_field(codes["format"][layer.format], m["fmt"]["offset"], m["fmt"]["width"])
            | _field(codes["sparsity"][layer.sparsity], m["sparsity"]["offset"],
                     m["sparsity"]["width"])
            | _field(codes["scale"][layer.scale_kind], m["scale"]["offset"], m["scale"]["width"])
            | _field(int(out_stage == "requant"), m["requant"]["offset"], 1)
            | _field(group_beats, m["group_beats"]["offset"], m["group_beats"]["width"])
            | _field(k_beats, m["k_beats"]["offset"], m["k_beats"]["width"]))
    bits = man["slot_lanes"][layer.format]["bits"]
    lps = man["slot_lanes"][layer.format]["lanes_per_slot"]
    pkt = lay["packet"]
    pkt_bits = sum(f["width"] for f in pkt.values())
    idx_w = pkt["idx"]["layout"]["elem_width"] if "idx" in pkt else 0
    order = man["lane_map"][f"{layer.format}/{layer.sparsity}"]
    M = x.shape[0]
    act, wgt, prm = [], [], []
    cp = lay["col_params"]
    cp_bits = sum(f["width"] for f in cp.values())
    for n0 in range(0, N, cols):                      # n-tiles outer
        for m0 in range(0, M, rows):                  # m-tiles inner
            if out_stage == "requant":
                w = 0
                for c in range(cols):
                    base = c * cp_bits
                    vals = {"bias": 0 if layer.bias is None else layer.bias[n0 + c],
                            "mult": layer.out_mult[n0 + c], "shift": layer.out_shift[n0 + c],
                            "zp": 0 if layer.out_zp is None else layer.out_zp[n0 + c]}
                    for key, v in vals.items():
                        w |= _field(v, base + cp[key]["offset"], cp[key]["width"])
                prm.append(w)
            for b in range(k_beats):
                a = 0
                xw = lay["act_beat"]["x"]["layout"]["elem_width"]  # one row's window
                for r in range(rows):
                    for v in range(step):  # beat-local k at its window position
                        xv = x[m0 + r, b * step + v] if m0 + r < M else 0
                        pos = order["k_pos"][v]
                        a |= _field(xv, lay["act_beat"]["x"]["offset"] + r * xw + 8 * pos, 8)
                    if "x_exp" in lay["act_beat"]:
                        a |= _field(127, lay["act_beat"]["x_exp"]["offset"] + 8 * r, 8)
                act.append(a)
                w = 0
                for c in range(cols):
                    base = c * pkt_bits
                    for lane in range(lanes):
                        row = b * lanes + lane
                        code = layer.codes[row, n0 + c]
                        slot, quarter = order["lane_mult"][lane]  # the lane order
                        j = quarter // (4 // lps)
                        w |= _field(code, base + pkt["codes"]["offset"] + 8 * slot + j * bits,
                                    bits)
                        if idx_w and layer.idx is not None:
                            at = order["lane_idx"][lane]
                            w |= _field(layer.idx[row, n0 + c],
                                        base + pkt["idx"]["offset"] + at * idx_w, idx_w)
                    if layer.scales is not None and "scale" in pkt:
                        g = (b * step) // layer.group
                        w |= _field(layer.scales[g, n0 + c], base + pkt["scale"]["offset"],
                                    pkt["scale"]["width"])
                wgt.append(w)
    return word, act, wgt, prm


@pytest.mark.parametrize("fmt, sparsity, out_stage", [
    ("int8", "dense", "raw"), ("int4", "2:4", "raw"), ("ternary", "dense", "requant"),
    ("int8", "1:4", "requant"),
])
def test_documented_packing_equals_the_packer(fmt, sparsity, out_stage):
    cfg = PRESETS["tiny"]
    man = manifest(cfg)
    rng = np.random.default_rng(4)
    K, M, N = 64, 4, 4  # whole tiles: the documented padding is not exercised here
    layer = compress(rng.standard_normal((K, N)), fmt=fmt, sparsity=sparsity, group=32,
                     scale_kind="int")
    if out_stage == "requant":
        layer = requant_params(layer, 0.01, 0.05, bias=rng.standard_normal(N))
    x = rng.integers(-127, 128, (M, K)).astype(np.int8)
    prog = Packer(cfg).pack(layer, x, out_stage=out_stage)
    word, act, wgt, prm = documented_program(man, layer, x, out_stage)
    assert word == prog.mode_word
    assert act == prog.act_beats
    assert wgt == prog.wgt_beats
    assert prm == prog.prm_beats
