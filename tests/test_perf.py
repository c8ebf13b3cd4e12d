"""The analytic performance model (`flows.perf`) against cycles measured on the RTL."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flows.perf import (
    ArrayTiming,
    act_bits_per_beat,
    block_tile_beats,
    estimate,
    estimate_mode,
    weight_bits_per_beat,
)
from gen.presets import preset
from hw.config import Mode

TINY = preset("tiny")

# (mode, M, K, N): several tiles, padded M and N, a drain-interlocked run (K/step shorter than
# the drain), MX activations, a single tile.
CASES = [
    (Mode("int8", "dense", "none"), 4, 256, 4),
    (Mode("int4", "2:4", "int"), 3, 128, 5),
    (Mode("ternary", "dense", "pow2", mx_act=True), 4, 96, 2),
    (Mode("uint4", "dense", "int"), 2, 512, 2),
]


def _timing(rows=4, cols=4, drain=13, out=4, **kw):
    return ArrayTiming(rows=rows, cols=cols, slots=4, window=16, drain_delay=drain,
                       out_latency=out, **kw)


@pytest.mark.sim
def test_model_matches_rtl_cycles():
    """Exact cycle counts of four GEMMs on the tiny preset's RTL (Verilator)."""
    from verif.cases import random_case
    from verif.runner import run_layer
    from verif.toolchain import build_model

    timing = ArrayTiming.from_manifest(json.loads(build_model(TINY, quiet=True)
                                                  .manifest.read_text()))
    for seed, (mode, M, K, N) in enumerate(CASES):
        layer, x, x_exp = random_case(seed, TINY, mode, M, K, N)
        measured = run_layer(TINY, layer, x, x_exp=x_exp).report
        est = estimate_mode(timing, M, N, K, mode.fmt, mode.sparsity, mode.scale_kind,
                            group=int(layer.group), mx_act=mode.mx_act)
        assert est.tiles == measured["tiles"]
        assert est.beats == measured["beats"]
        assert est.cycles == measured["cycles"], (mode.name, est, measured)
        assert est.ideal_cycles == pytest.approx(measured["ideal_cycles"])


# Block-sparse GEMMs: (mode, M, K, N, block, density); tiles of different lengths, tiles
# shorter than the drain interlock, blocks narrower and wider than the array.
BLOCK_CASES = [
    (Mode("int8", "dense", "none"), 4, 256, 6, (32, 1), 0.5),
    (Mode("int4", "2:4", "int"), 3, 256, 4, (16, 2), 0.3),
    (Mode("fp4_e2m1", "dense", "pow2", mx_act=True), 4, 256, 4, (32, 4), 0.5),
    (Mode("uint4", "2:8", "int", out_stage="requant"), 2, 512, 6, (64, 3), 0.25),
    (Mode("ternary", "dense", "int"), 5, 512, 4, (128, 2), 0.6),
]


@pytest.mark.sim
def test_model_matches_rtl_cycles_block_sparse():
    """Block-sparse GEMMs, bit-exact and cycle-exact against the model (one native run)."""
    from golden.gemm import gemm
    from verif.cases import block_case
    from verif.native import run_gemms_native
    from verif.toolchain import build_model

    timing = ArrayTiming.from_manifest(json.loads(build_model(TINY, quiet=True)
                                                  .manifest.read_text()))
    gemms = []
    for seed, (mode, M, K, N, block, density) in enumerate(BLOCK_CASES):
        layer, x, x_exp = block_case(50 + seed, TINY, mode, M, K, N, block, density,
                                     group=64 if mode.scale_kind == "int" else None)
        gemms.append({"layer": layer, "x": x, "x_exp": x_exp, "out_stage": mode.out_stage})
    out = run_gemms_native(TINY, gemms)
    for g, (mode, M, K, N, *_), (y, err), cycles in zip(gemms, BLOCK_CASES, out["results"],
                                                       out["cycles"], strict=True):
        layer = g["layer"]
        want, want_err = gemm(g["x"], layer, x_exp=g["x_exp"], frac_bits=TINY.frac_bits,
                              t_min=TINY.t_min, t_max=TINY.t_max, out_stage=mode.out_stage)
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(err, want_err)
        est = estimate_mode(timing, M, N, K, mode.fmt, mode.sparsity, mode.scale_kind,
                            group=int(layer.group), mx_act=mode.mx_act,
                            block_shape=layer.block_shape, block_mask=layer.block_mask)
        assert est.cycles == cycles, (mode.name, est, cycles)
        dense = estimate_mode(timing, M, N, K, mode.fmt, mode.sparsity, mode.scale_kind,
                              group=int(layer.group), mx_act=mode.mx_act)
        assert est.beats < dense.beats


def test_block_tile_beats_and_uneven_tiles():
    mask = np.array([[1, 0], [0, 0], [0, 1], [0, 0]], np.uint8)   # bk 16, bn 2 on 2 columns
    beats = block_tile_beats(4, 64, rows=2, cols=2, step=8, block_shape=(16, 2),
                             block_mask=mask)
    assert beats == [2, 2, 2, 2]   # 2 column tiles x 2 row tiles: one 16-k block each
    none_kept = block_tile_beats(2, 64, rows=2, cols=2, step=8, block_shape=(16, 2),
                                 block_mask=np.array([[1, 0]] + [[0, 0]] * 3, np.uint8))
    assert none_kept == [2, 1]     # a tile keeps one beat
    # Uneven tiles: a short tile waits for the drain interlock, a long one does not.
    e = estimate(2, 4, 64, rows=2, cols=2, step=8, drain_delay=12, out_latency=8,
                 tile_beats=[8, 1])
    assert e.cycles == 7 + max(1, 15) + 1 + 12 + 2 + 8
    assert e.beats == 9 and e.limiter == "drain interlock"
    with pytest.raises(ValueError, match="tile_beats"):
        estimate(2, 4, 64, rows=2, cols=2, step=8, drain_delay=12, out_latency=8,
                 tile_beats=[9, 1])


def test_manifest_timing_matches_config():
    """The manifest fields the model reads describe the configuration it was emitted from."""
    pytest.importorskip("amaranth")
    from gen.emit import manifest
    from hw.requant import RequantStage

    man = manifest(TINY)
    t = ArrayTiming.from_manifest(man)
    assert (t.rows, t.cols, t.slots, t.window) == (2, 2, 4, 16)
    assert t.out_latency == RequantStage.latency  # the requant pipeline, in raw mode too
    for m in man["modes"]:
        assert t.step_k(m["format"], m["sparsity"]) == m["step_k"]
        assert t.lanes_used(m["format"], m["sparsity"]) == m["lanes_used"]
    assert t.port_weight_bits == sum(f["width"] for f in man["layouts"]["packet"].values())


def test_schedule_formula():
    # Compute bound: T·B + drain + rows + out latency.
    e = estimate(8, 8, 1024, rows=4, cols=4, step=16, drain_delay=13, out_latency=4)
    assert (e.tiles, e.beats_per_tile, e.tile_period) == (4, 64, 64)
    assert e.cycles == 4 * 64 + 13 + 4 + 4
    assert e.limiter == "compute"
    assert e.ideal_cycles == 256
    # Interlocked: tiles shorter than the drain wait drain + rows + 1 cycles each.
    e = estimate(8, 8, 64, rows=4, cols=4, step=16, drain_delay=13, out_latency=4)
    assert e.tile_period == 18
    assert e.cycles == 4 + 3 * 18 + 21
    assert e.interlock_cycles == 3 * (18 - 4)
    assert e.limiter == "drain interlock"
    # One tile never waits for a drain.
    assert estimate(4, 4, 64, rows=4, cols=4, step=16, drain_delay=13,
                    out_latency=4).limiter == "compute"


def test_padding_and_partial_k():
    e = estimate(5, 3, 100, rows=4, cols=4, step=16, drain_delay=13, out_latency=1)
    assert e.tiles == 2 and e.beats_per_tile == 7
    assert e.padding_cycles == pytest.approx(2 * 7 - 5 * 3 * 100 / (16 * 16))


def test_weight_bandwidth_limits_decode():
    t = _timing(idx_bits=3, max_lanes=16, scale_field_bits=16, zero_bits=4)
    # int4 dense: 8 lanes × 4 bits per column and beat; 4 columns → 128 bits per beat.
    wb = weight_bits_per_beat(t, "int4", "dense", "int", group=128)
    assert wb["codes"] == 32 and wb["idx"] == 0
    assert wb["scales"] == pytest.approx(16 * 8 / 128)
    free = estimate_mode(t, 1, 4096, 4096, "int4", "dense", "int", group=128)
    narrow = estimate_mode(t, 1, 4096, 4096, "int4", "dense", "int", group=128, weight_bw=64)
    assert free.limiter == "compute"
    assert narrow.limiter == "weight bandwidth"
    assert narrow.stream_cycles == pytest.approx(free.stream_cycles * 4 * wb["total"] / 64,
                                                 abs=1)
    assert narrow.cycles > 2 * free.cycles
    # 2:4 int4 carries 2-bit indices per kept lane.
    wb = weight_bits_per_beat(t, "int4", "2:4", "none")
    assert wb["codes"] == 32 and wb["idx"] == 16
    assert t.step_k("int4", "2:4") == 16 and t.step_limiter("int4", "2:4") == "lanes"
    assert t.step_limiter("int2", "2:4") == "window"
    assert act_bits_per_beat(t, "int8") == 32
    assert act_bits_per_beat(t, "fp4_e2m1", mx_act=True) == 8 * 8 + 8 * 8 / 32


@pytest.mark.parametrize("bad", [dict(M=0), dict(step=0), dict(drain_delay=-1),
                                 dict(weight_bw=0)])
def test_rejects_bad_numbers(bad):
    args = dict(M=4, N=4, K=64, rows=4, cols=4, step=4, drain_delay=13, out_latency=4)
    args.update(bad)
    with pytest.raises(ValueError, match=next(iter(bad))):
        estimate(**args)


def test_from_manifest_rejects_other_json():
    with pytest.raises(ValueError, match="not a core manifest"):
        ArrayTiming.from_manifest({"rows": 4})
