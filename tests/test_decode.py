"""The decode flow (flows.decode): beat sizes, and the throttled RTL against the model."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from flows.decode import MODES, beat_bits_fn, decode_layers, main, measure
from flows.perf import ArrayTiming, weight_bits_per_beat
from gen.emit import manifest
from gen.presets import preset
from hw.config import Mode

DEFAULT = preset("default")


def test_beat_bits_count_what_the_model_counts():
    """Per tile: codes and indices every beat, the group's scale once per group streamed."""
    timing = ArrayTiming.from_manifest(manifest(DEFAULT))
    bits = beat_bits_fn(timing)
    mode = Mode("int4", "2:4", "int")
    step = timing.step_k("int4", "2:4")
    f = SimpleNamespace(mode=mode, step=step, group_beats=4)
    beats = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0, 2, 5, 6])   # a full tile, a block-sparse one
    got = bits(f, beats)
    wb = weight_bits_per_beat(timing, "int4", "2:4", "int", 4 * step)
    base = timing.cols * (wb["codes"] + wb["idx"])
    scale = timing.cols * 16
    assert base == 4 * (8 * 4 + 8 * 2)
    want = np.full(beats.size, base)
    want[[0, 4, 8, 10]] += scale       # first beat of each group in each tile
    np.testing.assert_array_equal(got, want)
    # Over a full tile the sum is the model's per-beat total times the beats.
    assert got[:8].sum() == pytest.approx(8 * timing.cols * wb["total"])


def test_decode_layers_modes():
    layers = decode_layers(128, 16, seed=1, block=(64, 4), density=0.5)
    assert [lab for lab, _, _ in layers] == [lab for lab, _, _ in MODES]
    for (_, _, blocked), (_, mode, layer) in zip(MODES, layers, strict=True):
        assert (layer.block_mask is not None) == blocked
        assert (layer.format, layer.sparsity) == (mode.fmt, mode.sparsity)
        if blocked:
            assert 0 < layer.block_mask.mean() < 1


@pytest.mark.sim
def test_throttled_rtl_is_bit_exact_and_follows_the_model():
    """K = 128, N = 16: every mode at M = 1 and 5 (two row tiles), W = 64, 100 and full.

    Tolerance: without a throttle the model is cycle-exact; behind W the RTL may differ by at
    most one cycle per tile (the model rounds every tile up to whole cycles, the credit counter
    carries the fraction on, and puts a group's scale on its first beat instead of amortising
    it) plus the wait for the first beat (the model counts it, the RTL's count starts at the
    first beat taken).
    """
    layers = decode_layers(128, 16, seed=3, block=(64, 4), density=0.5)
    rows = measure(DEFAULT, layers, [1, 5], [64, 100, None], seed=3, progress=lambda s: None)
    assert len(rows) == 4 * 2 * 3
    timing = ArrayTiming.from_manifest(manifest(DEFAULT))
    for r in rows:
        assert r["matches_golden"], r
        if r["W"] is None:
            assert r["rtl_cycles"] == r["model_cycles"], r
            continue
        tiles = math.ceil(r["M"] / timing.rows) * math.ceil(r["N"] / timing.cols)
        first = math.ceil(timing.cols * 8 * timing.slots * 2 / r["W"])
        assert abs(r["rtl_cycles"] - r["model_cycles"]) <= tiles + first, r
    dense64 = next(r for r in rows if r["mode"] == "dense int8" and r["W"] == 64
                   and r["M"] == 1)
    assert dense64["limiter"] == "weight bandwidth"
    assert dense64["rtl_cycles"] >= 2 * dense64["beats"] - 1   # 128 bits a beat at 64 a cycle


@pytest.mark.sim
def test_command_writes_the_tables(tmp_path, capsys):
    rc = main(["-K", "64", "-N", "8", "--m", "1", "--w", "64", "--prefill-m", "8",
               "--no-layer", "--out", str(tmp_path / "d")])
    assert rc == 0
    text = (tmp_path / "d.md").read_text()
    assert "| dense int8 (prefill) | 8 | full |" in text
    assert "bit-exact against golden: all" in text
    assert (tmp_path / "d.json").exists()
    assert "block 2:4 int4" in capsys.readouterr().out


def test_rejects_bad_lists():
    with pytest.raises(SystemExit):
        main(["--w", "64,x"])
    with pytest.raises(SystemExit):
        main(["--m", "0"])
