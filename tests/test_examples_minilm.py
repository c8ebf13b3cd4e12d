"""examples.minilm: the block-sparse and opt-in rows of the demo (golden model only)."""

from __future__ import annotations

import numpy as np
import pytest

from examples.minilm import (
    BLOCK,
    OPT_IN_CONFIGS,
    OPT_IN_MODES,
    WEIGHT_MODES,
    LayerSpec,
    _new_row_tables,
    measure,
    slice_columns,
)
from gen.presets import preset

SPEC = LayerSpec("toy", "toy.weight", "attn_in")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    return rng.normal(0, 0.05, (128, 16)), rng.normal(0, 1.0, (12, 128))


def test_block_rows_count_the_mask_and_slice_to_the_tile(data):
    w, x = data
    cfg = preset("default")
    modes = {m.label: m for m in WEIGHT_MODES}
    plain = measure(SPEC, modes["int4/g128"], "2:4", w, x, cfg)
    row = measure(SPEC, modes["int4/g128"], "2:4", w, x, cfg, block_density=0.5)
    assert row.kind == "block" and plain.kind == "main" and row.key != plain.key
    assert row.compressed.block_mask.shape == (128 // BLOCK[0], 16 // BLOCK[1])
    assert row.bits["mask"] == pytest.approx(1 / (BLOCK[0] * BLOCK[1]))
    assert row.bits["values"] == pytest.approx(plain.bits["values"] * 0.5)
    assert row.bits["total"] < plain.bits["total"]
    tile = slice_columns(row.compressed, 8)
    assert tile.shape == (128, 8)
    np.testing.assert_array_equal(tile.block_mask, row.compressed.block_mask[:, :1])
    with pytest.raises(ValueError, match="cuts"):
        slice_columns(row.compressed, 4)


def test_opt_in_rows_run_on_their_presets(data):
    w, x = data
    rows = [measure(SPEC, mode, "dense", w, x, OPT_IN_CONFIGS[mode.preset])
            for mode in OPT_IN_MODES]
    assert all(r.kind == "optin" and r.cycles is None and not r.errors for r in rows)
    for r in rows:  # every opt-in mode is one its preset runs
        cfg = OPT_IN_CONFIGS[r.mode.preset]
        assert r.compressed.format in cfg.formats
        assert r.mode.act in ("int8", "mxint8", *cfg.fp8_activations)
    sqnr = {r.mode.label: r.sqnr_out for r in rows}
    assert sqnr["MXFP8+MXFP8 act"] > sqnr["MXFP4+MXFP8 act"] > sqnr["uint2/g64"]
    assert sqnr["NVFP4"] > 15  # the fp32 tensor scale is applied
    text = "\n".join(_new_row_tables(rows, {r.key: r for r in rows}, {}))
    assert text.count("| – | – |") == len(rows)  # no RTL run here
