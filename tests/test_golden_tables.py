"""The one table of numeric facts, walked row by row through golden, the config and the hardware.

A format that is added to `golden.tables.ELEMENT_FORMATS` but not to the golden codec, the
configuration or the lane decoder fails here by name.
"""

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import tables
from golden.formats import FORMATS, decode, decode_float, encode
from golden.quant import ELEMENT_MAX
from golden.sparsity import SPARSITY_PATTERNS, parse_sparsity
from hw.config import (
    DEFAULT_FORMATS,
    FORMAT_BITS,
    FORMAT_COARSE_MAX,
    FORMAT_CODES,
    FORMAT_POW2_ADJ,
    FORMAT_SCALES,
    FORMAT_VALUE_BITS,
    FORMAT_WMAX,
    FP8_FORMATS,
    HW_FORMATS,
    LANE_SHIFT_CHUNK,
    OPT_IN_FORMATS,
    SCALE_CODES,
    SPARSITY_CODES,
    ArrayConfig,
    ConfigError,
)
from hw.layouts import Layouts
from hw.pe import LaneDecoder

ROWS = list(tables.ELEMENT_FORMATS.values())
#: The rows the hardware implements (`hw.config.HW_FORMATS`): every row.
HW_ROWS = [r for r in ROWS if r.name in HW_FORMATS]
ALL = ArrayConfig(slots=4, window=16, k_max=256)


def test_tables_is_a_leaf():
    """The table module imports the standard library only, nothing of the project."""
    tree = ast.parse(Path(tables.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, "relative import in golden/tables.py"
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported


def test_codes_are_unique_and_fit_the_mode_field():
    lay = Layouts(ArrayConfig(formats=HW_FORMATS, scale_kinds=("none", "int"),
                              mx_activations=False, k_max=256)).mode
    for table, field in ((tables.ELEMENT_FORMATS, "fmt"), (tables.SPARSITY_PATTERNS, "sparsity"),
                         (tables.SCALE_KINDS, "scale")):
        codes = [row.code for row in table.values()]
        assert sorted(codes) == list(range(len(codes))), f"{field}: codes must be 0..n-1"
        hw_codes = [row.code for row in table.values() if field != "fmt" or row in HW_ROWS]
        assert max(hw_codes) < 1 << lay.members[field].width


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_golden_codec_covers_the_row(row):
    assert row.encoding in tables.ENCODINGS
    assert row.bits * row.lanes_per_slot == tables.SLOT_BITS
    codes = np.arange(row.n_codes)
    values, invalid = decode(row.name, codes)
    assert (values.min(), values.max()) == (row.value_min, row.value_max)
    assert np.flatnonzero(invalid).tolist() == list(row.invalid_codes)
    valid = codes[~invalid]
    assert (encode(row.name, decode_float(row.name, valid)) == valid).all()
    assert np.allclose(decode_float(row.name, valid), values[~invalid] * 2.0**row.pow2_adj)
    assert FORMATS[row.name] is row
    if not row.has_zero_point:
        assert ELEMENT_MAX[row.name] == row.value_max * 2.0**row.pow2_adj


def test_hardware_formats_are_the_table_and_fp8_is_opt_in():
    assert HW_FORMATS == tuple(tables.ELEMENT_FORMATS) == tuple(FORMAT_CODES)
    assert FP8_FORMATS == ("fp8_e4m3", "fp8_e5m2")
    assert (*FP8_FORMATS, "uint2") == OPT_IN_FORMATS
    assert ALL.formats == DEFAULT_FORMATS == tuple(f for f in HW_FORMATS
                                                   if f not in OPT_IN_FORMATS)
    fp8 = ArrayConfig(formats=("int8", *FP8_FORMATS), scale_kinds=("none", "int"),
                      mx_activations=False, k_max=256)
    assert fp8.formats == ("int8", *FP8_FORMATS)
    with pytest.raises(ConfigError, match="the accumulator would need 76 bits"):
        ArrayConfig(formats=("int8", *FP8_FORMATS))  # E5M2 × int8 × 16-bit scales, K = 4096


@pytest.mark.parametrize("row", HW_ROWS, ids=lambda r: r.name)
def test_config_derives_from_the_row(row):
    assert FORMAT_CODES[row.name] == row.code
    assert FORMAT_BITS[row.name] == row.bits
    assert FORMAT_SCALES[row.name] == row.allowed_scales
    assert FORMAT_POW2_ADJ.get(row.name, 0) == row.pow2_adj
    lo, hi = row.value_min - row.zero_max, row.value_max
    assert FORMAT_WMAX[row.name] == max(-lo, hi)
    bits = FORMAT_VALUE_BITS[row.name]
    if row.encoding == "minifloat":  # the lane value v of v · 2**(CHUNK·c) (hw.config)
        chunk = LANE_SHIFT_CHUNK
        assert (hi >> (chunk * FORMAT_COARSE_MAX[row.name])) < 1 << (bits - 1)
        assert hi >= 1 << (chunk * FORMAT_COARSE_MAX[row.name])
    else:
        assert FORMAT_COARSE_MAX[row.name] == 0
        assert -(1 << (bits - 1)) <= lo and hi < 1 << (bits - 1)
        assert not (-(1 << (bits - 2)) <= lo and hi < 1 << (bits - 2)), "not the narrowest width"
    cfg = ArrayConfig(formats=(row.name,), scale_kinds=row.allowed_scales, slots=4, window=16,
                      k_max=256, mx_activations="pow2" in row.allowed_scales,
                      t_max=-16 if row.encoding == "minifloat" else 8)
    assert cfg.has_zero_points == row.has_zero_point
    assert cfg.zero_point_bits == row.zero_point_bits
    packet = Layouts(cfg).packet.members
    assert ("zero" in packet) == row.has_zero_point
    if row.has_zero_point:
        assert packet["zero"].width == row.zero_point_bits
    assert _with(row).quarter_value_bits[0] >= bits
    assert cfg.lanes_per_beat(row.name) == cfg.slots * row.lanes_per_slot


@pytest.mark.parametrize("pattern", list(tables.SPARSITY_PATTERNS.values()), ids=lambda p: p.name)
def test_sparsity_rows(pattern):
    assert parse_sparsity(pattern.name) == (pattern.n, pattern.m)
    assert SPARSITY_PATTERNS[pattern.name] == (pattern.n, pattern.m)
    assert SPARSITY_CODES[pattern.name] == pattern.code
    assert 1 <= pattern.n <= pattern.m


def test_scale_rows():
    assert {k.name: k.code for k in tables.SCALE_KINDS.values()} == SCALE_CODES
    assert all(set(r.allowed_scales) <= set(tables.SCALE_KINDS) for r in ROWS)


def _with(row) -> ArrayConfig:
    """`ALL`, with the row's format enabled (the fp8 rows are opt-in)."""
    if row.name in ALL.formats:
        return ALL
    return ALL.replace(formats=(*ALL.formats, row.name), t_max=-16)


@pytest.mark.parametrize("row", HW_ROWS, ids=lambda r: r.name)
def test_hardware_decoder_decodes_every_code(row):
    """`hw.pe.LaneDecoder` on the Amaranth simulator: every code, lane position, zero point."""
    golden, invalid = decode(row.name, np.arange(row.n_codes))
    zeros = range(row.zero_max + 1)
    failures = []
    for sub in range(row.lanes_per_slot):
        quarter = sub * (4 // row.lanes_per_slot)
        dut = LaneDecoder(_with(row), quarter)

        async def bench(ctx, sub=sub, dut=dut):
            ctx.set(dut.fmt, row.code)
            for zero in zeros:
                if row.has_zero_point:
                    ctx.set(dut.zero, zero)
                for code in range(row.n_codes):
                    # The other lanes of the slot hold the complement: they must not leak in.
                    slot = 0
                    for s in range(row.lanes_per_slot):
                        c = code if s == sub else (row.n_codes - 1 - code)
                        slot |= c << (s * row.bits)
                    ctx.set(dut.slot, slot)
                    coarse = ctx.get(dut.coarse) if dut.coarse_max else 0
                    got = (ctx.get(dut.value) << (LANE_SHIFT_CHUNK * coarse),
                           ctx.get(dut.invalid))
                    want = (int(golden[code]) - zero, int(invalid[code]))
                    if got != want:
                        failures.append(f"lane {sub} code {code} zero {zero}: {got} != {want}")

        sim = Simulator(dut)
        sim.add_testbench(bench)
        sim.run()
    assert not failures, f"{row.name}: " + "; ".join(failures[:5])
